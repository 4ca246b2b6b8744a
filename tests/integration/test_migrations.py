"""Alembic migrations take an empty database to head and back, on PostgreSQL and SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from common.migrate import alembic_config, downgrade, upgrade
from common.models import Base
from tests.support import services

MODEL_TABLES = set(Base.metadata.tables)


def schema(url: str) -> tuple[set[str], dict[str, set[str]], str | None, list[object]]:
    """Tables, index names per table, the stamped revision and the differences from the models."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            tables = set(insp.get_table_names())
            indexes = {t: {ix["name"] or "" for ix in insp.get_indexes(t)} for t in tables}
            ctx = MigrationContext.configure(conn)
            diff = compare_metadata(ctx, Base.metadata) if MODEL_TABLES <= tables else []
            return tables, indexes, ctx.get_current_revision(), diff
    finally:
        engine.dispose()


def round_trip(url: str) -> None:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    tables, _, revision, _ = schema(url)
    assert tables == set() and revision is None, "starts empty"

    upgrade(url)
    tables, indexes, revision, diff = schema(url)
    assert MODEL_TABLES <= tables
    assert revision == head
    assert "ix_integrations_due" in indexes["integrations"], "the nightly query's index"
    assert "uq_incidents_open" in indexes["incidents"], "at most one open incident per integration"
    assert diff == [], f"models and migrations disagree: {diff}"

    downgrade(url)
    tables, _, revision, _ = schema(url)
    assert tables <= {"alembic_version"} and revision is None

    upgrade(url)
    tables, _, revision, diff = schema(url)
    assert MODEL_TABLES <= tables and revision == head and diff == []


def test_postgres_upgrade_downgrade_upgrade() -> None:
    with services.temporary_database(services.database_server_url()) as url:
        round_trip(url)


def test_sqlite_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    round_trip(f"sqlite:///{tmp_path}/integrations.db")


def test_sqlite_upgrade_creates_the_database_folder(tmp_path: Path) -> None:
    upgrade(f"sqlite:///{tmp_path}/var/new/integrations.db")
    assert MODEL_TABLES <= schema(f"sqlite:///{tmp_path}/var/new/integrations.db")[0]


@pytest.mark.parametrize("revision", ["0001"])
def test_first_revision_alone_upgrades_and_downgrades(tmp_path: Path, revision: str) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    upgrade(url, revision)
    assert schema(url)[2] == revision
    downgrade(url, "base")
    assert schema(url)[0] <= {"alembic_version"}
