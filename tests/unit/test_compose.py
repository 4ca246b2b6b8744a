"""compose.yaml is valid Compose and every service runs a command this project has."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from services.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"


def _services() -> dict:
    return YAML(typ="safe").load(COMPOSE.read_text())["services"]


def test_compose_file_validates_against_the_compose_specification():
    exe = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(exe), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_the_whole_stack():
    expected = {"api", "worker", "scheduler", "notifier", "migrate", "postgres", "rabbitmq", "mailpit", "fake-google"}
    services = _services()
    assert expected <= set(services)
    assert services["fake-google"]["profiles"] == ["demo"]
    for name in ("api", "worker", "scheduler", "notifier"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", ["api", "worker", "scheduler", "notifier", "migrate", "fake-google"])
def test_every_service_command_exists(name):
    command = _services()[name]["command"]
    if command[:2] == ["python", "-m"]:
        spec = importlib.util.find_spec(command[2] + ".__main__")
        assert spec is not None, f"{name}: python -m {command[2]} has no __main__"
    else:
        assert command[0] == "integrations", command
        build_parser().parse_args(command[1:])  # exits (fails the test) on an unknown command


def test_makefile_has_every_target_the_contract_names():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.M))
    assert {
        "demo",
        "run",
        "test",
        "api",
        "worker",
        "scheduler",
        "notifier",
        "refresh",
        "migrate",
        "bench",
        "up",
    } <= targets


def test_the_image_build_context_leaves_out_the_virtualenv_local_state_and_secrets():
    ignore = ROOT / ".dockerignore"
    assert ignore.exists(), "without .dockerignore `make up` sends .venv/, var/ (token keys) and .env to the builder"
    patterns = {line.strip().strip("/") for line in ignore.read_text().splitlines()}
    assert {".venv", "var", ".env", ".git"} <= patterns


def test_the_monitoring_profile_scrapes_every_service_with_the_rules_and_provisions_the_dashboard():
    services = _services()
    assert services["prometheus"]["profiles"] == ["monitoring"] == services["grafana"]["profiles"]
    for name in ("worker", "scheduler", "notifier"):
        assert services[name]["environment"]["METRICS_PORT"] == "9100"
        assert services[name]["environment"]["DATABASE_URL"], "the service keeps the shared settings"
    for svc in ("prometheus", "grafana"):
        for volume in services[svc]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_dir(), volume
    config = YAML(typ="safe").load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {
        "api": ["api:8000"],
        "worker": ["worker:9100"],
        "scheduler": ["scheduler:9100"],
        "notifier": ["notifier:9100"],
    }
