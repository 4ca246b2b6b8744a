"""`python -m tests.support.quota_load DB_URL FAKE_URL QPM CALLS`: one process making paced Performance calls.

The token is not valid, so each call is answered 401 after the fake counted it: what matters is when
the calls arrive, which is what the shared governor decides.
"""

from __future__ import annotations

import datetime as dt
import sys

import httpx

from common.db import make_engine
from common.errors import ProviderError
from common.gbp_client import GbpClient, GbpUrls
from common.quota import PERFORMANCE, QuotaGovernor


def main(db_url: str, fake_url: str, qpm: int, calls: int) -> int:
    engine = make_engine(db_url, pool_size=2)
    urls = GbpUrls(
        f"{fake_url}/accountmanagement/v1", f"{fake_url}/businessinformation/v1", f"{fake_url}/performance/v1"
    )
    day = dt.date(2024, 3, 1)
    with httpx.Client(timeout=5) as http:
        client = GbpClient(urls, http, QuotaGovernor(engine, {PERFORMANCE: qpm}))
        print("ready", flush=True)
        sys.stdin.readline()  # start together
        for _ in range(calls):
            try:
                client.daily_metrics("not-a-token", "locations/1", day, day)
            except ProviderError:
                pass
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
