"""Racing two sides deterministically: run one in a thread, and see when it waits on a PostgreSQL lock."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import text

from common.bootstrap import Container


def lock_waiters(c: Container) -> int:
    """How many other sessions of this database are waiting for a lock right now."""
    with c.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        )


def run_in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Start `fn` in a thread; its list gets what `fn` returned, or the exception it raised."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=target)
    worker.start()
    return worker, outcome
