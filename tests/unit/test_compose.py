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


SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY")


def test_every_secret_compose_reads_must_be_set_and_none_has_a_default():
    text = COMPOSE.read_text()
    uses = re.findall(r"\$\{([A-Z_]+)([^}]*)\}", text)
    secrets = {(name, rest) for name, rest in uses if SECRET_NAME.search(name)}
    assert {name for name, _ in secrets} >= {
        "POSTGRES_PASSWORD",
        "RABBITMQ_PASSWORD",
        "ADMIN_API_KEY",
        "TOKEN_ENCRYPTION_KEYS",
        "GOOGLE_CLIENT_SECRET",
    }
    for name, rest in secrets:
        assert rest.startswith(":?") and len(rest) > 10, f"${{{name}{rest}}}: use ${{{name}:?message}}"
    assert "change-me" not in text
    services = _services()
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"].startswith("${RABBITMQ_PASSWORD:?")
