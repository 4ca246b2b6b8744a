"""Run the fake in the foreground: python -m services.fake_google --host 127.0.0.1 --port 8765."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import uvicorn

from services.fake_google.data import fake_env
from services.fake_google.server import bind_socket, uvicorn_config
from services.fake_google.state import FakeGoogle


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m services.fake_google", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every endpoint")
    parser.add_argument(
        "--env-file",
        metavar="PATH",
        help="also write the variables that point a service at this fake to PATH (`set -a; . PATH; set +a`)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="must be 1: tokens, counters and controls live in one process's memory",
    )
    parser.add_argument(
        "--qpm",
        type=int,
        default=int(os.environ.get("FAKE_GOOGLE_QPM") or 0) or None,
        help="requests per minute per Business Profile API, like Google's quota (FAKE_GOOGLE_QPM; unset: none)",
    )
    args = parser.parse_args(argv)
    if args.workers != 1:
        # Tokens issued by one worker would be unknown to the others, so refreshes would fail at random.
        parser.error("--workers must be 1: the fake's state is in-process")
    fake = FakeGoogle()
    if args.qpm:
        fake.set_quota(args.qpm, keep_on_reset=True)
    if args.latency_ms > 0:
        fake.set_latency("*", args.latency_ms)
    sock = bind_socket(args.host, args.port)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"fake google listening on http://{host}:{port}", flush=True)
    exports = "".join(
        f"export {k}={shlex.quote(v)}\n"
        for k, v in fake_env(f"http://{host}:{port}", fake.client_id, fake.client_secret).items()
        if k != "GBP_QPM"  # the tests' "unpaced" setting: services run against this fake pace as against Google
    )
    print("Point a service at it with these variables:\n" + exports, end="", flush=True)
    if args.env_file:
        path = Path(args.env_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(exports)
        print(f"(also written to {path}: `set -a; . {path}; set +a` in another shell)", flush=True)
    uvicorn.Server(uvicorn_config(fake, args.host, port)).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
