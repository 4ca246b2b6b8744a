"""Key rotation: re-encrypt every stored token with the key ring's first (primary) key.

Used by `integrations keys rotate`; `integrations keys generate` is `common.cipher.generate_key_spec`.
Deploy the new ring ("new,old") to every process first, then rotate, then drop the old key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, func, or_, select, text, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from common.cipher import PREFIX, TokenCipher, generate_key_spec
from common.errors import CipherError
from common.logging import get_logger
from common.models import Integration

__all__ = ["RotationReport", "generate_key_spec", "left_on_old_keys", "rotate_keys"]

log = get_logger("integrations.keys")
_FIELDS = ("access_token", "refresh_token")


@dataclass(frozen=True)
class RotationReport:
    """Rows examined (those still holding a token under an old key), rows re-encrypted, rows that failed."""

    scanned: int = 0
    rotated: int = 0
    failed: int = 0
    failed_ids: tuple[int, ...] = ()


Progress = Callable[[RotationReport], None]


def rotate_keys(
    sessions: sessionmaker[Session],
    cipher: TokenCipher,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> RotationReport:
    """Re-encrypt every token not under `cipher`'s primary key; safe while workers refresh tokens.

    Rows are visited in id order, `batch_size` at a time, each batch in its own transaction holding the
    rows' locks (the lock the token service refreshes under), so a concurrent refresh either waits or
    wins, and each value's key id is re-checked inside the lock. Only rows still on an old key are
    selected, so an interrupted run can simply be run again. A row whose token decrypts with no key of
    the ring is logged by id, counted as failed and left as it is.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = RotationReport()
    last_id = 0
    while True:
        with sessions.begin() as s:
            rows = _lock_batch(s, cipher.primary_key_id, last_id, batch_size)
            if not rows:
                break
            last_id = rows[-1].id
            rotated, failed = _rotate_batch(s, cipher, rows)
        report = RotationReport(
            scanned=report.scanned + len(rows),
            rotated=report.rotated + rotated,
            failed=report.failed + len(failed),
            failed_ids=report.failed_ids + tuple(failed),
        )
        if progress is not None:
            progress(report)
    log.info(
        "keys.rotate.finished",
        key_id=cipher.primary_key_id,
        scanned=report.scanned,
        rotated=report.rotated,
        failed=report.failed,
    )
    return report


def left_on_old_keys(sessions: sessionmaker[Session], primary: str) -> int:
    """How many integrations still hold a token under a key other than `primary`."""
    cols = (Integration.access_token_enc, Integration.refresh_token_enc)
    with sessions() as s:
        stmt = select(func.count()).where(or_(*(_on_old_key(c, primary) for c in cols)))
        return int(s.execute(stmt).scalar_one())


def _on_old_key(column: InstrumentedAttribute[str | None], primary: str) -> ColumnElement[bool]:
    return and_(column.is_not(None), column != "", ~column.startswith(f"{PREFIX}:{primary}:", autoescape=True))


def _lock_batch(s: Session, primary: str, after_id: int, limit: int) -> list[Integration]:
    if s.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks: take the database write lock now, as the token service does, so the
        # rows cannot change between this read and the write below.
        s.execute(text("UPDATE integrations SET id = id WHERE id = -1"))
    stmt = (
        select(Integration)
        .where(
            Integration.id > after_id,
            or_(
                _on_old_key(Integration.access_token_enc, primary), _on_old_key(Integration.refresh_token_enc, primary)
            ),
        )
        .order_by(Integration.id)
        .limit(limit)
        .with_for_update(of=Integration)
        .execution_options(populate_existing=True)
    )
    return list(s.execute(stmt).scalars())


def _rotate_batch(s: Session, cipher: TokenCipher, rows: list[Integration]) -> tuple[int, list[int]]:
    rotated = 0
    failed: list[int] = []
    for row in rows:
        try:
            values = {f"{f}_enc": _reencrypt(cipher, row, f) for f in _FIELDS}
        except CipherError as exc:
            failed.append(row.id)
            log.error("keys.rotate.failed", integration_id=row.id, error=str(exc))
            continue
        changes = {column: value for column, value in values.items() if value is not None}
        if not changes:
            continue  # a refresh re-encrypted it under the primary key while we waited for the lock
        # Rotation changes how a token is stored, not the integration: keep updated_at as it was.
        s.execute(
            update(Integration)
            .where(Integration.id == row.id)
            .values(**changes, updated_at=Integration.updated_at)
            .execution_options(synchronize_session=False)
        )
        rotated += 1
    return rotated, failed


def _reencrypt(cipher: TokenCipher, row: Integration, field: str) -> str | None:
    """The value re-encrypted under the primary key, or None when it needs no change."""
    stored: str | None = getattr(row, f"{field}_enc")
    if not stored or not cipher.needs_rotation(stored):
        return None
    plain = cipher.decrypt(stored, integration_id=row.id, field=field)
    return cipher.encrypt(plain, integration_id=row.id, field=field)
