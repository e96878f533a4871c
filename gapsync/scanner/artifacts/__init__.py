"""Artifact checks: what a package or image says about itself (licenses, known vulnerabilities,
installed distributions, conda records, image signatures), read without installing or running it.
"""
