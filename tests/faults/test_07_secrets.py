"""7. Secrets: key rotation under load loses nothing; after every scenario, no token is anywhere it must not be.

This module runs after all the other fault scenarios (conftest orders it last). Each scenario's lab searched
what it left behind (every process's stdout/stderr, every API response body it received, every column of
every row of its database) for every token the fake issued, every API key, the client secret, the admin key
and the encryption keys; the last test asserts that nothing was found anywhere.
"""

from __future__ import annotations

import random
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select

from common.cipher import generate_key_spec
from common.config import Secret
from common.models import Integration
from common.tasks import REFRESH_INTEGRATION, SYNC_INTEGRATION, send
from tests.faults.evidence import FIGURES, REGISTRY, figure
from tests.faults.lab import Lab, key_material
from tests.faults.scale import Scale
from tests.faults.seed import seed
from tests.support.api import bearer
from tests.support.polling import wait_for

FORCE = 10**9
SYNCED = {"sync.succeeded"}
REFRESHED = {"token.refresh.succeeded", "token.refresh.skipped"}


@pytest.mark.timeout(900)
def test_key_rotation_under_load_loses_no_token(scale: Scale, lab: Lab, google):
    fake = google.fake
    fake.locations_per_account = 1
    fake.set_latency("token", 10)
    old, new = generate_key_spec("old"), generate_key_spec("new")
    ring = f"{new},{old}"  # deployed to every process before the rotation; the first key encrypts
    lab.literals |= set(key_material(ring))
    fleet = seed(
        lab.container(token_encryption_keys=Secret(old), pool_size=4), fake, scale.rotation_integrations, per_user=5
    )
    lab.secrets |= {s.api_key for s in fleet}
    for _ in range(2):
        lab.worker(4, TOKEN_ENCRYPTION_KEYS=ring)
    api = lab.api(TOKEN_ENCRYPTION_KEYS=ring)
    c = lab.container(token_encryption_keys=Secret(ring), pool_size=4)

    sent = {send(c.broker, SYNC_INTEGRATION, s.id): SYNCED for s in fleet[::10]}
    rotation = lab.start(
        "cli", ["-m", "services.cli", "keys", "rotate", "--batch-size", "10"], lab.env(TOKEN_ENCRYPTION_KEYS=ring)
    )
    rng = random.Random(3)
    reads = 0
    with httpx.Client(base_url=api.url, timeout=30) as http:
        while rotation.alive():  # the load goes on for as long as the rotation runs
            s = rng.choice(fleet)
            sent[send(c.broker, REFRESH_INTEGRATION, s.id, FORCE)] = REFRESHED
            resp = lab.record(http.get(f"/integrations/{s.id}", headers=bearer(s.api_key)))
            assert resp.status_code == 200
            reads += 1
            time.sleep(0.05)
    assert rotation.popen.wait(10) == 0, rotation.log_path.read_text()
    rotation.read()
    done = re.search(r"Done: (\d+) of (\d+) integrations re-encrypted", "\n".join(rotation.lines))
    assert done, "\n".join(rotation.lines)
    wait_for(lambda: not lab.unprocessed(sent), 300, "the refreshes and syncs", every=0.5)

    # The old key can go now: the new key alone reads every token, and every grant still refreshes.
    c_new = lab.container(token_encryption_keys=Secret(new), broker=False, pool_size=8)
    with c_new.sessions() as s:
        stored = [(r.access_token_enc, r.refresh_token_enc) for r in s.scalars(select(Integration))]
    assert not [v for pair in stored for v in pair if v and c_new.cipher.needs_rotation(v)]
    with ThreadPoolExecutor(8) as pool:
        refreshed = list(pool.map(lambda s: c_new.tokens.refresh(s.id, FORCE), fleet))
    assert all(refreshed), "every integration's token decrypts under the new key alone and refreshes"
    figure(
        f"7. key rotation under load [{scale.name}]",
        integrations=len(fleet),
        rotated=int(done.group(1)),
        refreshes_during_rotation=len(sent),
        api_reads=reads,
        tokens_lost=len(fleet) - sum(refreshed),
    )


def test_no_secret_appears_in_any_log_response_or_database_column(scale: Scale):
    """Runs last: the search results of every scenario of this session (and of the rotation above)."""
    assert REGISTRY.scenarios, "the scenarios left nothing to search"
    assert REGISTRY.log_lines > 0 and REGISTRY.db_rows > 0 and REGISTRY.secrets_known > 0
    assert REGISTRY.findings == [], "\n".join(REGISTRY.findings[:50])
    FIGURES.setdefault("7. secrets", {}).update(
        scenarios_searched=len(REGISTRY.scenarios),
        secret_values_searched=REGISTRY.secrets_known,
        log_lines=REGISTRY.log_lines,
        responses=REGISTRY.responses,
        db_rows=REGISTRY.db_rows,
        secrets_found=len(REGISTRY.findings),
    )
