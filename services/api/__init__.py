"""The HTTP API: authenticates, validates, writes small rows, publishes work, answers status."""
