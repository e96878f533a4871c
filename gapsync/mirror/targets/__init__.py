"""Publish targets on the air-gapped side: one module per kind of registry."""
