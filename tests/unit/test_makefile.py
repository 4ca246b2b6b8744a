"""The Makefile refuses a Python older than 3.11 with one clear line, and rebuilds a .venv made by one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _python_stub(path: Path, version: str) -> Path:
    """An interpreter that reports `version` and fails Makefile's 3.11 check when it is older; logs every call."""
    major, minor = (int(x) for x in version.split(".")[:2])
    old = (major, minor) < (3, 11)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        f'echo "$0 $*" >> "{path.parent}/calls.log"\n'
        f'case "$1" in --version) echo "Python {version}"; exit 0;; -c) exit {int(old)};; esac\n'
        "exit 1\n"
    )
    path.chmod(0o755)
    return path


def _make(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", "install", *args], cwd=workdir, capture_output=True, text=True, timeout=60)


def test_an_old_python_is_refused_with_one_line_naming_the_fix(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for name in ("requirements.lock", "pyproject.toml"):
        (tmp_path / name).write_text("")
    py = _python_stub(tmp_path / "stub" / "python3.10", "3.10.12")

    done = _make(tmp_path, f"PY={py}")

    assert done.returncode != 0
    assert "error: Python 3.11 or newer is needed" in done.stderr and "3.10.12" in done.stderr
    assert "PY=python3.11" in done.stderr
    assert not (tmp_path / ".venv").exists()


def test_a_venv_made_by_an_old_python_is_rebuilt(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for name in ("requirements.lock", "pyproject.toml"):
        (tmp_path / name).write_text("")
    _python_stub(tmp_path / ".venv" / "bin" / "python", "3.9.2")
    good = _python_stub(tmp_path / "stub" / "python3.12", "3.12.1")

    done = _make(tmp_path, f"PY={good}")

    assert "Rebuilding .venv: it was made by Python 3.9.2" in done.stdout
    assert f"{good} -m venv .venv" in (good.parent / "calls.log").read_text()  # a new one is made
