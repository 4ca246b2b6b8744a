"""Weak secrets: outside standalone mode placeholders and short admin keys stop start-up; .env.example has none."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from common.cipher import generate_key_spec
from common.config import load_settings
from common.errors import ConfigError
from common.weak_secrets import is_placeholder

ROOT = Path(__file__).resolve().parents[2]
AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
GOOD_ADMIN_KEY = "k" * 16 + "0123456789abcdef"  # 32 characters


def deployed(tmp_path: Path, **env: str) -> dict[str, str]:
    """A service's environment outside standalone mode (RabbitMQ), with `env` on top."""
    return {
        "BROKER_URL": AMQP,
        "TOKEN_ENCRYPTION_KEYS": generate_key_spec("k1"),
        "VAR_DIR": str(tmp_path),
        **env,
    }


@pytest.mark.parametrize("key", ["change-me-too", "change-me", "CHANGE-ME", "secret", "password", "changeme", "admin"])
def test_a_placeholder_admin_key_stops_start_up(key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ADMIN_API_KEY is a placeholder") as raised:
        load_settings(deployed(tmp_path, ADMIN_API_KEY=key))
    assert key not in str(raised.value), "the error names the variable, never its value"


@pytest.mark.parametrize("key", ["x", "k" * 31, "change-me-too-change-me-too-change-me"])
def test_a_short_or_placeholder_like_admin_key_stops_start_up(key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ADMIN_API_KEY") as raised:
        load_settings(deployed(tmp_path, ADMIN_API_KEY=key))
    assert "32 characters" in str(raised.value) or "placeholder" in str(raised.value)


def test_a_long_random_admin_key_and_no_admin_key_both_start(tmp_path: Path) -> None:
    assert load_settings(deployed(tmp_path, ADMIN_API_KEY=GOOD_ADMIN_KEY)).admin_api_key.reveal() == GOOD_ADMIN_KEY
    assert not load_settings(deployed(tmp_path)).admin_api_key  # unset: the admin API answers 503


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("DATABASE_URL", "postgresql+psycopg://integrations:change-me@postgres:5432/integrations"),
        ("DATABASE_URL", "postgresql+psycopg://integrations:password@postgres:5432/integrations"),
        ("BROKER_URL", "amqp://integrations:change-me@rabbitmq:5672/%2F"),
        ("BROKER_URL", "amqp://integrations:secret@rabbitmq:5672/%2F"),
        ("SMTP_URL", "smtps://mailer:change-me@mail.example.com:465"),
        ("GOOGLE_CLIENT_SECRET", "change-me"),
    ],
)
def test_a_placeholder_password_stops_start_up_naming_the_variable(var: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{var} .*placeholder"):
        load_settings(deployed(tmp_path, **{var: value}))


def test_standalone_mode_keeps_its_defaults(tmp_path: Path) -> None:
    s = load_settings({"VAR_DIR": str(tmp_path), "ADMIN_API_KEY": "change-me"})
    assert s.standalone and s.admin_api_key.reveal() == "change-me"


def test_env_example_ships_no_usable_secret(tmp_path: Path) -> None:
    values = dict(
        line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines() if re.match(r"^[A-Z_]+=", line)
    )
    for name in ("POSTGRES_PASSWORD", "RABBITMQ_PASSWORD", "ADMIN_API_KEY", "TOKEN_ENCRYPTION_KEYS"):
        assert values[name] == "", f"{name} must be empty in .env.example (compose refuses to start until it is set)"
    assert not [name for name, value in values.items() if value and is_placeholder(value)]
    # What the services read from a copied .env.example: placeholders would be refused, empty values are unset.
    env = {k: v for k, v in values.items() if k not in ("TOKEN_ENCRYPTION_KEYS",)}
    assert not load_settings(deployed(tmp_path, **env)).admin_api_key
