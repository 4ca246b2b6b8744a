"""The `integrations` command line: users, token refreshes, syncs, health, migrations and keys."""
