"""Sources: where artifacts come from. One module per kind."""
