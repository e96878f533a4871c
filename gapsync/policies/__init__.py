"""Policies: the data that turns scanner facts into decisions, shipped as YAML next to its loaders.

``pickle_globals.yaml`` is the allowlist of globals a model pickle may import; its loader is
``gapsync.policies.pickle_globals``.
"""
