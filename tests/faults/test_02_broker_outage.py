"""2. RabbitMQ goes away under API load: every 202 is processed, the outage is 503s (never a hang), all reconnect.

The outage is of our vhost only: its permissions are cleared and its connections closed, so the API and the
workers see exactly what a broker restart shows them (connections dropped, reconnects refused), then it
comes back. Nobody restarts anything: the API and the workers must reconnect by themselves.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import httpx
import pytest

from tests.faults import rabbit
from tests.faults.evidence import figure
from tests.faults.lab import Lab
from tests.faults.scale import Scale
from tests.faults.seed import seed
from tests.support.api import bearer
from tests.support.polling import wait_for

CLIENT_TIMEOUT = 15.0  # "never hangs": the API answers 503 well within this
PAUSE = 0.1
DONE = {"sync": {"sync.succeeded"}, "refresh": {"token.refresh.succeeded", "token.refresh.skipped"}}


@dataclass
class Outcome:
    phase: str
    status: int | str
    message_id: str | None
    kind: str = ""


class Load:
    """Clients posting syncs and refreshes in a loop, each outcome tagged with the phase it was sent in."""

    def __init__(self, lab: Lab, url: str, users: list[tuple[str, list[int]]]) -> None:
        self.lab = lab
        self.url = url
        self.phase = "before"
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=u, daemon=True) for u in users]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(CLIENT_TIMEOUT + 5)

    def _client(self, key: str, ids: list[int]) -> None:
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT) as http:
            for n in range(100_000):  # bounded; stopped by the test long before
                if self._stop.is_set():
                    return
                phase = self.phase
                try:
                    # Alternately a sync and a forced refresh of the caller's integrations.
                    kind = ("sync", "refresh")[n % 2]
                    resp = self.lab.record(http.post(f"/integrations/{ids[n % len(ids)]}/{kind}", headers=bearer(key)))
                    mid = resp.json().get("message_id") if resp.status_code == 202 else None
                    outcome = Outcome(phase, resp.status_code, mid, kind)
                except httpx.HTTPError as exc:
                    outcome = Outcome(phase, type(exc).__name__, None)
                with self._lock:
                    self.outcomes.append(outcome)
                time.sleep(PAUSE)

    def count(self, phase: str, status: int | str) -> int:
        with self._lock:
            return sum(1 for o in self.outcomes if o.phase == phase and o.status == status)


@pytest.mark.timeout(600)
def test_broker_outage_under_api_load_loses_no_accepted_request(scale: Scale, lab: Lab, google):
    google.fake.locations_per_account = 1
    c = lab.container(pool_size=4)
    fleet = seed(c, google.fake, scale.load_clients * 2, per_user=2, expires_in=3600)
    users: dict[str, list[int]] = {}
    for s in fleet:
        users.setdefault(s.api_key, []).append(s.id)
        lab.secrets.add(s.api_key)
    # Each client posts ten a second on its key: this scenario is about the broker, not the per-key limit.
    api = lab.api(API_RATE_LIMIT_PER_MINUTE="0")
    for _ in range(2):
        lab.worker(2)

    with Load(lab, api.url, list(users.items())) as load:
        wait_for(lambda: load.count("before", 202) >= 6, 60, "accepted requests before the outage")
        load.phase = "outage"
        rabbit.block(lab.amqp_url)
        try:
            wait_for(lambda: load.count("outage", 503) >= 3, 60, "503s during the outage")
            ready = lab.record(httpx.get(f"{api.url}/readyz", timeout=CLIENT_TIMEOUT))
            assert (ready.status_code, ready.json()["broker"]) == (503, "error")
            time.sleep(scale.broker_outage_seconds)  # the outage lasts a while: keep the load on
        finally:
            load.phase = "after"
            rabbit.unblock(lab.amqp_url)
        wait_for(lambda: load.count("after", 202) >= 6, 60, "accepted requests after the broker came back")
        time.sleep(scale.load_seconds_after)
    outcomes = list(load.outcomes)

    statuses = {o.status for o in outcomes}
    assert statuses <= {202, 503}, f"only 202 or 503, never an error or a hang: {statuses}"
    accepted = {str(o.message_id): DONE[o.kind] for o in outcomes if o.status == 202}
    refreshes = [o for o in outcomes if o.status == 202 and o.kind == "refresh"]
    assert len({o.message_id for o in refreshes}) == len(refreshes), "refresh message ids are unique"
    # A sync asked for while one is queued for the integration answers with that one's id (coalesced): every
    # id answered is still a message that must be processed.

    def unprocessed() -> set[str]:
        return lab.unprocessed(accepted)

    wait_for(lambda: not unprocessed(), 120, "every accepted message to be processed", every=0.5)
    dead = {q: counts[2] for q, counts in lab.queue_counts(c).items()}
    assert dead == {"sync": 0, "refresh": 0, "notifications": 0, "fleet": 0}
    assert httpx.get(f"{api.url}/readyz", timeout=CLIENT_TIMEOUT).json() == {"database": "ok", "broker": "ok"}
    assert all(w.alive() for w in lab.workers()) and api.alive()
    figure(
        f"2. broker outage [{scale.name}]",
        requests=len(outcomes),
        accepted=len(accepted),
        unavailable_503=sum(1 for o in outcomes if o.status == 503),
        requests_lost=len(unprocessed()),
        consumer_restarts=lab.count("Restarting consumer in 3.00 seconds."),
    )
