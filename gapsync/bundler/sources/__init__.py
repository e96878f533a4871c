"""Sources: where artifacts come from. One module per kind, behind the interface in ``base.py``."""
