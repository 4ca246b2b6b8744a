from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from common.cipher import TokenCipher, generate_key_spec
from common.config import GOOGLE_TOKEN_URL, Secret, Settings, load_settings
from common.errors import ConfigError

AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"


def test_defaults_are_the_standalone_contract(tmp_path: Path) -> None:
    s = load_settings({"VAR_DIR": str(tmp_path)})
    assert s.database_url == "sqlite:///var/integrations.db"
    assert s.broker_url == "memory://" and s.standalone
    assert (s.api_host, s.api_port) == ("127.0.0.1", 8000)
    assert s.redirect_uri == "http://127.0.0.1:8000/oauth/google/callback"
    assert s.google_token_url == GOOGLE_TOKEN_URL
    assert s.refresh_margin_seconds == 300
    assert (s.nightly_refresh_cron, s.nightly_refresh_within_seconds, s.scheduler_timezone) == (
        "0 2 * * *",
        86400,
        "UTC",
    )
    assert s.log_level == "INFO"
    assert not s.is_postgres


def test_values_are_cast_from_the_environment(tmp_path: Path) -> None:
    keys = generate_key_spec("k1")
    s = load_settings(
        {
            "DATABASE_URL": "postgresql+psycopg://u@db:5432/app",
            "BROKER_URL": AMQP,
            "TOKEN_ENCRYPTION_KEYS": keys,
            "API_PORT": "9001",
            "REFRESH_MARGIN_SECONDS": "600",
            "HTTP_TIMEOUT_SECONDS": "2.5",
            "PUBLIC_BASE_URL": "https://integrations.example.com/",
            "GOOGLE_CLIENT_SECRET": "client-secret-value",
            "SCHEDULER_TIMEZONE": "Europe/Paris",
            "LOG_LEVEL": "debug",
            "VAR_DIR": str(tmp_path),
        }
    )
    assert s.api_port == 9001 and isinstance(s.api_port, int)
    assert s.refresh_margin_seconds == 600
    assert s.http_timeout_seconds == 2.5
    assert s.is_postgres and not s.standalone
    assert s.redirect_uri == "https://integrations.example.com/oauth/google/callback"
    assert isinstance(s.google_client_secret, Secret) and s.google_client_secret.reveal() == "client-secret-value"
    assert s.token_encryption_keys.reveal() == keys
    assert not list(tmp_path.iterdir()), "no key file outside standalone mode"


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("API_PORT", "eighty"),
        ("REFRESH_MARGIN_SECONDS", "5m"),
        ("HTTP_TIMEOUT_SECONDS", "1,5"),
        ("LOCK_TIMEOUT_SECONDS", "x"),
    ],
)
def test_malformed_number_names_the_variable(var: str, raw: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"^{var} must be a number"):
        load_settings({var: raw, "VAR_DIR": str(tmp_path)})


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"BROKER_URL": "redis://x"}, "BROKER_URL"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"SCHEDULER_TIMEZONE": "Mars/Olympus"}, "SCHEDULER_TIMEZONE"),
        ({"PUBLIC_BASE_URL": "integrations.example.com"}, "PUBLIC_BASE_URL"),
        ({"REFRESH_MARGIN_SECONDS": "-1"}, "REFRESH_MARGIN_SECONDS"),
        ({"API_PORT": "99999"}, "API_PORT"),
        ({"API_PORT": "-1"}, "API_PORT"),
    ],
)
def test_malformed_values_name_the_variable(env: dict[str, str], named: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings({**env, "VAR_DIR": str(tmp_path)})


def test_missing_keys_outside_standalone_stop_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TOKEN_ENCRYPTION_KEYS is required"):
        load_settings({"BROKER_URL": AMQP, "VAR_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="TOKEN_ENCRYPTION_KEYS is required"):
        load_settings({"BROKER_URL": AMQP, "TOKEN_ENCRYPTION_KEYS": "", "VAR_DIR": str(tmp_path)})
    assert not list(tmp_path.iterdir())


def test_secrets_hide_their_value_in_repr_and_str() -> None:
    secret = Secret("hunter2-client-secret")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret) and "hunter2" not in f"{secret}"
    assert secret.reveal() == "hunter2-client-secret"
    assert secret == Secret("hunter2-client-secret") and bool(secret) and not Secret("")
    keys = generate_key_spec("k1")
    s = Settings(token_encryption_keys=Secret(keys), google_client_secret=secret, admin_api_key=Secret("adm1n-key"))
    text = repr(s)
    for value in (keys, keys.split(":")[1], "hunter2", "adm1n-key"):
        assert value not in text


@pytest.mark.parametrize(
    ("database_url", "broker_url", "shown"),
    [
        (
            "postgresql+psycopg://app:pg-pass%40word@db.internal:5432/integrations",
            "amqp://rabbit:mq-pass-word@mq.internal:5672/%2F",
            ("postgresql+psycopg://app:**********@db.internal:5432/integrations", "amqp://rabbit:**********@mq"),
        ),
        ("postgresql+psycopg://:pg-pass-word@db/x", "amqps://u:mq-pass-word@[::1]:5671/v", ("db/x", "[::1]:5671")),
        ("sqlite:///var/pg-pass-word.db", "memory://", ("sqlite:///var/pg-pass-word.db",)),
    ],
)
def test_settings_repr_masks_the_passwords_in_database_and_broker_urls(
    database_url: str, broker_url: str, shown: tuple[str, ...]
) -> None:
    s = Settings(database_url=database_url, broker_url=broker_url)
    for text in (repr(s), str(s), f"{s}", repr([s])):
        if not database_url.startswith("sqlite"):
            assert "pg-pass" not in text and "mq-pass" not in text
        for part in shown:
            assert part in text
    assert s.database_url == database_url, "the value itself is untouched"


def test_standalone_keys_are_generated_once_private_and_reused(tmp_path: Path) -> None:
    var = tmp_path / "var"
    first = load_settings({"VAR_DIR": str(var)})
    key_file = var / "token-keys"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    spec = first.token_encryption_keys.reveal()
    assert key_file.read_text().strip() == spec
    TokenCipher.from_spec(spec)
    second = load_settings({"VAR_DIR": str(var)})
    assert second.token_encryption_keys.reveal() == spec


def test_standalone_keys_given_explicitly_write_no_file(tmp_path: Path) -> None:
    keys = generate_key_spec("mine")
    s = load_settings({"VAR_DIR": str(tmp_path), "TOKEN_ENCRYPTION_KEYS": keys})
    assert s.token_encryption_keys.reveal() == keys
    assert not (tmp_path / "token-keys").exists()


def test_processes_starting_together_share_one_standalone_key_ring(tmp_path: Path) -> None:
    # `make run` and a CLI started at the same moment on a clean checkout must not each invent a ring
    # (the loser would crash, or read a half-written file and start with no key).
    for attempt in range(40):
        var = tmp_path / str(attempt)
        barrier = threading.Barrier(8)
        specs: list[str] = []
        errors: list[BaseException] = []

        def start(var: Path = var, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                specs.append(load_settings({"VAR_DIR": str(var)}).token_encryption_keys.reveal())
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, f"attempt {attempt}: {errors[0]!r}"
        assert len(set(specs)) == 1 and specs[0], f"attempt {attempt}: {len(set(specs))} different rings"
        assert (var / "token-keys").read_text().strip() == specs[0]


def test_corrupt_standalone_key_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "token-keys").write_text("not a key ring\n")
    with pytest.raises(ConfigError, match="token-keys"):
        load_settings({"VAR_DIR": str(tmp_path)})


@pytest.mark.parametrize("value", ["...", "<your client id>", "your-client-id.apps.googleusercontent.com", "change-me"])
@pytest.mark.parametrize("var", ["GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET"])
@pytest.mark.parametrize("broker", ["memory://", "amqp://guest:guest@127.0.0.1:5672/%2F"])
def test_a_placeholder_oauth_client_is_refused_naming_the_fix(
    var: str, value: str, broker: str, tmp_path: Path
) -> None:
    env = {var: value, "BROKER_URL": broker, "VAR_DIR": str(tmp_path), "TOKEN_ENCRYPTION_KEYS": generate_key_spec("k")}
    with pytest.raises(ConfigError) as refused:
        load_settings(env)

    assert f"{var} is a placeholder" in str(refused.value) and "make fake-google" in str(refused.value)


def test_a_real_looking_oauth_client_is_accepted(tmp_path: Path) -> None:
    env = {"GOOGLE_CLIENT_ID": "1234-abc.apps.googleusercontent.com", "GOOGLE_CLIENT_SECRET": "GOCSPX-0123456789abcdef"}
    settings = load_settings({**env, "VAR_DIR": str(tmp_path)})

    assert settings.google_client_id == env["GOOGLE_CLIENT_ID"]
