"""Key rotation on PostgreSQL: everything moves to the new key, nothing is lost while workers refresh."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from sqlalchemy import select, update
from structlog.testing import capture_logs

from common.bootstrap import Container, bootstrap
from common.cipher import TokenCipher, generate_key_spec
from common.config import Secret
from common.key_rotation import RotationReport, rotate_keys
from common.migrate import upgrade
from common.models import DISCONNECTED, Integration
from services.fake_google import FakeGoogleServer
from tests.conftest import TEST_KEYS, make_settings
from tests.support import services
from tests.support.flows import connect, load

OLD = generate_key_spec("old")
NEW = generate_key_spec("new")
LOST = generate_key_spec("lost")
FIELDS = ("access_token", "refresh_token")


@pytest.fixture
def db_url() -> Iterator[str]:
    """A database of this test's own: rotation visits every row, so no other test's rows may be there."""
    with services.temporary_database(services.database_server_url()) as url:
        upgrade(url)
        yield url


@pytest.fixture
def ring(db_url: str, google: FakeGoogleServer) -> Iterator[Callable[[str], Container]]:
    """Containers on that database with a given TOKEN_ENCRYPTION_KEYS."""
    with ExitStack() as stack:

        def make(keys: str) -> Container:
            c = bootstrap(
                make_settings(db_url, google, token_encryption_keys=Secret(keys)), configure_logs=False, pool_size=25
            )
            stack.callback(c.close)
            return c

        yield make


def stored(c: Container) -> dict[int, tuple[str | None, str | None]]:
    with c.sessions() as s:
        return {r.id: (r.access_token_enc, r.refresh_token_enc) for r in s.scalars(select(Integration))}


def plaintexts(c: Container, cipher: TokenCipher) -> dict[int, tuple[str | None, ...]]:
    return {
        iid: tuple(
            None if v is None else cipher.decrypt(v, integration_id=iid, field=f)
            for v, f in zip(values, FIELDS, strict=True)
        )
        for iid, values in stored(c).items()
    }


def test_rotation_moves_every_token_to_the_new_key_and_the_old_key_can_go(
    ring: Callable[[str], Container], google: FakeGoogleServer
) -> None:
    old = ring(OLD)
    ids = [connect(old) for _ in range(11)]
    with old.sessions.begin() as s:  # a disconnected integration: tokens erased
        s.execute(
            update(Integration)
            .where(Integration.id == ids[-1])
            .values(status=DISCONNECTED, access_token_enc=None, refresh_token_enc=None)
        )
    before = plaintexts(old, old.cipher)
    updated_before = {iid: load(old, iid).updated_at for iid in ids}

    rotating = ring(f"{NEW},{OLD}")
    seen: list[RotationReport] = []
    report = rotate_keys(rotating.sessions, rotating.cipher, batch_size=4, progress=seen.append)

    assert (report.scanned, report.rotated, report.failed) == (10, 10, 0)
    assert [r.scanned for r in seen] == [4, 8, 10]
    for iid, values in stored(rotating).items():
        assert all(v is None or v.startswith("v1:new:") for v in values), iid
    new_only = ring(NEW)
    assert plaintexts(new_only, new_only.cipher) == before
    assert {iid: load(new_only, iid).updated_at for iid in ids} == updated_before, (
        "rotation is not a user-visible change"
    )
    for iid in ids[:-1]:
        assert list(new_only.gbp.accounts(new_only.tokens.ensure_fresh_token(iid, 300)))
        forced = new_only.tokens.ensure_fresh_token(iid, 10**7)  # proves the refresh token decrypts and works
        assert list(new_only.gbp.accounts(forced))

    assert rotate_keys(rotating.sessions, rotating.cipher) == RotationReport(0, 0, 0)


def test_a_token_no_key_decrypts_is_reported_by_id_and_skipped(
    ring: Callable[[str], Container], google: FakeGoogleServer
) -> None:
    old = ring(OLD)
    good, bad = connect(old), connect(old)
    lost = TokenCipher.from_spec(LOST)
    secret = "ya29.value-under-a-lost-key"
    with old.sessions.begin() as s:
        s.execute(
            update(Integration)
            .where(Integration.id == bad)
            .values(access_token_enc=lost.encrypt(secret, integration_id=bad, field="access_token"))
        )
    bad_before = stored(old)[bad]
    rotating = ring(f"{NEW},{OLD}")
    with capture_logs() as logs:
        report = rotate_keys(rotating.sessions, rotating.cipher)
    assert (report.scanned, report.rotated, report.failed, report.failed_ids) == (2, 1, 1, (bad,))
    assert stored(rotating)[bad] == bad_before, "left exactly as it was"
    assert all(v and v.startswith("v1:new:") for v in stored(rotating)[good])
    [failed] = [e for e in logs if e["event"] == "keys.rotate.failed"]
    assert failed["integration_id"] == bad and failed["log_level"] == "error" and "'lost'" in failed["error"]
    assert secret not in repr(logs) and bad_before[0] not in repr(logs)
    again = rotate_keys(rotating.sessions, rotating.cipher)
    assert (again.rotated, again.failed_ids) == (0, (bad,))


def test_rotation_while_twenty_workers_force_refreshes_loses_nothing(
    ring: Callable[[str], Container], google: FakeGoogleServer
) -> None:
    old = ring(OLD)
    ids = [connect(old) for _ in range(80)]
    workers = ring(f"{NEW},{OLD}")  # deployed first, as the rotation procedure says
    rotating = ring(f"{NEW},{OLD}")
    google.fake.set_latency("token", 10)  # a refresh holds its row lock for a while: rotation must wait or win
    stop = threading.Event()
    started = threading.Barrier(21)
    last: dict[int, str] = {}
    refreshes: list[int] = []
    errors: list[BaseException] = []

    def work(mine: list[int]) -> None:
        pick = random.Random(mine[0])
        started.wait(timeout=30)
        try:
            while not stop.is_set():
                iid = pick.choice(mine)
                last[iid] = workers.tokens.ensure_fresh_token(iid, 10**7)  # always due: a forced refresh
                refreshes.append(iid)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(ids[n::20],)) for n in range(20)]
    for t in threads:
        t.start()
    started.wait(timeout=30)
    try:
        # Spread the batches out so that refreshes land before, during and after each of them.
        report = rotate_keys(rotating.sessions, rotating.cipher, batch_size=3, progress=lambda _: time.sleep(0.02))
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors[:3]
    google.fake.set_latency("token", 0)
    assert report.failed == 0 and 0 < report.rotated <= report.scanned <= len(ids)
    assert report.rotated + len(set(refreshes)) >= len(ids), "every row was re-encrypted by one or the other"

    new_only = ring(NEW)
    for iid, values in stored(new_only).items():
        assert all(v and v.startswith("v1:new:") for v in values), iid
    tokens = plaintexts(new_only, new_only.cipher)
    for iid in ids:
        if iid in last:
            assert tokens[iid][0] == last[iid], f"integration {iid}: its newest token was overwritten"
        assert list(new_only.gbp.accounts(new_only.tokens.ensure_fresh_token(iid, 10**7)))
    assert rotate_keys(rotating.sessions, rotating.cipher).rotated == 0


def test_rotation_on_sqlite(lite: Container, google: FakeGoogleServer) -> None:
    ids = [connect(lite) for _ in range(3)]
    before = plaintexts(lite, lite.cipher)
    cipher = TokenCipher.from_spec(f"{NEW},{TEST_KEYS}")
    report = rotate_keys(lite.sessions, cipher, batch_size=2)
    assert (report.scanned, report.rotated, report.failed) == (3, 3, 0)
    assert plaintexts(lite, TokenCipher.from_spec(NEW)) == before
    assert rotate_keys(lite.sessions, cipher).scanned == 0
    assert len(ids) == 3
