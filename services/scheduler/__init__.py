"""The scheduler: sends the nightly `refresh_all` at NIGHTLY_REFRESH_CRON and sweeps the notification outbox."""
