"""The worker: Dramatiq actors that refresh tokens and sync integrations."""
