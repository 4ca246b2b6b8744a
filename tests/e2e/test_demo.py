"""`make demo` from a clean clone, into a fresh .venv, completes the walkthrough."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_make_demo_from_a_clean_clone(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.fail("this test clones the repository: run it from a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GBP_", "VIRTUAL_ENV", "PYTHONPATH"))}
    for key in ("DATABASE_URL", "BROKER_URL", "TOKEN_ENCRYPTION_KEYS", "SMTP_URL", "API_PORT"):
        env.pop(key, None)
    try:
        result = subprocess.run(["make", "demo"], cwd=clone, env=env, capture_output=True, text=True, timeout=840)
        out = result.stdout
        assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
        assert (clone / ".venv" / "bin" / "python").exists()
        for step in (
            "[1] Create a demo user",
            "[3] Initial sync",
            "[7] The nightly refresh-all",
            "[9] The user clicks the link",
        ):
            assert step in out
        assert "Token refresh failed: 400 Invalid Grant: the user must re-authenticate" in out
        assert "a mail scanner's HEAD and GET of the link: [200, 200] (a page; the link stays usable)" in out
        summary = out.split("\nSummary\n", 1)[1]
        row = summary.splitlines()[1].split()
        assert row[0] == "1" and row[1] == "google" and "active" in row and "success" in row and "False" in row
        assert "Demo finished" in out
        mails = sorted(p.name for p in (clone / "var" / "demo" / "mail").glob("*.eml"))
        # The sign-in link, one re-auth email for the incident, one confirmation.
        assert len(mails) == 3 and len([m for m in mails if m.startswith("sign-in-")]) == 1, mails
        assert "The Integrations page: http://127.0.0.1:" in out
    finally:
        shutil.rmtree(clone, ignore_errors=True)
