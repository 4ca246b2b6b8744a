"""1. Workers SIGKILLed over and over during a refresh-all of a large fleet lose nothing and lock nobody out.

Every refresh is acked only after its transaction committed, so a killed worker's messages come back and run
again; under the integration's lock a redelivered refresh (or a whole refresh-all fanned out again) sees that the
token was refreshed since the refresh was asked for and makes no second provider call. The only extra calls are
the ones a kill interrupted (the provider received the call, the commit never happened), at most one per worker
thread per kill: the workers here run one thread each, so the bound is N + kills.
"""

from __future__ import annotations

import datetime as dt
import random
import time

import pytest
from sqlalchemy import func, or_, select

from common.models import Integration
from common.tasks import REFRESH_ALL, REFRESH_INTEGRATION, SYNC_INTEGRATION, build_message, send
from tests.faults.evidence import figure
from tests.faults.lab import Lab
from tests.faults.scale import Scale
from tests.faults.seed import seed
from tests.support.insights import assert_first_sync_stored, stored_insights
from tests.support.polling import wait_for

DAY = 86_400
FORCE = 10**9
THREADS = 1


def not_refreshed(lab_c, since: dt.datetime) -> int:
    with lab_c.sessions() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(Integration)
                .where(or_(Integration.last_refreshed_at.is_(None), Integration.last_refreshed_at < since))
            )
        )


def not_synced(lab_c, ids: list[int]) -> int:
    with lab_c.sessions() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(Integration)
                .where(Integration.id.in_(ids), Integration.last_synced_at.is_(None))
            )
        )


@pytest.mark.timeout(1200)
def test_sigkilled_workers_during_refresh_all_lose_no_refresh_and_lock_nobody_out(scale: Scale, lab: Lab, google):
    google.fake.set_latency("token", scale.token_latency_ms)  # refreshes take a moment: kills land mid-call
    c = lab.container(pool_size=4)
    fleet = seed(c, google.fake, scale.fleet, per_user=10)
    synced = fleet[:: max(1, len(fleet) // scale.fleet_syncs)][: scale.fleet_syncs]
    started = dt.datetime.now(dt.UTC)
    for _ in range(scale.fleet_workers):
        lab.worker(THREADS, wait=False)
    wait_for(lambda: all(w.saw("worker.started") for w in lab.workers()), 60, "the workers")
    began = time.monotonic()

    send(c.broker, REFRESH_ALL, DAY)
    for s in synced:
        send(c.broker, SYNC_INTEGRATION, s.id)

    kills = 0
    deadline = time.monotonic() + 900
    rng = random.Random(7)
    # Every `kill_every` seconds a running worker is killed, once the workers made some progress since the last
    # kill (the short variant kills at each fifth of the fleet instead, whatever the machine's speed).
    min_progress = max(1, int(len(fleet) * scale.kill_after_progress))
    last_kill, left_at_kill = time.monotonic(), len(fleet)
    while (left := not_refreshed(c, started)) or not_synced(c, [s.id for s in synced]):
        assert time.monotonic() < deadline, f"{left} integrations never refreshed"
        time.sleep(0.1)
        if not left or time.monotonic() - last_kill < scale.kill_every or left_at_kill - left < min_progress:
            continue
        running = [w for w in lab.workers() if w.saw("worker.started")]
        if running:
            lab.kill(rng.choice(running))
            kills += 1
            lab.worker(THREADS, wait=False)
            last_kill, left_at_kill = time.monotonic(), left
    elapsed = time.monotonic() - began
    assert kills >= scale.min_kills, f"the work finished after {kills} kills: too little to prove anything"

    wait_for(lambda: all(w.saw("worker.started") for w in lab.workers()), 60, "the last replacement to start")
    for w in lab.workers():
        assert lab.stop(w) == 0, "a worker stops cleanly on SIGTERM after all that"
    with c.sessions() as s:
        reauth = s.scalar(select(func.count()).select_from(Integration).where(Integration.needs_reauth.is_(True)))
        errors = s.scalar(select(func.count()).select_from(Integration).where(Integration.last_sync_status == "error"))
        soonest = s.scalar(select(func.min(Integration.token_expires_at)))
    assert (reauth, errors) == (0, 0)
    assert soonest > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30), "every token was renewed"
    for s in synced:
        assert_first_sync_stored(stored_insights(c.sessions, s.id), google.fake, s.google_email)
    dead = {q: counts[2] for q, counts in lab.queue_counts(c).items()}
    assert dead == {"sync": 0, "refresh": 0, "notifications": 0, "fleet": 0}, "nothing dead-lettered"
    calls = google.fake.total_refresh_calls
    n = len(fleet)
    assert n <= calls <= n + kills * THREADS, (calls, n, kills)
    figure(
        f"1. worker kills [{scale.name}]",
        integrations=n,
        kills_survived=kills,
        provider_refresh_calls=calls,
        extra_calls=calls - n,
        bound=n + kills * THREADS,
        needs_reauth=reauth,
        seconds=round(elapsed, 1),
    )


def test_a_refresh_delivered_again_makes_no_second_provider_call(scale: Scale, lab: Lab, google):
    """A crash mid fan-out redelivers refresh_all, which publishes every refresh again; a double click on
    "refresh now" queues two. The nightly window (24 h) is wider than a token's life (1 h), so "still fresh"
    cannot tell them apart from a real need: only "refreshed since it was asked for" can.
    """
    c = lab.container(pool_size=4)
    fleet = seed(c, google.fake, 6)
    fan_out = build_message(REFRESH_ALL, DAY)
    c.broker.enqueue(fan_out)
    c.broker.enqueue(fan_out)  # the same message again, as RabbitMQ redelivers it after a crash
    clicked = fleet[0].id
    twice = [send(c.broker, REFRESH_INTEGRATION, clicked, FORCE) for _ in range(2)]
    lab.worker(1)
    wait_for(lambda: lab.count("refresh_all.published") == 2, 60, "both fan-outs")
    wait_for(
        lambda: lab.count("token.refresh.succeeded") + lab.count("token.refresh.skipped") >= 2 * len(fleet) + 2,
        60,
        "every refresh message",
    )
    assert not lab.unprocessed({mid: {"token.refresh.succeeded", "token.refresh.skipped"} for mid in twice})
    assert {s.google_email: google.fake.refresh_calls_for(s.google_email) for s in fleet} == {
        s.google_email: 1 for s in fleet
    }
