"""compose.yaml is valid Compose and every service runs a command this project has."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from common.config import load_settings
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
        "up-demo",
        "down",
        "dotenv",
        "fake-google",
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


DEMO = ROOT / "compose.demo.yaml"
_VAR = re.compile(r"\$\{([A-Z_]+)(?::([?-])([^}]*))?\}")


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?message}` (which fails on unset or empty)."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        got = env.get(name, "")
        if op == "?" and not got:
            raise AssertionError(f"compose would refuse to start: {name} is unset ({arg})")
        return got or (arg if op == "-" else "")

    return _VAR.sub(one, value)


def _dotenv(tmp_path: Path, demo: bool) -> dict[str, str]:
    out = tmp_path / ".env"
    env = {"PATH": "/usr/bin:/bin", **({"DEMO": "1"} if demo else {})}
    done = subprocess.run(
        ["sh", str(ROOT / "scripts" / "dotenv.sh"), str(out)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    pairs = (line.split("=", 1) for line in out.read_text().splitlines() if line and not line.startswith("#"))
    return dict(pairs)


def test_the_demo_overlay_validates_against_the_compose_specification():
    exe = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(exe), "--builtin-schema", "vendor.compose-spec", str(DEMO)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(YAML(typ="safe").load(DEMO.read_text())["services"]) <= set(_services())


def test_make_dotenv_demo_gives_settings_every_service_accepts_without_python_or_google(tmp_path):
    """A Docker-only user: `make dotenv DEMO=1 && make up-demo`. Each app service's environment, as compose builds
    it from .env, compose.yaml and compose.demo.yaml, passes the services' own configuration checks."""
    dotenv = _dotenv(tmp_path, demo=True)
    overlay = YAML(typ="safe").load(DEMO.read_text())["services"]
    for name in ("api", "worker", "scheduler", "notifier", "migrate"):
        service = _services()[name]
        env = {**dotenv, **{k: _interpolate(str(v), dotenv) for k, v in service["environment"].items()}}
        env.update(overlay.get(name, {}).get("environment", {}))
        settings = load_settings({**env, "VAR_DIR": str(tmp_path / name)})
        assert not settings.standalone
        if name != "migrate":
            assert settings.google_token_url == "http://fake-google:8765/token", name


def test_make_dotenv_refuses_to_overwrite_an_existing_env(tmp_path):
    (tmp_path / ".env").write_text("TOKEN_ENCRYPTION_KEYS=keep-me\n")
    done = subprocess.run(
        ["sh", str(ROOT / "scripts" / "dotenv.sh"), str(tmp_path / ".env")], capture_output=True, text=True
    )
    assert done.returncode == 1 and "exists" in done.stderr
    assert (tmp_path / ".env").read_text() == "TOKEN_ENCRYPTION_KEYS=keep-me\n"


TEST_TOOLS = {"pytest", "pytest-timeout", "mypy", "ruff", "schemathesis", "testcontainers", "aiosmtpd", "selenium"}


def _pins(path: Path) -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {name.lower().replace("_", "-"): v for name, _, v in (line.partition("==") for line in lines if line)}


def test_the_image_installs_no_test_or_development_tools():
    dockerfile = (ROOT / "Dockerfile").read_text()
    installed = re.findall(r"pip install -r (\S+)", dockerfile)
    assert installed == ["requirements-prod.lock"], installed
    prod, full = _pins(ROOT / "requirements-prod.lock"), _pins(ROOT / "requirements.lock")
    assert not TEST_TOOLS & set(prod), TEST_TOOLS & set(prod)
    assert {name: full.get(name) for name in prod} == prod, "requirements-prod.lock drifted from requirements.lock"
    runtime = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in runtime:
        assert re.split(r"[\[<>=]", dep)[0].lower().replace("_", "-") in prod, dep


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
