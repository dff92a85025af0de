"""A real PostgreSQL 15 server for the tests in this directory, and a fresh database per test.

``pg_server`` (session): a throwaway cluster (``_server.py``) on 127.0.0.1 at a free port
(``fsync=off``: see the fixture),
stopped and removed at the end. If it cannot start, every test here fails with the reason;
nothing is skipped. ``pg_url``: the URL of a new, empty database for this test.

The behaviour suite (tests/integration) runs here too, on PostgreSQL: ``test_behaviour.py``
imports its test functions, and this file supplies its fixtures with ``make_engine`` bound to
this test's database. Only the in-process backend runs here (the store under test is the
same whichever backend runs the workflow code).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from dynamic_workflows.runtime import Workflows
from dynamic_workflows.runtime._postgres import PostgresStore
from integration.conftest import (  # the behaviour suite's fixtures, reused as they are
    RecordingClock,
    clock,
    register,
    run_engine,
)
from integration.conftest import pytest_configure as _integration_markers

from ._server import Server, ServerError, running

__all__ = ["clock", "register", "run_engine"]

_names = itertools.count(1)
_failed: list[ServerError] = []


def pytest_configure(config: pytest.Config) -> None:
    _integration_markers(config)  # inprocess_only, not_wasm: used by the imported tests


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", ["inprocess"])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/postgres/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    if _failed:
        pytest.fail(f"the PostgreSQL test server could not start: {_failed[0]}", pytrace=False)
    try:
        # fsync=off: these tests cover behaviour, not power loss, and a fresh database per
        # test would otherwise wait on the disk of this shared machine. The durability
        # settings the store chooses (synchronous_commit) apply all the same.
        cm = running(fsync=False)
        server = cm.__enter__()
    except ServerError as error:
        _failed.append(error)
        pytest.fail(f"the PostgreSQL test server could not start: {error}", pytrace=False)
    try:
        yield server
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture
def pg_url(pg_server: Server) -> Iterator[str]:
    name = f"t{next(_names)}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def make_engine(pg_url: str, clock: RecordingClock) -> Any:
    """The behaviour suite's ``make_engine``, on this test's PostgreSQL database."""

    def make(**settings: Any) -> Workflows:
        settings.setdefault("store", pg_url)
        settings.setdefault("clock", clock)
        settings.setdefault("durability", "os")
        engine = Workflows(**settings)
        assert isinstance(engine.store, PostgresStore), "this suite must run on PostgreSQL"
        return engine

    return make
