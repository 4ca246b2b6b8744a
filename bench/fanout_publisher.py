"""`python -m bench.fanout_publisher`: run refresh_all's fan-out once (what the worker's refresh_all actor does)
in a process of its own, configured by the environment; prints one JSON line with its time, CPU and memory."""

from __future__ import annotations

import json
import sys
import time

from bench import procstats
from common.bootstrap import bootstrap
from common.broker import make_broker
from common.config import load_settings
from common.logging import configure_logging
from services.worker.fleet import publish_refresh_all

WITHIN = 86_400


def main() -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, stream=sys.stderr)
    broker = make_broker(settings.broker_url)
    c = bootstrap(settings, broker=broker, configure_logs=False, pool_size=2)
    rss_ready = procstats.rss_mb(procstats.os.getpid())
    cpu0 = procstats.cpu_seconds_self()
    started = time.perf_counter()
    count = publish_refresh_all(c, WITHIN)
    seconds = time.perf_counter() - started
    result = {
        "published": count,
        "seconds": round(seconds, 2),
        "messages_per_second": round(count / seconds, 1) if seconds else 0.0,
        "cpu_seconds": round(procstats.cpu_seconds_self() - cpu0, 2),
        "rss_before_mb": rss_ready,
        "peak_rss_mb": procstats.peak_rss_mb_self(),
    }
    broker.close()
    c.close()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
