"""`make run`: the whole system in one process (API, worker threads, scheduler, notifier).

Defaults: SQLite under var/, the in-process broker, the built-in fake Google (only when GOOGLE_CLIENT_ID is
unset), mail written to var/mail/. With DATABASE_URL / BROKER_URL set it runs on PostgreSQL and RabbitMQ.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import dramatiq
import uvicorn
from sqlalchemy.exc import OperationalError

from common.bootstrap import Container
from common.broker import make_broker
from common.config import Settings, load_settings
from common.cron import CronSchedule
from common.errors import ConfigError
from common.logging import configure_logging, get_logger
from common.migrate import upgrade
from common.process import stop_on_signals
from services.api.app import create_app
from services.fake_google import FakeGoogleServer, start_fake_google
from services.notifier.actors import declare_actors
from services.scheduler.scheduler import NightlyScheduler
from services.worker.bootstrap import init_worker

log = get_logger("integrations.standalone")
WORKER_THREADS = 4


class StartupFailed(Exception):
    """A part of the system could not start; the message says which and where."""


@dataclass
class System:
    """A running all-in-one system; `stop()` shuts every part down."""

    settings: Settings
    container: Container
    broker: dramatiq.Broker
    worker: dramatiq.Worker
    api: uvicorn.Server
    fake_google: FakeGoogleServer | None
    threads: list[threading.Thread] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def api_url(self) -> str:
        return self.settings.public_base_url.rstrip("/")

    def stop(self) -> None:
        self.stopping.set()
        self.api.should_exit = True
        for t in self.threads:
            t.join(timeout=15)
        self.worker.stop(timeout=10_000)
        self.broker.close()
        self.container.close()
        if self.fake_google is not None:
            self.fake_google.stop()


def start_system(
    environ: Mapping[str, str] | None = None,
    *,
    scheduler: bool = True,
    worker_threads: int = WORKER_THREADS,
    configure_logs: bool = True,
) -> System:
    """Start every service in this process and return once the API answers."""
    env = os.environ if environ is None else environ
    settings = load_settings(env)
    if not env.get("PUBLIC_BASE_URL") and settings.api_port:
        # One process knows where its API listens: links and the OAuth redirect URI follow API_HOST/API_PORT.
        wildcard = settings.api_host in ("0.0.0.0", "::", "")  # noqa: S104 - compared, not bound
        host = "127.0.0.1" if wildcard else settings.api_host
        host = f"[{host}]" if ":" in host else host
        settings = dataclasses.replace(settings, public_base_url=f"http://{host}:{settings.api_port}")
    if configure_logs:
        configure_logging(settings.log_level, settings.log_format)
    fake: FakeGoogleServer | None = None
    if not settings.google_client_id:
        fake = start_fake_google()
        settings = dataclasses.replace(settings, **_fake_settings(fake))  # type: ignore[arg-type]
        log.warning("standalone.fake_google", url=fake.url, note="GOOGLE_CLIENT_ID is unset: using a FAKE Google")
    upgrade(settings.database_url)
    broker = make_broker(settings.broker_url)
    container = init_worker(settings, broker, threads=worker_threads, configure_logs=False)
    declare_actors(broker, container)
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=worker_threads)
    worker.start()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(container),
            host=settings.api_host,
            port=settings.api_port,
            log_config=None,
            access_log=False,
            server_header=False,
        )
    )
    system = System(settings, container, broker, worker, server, fake)
    api_thread = threading.Thread(target=server.run, name="api", daemon=True)
    api_thread.start()
    system.threads.append(api_thread)
    if scheduler:
        nightly = NightlyScheduler(
            container.sessions,
            broker,
            CronSchedule.parse(settings.nightly_refresh_cron, settings.scheduler_timezone),
            fleet_interval_hours=settings.sync_interval_hours,
        )
        t = threading.Thread(target=nightly.run, args=(system.stopping,), name="scheduler", daemon=True)
        t.start()
        system.threads.append(t)
    deadline = time.monotonic() + 20
    while not server.started:
        if not api_thread.is_alive() or time.monotonic() > deadline:
            system.stop()
            raise StartupFailed(f"the API could not listen on {settings.api_host}:{settings.api_port} (see the log)")
        time.sleep(0.05)
    log.info("standalone.started", api=system.api_url, database=_safe_db(settings.database_url))
    return system


def _fake_settings(fake: FakeGoogleServer) -> dict[str, object]:
    from common.config import Secret

    env = fake.env()
    # Standalone keeps its GBP_QPM pacing even against the built-in fake.
    out: dict[str, object] = {k.lower(): v for k, v in env.items() if k not in ("GOOGLE_CLIENT_SECRET", "GBP_QPM")}
    out["google_client_secret"] = Secret(env["GOOGLE_CLIENT_SECRET"])
    return out


def _safe_db(url: str) -> str:
    return url.split("@")[-1] if "@" in url else url


def main() -> int:
    try:
        system = start_system()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StartupFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        first_line = (str(exc.orig).splitlines() or ["?"])[0]
        print(f"error: the database is unreachable: {first_line}", file=sys.stderr)
        return 1
    stop = stop_on_signals()
    print(f"integrations is running at {system.api_url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    stop.wait()
    system.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
