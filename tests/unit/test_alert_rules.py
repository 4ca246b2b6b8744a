"""The alert rules and Prometheus config pass promtool: syntax, config, a firing and a quiet test per alert."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(exe).exists():
        pytest.fail("promtool is missing: `apt-get install prometheus` (Debian's package ships it)", pytrace=False)
    return subprocess.run([exe, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)


def _alerts() -> list[dict]:
    return YAML(typ="safe").load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]


def test_promtool_checks_the_rules_and_the_config():
    for args in (("check", "rules", "alerts.yml"), ("check", "config", "prometheus.yml")):
        result = _promtool(*args)
        assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_tests_pass():
    result = _promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case():
    cases = YAML(typ="safe").load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case["alert_rule_test"]:
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in _alerts()}
    assert firing == names and quiet == names


def test_every_runbook_points_at_a_section_of_the_readme():
    readme = (ROOT / "README.md").read_text()
    headings = {line.lstrip("#").strip().lower() for line in readme.splitlines() if line.startswith("#")}
    for rule in _alerts():
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        page, anchor = annotations["runbook"].split("#")
        assert page == "README.md"
        assert anchor in headings, f"{rule['alert']}: README.md has no heading '{anchor}'"
