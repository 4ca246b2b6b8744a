"""Optional sampling profiles (BENCH_PROFILE=1 and py-spy on PATH or in the virtualenv): collapsed stacks per process.

py-spy is not a dependency; install it into .venv for an investigation. Summarise a profile with
`python -m bench.profiling FILE`: the functions holding most samples, inclusive and self.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    if not os.environ.get("BENCH_PROFILE"):
        return None
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


class Profiler:
    """`py-spy record --format raw` on some processes until `stop()`; no-op without BENCH_PROFILE/py-spy."""

    def __init__(self, out_dir: Path, label: str, pids: dict[str, int], rate: int = 200) -> None:
        self.files: list[Path] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        exe = py_spy()
        if exe is None:
            return
        for name, pid in pids.items():
            out = out_dir / f"profile_{label}_{name}.txt"
            args = [exe, "record", "-p", str(pid), "-r", str(rate), "-f", "raw", "-o", str(out)]
            args += ["--nonblocking", "--gil"]  # samples of Python holding the GIL: where the CPU goes
            self._procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self.files.append(out)

    def stop(self) -> list[Path]:
        for proc in self._procs:
            proc.send_signal(2)  # SIGINT: py-spy writes its file and exits
        for proc in self._procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        return [f for f in self.files if f.exists()]


def summarise(path: Path, top: int = 30) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    lines = [f"{path.name}: {total} samples"]
    lines += ["inclusive:"] + [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    lines += ["self:"] + [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(summarise(Path(arg)))
