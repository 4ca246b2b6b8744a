"""Fixtures of the fault suite: a scale per variant and a `lab` (database, vhost, processes) per scenario."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from common.migrate import upgrade
from services.fake_google import FakeGoogleServer
from tests.faults.evidence import FIGURES, REGISTRY
from tests.faults.lab import Lab
from tests.faults.scale import VARIANTS, Scale, scale_named
from tests.support import services
from tests.support.api import rabbit_server

LAST_MODULE = "test_07_secrets.py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The secrets search covers what the other scenarios left behind, so it runs after all of them.
    last = [i for i in items if i.path.name == LAST_MODULE]
    items[:] = [i for i in items if i.path.name != LAST_MODULE] + last
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            marks = {m.name for m in item.iter_markers()}
            if not marks & {"faults", "faults_short"}:
                raise pytest.UsageError(f"{item.nodeid}: every fault test is marked faults or faults_short")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES and not REGISTRY.scenarios:
        return
    tr = terminalreporter
    tr.section("fault suite figures")
    for scenario, values in FIGURES.items():
        tr.write_line(f"{scenario}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    tr.write_line(
        f"secrets search: {REGISTRY.secrets_known} secret values (summed over scenarios), "
        f"{REGISTRY.log_lines} log lines, {REGISTRY.responses} API responses, {REGISTRY.db_rows} database rows, "
        f"{len(REGISTRY.findings)} found"
    )


@pytest.fixture(params=VARIANTS)
def scale(request: pytest.FixtureRequest) -> Scale:
    return scale_named(request.param)


@contextmanager
def open_lab(name: str, google: FakeGoogleServer, workdir: Path) -> Iterator[Lab]:
    """A fresh database and vhost; afterwards, everything the lab saw is searched for secrets."""
    server, container = rabbit_server()
    with (
        services.temporary_database(services.database_server_url()) as db_url,
        services.temporary_vhost(server, container) as amqp_url,
    ):
        upgrade(db_url)
        lab = Lab(name, db_url, amqp_url, google, workdir)
        try:
            yield lab
        finally:
            lab.close()
            lab.scan(google.fake.issued_tokens())


@pytest.fixture
def lab(request: pytest.FixtureRequest, google: FakeGoogleServer, tmp_path: Path) -> Iterator[Lab]:
    """A lab of one scenario's own."""
    with open_lab(request.node.name, google, tmp_path) as lab:
        yield lab


@pytest.fixture(scope="module")
def shared_lab(
    request: pytest.FixtureRequest, google_server: FakeGoogleServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lab]:
    """One lab for the cheap tests of a module (fuzzing, access): one database, vhost and API process."""
    with open_lab(request.module.__name__.rsplit(".", 1)[-1], google_server, tmp_path_factory.mktemp("lab")) as lab:
        yield lab


@pytest.fixture
def module_lab(shared_lab: Lab, google: FakeGoogleServer) -> Iterator[Lab]:
    """The module's lab for one test; the fake forgets its tokens between tests, so the lab keeps them."""
    yield shared_lab
    shared_lab.secrets |= google.fake.issued_tokens()
