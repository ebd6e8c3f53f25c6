"""Definition files → model → compiled gateway."""
