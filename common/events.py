"""Domain events: plain dataclasses of primitives, published after the transaction that caused them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class IncidentOpened:
    """An integration broke in a way that needs a person (user or operator)."""

    integration_id: int
    incident_id: int
    kind: str
    reason: str


@dataclass(frozen=True)
class IncidentClosed:
    """An integration that had an open incident works again."""

    integration_id: int
    incident_id: int
    kind: str


Event = IncidentOpened | IncidentClosed
Publisher = Callable[[Sequence[Event]], None]


def discard(_events: Sequence[Event]) -> None:
    """A publisher that drops events, for tools that run without a broker."""
