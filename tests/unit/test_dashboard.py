"""The provisioned Grafana dashboard: valid JSON, on the provisioned datasource, every query valid PromQL over
the contract's families (checked by promtool as recording rules)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "integrations.json").read_text())
FAMILIES = set(re.findall(r"`(integrations_[a-z_]+)[`{]", (ROOT / "README.md").read_text()))


def _exprs() -> list[str]:
    return [t["expr"] for panel in DASHBOARD["panels"] for t in panel["targets"]]


def test_the_dashboard_shows_what_the_issue_asks_for_from_the_provisioned_datasource():
    uid = YAML(typ="safe").load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"][0][
        "uid"
    ]
    assert {p["datasource"]["uid"] for p in DASHBOARD["panels"]} == {uid}
    used = {name for expr in _exprs() for name in re.findall(r"integrations_[a-z_]+", expr)}
    for family in (
        "integrations_token_refreshes_total",
        "integrations_syncs_total",
        "integrations_google_requests_total",
        "integrations_integrations",
        "integrations_emails_total",
        "integrations_queue_messages",
        "integrations_last_run_timestamp_seconds",
    ):
        assert family in used, family
    assert used <= FAMILIES, used - FAMILIES  # every family is one a service serves (README's table)


def test_every_dashboard_query_is_valid_promql(tmp_path: Path):
    exe = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(exe).exists():
        pytest.fail("promtool is missing: `apt-get install prometheus` (Debian's package ships it)", pytrace=False)
    rules = [{"record": f"dashboard:query_{i}", "expr": e.replace("$gbp_qpm", "300")} for i, e in enumerate(_exprs())]
    path = tmp_path / "queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([exe, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
