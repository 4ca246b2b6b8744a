"""How big each fault scenario runs: a short variant for `make test`, the full one for `make test-faults`.

The full sizes are the issue's (5,000 integrations, a SIGKILL every 2 s, ...). `FAULTS_SCALE` changes what the
`faults`-marked variant runs: `full` (the default), `short`, or a factor applied to the full counts and durations
(`FAULTS_SCALE=0.2`). The `faults_short` variant always runs the short sizes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

import pytest


@dataclass(frozen=True)
class Scale:
    name: str
    # 1. worker SIGKILLs during refresh-all
    fleet: int
    fleet_syncs: int
    fleet_workers: int
    kill_every: float
    kill_after_progress: float  # a kill also waits for this fraction of the fleet to be refreshed since the last
    min_kills: int
    token_latency_ms: float
    # 2. broker outage under API load
    load_clients: int
    broker_outage_seconds: float
    load_seconds_after: float
    # 3. database backends terminated
    pg_integrations: int
    pg_terminate_seconds: float
    # 4. provider outage
    outage_integrations: int
    outage_revoked: int
    outage_seconds: float
    permanent_failures: int
    # 5. rotating refresh tokens
    storm_integrations: int
    storm_messages_each: int
    storm_kills: int
    # 6. fuzzing
    fuzz_examples: int
    distinct_methods: int  # requests with a method each never seen before
    # 7. key rotation under load
    rotation_integrations: int
    # 9. fleet sync within the quota
    quota_fleet: int
    quota_qpm: int
    quota_lowered_qpm: int


SHORT = Scale(
    name="short",
    fleet=200,
    fleet_syncs=4,
    fleet_workers=2,
    kill_every=0.0,  # on a fast or a loaded machine alike: a kill at each fifth of the fleet
    kill_after_progress=0.2,
    min_kills=3,
    token_latency_ms=10,
    load_clients=3,
    broker_outage_seconds=2,
    load_seconds_after=1,
    pg_integrations=12,
    pg_terminate_seconds=2,
    outage_integrations=16,
    outage_revoked=2,
    outage_seconds=2,
    permanent_failures=2,
    storm_integrations=8,
    storm_messages_each=2,
    storm_kills=3,
    fuzz_examples=8,
    distinct_methods=300,
    rotation_integrations=40,
    quota_fleet=30,
    quota_qpm=600,
    quota_lowered_qpm=480,
)

FULL = Scale(
    name="full",
    fleet=5000,
    fleet_syncs=60,
    fleet_workers=3,
    kill_every=2.0,
    kill_after_progress=0.0,
    min_kills=8,
    token_latency_ms=5,
    load_clients=6,
    broker_outage_seconds=12,
    load_seconds_after=6,
    pg_integrations=150,
    pg_terminate_seconds=15,
    outage_integrations=300,
    outage_revoked=5,
    outage_seconds=15,
    permanent_failures=5,
    storm_integrations=80,
    storm_messages_each=6,
    storm_kills=8,
    fuzz_examples=60,
    distinct_methods=20_000,
    rotation_integrations=2000,
    quota_fleet=300,
    quota_qpm=120,
    quota_lowered_qpm=100,
)

_FIXED = {
    "name",
    "kill_every",
    "kill_after_progress",
    "token_latency_ms",
    "outage_revoked",
    "permanent_failures",
    "load_clients",
    "quota_qpm",
    "quota_lowered_qpm",
}


def full_scale(raw: str | None = None) -> Scale:
    """The sizes of the `faults` variant, from FAULTS_SCALE."""
    raw = (os.environ.get("FAULTS_SCALE", "full") if raw is None else raw).strip().lower()
    if raw in ("", "full"):
        return FULL
    if raw == "short":
        return SHORT
    try:
        factor = float(raw)
    except ValueError:
        raise pytest.UsageError(f"FAULTS_SCALE must be full, short or a number, got {raw!r}") from None
    changes: dict[str, object] = {"name": f"x{factor:g}"}
    for f in fields(Scale):
        if f.name in _FIXED:
            continue
        value = getattr(FULL, f.name)
        floor = getattr(SHORT, f.name)
        changes[f.name] = max(type(value)(value * factor), floor)
    return replace(FULL, **changes)  # type: ignore[arg-type]


# Every scenario runs in two variants: the short one in `make test`, the full one in `make test-faults`.
VARIANTS = [
    pytest.param("short", marks=pytest.mark.faults_short, id="short"),
    pytest.param("full", marks=[pytest.mark.faults, pytest.mark.slow], id="full"),
]


def scale_named(name: str) -> Scale:
    return SHORT if name == "short" else full_scale()
