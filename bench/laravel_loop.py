"""The baseline: the Laravel command's sequential loop, one due integration after another, in one process.

`python -m bench.laravel_loop`: configured like a worker by the environment; prints one JSON line.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time

from bench import procstats
from common.bootstrap import bootstrap
from common.config import load_settings
from common.logging import configure_logging
from common.models import utcnow
from services.worker.fleet import due_ids

WITHIN = 86_400


def main() -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, stream=sys.stderr)
    c = bootstrap(settings, configure_logs=False, pool_size=1)
    started = time.perf_counter()
    cpu0 = procstats.cpu_seconds_self()
    refreshed = 0
    for integration_id in due_ids(c.sessions, utcnow() + dt.timedelta(seconds=WITHIN)):
        refreshed += c.tokens.refresh(integration_id, WITHIN)
    seconds = time.perf_counter() - started
    result = {
        "refreshed": refreshed,
        "seconds": round(seconds, 3),
        "per_second": round(refreshed / seconds, 1) if seconds else 0.0,
        "cpu_seconds": round(procstats.cpu_seconds_self() - cpu0, 2),
        "peak_rss_mb": procstats.peak_rss_mb_self(),
    }
    c.close()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
