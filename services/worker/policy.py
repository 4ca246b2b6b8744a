"""Retry policy per error class (ARCHITECTURE.md rule 2), applied around every actor's work."""

from __future__ import annotations

import random
from collections.abc import Callable

import dramatiq
from dramatiq.common import compute_backoff
from dramatiq.middleware import CurrentMessage

from common.broker import MAX_BACKOFF_MS, MAX_RETRIES, MIN_BACKOFF_MS
from common.db import DATABASE_ERRORS
from common.errors import (
    CipherError,
    IntegrationInactive,
    IntegrationNotFound,
    LockTimeout,
    ProviderConfigError,
    QuotaExceeded,
    ReauthRequired,
    TransientProviderError,
)
from common.logging import get_logger
from common.metrics import record_sync
from common.token_service import UNDECRYPTABLE
from services.worker import runtime

# Failing at once: only a person can fix these; the row and the incident already say so.
THROWS = (ReauthRequired, ProviderConfigError, IntegrationInactive, IntegrationNotFound, CipherError)
TRANSIENT = (TransientProviderError, LockTimeout, *DATABASE_ERRORS)

log = get_logger("integrations.worker")


def run(unit: str, integration_id: int, work: Callable[[], object]) -> None:
    """Run `work` for one integration under the retry policy.

    Missing or disconnected integrations are logged as `<unit>.skipped` and acked. A quota answer
    (QuotaExceeded: Google's 429 or no slot from our governor) defers the message: the same message is
    sent again with a delay and this delivery is acked, so no retry is spent and nothing is marked
    (ARCHITECTURE.md rule 8). Transient errors
    are retried with exponential backoff and jitter, never sooner than the provider's Retry-After; on
    the last attempt the failure is recorded on the row (error status, needs_reauth unchanged) and
    the message fails into the dead-letter queue. Everything else propagates to Dramatiq.
    """
    try:
        work()
    except (IntegrationNotFound, IntegrationInactive) as exc:
        reason = "not_found" if isinstance(exc, IntegrationNotFound) else "inactive"
        log.info(f"{unit}.skipped", integration_id=integration_id, reason=reason)
    except QuotaExceeded as exc:
        _defer(unit, integration_id, exc)
    except TRANSIENT as exc:
        _retry_or_record(integration_id, exc)
    except CipherError:
        # Dramatiq logs expected exceptions at info level; a token no key decrypts needs an operator
        # (the token service has marked the row and logged which key).
        log.error(
            f"{unit}.failed",
            integration_id=integration_id,
            error_kind=ProviderConfigError.kind,
            reason=UNDECRYPTABLE,
            operator_action_required=True,
        )
        raise


def _defer(unit: str, integration_id: int, exc: QuotaExceeded) -> None:
    message = CurrentMessage.get_current_message()
    if message is None:  # called outside a worker: the caller decides
        raise exc
    delay = deferral_ms(exc.retry_after)
    # Published (and confirmed) before this delivery is acked: a kill in between redelivers, never loses.
    runtime.container().broker.enqueue(message.copy(), delay=delay)  # type: ignore[union-attr]
    log.info(f"{unit}.deferred", integration_id=integration_id, api=exc.api, reason=exc.reason, delay_ms=delay)
    if unit == "sync":
        record_sync("deferred")


def deferral_ms(retry_after: float | None) -> int:
    """When deferred work runs again: after Retry-After (or 5 s), spread so a deferred burst does not return at once."""
    base = retry_after if retry_after else 5.0
    return min(int(base * 1000 * random.uniform(1.0, 2.0)), MAX_BACKOFF_MS)


def _retry_or_record(integration_id: int, exc: Exception) -> None:
    message = CurrentMessage.get_current_message()
    if message is None:  # called outside a worker: the caller decides
        raise exc
    options = {**runtime.container().broker.get_actor(message.actor_name).options, **message.options}  # type: ignore[union-attr]
    retries = int(options.get("retries", 0))
    if retries >= int(options.get("max_retries", MAX_RETRIES)):
        error = as_transient(exc)
        log.warning("retries.exhausted", integration_id=integration_id, attempts=retries + 1, reason=error.reason)
        try:
            runtime.container().tokens.record_transient_failure(integration_id, error)
        except (*DATABASE_ERRORS, LockTimeout):
            log.exception("retries.record_failed", integration_id=integration_id)
        raise exc
    delay = backoff_ms(
        retries,
        int(options.get("min_backoff", MIN_BACKOFF_MS)),
        int(options.get("max_backoff", MAX_BACKOFF_MS)),
        getattr(exc, "retry_after", None),
    )
    log.info("retry.scheduled", integration_id=integration_id, delay_ms=delay, reason=as_transient(exc).reason)
    raise dramatiq.Retry(as_transient(exc).reason, delay=delay) from None


def backoff_ms(retries: int, min_backoff: int, max_backoff: int, retry_after: float | None) -> int:
    """Exponential backoff with jitter, at least Retry-After, at most MAX_BACKOFF_MS.

    The cap keeps a delayed message (held unacked by the consumer) under RabbitMQ's 30-minute
    consumer timeout.
    """
    ceiling = min(max_backoff, MAX_BACKOFF_MS)
    _, delay = compute_backoff(retries, factor=min_backoff, max_backoff=ceiling)
    if retry_after:
        delay = max(delay, int(retry_after * 1000))
    return min(delay, MAX_BACKOFF_MS)


def as_transient(exc: Exception) -> TransientProviderError:
    """The transient failure as a TransientProviderError, whose message is safe to show a user."""
    if isinstance(exc, TransientProviderError):
        return exc
    if isinstance(exc, LockTimeout):
        return TransientProviderError("lock_timeout", "Another refresh of this integration took too long; retrying")
    return TransientProviderError("database", "The database was unavailable; retrying")
