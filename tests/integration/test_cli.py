"""The `integrations` CLI as a process, on real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from common.bootstrap import bootstrap
from common.broker import make_broker
from common.cipher import generate_key_spec, parse_keys
from common.config import Secret
from common.errors import InvalidEmail, TransientProviderError
from common.migrate import MIGRATIONS
from common.models import Integration, User
from common.quota import PERFORMANCE
from common.tasks import REFRESH_ALL, REFRESH_QUEUE, SYNC_ALL, SYNC_INTEGRATION, SYNC_QUEUE
from common.users import authenticate, create_user
from services.cli.main import build_parser
from tests.conftest import TEST_KEYS, make_settings
from tests.support.flows import connect, expire_soon, new_email
from tests.support.worker import flush

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def c(pg_url, amqp_url, google):
    container = bootstrap(make_settings(pg_url, google, broker_url=amqp_url), configure_logs=False, pool_size=2)
    yield container
    container.close()


@pytest.fixture
def broker(amqp_url):
    b = make_broker(amqp_url)
    flush(b)
    yield b
    flush(b)
    b.close()


@pytest.fixture
def cli(pg_url, amqp_url, google, tmp_path):
    base = {
        **os.environ,
        **google.env(),
        "DATABASE_URL": pg_url,
        "BROKER_URL": amqp_url,
        "TOKEN_ENCRYPTION_KEYS": TEST_KEYS,
        "PYTHONPATH": str(ROOT),
        "VAR_DIR": str(tmp_path),
    }

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            cwd=ROOT,
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def test_users_create_prints_the_working_key_alone_on_the_last_line(cli, c):
    email = new_email()

    result = cli("users", "create", "--email", email)

    assert result.returncode == 0, result.stderr
    key = result.stdout.splitlines()[-1]
    with c.sessions() as s:
        user = authenticate(s, key)
        assert user is not None and user.email == email


def test_users_create_twice_fails_with_a_message(cli):
    email = new_email()
    assert cli("users", "create", "--email", email).returncode == 0

    again = cli("users", "create", "--email", email)

    assert again.returncode == 1
    assert "exists" in again.stderr and again.stdout == ""


def test_users_create_refuses_an_email_that_is_not_exactly_one_plain_mailbox(cli, c):
    """A comma made the re-auth email (and its reconnect link) go to a second, chosen recipient."""
    result = cli("users", "create", "--email", "victim,attacker@evil.example")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "one email address" in result.stderr and result.stdout == ""
    with c.sessions() as s:
        assert s.scalars(select(User).where(User.email.contains("evil.example"))).all() == []


@pytest.mark.parametrize(
    "email",
    [
        "victim,attacker@evil.example",
        "a@example.com, b@evil.example",
        "a@example.com;b@evil.example",
        "Victim <victim@example.com>",
        '"victim,attacker"@evil.example',
        "victim(comment)@example.com",
        "victim@[203.0.113.7]",
        "victim@",
        "@example.com",
        "no-domain",
        "victim@example.com\r\nBcc: attacker@evil.example",
        "victim@example..com",
        "",
    ],
)
def test_no_user_is_created_for_anything_but_one_plain_mailbox(c, email):
    before = _user_count(c)
    with pytest.raises(InvalidEmail, match="one email address"):
        create_user(c.sessions, email)
    assert _user_count(c) == before


def test_a_plain_mailbox_is_stored_lower_case(c):
    email = new_email("Mixed.Case+tag")
    uid, _ = create_user(c.sessions, f"  {email.upper()} ")
    with c.sessions() as s:
        assert s.get(User, uid).email == email.lower()


def _user_count(c) -> int:
    with c.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(User)) or 0)


def test_refresh_tokens_publishes_exactly_one_confirmed_message(cli, broker):
    result = cli("refresh-tokens", "--within", "3600")

    assert result.returncode == 0, result.stderr
    assert broker.get_queue_message_counts(REFRESH_QUEUE) == (1, 0, 0)
    message = broker.channel.basic_get(REFRESH_QUEUE, auto_ack=True)[2]
    decoded = json.loads(message)
    assert (decoded["actor_name"], decoded["args"]) == (REFRESH_ALL, [3600])
    assert decoded["message_id"] in result.stdout


def test_refresh_tokens_fails_fast_when_the_broker_is_unreachable(cli):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # bound but not listening: connections are refused

        result = cli("refresh-tokens", BROKER_URL=f"amqp://guest:guest@127.0.0.1:{closed_port}/%2F")

    assert result.returncode == 1
    assert f"RabbitMQ at 127.0.0.1:{closed_port}" in result.stderr and "connection refused" in result.stderr
    assert "guest:guest" not in result.stderr


@pytest.mark.parametrize(
    ("path", "password", "names"),
    [
        ("/no-such-vhost", "guest", "vhost refused (530 NOT_ALLOWED - vhost no-such-vhost not found)"),
        ("/%2F", "wrong-password", "login refused (403 ACCESS_REFUSED"),
    ],
)
def test_refresh_tokens_passes_on_rabbitmqs_reason_for_a_refusal(cli, amqp_url, path, password, names):
    server = urlsplit(amqp_url)
    result = cli(
        "refresh-tokens", BROKER_URL=f"amqp://{server.username}:{password}@{server.netloc.split('@')[1]}{path}"
    )

    assert result.returncode == 1
    assert names in result.stderr, result.stderr
    assert "wrong-password" not in result.stderr


def test_sync_publishes_one_message_and_refuses_unknown_ids(cli, c, broker):
    iid = connect(c)

    ok = cli("sync", str(iid))
    unknown = cli("sync", "99999999")
    bad = cli("sync", "abc")

    assert ok.returncode == 0, ok.stderr
    assert broker.get_queue_message_counts(SYNC_QUEUE) == (1, 0, 0)
    decoded = json.loads(broker.channel.basic_get(SYNC_QUEUE, auto_ack=True)[2])
    assert (decoded["actor_name"], decoded["args"]) == (SYNC_INTEGRATION, [iid])
    assert unknown.returncode == 1 and "99999999" in unknown.stderr
    assert bad.returncode == 2


def test_health_json_lists_an_integration_in_error(cli, c, google):
    owner = new_email("owner")
    uid, _ = create_user(c.sessions, owner)
    iid = connect(c, user_id=uid)
    healthy = connect(c)
    expire_soon(c, iid, 30)
    google.fake.fail_ratio("token", 503, 1.0)
    with pytest.raises(TransientProviderError) as failure:
        c.tokens.ensure_fresh_token(iid, 300)
    c.tokens.record_transient_failure(iid, failure.value)  # what the worker does when retries run out

    result = cli("health", "--json")
    table = cli("health")

    assert result.returncode == 1, result.stderr  # something is unhealthy: monitoring scripts see non-zero
    items = {item["id"]: item for item in json.loads(result.stdout)}
    assert healthy not in items
    item = items[iid]
    assert item["user_email"] == owner
    assert item["needs_reauth"] is False and item["error_kind"] == "transient"
    assert item["last_sync_message"] == failure.value.message
    assert item["platform"] == "google" and item["display_name"]
    assert table.returncode == 1 and str(iid) in table.stdout and owner in table.stdout


def test_health_exits_0_when_no_integration_is_in_error(cli, google, sqlite_url):
    ok = bootstrap(make_settings(sqlite_url, google), configure_logs=False)
    connect(ok)
    ok.close()

    result = cli("health", DATABASE_URL=sqlite_url)

    expected = (0, "No active integration is in error or overdue for its sync.")
    assert (result.returncode, result.stdout.strip()) == expected, result.stderr


def test_users_new_key_prints_a_working_key_and_the_old_one_stops_working(cli, c):
    email = new_email()
    old_key = cli("users", "create", "--email", email).stdout.splitlines()[-1]

    result = cli("users", "new-key", "--email", email.upper())

    assert result.returncode == 0, result.stderr
    key = result.stdout.splitlines()[-1]
    with c.sessions() as s:
        assert authenticate(s, old_key) is None
        user = authenticate(s, key)
        assert user is not None and user.email == email


def test_users_new_key_for_an_unknown_email_fails_with_a_message(cli):
    result = cli("users", "new-key", "--email", new_email())

    assert result.returncode == 1
    assert "no user has email" in result.stderr and result.stdout == ""


def test_users_list_shows_each_user_with_their_integration_count_and_no_key(cli, google, sqlite_url):
    lite = bootstrap(make_settings(sqlite_url, google), configure_logs=False)
    uid, key = create_user(lite.sessions, "owner@example.com")
    connect(lite, user_id=uid)
    create_user(lite.sessions, "idle@example.com")
    lite.close()

    table = cli("users", "list", DATABASE_URL=sqlite_url)
    as_json = cli("users", "list", "--json", DATABASE_URL=sqlite_url)

    assert table.returncode == 0 and as_json.returncode == 0, table.stderr
    assert [(u["email"], u["integrations"]) for u in json.loads(as_json.stdout)] == [
        ("owner@example.com", 1),
        ("idle@example.com", 0),
    ]
    assert table.stdout.splitlines()[0].split() == ["id", "email", "integrations", "created_at"]
    assert "owner@example.com" in table.stdout and key not in table.stdout + as_json.stdout


def test_keys_generate_prints_a_usable_key(cli):
    result = cli("keys", "generate")

    assert result.returncode == 0
    assert len(parse_keys(result.stdout.strip())) == 1


def test_bad_configuration_exits_2_with_a_message(cli):
    result = cli("health", BROKER_URL="redis://nope")

    assert result.returncode == 2
    assert "BROKER_URL" in result.stderr


def test_db_upgrade_migrates_a_new_database(cli, tmp_path):
    url = f"sqlite:///{tmp_path}/fresh.db"

    result = cli("db", "upgrade", DATABASE_URL=url)
    again = cli("db", "upgrade", DATABASE_URL=url)

    assert result.returncode == 0, result.stderr
    applied = [line for line in result.stdout.splitlines() if line.startswith("applied ")]
    assert applied[0] == "applied 0001: initial schema" and len(applied) == len(
        list((MIGRATIONS / "versions").glob("0*.py"))
    )
    assert again.returncode == 0 and "0 migration(s) applied now" in again.stdout
    assert "applied" not in again.stdout.replace("applied now", "")
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    assert {"users", "integrations", "insights"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_keys_rotate_reencrypts_under_the_new_key_with_progress(cli, google, sqlite_url):
    old = bootstrap(make_settings(sqlite_url, google), configure_logs=False)
    ids = [connect(old) for _ in range(3)]
    old.close()
    new_key = generate_key_spec("new1")

    result = cli(
        "keys", "rotate", "--batch-size", "2", DATABASE_URL=sqlite_url, TOKEN_ENCRYPTION_KEYS=f"{new_key},{TEST_KEYS}"
    )

    assert result.returncode == 0, result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()][:3] == ["batch 1", "batch 2", "Done"]
    assert "3 of 3" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("Nothing is left under the old key(s) test1")
    rotated = bootstrap(make_settings(sqlite_url, google, token_encryption_keys=Secret(new_key)), configure_logs=False)
    try:
        for iid in ids:
            assert rotated.tokens.ensure_fresh_token(iid, 0).startswith("ya29.")
    finally:
        rotated.close()


@pytest.mark.parametrize("key_id", ["a:b", "a,b", "a b"])
def test_keys_generate_refuses_an_id_token_encryption_keys_cannot_hold(cli, key_id):
    result = cli("keys", "generate", "--id", key_id)

    assert result.returncode == 2
    assert result.stdout == ""
    assert "--id" in result.stderr


def test_a_number_argument_that_is_not_a_number_says_so(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["sync", "abc"])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "must be a positive integer, got abc" in err and "_positive" not in err


def test_commands_on_a_database_without_the_schema_say_to_migrate(cli, pg_url, tmp_path):
    no_schema = pg_url + ("&" if "?" in pg_url else "?") + "options=-csearch_path%3Dno_such_schema"
    for url in (no_schema, f"sqlite:///{tmp_path}/empty.db"):
        for args in (("health",), ("users", "create", "--email", new_email()), ("sync", "1")):
            result = cli(*args, DATABASE_URL=url)

            assert result.returncode == 1, (url, args, result.stderr)
            assert "Traceback" not in result.stderr
            assert "integrations db upgrade" in result.stderr, result.stderr
            assert "unreachable" not in result.stderr


def test_db_upgrade_with_a_malformed_url_names_the_variable(cli):
    result = cli("db", "upgrade", DATABASE_URL="mysql://root@127.0.0.1/app")

    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr and "Traceback" not in result.stderr


def test_sync_all_publishes_exactly_one_confirmed_message(cli, broker):
    result = cli("sync-all")

    assert result.returncode == 0, result.stderr
    assert broker.get_queue_message_counts(REFRESH_QUEUE) == (1, 0, 0)
    decoded = json.loads(broker.channel.basic_get(REFRESH_QUEUE, auto_ack=True)[2])
    assert (decoded["actor_name"], decoded["args"]) == (SYNC_ALL, [])
    assert decoded["message_id"] in result.stdout


def test_health_lists_integrations_not_synced_for_two_intervals(cli, c):
    overdue, recent, reauth = connect(c), connect(c), connect(c)
    now = dt.datetime.now(dt.UTC)
    with c.sessions.begin() as s:
        s.get(Integration, overdue).last_synced_at = now - dt.timedelta(hours=49)
        s.get(Integration, recent).last_synced_at = now - dt.timedelta(hours=47)
        s.get(Integration, reauth).last_synced_at = now - dt.timedelta(hours=49)
        s.get(Integration, reauth).needs_reauth = True  # listed once it is in error, not as overdue

    result = cli("health", "--json", SYNC_INTERVAL_HOURS="24")

    assert result.returncode == 1, result.stderr  # something is listed
    listed = {item["id"] for item in json.loads(result.stdout)}
    assert overdue in listed
    assert recent not in listed and reauth not in listed


def test_quota_shows_each_apis_budget_use_and_429s(cli, pg_url, google):
    c = bootstrap(make_settings(pg_url, google, gbp_qpm=6000), configure_logs=False, pool_size=2)
    for _ in range(3):
        c.quota.acquire(PERFORMANCE)
    c.quota.throttled(PERFORMANCE)
    c.close()

    result = cli("quota", "--json", GBP_QPM="6000")
    table = cli("quota", GBP_QPM="6000")

    assert result.returncode == 0, result.stderr
    rows = {row["api"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"account_management", "business_information", "performance", "token"}
    assert rows["performance"]["budget_qpm"] == 6000 and rows["token"]["budget_qpm"] is None
    assert rows["performance"]["used_last_minute"] >= 3 and rows["performance"]["throttled_429"] >= 1
    assert table.returncode == 0 and "performance" in table.stdout
