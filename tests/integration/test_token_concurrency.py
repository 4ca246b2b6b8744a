"""N concurrent callers, in threads or processes, make exactly one refresh call at Google."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from typing import Any

from common.bootstrap import Container
from common.config import Secret, Settings
from services.fake_google import FakeGoogleServer
from tests.support.flows import connect, expire_soon, load, new_email

THREADS = 50
PROCESSES = 4


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a separate process would be started with to get these settings."""
    env: dict[str, str] = {}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        env[f.name.upper()] = value.reveal() if isinstance(value, Secret) else str(value)
    return env


def race_threads(c: Container, google: FakeGoogleServer, threads: int = THREADS) -> None:
    email = new_email("race")
    iid = connect(c, google_email=email)
    expire_soon(c, iid, 30)
    google.fake.set_latency("token", 50)  # the winner holds the lock long enough for everyone to pile up
    barrier = threading.Barrier(threads)

    def call(_: int) -> str:
        barrier.wait(timeout=30)
        return c.tokens.ensure_fresh_token(iid, 300)

    with ThreadPoolExecutor(threads) as pool:
        tokens = list(pool.map(call, range(threads)))

    assert google.fake.refresh_calls_for(email) == 1
    assert len(set(tokens)) == 1, f"{len(set(tokens))} different tokens handed out"
    [token] = set(tokens)
    row = load(c, iid)
    assert c.cipher.decrypt(row.access_token_enc or "", integration_id=iid, field="access_token") == token
    assert list(c.gbp.accounts(token)), "the shared token works at Google"


def test_fifty_threads_refresh_once_on_postgres(pg: Container, google: FakeGoogleServer) -> None:
    race_threads(pg, google)


def test_fifty_threads_refresh_once_on_sqlite(lite: Container, google: FakeGoogleServer) -> None:
    race_threads(lite, google)


def _process_main(env: dict[str, str], integration_id: int, start: Any, results: Any) -> None:
    """One worker process: its own settings, engine, HTTP client and token service."""
    from common.bootstrap import bootstrap
    from common.config import load_settings

    try:
        c = bootstrap(load_settings(env), configure_logs=False, pool_size=2)
    except Exception as exc:
        results.put(("error", repr(exc)))
        start.abort()
        return
    try:
        start.wait(timeout=60)
        results.put(("ok", c.tokens.ensure_fresh_token(integration_id, 300)))
    except Exception as exc:
        results.put(("error", repr(exc)))
    finally:
        c.close()


def test_four_processes_refresh_once(pg: Container, google: FakeGoogleServer) -> None:
    email = new_email("procs")
    iid = connect(pg, google_email=email)
    expire_soon(pg, iid, 30)
    google.fake.set_latency("token", 200)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    env = settings_env(pg.settings)
    procs = [ctx.Process(target=_process_main, args=(env, iid, start, results)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    try:
        outcomes = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    errors = [detail for status, detail in outcomes if status != "ok"]
    assert not errors, errors
    tokens = {detail for _, detail in outcomes}
    assert google.fake.refresh_calls_for(email) == 1
    assert len(tokens) == 1
    assert list(pg.gbp.accounts(tokens.pop()))


def test_threads_refresh_once_when_tokens_live_shorter_than_the_margin(pg: Container, google: FakeGoogleServer) -> None:
    """A token another caller just refreshed is used even when its whole life is under the margin."""
    google.fake.token_lifetime = 120  # under the 300 s margin: "fresh for the margin" can never be true
    race_threads(pg, google, threads=10)
