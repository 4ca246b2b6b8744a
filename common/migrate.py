"""Alembic, driven from code: `integrations db upgrade`, `make migrate` and the tests use it."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from common.db import create_private_sqlite

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema up to `revision` (creating a missing SQLite file, private, and its folder)."""
    create_private_sqlite(database_url)
    command.upgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    """The revision the database is at (None before the first migration)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def upgrade_naming(database_url: str) -> list[str]:
    """Upgrade to head and name what was applied, oldest first (`0003: first line of its docstring`)."""
    before = current_revision(database_url) if _exists(database_url) else None
    upgrade(database_url)
    after = current_revision(database_url)
    if after == before:
        return []
    script = ScriptDirectory.from_config(alembic_config(database_url))
    steps = list(script.iterate_revisions(after, before))
    return [f"{r.revision}: {(r.doc or '').splitlines()[0] if r.doc else ''}".rstrip(": ") for r in reversed(steps)]


def _exists(database_url: str) -> bool:
    """False for a SQLite file not made yet (connecting would create it before its folder exists)."""
    if database_url.startswith("sqlite:///") and not database_url.startswith("sqlite:///:memory:"):
        return Path(database_url.removeprefix("sqlite:///")).exists()
    return True


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)
