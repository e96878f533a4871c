"""The connected side: spec, lock, sources, cache, the bundle format and the TUF repository."""
