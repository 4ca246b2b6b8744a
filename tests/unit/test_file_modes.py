"""Local files holding secrets: the standalone SQLite file is private, and looser key files are warned about."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from common.config import load_settings
from common.db import make_engine
from common.migrate import upgrade
from common.startup_checks import log_startup_warnings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    """The usual umask (022), which left the database readable by every local user."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_standalone_database_and_its_folder_are_created_private(tmp_path: Path, open_umask) -> None:
    var = tmp_path / "var"
    url = f"sqlite:///{var}/integrations.db"
    upgrade(url)
    assert mode(var / "integrations.db") == 0o600
    assert mode(var) == 0o700
    for sidecar in var.glob("integrations.db-*"):  # WAL and shared-memory files follow the database's mode
        assert mode(sidecar) == 0o600, sidecar


def test_an_engine_opening_a_new_database_creates_it_private(tmp_path: Path, open_umask) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    engine = make_engine(f"sqlite:///{shared}/fresh.db")
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    engine.dispose()
    assert mode(shared / "fresh.db") == 0o600
    assert mode(shared) == 0o755, "a folder we did not create keeps its mode"


def test_an_existing_database_keeps_its_mode(tmp_path: Path, open_umask) -> None:
    db = tmp_path / "mine.db"
    db.touch(mode=0o640)
    upgrade(f"sqlite:///{db}")
    assert mode(db) == 0o640


def test_a_key_file_or_database_readable_by_others_is_warned_about(tmp_path: Path, open_umask) -> None:
    settings = load_settings({"VAR_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path}/integrations.db"})
    upgrade(settings.database_url)
    with capture_logs() as quiet:
        log_startup_warnings(settings)
    assert [e for e in quiet if e["log_level"] == "warning"] == []
    (tmp_path / "token-keys").chmod(0o644)
    (tmp_path / "integrations.db").chmod(0o604)
    with capture_logs() as logs:
        log_startup_warnings(settings)
    loose = {e["path"]: e for e in logs if e["event"] == "startup.file_readable_by_others"}
    assert set(loose) == {str(tmp_path / "token-keys"), str(tmp_path / "integrations.db")}
    assert all(e["log_level"] == "warning" and e["mode"] in ("0644", "0604") for e in loose.values())


def test_an_http_public_base_url_outside_standalone_is_a_warning_at_start(tmp_path: Path) -> None:
    from common.cipher import generate_key_spec

    env = {
        "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
        "TOKEN_ENCRYPTION_KEYS": generate_key_spec("k1"),
        "VAR_DIR": str(tmp_path),
    }
    for base, warned in (
        ("http://integrations.example.com", True),
        ("https://integrations.example.com", False),
    ):
        with capture_logs() as logs:
            log_startup_warnings(load_settings({**env, "PUBLIC_BASE_URL": base}))
        found = [e for e in logs if e["event"] == "startup.public_base_url_not_https"]
        assert bool(found) == warned, base
        assert all(e["log_level"] == "warning" and e["public_base_url"] == base for e in found)
    with capture_logs() as logs:  # standalone: http://127.0.0.1 is the normal case
        log_startup_warnings(load_settings({"VAR_DIR": str(tmp_path)}))
    assert not [e for e in logs if e["event"] == "startup.public_base_url_not_https"]


def test_every_service_logs_the_warnings_when_it_bootstraps(tmp_path: Path) -> None:
    from common.bootstrap import bootstrap
    from common.cipher import generate_key_spec

    settings = load_settings(
        {
            "DATABASE_URL": "postgresql+psycopg://integrations@127.0.0.1:1/none",  # never connected here
            "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
            "TOKEN_ENCRYPTION_KEYS": generate_key_spec("k1"),
            "PUBLIC_BASE_URL": "http://integrations.example.com",
            "VAR_DIR": str(tmp_path),
        }
    )
    with capture_logs() as logs:
        bootstrap(settings, configure_logs=False).close()
    assert [e["log_level"] for e in logs if e["event"] == "startup.public_base_url_not_https"] == ["warning"]
