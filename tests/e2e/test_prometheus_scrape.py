"""A real Prometheus (Debian's package, as .ci/run installs it) with deploy/prometheus/prometheus.yml, pointed at
separately started worker (2 processes), scheduler and notifier: every target is up, the contract's `job` label of
the last-run gauge survives the scrape, and every rule evaluates without error."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.broker import make_broker
from common.tasks import REFRESH_ALL, send
from services.fake_google import FakeGoogleServer
from tests.e2e.test_service_metrics import _env, own_db  # noqa: F401 - the fixture
from tests.support.api import own_vhost
from tests.support.net import free_port
from tests.support.notify import smtp_server
from tests.support.polling import wait_for
from tests.support.processes import ROOT, service

PROMETHEUS = ROOT / "deploy" / "prometheus"


def _config(targets: dict[str, str]) -> str:
    """The deployment's config, each compose target replaced by the local process, scraped every second."""
    text = (PROMETHEUS / "prometheus.yml").read_text()
    for job, address in targets.items():
        text = text.replace(f'["{job}:9100"]', f'["{address}"]')
    return text.replace("scrape_interval: 15s", "scrape_interval: 1s").replace(
        "evaluation_interval: 15s", "evaluation_interval: 1s"
    )


def test_prometheus_scrapes_every_service_and_evaluates_every_rule(
    own_db: str,  # noqa: F811
    google: FakeGoogleServer,
    tmp_path: Path,
) -> None:
    exe = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(exe).exists():
        pytest.fail("prometheus is missing: `apt-get install prometheus` (.ci/run does it)", pytrace=False)
    with own_vhost() as amqp, smtp_server() as (_, smtp_port):
        env = _env(own_db, amqp, google, smtp_port, tmp_path)
        with (
            service("worker", env, tmp_path, "--processes", "2", "--threads", "2") as worker,
            service("scheduler", env, tmp_path) as scheduler,
            service("notifier", env, tmp_path) as notifier,
        ):
            conf = tmp_path / "prometheus"
            conf.mkdir()
            targets = {s.name: s.metrics_url.split("/")[2] for s in (worker, scheduler, notifier)}
            (conf / "prometheus.yml").write_text(_config(targets))
            shutil.copy(PROMETHEUS / "alerts.yml", conf / "alerts.yml")
            port = free_port()
            with (tmp_path / "prometheus.log").open("wb") as log:
                prom = subprocess.Popen(
                    [
                        exe,
                        f"--config.file={conf / 'prometheus.yml'}",
                        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            api = f"http://127.0.0.1:{port}/api/v1"
            try:
                broker = make_broker(amqp)
                try:
                    send(broker, REFRESH_ALL, 86400)
                finally:
                    broker.close()

                def query(expr: str) -> list[dict[str, Any]]:
                    try:
                        return list(
                            httpx.get(f"{api}/query", params={"query": expr}, timeout=5).json()["data"]["result"]
                        )
                    except (httpx.HTTPError, ValueError, KeyError):  # not serving queries yet
                        return []

                last = wait_for(
                    lambda: query('integrations_last_run_timestamp_seconds{job="refresh_all"}'), 60, "last run"
                )
                assert last[0]["metric"]["instance"] == targets["worker"]  # the worker's own `job` label was kept
                up = wait_for(
                    lambda: len(query("up == 1")) == 3 and len(query("up")) == 4 and query("up"), 30, "targets"
                )
                assert {r["metric"]["job"]: r["value"][1] for r in up} == {
                    "worker": "1",
                    "scheduler": "1",
                    "notifier": "1",
                    "api": "0",  # no API started: its compose target does not resolve here
                }
                assert wait_for(
                    lambda: query('integrations_queue_messages{queue="refresh",kind="ready"}'), 30, "queues"
                )
                assert len(query('integrations_integrations{job="scheduler"}')) == 7  # every state, 0 in an empty fleet

                def rules() -> list[dict[str, Any]]:
                    try:
                        groups = httpx.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
                    except (httpx.HTTPError, ValueError, KeyError):
                        return []
                    return [r for g in groups for r in g["rules"] if r.get("lastEvaluation", "").startswith("2")]

                evaluated = wait_for(lambda: len(rules()) == 7 and rules(), 30, "every rule evaluated")
                assert {r["name"]: r["health"] for r in evaluated} == dict.fromkeys(
                    (
                        "NightlyRefreshAllMissing",
                        "ReauthsAboveUsualRate",
                        "OAuthClientBroken",
                        "GoogleThrottling",
                        "EmailsFailing",
                        "DeadLettersGrowing",
                        "ServiceNotScraped",
                    ),
                    "ok",
                )

                def state(name: str) -> str:
                    return next(str(r["state"]) for r in rules() if r["name"] == name)

                wait_for(lambda: state("ServiceNotScraped") != "inactive", 30, "the API's target down: pending")
                # Absent before the first scrape (pending), quiet once the worker's completed run is scraped.
                wait_for(lambda: state("NightlyRefreshAllMissing") == "inactive", 30, "the refresh-all seen: inactive")
            finally:
                prom.terminate()
                prom.wait(15)
