"""Lambda authorizer functions the authorizer tests run in real workers (each module one kind)."""
