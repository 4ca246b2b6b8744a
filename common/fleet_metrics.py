"""Fleet gauges from the database: integrations by state, open incidents by kind, the oldest successful sync.

Served by one process per deployment (the scheduler), so ten worker replicas do not run the query ten
times; computed with one grouped query per table when scraped, and cached for a scrape interval so
several Prometheus servers (or a dashboard refreshing fast) cost one query per interval.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from common.logging import get_logger
from common.models import ACTIVE, Incident, Integration, utcnow

STATES = ("healthy", "needs_reauth", "provider_config", "transient_error", "never_synced", "stale", "disconnected")
INCIDENT_KINDS = ("reauth_required", "provider_config")
CACHE_SECONDS = 15.0

log = get_logger("integrations.metrics")


@dataclass(frozen=True)
class FleetSnapshot:
    states: dict[str, int]
    incidents: dict[str, int]
    oldest_sync: dt.datetime | None


def fleet_snapshot(sessions: sessionmaker[Session], stale_before: dt.datetime) -> FleetSnapshot:
    """Count integrations per state (the first that applies, in the order of STATES but healthy last)."""
    i = Integration
    state = case(
        (i.status != ACTIVE, "disconnected"),
        (i.needs_reauth.is_(True), "needs_reauth"),
        (i.error_kind == "provider_config", "provider_config"),
        (i.last_sync_status == "error", "transient_error"),
        (i.last_synced_at.is_(None), "never_synced"),
        (i.last_synced_at < stale_before, "stale"),
        else_="healthy",
    ).label("state")
    with sessions() as s:
        rows = s.execute(select(state, func.count(), func.min(i.last_synced_at)).group_by(state)).all()
        open_ = s.execute(
            select(Incident.kind, func.count()).where(Incident.closed_at.is_(None)).group_by(Incident.kind)
        ).all()
    states = dict.fromkeys(STATES, 0) | {name: int(n) for name, n, _ in rows}
    # The syncs that should be keeping up: a re-auth or error state is old on purpose, and counted above.
    synced = [oldest for name, _, oldest in rows if name in ("healthy", "stale") and oldest is not None]
    incidents = dict.fromkeys(INCIDENT_KINDS, 0) | {kind: int(n) for kind, n in open_}
    return FleetSnapshot(states, incidents, min(synced) if synced else None)


class FleetCollector(Collector):
    """Prometheus collector of the fleet gauges, cached for `cache_seconds`."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        stale_after: dt.timedelta,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._stale_after = stale_after
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, FleetSnapshot] | None = None
        self.queries = 0

    def snapshot(self) -> FleetSnapshot:
        with self._lock:  # concurrent scrapes wait for one query instead of running their own
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self._cache_seconds:
                self.queries += 1
                self._cached = (now, fleet_snapshot(self._sessions, self._clock() - self._stale_after))
            return self._cached[1]

    def describe(self) -> Iterator[Metric]:
        # Without it the registry would call collect() on registration: a query before the first scrape.
        return iter(())

    def collect(self) -> Iterator[Metric]:
        try:
            snap = self.snapshot()
        except Exception:  # a database outage must not break the scrape of the other families
            log.exception("metrics.fleet_failed")
            return
        yield _gauge("integrations_integrations", "Integrations by state.", "state", snap.states.items())
        yield _gauge("integrations_open_incidents", "Open incidents by kind.", "kind", snap.incidents.items())
        oldest = GaugeMetricFamily(
            "integrations_oldest_successful_sync_timestamp_seconds",
            "The oldest last successful sync among healthy and stale integrations, as a Unix time.",
        )
        if snap.oldest_sync is not None:
            oldest.add_metric([], snap.oldest_sync.timestamp())
        yield oldest


def _gauge(name: str, doc: str, label: str, values: Iterable[tuple[str, int]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in values:
        family.add_metric([key], value)
    return family
