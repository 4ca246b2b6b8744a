"""What the fault scenarios leave behind (process logs, API responses, database rows), searched for secrets.

Every scenario's `lab` hands its evidence to REGISTRY when it ends, together with every token the fake issued
during the scenario; the secrets test at the end of the session asserts nothing was found and reports the
figures collected in FIGURES.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, text

PREFIX = 3  # "ya2" (access tokens), "1//" (refresh tokens), "ik_" (API keys), "1%2" (URL-encoded refresh tokens)


class SecretIndex:
    """Finds any of a large set of known secrets in text in one pass per prefix (no per-secret scan)."""

    def __init__(self, secrets: Iterable[str], literals: Iterable[str] = ()) -> None:
        self._by_prefix: dict[str, dict[int, set[str]]] = {}
        self.count = 0
        for secret in secrets:
            for form in {secret, quote(secret, safe="")}:
                self._by_prefix.setdefault(form[:PREFIX], {}).setdefault(len(form), set()).add(form)
            self.count += 1
        self._literals = [s for s in literals if s]
        self.count += len(self._literals)

    def find(self, haystack: str) -> list[str]:
        """The secrets found in `haystack`, each shown only by its first characters."""
        found: list[str] = []
        for prefix, by_length in self._by_prefix.items():
            at = haystack.find(prefix)
            while at != -1:
                for length, values in by_length.items():
                    if haystack[at : at + length] in values:
                        found.append(haystack[at : at + 8] + "...")
                at = haystack.find(prefix, at + 1)
        found += [s[:4] + "..." for s in self._literals if s in haystack]
        return found


def database_text(engine: Engine) -> Iterable[tuple[str, str]]:
    """Every row of every table of the database as (table, row text): each column, whatever its type."""
    with engine.connect() as conn:
        tables = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        ).scalars()
        for table in list(tables):
            result = conn.execution_options(stream_results=True, yield_per=2000).execute(
                text(f'SELECT CAST(t AS text) FROM "{table}" t')
            )
            for row in result.scalars():
                yield table, row


@dataclass
class Registry:
    """Totals of everything searched for secrets in this session, and what was found where."""

    secrets_known: int = 0
    log_lines: int = 0
    responses: int = 0
    db_rows: int = 0
    findings: list[str] = field(default_factory=list)
    scenarios: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(
        self, scenario: str, *, secrets: int, log_lines: int, responses: int, db_rows: int, found: list[str]
    ) -> None:
        with self._lock:
            self.secrets_known += secrets
            self.log_lines += log_lines
            self.responses += responses
            self.db_rows += db_rows
            self.findings += [f"{scenario}: {f}" for f in found]
            self.scenarios.append(scenario)


REGISTRY = Registry()
FIGURES: dict[str, dict[str, Any]] = {}


def figure(scenario: str, **values: Any) -> None:
    """Record figures of a scenario for the end-of-session report."""
    FIGURES.setdefault(scenario, {}).update(values)
