"""Benchmarks (`make bench`): refresh-all throughput, fan-out, API accept rate and sync latency.

Everything runs on real PostgreSQL and RabbitMQ (a database and a vhost of the run's own, dropped
afterwards), the fake Google as its own process, and the services as their own processes.
"""
