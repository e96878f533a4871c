"""The air-gapped side: verify, stage, publish into targets, serve, and keep the import state."""
