"""The services' Prometheus families (ARCHITECTURE.md "Metrics") and one small `record_*` function each.

The families live in prometheus_client's default registry, so a service serves them with
`common.metrics_server.serve`. Under the worker's supervisor (several processes) prometheus_client's
multiprocess mode is on (PROMETHEUS_MULTIPROC_DIR, set before the children start) and the same calls
write to per-process files that the supervisor's endpoint adds up.

Labels stay low-cardinality: outcomes, reasons, API names and status codes, never an integration or a user.
"""

from __future__ import annotations

import re
import time

from prometheus_client import Counter, Gauge

REFRESH_ALL_JOB = "refresh_all"
SYNC_ALL_JOB = "sync_all"
EMAIL_KINDS = {"reauth": "reauth", "reconnected": "reconnected", "ops": "operators", "sign_in": "sign_in"}
_REASON = re.compile(r"^[a-z0-9_]{1,40}$")

token_refreshes = Counter(
    "integrations_token_refreshes",
    "Token refreshes by outcome (succeeded, failed, skipped) and reason (empty on success).",
    ("outcome", "reason"),
)
syncs = Counter("integrations_syncs", "Syncs by outcome (succeeded, failed, deferred).", ("outcome",))
google_requests = Counter(
    "integrations_google_requests",
    "Calls to Google by API (token, revoke, account_management, business_information, performance) and "
    "HTTP status code (or network).",
    ("api", "code"),
)
emails = Counter(
    "integrations_emails",
    "Emails by kind (reauth, reconnected, operators, sign_in) and outcome (sent, failed).",
    ("kind", "outcome"),
)
last_run = Gauge(
    "integrations_last_run_timestamp_seconds",
    "When a fleet job (refresh_all, sync_all) last completed, as a Unix time.",
    ("job",),
    multiprocess_mode="max",
)


def record_refresh(outcome: str, reason: str | None = None) -> None:
    """One token refresh ended: `succeeded`, `failed` or `skipped`, with its reason (none on success)."""
    token_refreshes.labels(outcome, _reason(reason)).inc()


def record_sync(outcome: str) -> None:
    """One sync ended: `succeeded`, `failed`, or `deferred` (Google's quota said "later")."""
    syncs.labels(outcome).inc()


def record_google_request(api: str, code: int | str) -> None:
    """One HTTP call to Google answered `code` (a status code, or `network` when no answer came)."""
    google_requests.labels(api, str(code)).inc()


def record_email(kind: str, outcome: str) -> None:
    """One email was `sent` or `failed`; `kind` as the notifier names it (`ops` is counted as `operators`)."""
    emails.labels(EMAIL_KINDS.get(kind, kind), outcome).inc()


def record_run_completed(job: str, at: float | None = None) -> None:
    """A fleet job (`refresh_all`, `sync_all`) completed now (or at Unix time `at`)."""
    last_run.labels(job).set(time.time() if at is None else at)


def _reason(reason: str | None) -> str:
    # Reasons come from our error classes, but a token endpoint's `error` string can be anything: clamp it.
    if not reason:
        return ""
    return reason if _REASON.match(reason) else "other"
