"""`integrations`: operator commands. Exit codes: 0 done, 1 failed, 2 bad usage or configuration."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable

import dramatiq
import pika.exceptions
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from common.bootstrap import Container, bootstrap
from common.broker_check import describe
from common.cipher import valid_key_id
from common.config import MEMORY_BROKER, Settings, check_database_url, load_settings
from common.errors import ConfigError
from common.logging import configure_logging
from common.models import ACTIVE, Integration
from common.quota import QuotaGovernor
from common.tasks import REFRESH_ALL, SYNC_ALL, SYNC_INTEGRATION, send
from services.cli import health


class Failed(Exception):
    """A command failed in a way the operator can understand; the message says how."""


def _settings() -> Settings:
    settings = load_settings()
    # Logs go to stderr: stdout carries the command's answer (an API key, a message id, JSON).
    configure_logging(settings.log_level, settings.log_format, stream=sys.stderr)
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    return settings


def _container(settings: Settings) -> Container:
    return bootstrap(settings, configure_logs=False, pool_size=2)


def _publish(settings: Settings, actor_name: str, *args: object) -> str:
    """Publish one message and return its id once RabbitMQ confirmed it."""
    if settings.broker_url == MEMORY_BROKER:
        raise ConfigError("BROKER_URL is memory:// (standalone): set it to the RabbitMQ the workers consume")
    from common.broker import make_broker

    broker = make_broker(settings.broker_url)
    try:
        return send(broker, actor_name, *args)
    except (dramatiq.errors.BrokerError, pika.exceptions.AMQPError, OSError) as exc:
        raise Failed(f"could not publish: {describe(exc, settings.broker_url).reason}") from None
    finally:
        broker.close()


def cmd_users_create(args: argparse.Namespace) -> int:
    from common.users import UserExists, create_user

    c = _container(_settings())
    try:
        user_id, api_key = create_user(c.sessions, args.email)
    except UserExists as exc:
        raise Failed(str(exc)) from None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        c.close()
    print(f"Created user {user_id} <{args.email.strip().lower()}>. Its API key, shown only this once:")
    print(api_key)
    return 0


def cmd_users_new_key(args: argparse.Namespace) -> int:
    from common.users import UnknownUser, new_key

    c = _container(_settings())
    try:
        user_id, api_key = new_key(c.sessions, args.email)
    except UnknownUser as exc:
        raise Failed(str(exc)) from None
    finally:
        c.close()
    print(f"User {user_id} <{args.email.strip().lower()}> has a new API key (the old one no longer works):")
    print(api_key)
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from common.users import list_users

    c = _container(_settings())
    try:
        users = list_users(c.sessions)
    finally:
        c.close()
    if args.json:
        print(json.dumps(users, indent=2))
    elif users:
        print(health.columns(["id", "email", "integrations", "created_at"], users))
    else:
        print("No users yet: create one with `integrations users create --email E`.")
    return 0


def cmd_refresh_tokens(args: argparse.Namespace) -> int:
    extra = () if args.within is None else (args.within,)
    message_id = _publish(_settings(), REFRESH_ALL, *extra)
    window = "the nightly window" if args.within is None else f"{args.within} s"
    print(f"Published refresh_all ({window}); the broker confirmed message {message_id}")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    settings = _settings()
    c = _container(settings)
    try:
        with c.sessions() as s:
            row = s.get(Integration, args.id)
            if row is None:
                raise Failed(f"no integration has id {args.id}")
            if row.status != ACTIVE:
                raise Failed(f"integration {args.id} is {row.status}; reconnect it first")
            if row.needs_reauth:
                print(f"warning: integration {args.id} needs re-authentication; the sync will fail", file=sys.stderr)
    finally:
        c.close()
    message_id = _publish(settings, SYNC_INTEGRATION, args.id)
    print(f"Published sync_integration({args.id}); the broker confirmed message {message_id}")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    c = _container(_settings())
    try:
        items = health.unhealthy(c.sessions, c.settings.sync_interval_hours)
    finally:
        c.close()
    if args.json:
        print(json.dumps(items, indent=2))
    elif items:
        print(health.table(items))
    else:
        print("No active integration is in error or overdue for its sync.")
    return 1 if items else 0


def cmd_sync_all(args: argparse.Namespace) -> int:
    message_id = _publish(_settings(), SYNC_ALL)
    print(f"Published sync_all; the broker confirmed message {message_id}")
    return 0


def cmd_quota(args: argparse.Namespace) -> int:
    c = _container(_settings())
    try:
        usage = c.quota.usage() if isinstance(c.quota, QuotaGovernor) else []
    finally:
        c.close()
    rows = [
        {
            "api": u.api,
            "budget_qpm": u.budget_qpm,
            "used_last_minute": u.used_last_minute,
            "throttled_429": u.throttled_total,
            "pace_qpm": u.current_qpm,
        }
        for u in usage
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(health.table(rows, tuple(rows[0]) if rows else ("api",)))
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from common.migrate import current_revision, upgrade_naming

    # Only the database is needed: migrating must not require the token keys or the broker.
    url = os.environ.get("DATABASE_URL") or Settings().database_url
    check_database_url(url)
    applied = upgrade_naming(url)
    for name in applied:
        print(f"applied {name}")
    head = current_revision(url)
    print(f"The database schema is up to date (revision {head}; {len(applied)} migration(s) applied now).")
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from common.cipher import generate_key_spec

    print(generate_key_spec(args.id))
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from common.key_rotation import RotationReport, left_on_old_keys, rotate_keys

    c = _container(_settings())
    batches = 0

    def progress(report: RotationReport) -> None:
        nonlocal batches
        batches += 1
        print(f"batch {batches}: {report.scanned} scanned, {report.rotated} re-encrypted, {report.failed} failed")

    try:
        report = rotate_keys(c.sessions, c.cipher, args.batch_size, progress)
        left = left_on_old_keys(c.sessions, c.cipher.primary_key_id)
    finally:
        c.close()
    print(
        f"Done: {report.rotated} of {report.scanned} integrations re-encrypted under key "
        f"{c.cipher.primary_key_id}; {report.failed} failed"
    )
    old = ", ".join(c.cipher.key_ids[1:]) or "(none)"
    if left == 0:
        print(
            f"Nothing is left under the old key(s) {old}: once every process runs with this key ring, "
            "remove them from TOKEN_ENCRYPTION_KEYS."
        )
    else:
        print(
            f"{left} integration(s) still hold a token under an old key: keep {old} in TOKEN_ENCRYPTION_KEYS "
            "and run `integrations keys rotate` again once every process runs with this key ring."
        )
    if report.failed:
        ids = ", ".join(str(i) for i in report.failed_ids[:50])
        print(f"error: no key of TOKEN_ENCRYPTION_KEYS decrypts integrations {ids}", file=sys.stderr)
        return 1
    return 0


def _positive(value: str) -> int:
    n = int(value) if value.strip().lstrip("+").isdigit() else 0
    if n < 1 or n > 2**63 - 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return n


def _non_negative(value: str) -> int:
    if not value.strip().lstrip("+").isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number of seconds, 0 or more, got {value}")
    return int(value)


def _key_id(value: str) -> str:
    """A key id TOKEN_ENCRYPTION_KEYS can hold: letters, digits, '-' and '_'."""
    if not valid_key_id(value):
        raise argparse.ArgumentTypeError(f"must be letters, digits, '-' or '_', got {value!r}")
    return value


def _missing_schema(exc: DBAPIError) -> bool:
    """The database answered, but lacks our tables or columns (never migrated, or migrated to an older version)."""
    if getattr(exc.orig, "sqlstate", None) in ("42P01", "42703"):  # PostgreSQL undefined_table, undefined_column
        return True
    return str(exc.orig).startswith(("no such table", "no such column"))  # SQLite


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="integrations", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, fn: Callable[..., int], help_: str
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=fn)
        return p

    users = sub.add_parser("users", help="manage users", description="manage users")
    users_sub = users.add_subparsers(dest="users_command", metavar="COMMAND", required=True)
    add(users_sub, "create", cmd_users_create, "create a user and print its API key once (last line)").add_argument(
        "--email", required=True, metavar="EMAIL", help="the user's email address"
    )
    add(
        users_sub, "new-key", cmd_users_new_key, "give a user a new API key (last line); the old one stops working"
    ).add_argument("--email", required=True, metavar="EMAIL", help="the user's email address")
    add(users_sub, "list", cmd_users_list, "list users and how many integrations each has").add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )
    add(
        sub, "refresh-tokens", cmd_refresh_tokens, "publish one refresh_all message (what the nightly job does)"
    ).add_argument(
        "--within",
        type=_non_negative,
        metavar="SECONDS",
        help="refresh tokens expiring within SECONDS (default: NIGHTLY_REFRESH_WITHIN_SECONDS)",
    )
    add(sub, "sync-all", cmd_sync_all, "publish one sync_all message: sync every healthy integration, paced")
    add(sub, "quota", cmd_quota, "each Google API's budget, use in the last minute and 429s").add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )
    add(sub, "sync", cmd_sync, "publish a sync of one integration").add_argument(
        "id", type=_positive, metavar="ID", help="the integration's id"
    )
    add(
        sub,
        "health",
        cmd_health,
        "list active integrations in error or overdue for their sync; exits 1 when there is any, 0 when none",
    ).add_argument("--json", action="store_true", help="print JSON instead of a table")
    db = sub.add_parser("db", help="database schema", description="database schema")
    db_sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    add(db_sub, "upgrade", cmd_db_upgrade, "apply the migrations (Alembic) to DATABASE_URL, naming each")
    keys = sub.add_parser("keys", help="token encryption keys", description="token encryption keys")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    add(keys_sub, "generate", cmd_keys_generate, "print a new keyid:base64key").add_argument(
        "--id", type=_key_id, metavar="KEY_ID", help="key id (letters, digits, '-', '_'; default: random)"
    )
    add(keys_sub, "rotate", cmd_keys_rotate, "re-encrypt every stored token with the first key").add_argument(
        "--batch-size", type=_positive, default=500, metavar="N", help="rows per transaction (default 500)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Failed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OperationalError, ProgrammingError) as exc:
        if _missing_schema(exc):
            print(
                "error: the database schema is missing or out of date: run `integrations db upgrade`", file=sys.stderr
            )
            return 1
        if isinstance(exc, ProgrammingError):
            raise
        first_line = (str(exc.orig).splitlines() or ["?"])[0]
        print(f"error: the database is unreachable: {first_line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
