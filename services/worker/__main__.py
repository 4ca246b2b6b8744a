"""`python -m services.worker [--processes N] [--threads M]`: consume the sync, refresh and fleet queues.

The fleet queue (background syncs) has its own threads (`--fleet-threads`, default half of
`--threads`), so fleet syncs waiting for quota slots never occupy the threads a user's sync needs.

One process runs a Dramatiq Worker in-process (logs stay JSON on stdout); with N > 1 processes the
parent starts N such children and forwards SIGTERM/SIGINT to them. SIGTERM stops taking messages,
lets the running ones finish (up to --shutdown-timeout) and exits; unfinished messages are redelivered.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

import dramatiq

from common.config import load_settings
from common.errors import ConfigError
from common.logging import configure_logging, get_logger
from common.metrics_server import child_env, child_exited, multiprocess_dir, serve_children
from common.metrics_server import serve as serve_metrics
from common.process import dependencies_ready, require_rabbitmq
from common.tasks import FLEET_QUEUE, REFRESH_QUEUE, SYNC_QUEUE
from services.worker.bootstrap import DEFAULT_THREADS, init_worker

QUEUES = {SYNC_QUEUE, REFRESH_QUEUE}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help=f"threads per process ({DEFAULT_THREADS})")
    parser.add_argument("--fleet-threads", type=int, default=0, help="threads for fleet syncs (half of --threads)")
    parser.add_argument(
        "--shutdown-timeout", type=float, default=60.0, help="seconds to let running messages finish on SIGTERM"
    )
    args = parser.parse_args(argv)
    if args.processes < 1 or args.threads < 1:
        parser.error("--processes and --threads must be at least 1")
    return args


def run_worker(threads: int, shutdown_timeout: float, fleet_threads: int = 0) -> int:
    """Consume until SIGTERM/SIGINT; a second signal exits at once."""
    try:
        container = init_worker(threads=threads)
        serve_metrics(container.settings, "worker")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not require_rabbitmq(container.settings, "worker"):
        return 2
    log = get_logger("integrations.worker")
    stop = _stop_on_signals()
    code = dependencies_ready(container.settings, "worker", stop)
    if code is not None:
        container.close()
        return code
    broker = container.broker
    assert broker is not None
    broker.emit_after("process_boot")  # starts the TimeLimit watchdog
    worker = dramatiq.Worker(broker, queues=QUEUES, worker_threads=threads)
    fleet_threads = fleet_threads or max(1, threads // 2)
    fleet = dramatiq.Worker(broker, queues={FLEET_QUEUE}, worker_threads=fleet_threads)
    worker.start()
    fleet.start()
    log.info("worker.started", pid=os.getpid(), threads=threads, fleet_threads=fleet_threads, queues=sorted(QUEUES))
    while not stop.wait(0.5):
        pass
    log.info("worker.stopping", pid=os.getpid())
    fleet.stop(timeout=int(shutdown_timeout * 1000))
    worker.stop(timeout=int(shutdown_timeout * 1000))
    broker.close()
    container.close()
    log.info("worker.stopped", pid=os.getpid())
    return 0


def run_processes(processes: int, threads: int, shutdown_timeout: float, fleet_threads: int = 0) -> int:
    """Start `processes` single-process workers and relay termination signals to them.

    When one child dies on its own, the others are stopped too, so a supervisor restarts the lot.
    With METRICS_PORT set, this process serves the children's metrics added up (common.metrics_server).
    """
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if not settings.metrics_port:
        return _supervise(processes, threads, fleet_threads, shutdown_timeout, None)
    with multiprocess_dir() as path:
        try:
            server = serve_children(settings, path)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            return _supervise(processes, threads, fleet_threads, shutdown_timeout, path)
        finally:
            if server is not None:
                server.shutdown()


def _supervise(
    processes: int, threads: int, fleet_threads: int, shutdown_timeout: float, metrics_dir: str | None
) -> int:
    cmd = [sys.executable, "-m", "services.worker", "--processes", "1", "--threads", str(threads)]
    cmd += ["--shutdown-timeout", str(shutdown_timeout), "--fleet-threads", str(fleet_threads)]
    env = child_env(metrics_dir) if metrics_dir else None
    children = [subprocess.Popen(cmd, env=env) for _ in range(processes)]  # noqa: S603 - our own interpreter
    stop = _stop_on_signals(children)
    exited: set[int] = set()
    while True:
        codes = [child.poll() for child in children]
        for child, code in zip(children, codes, strict=True):
            if metrics_dir and code is not None and child.pid not in exited:
                exited.add(child.pid)
                child_exited(metrics_dir, child.pid)
        if all(code is not None for code in codes):
            return _exit_status(codes)
        if not stop.is_set() and any(code is not None for code in codes):
            stop.set()
            _terminate(children)
        time.sleep(0.5)


def _exit_status(codes: list[int | None]) -> int:
    """The first failure, as a shell reports it (a child killed by signal N is 128 + N); 0 when all succeeded."""
    failed = [code for code in codes if code]
    if not failed:
        return 0
    first = failed[0] or 0
    return 128 - first if first < 0 else first


def _terminate(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)


def _stop_on_signals(children: list[subprocess.Popen[bytes]] | None = None) -> threading.Event:
    stop = threading.Event()
    first: list[float] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        # Ctrl-C reaches the children both directly and relayed: only a signal a second later means "now".
        if first and not children and time.monotonic() - first[0] > 1.0:
            os._exit(1)
        first.append(time.monotonic())
        stop.set()
        _terminate(children or [])

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.processes == 1:
        return run_worker(args.threads, args.shutdown_timeout, args.fleet_threads)
    return run_processes(args.processes, args.threads, args.shutdown_timeout, args.fleet_threads)


if __name__ == "__main__":
    sys.exit(main())
