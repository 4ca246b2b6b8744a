"""A RabbitMQ outage of one vhost only (ours): other vhosts on the same server are never touched."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from tests.support import services
from tests.support.api import rabbit_server


def _ctl(*args: str) -> None:
    services._rabbitmqctl(rabbit_server()[1], *args)


def _vhost_and_user(amqp_url: str) -> tuple[str, str]:
    parts = urlsplit(amqp_url)
    return unquote(parts.path[1:]), parts.username or "guest"


def block(amqp_url: str) -> None:
    """Refuse new connections to the vhost and close the ones it has: the broker is down for its clients."""
    vhost, user = _vhost_and_user(amqp_url)
    _ctl("clear_permissions", "-p", vhost, user)
    close_connections(amqp_url)


def close_connections(amqp_url: str) -> None:
    """Close every client connection of the vhost (scoped with --vhost: never the whole node)."""
    vhost, _ = _vhost_and_user(amqp_url)
    _ctl("close_all_connections", "--vhost", vhost, "--limit", "100000", "fault test: broker outage")


def unblock(amqp_url: str) -> None:
    vhost, user = _vhost_and_user(amqp_url)
    _ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
