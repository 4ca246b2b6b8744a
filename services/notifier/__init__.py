"""The notifier: consumes the `notifications` queue and sends one email per incident."""
