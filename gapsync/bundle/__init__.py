"""The bundle format both sides share: reader and writer, TUF helpers, approvals, volumes, parity,
receipts, keys and minisign. The connected side (``bundler``) writes it, the air side (``mirror``)
reads it; this package imports neither.
"""
