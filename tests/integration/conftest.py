"""Fixtures for the behaviour suite: real SQLite files, an injected clock, one way to register.

- ``db_path``: a fresh SQLite file per test in ``tmp_path``; ``make_engine(**settings)`` opens
  a :class:`Workflows` on it (call it twice for an engine restart on the same file).
- ``clock``: a :class:`RecordingClock`, a ``ManualClock`` that also remembers every absolute
  time a timer was asked for (``clock.scheduled``), so a test can check *when* the engine
  means to wake (S13, S19) without waiting for anything.
- ``register(engine, name, cls, env=...)``: **the** way every test gives the engine a workflow
  class. It is parametrized by ``backend`` (``BACKENDS``): ``"inprocess"``, and isolate
  backends (``"subprocess"``, later ``"wasm"``) that ship the class into a real isolate by
  value (cloudpickle, see ``_isolated.py``), so workflow classes are defined at module
  level, are self-contained (no closures over test locals, no shared Python objects) and
  are observed only through step results, outputs, ``status()`` and the event log.
- ``@pytest.mark.inprocess_only``: a test that inherently needs shared in-process state (a
  gate a callback waits on, a counter in memory) runs only with the ``"inprocess"`` backend;
  ``pytest_generate_tests`` below leaves the other backends out for it.
- Helpers the test modules import (``from .conftest import ...``): ``wait_status`` /
  ``wait_until`` wait for a state with ``anyio.fail_after`` only as a hang guard (never
  sleep-then-assert); ``step_row`` reads the timeline; ``history`` reads the event log;
  ``drive_retries`` walks a step through its retry waits, checking each timer's time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import anyio
import pytest

from dynamic_workflows.loader import WorkerLoader
from dynamic_workflows.runtime import (
    InstanceHandle,
    InstanceStatus,
    ManualClock,
    Workflows,
)

from ._isolated import register_isolated

T0 = 1_700_000_000.0
HANG_GUARD = 20.0
BACKENDS = ["inprocess", "subprocess", "wasm"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "inprocess_only: needs shared in-process state; runs only with the inprocess backend",
    )
    config.addinivalue_line(
        "markers",
        "not_wasm(reason): relies on what the wasm backend documents it does not offer "
        "(docs/wasm.md: an event loop in the guest, interrupting a running callback)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        only_here = metafunc.definition.get_closest_marker("inprocess_only") is not None
        no_wasm = metafunc.definition.get_closest_marker("not_wasm") is not None
        params = [
            pytest.param(b, marks=pytest.mark.wasm) if b == "wasm" else b
            for b in (["inprocess"] if only_here else BACKENDS)
            if not (b == "wasm" and no_wasm)
        ]
        metafunc.parametrize("backend", params)


class RecordingClock(ManualClock):
    """A ManualClock that records the absolute time of every timer the engine sets."""

    def __init__(self, start: float = T0) -> None:
        super().__init__(start)
        self.scheduled: list[float] = []

    def call_at(self, when: float, callback: Callable[[], None]) -> Any:
        self.scheduled.append(when)
        return super().call_at(when, callback)


class Register(Protocol):
    def __call__(
        self, engine: Workflows, name: str, cls: type, *, env: Mapping[str, Any] | None = None
    ) -> None: ...


class MakeEngine(Protocol):
    def __call__(self, **settings: Any) -> Workflows: ...


class RunEngine(Protocol):
    def __call__(
        self,
        workflows: Mapping[str, type],
        *,
        env: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> AbstractAsyncContextManager[Workflows]: ...


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def clock() -> RecordingClock:
    return RecordingClock(T0)


@pytest.fixture
def make_engine(db_path: Path, clock: RecordingClock) -> MakeEngine:
    """``make_engine(**settings)``: a new engine on this test's file and clock."""

    def make(**settings: Any) -> Workflows:
        settings.setdefault("store", f"sqlite:///{db_path}")
        settings.setdefault("clock", clock)
        settings.setdefault("durability", "os")  # a process crash is covered in test_crash.py
        return Workflows(**settings)

    return make


@pytest.fixture
async def register(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Register]:
    """Register a workflow class the way the current backend runs it: in-process, or
    shipped into a real isolate through a loader that outlives the test's engines."""
    if backend == "inprocess":

        def reg(
            engine: Workflows, name: str, cls: type, *, env: Mapping[str, Any] | None = None
        ) -> None:
            engine.register(name, cls, env=dict(env or {}))

        yield reg
        return
    if backend == "wasm":
        request.getfixturevalue("wasm_runner")  # built once per session, before any hang guard
    async with WorkerLoader(backend=backend, code_dir=tmp_path / "code") as loader:  # type: ignore[arg-type]

        def reg_isolated(
            engine: Workflows, name: str, cls: type, *, env: Mapping[str, Any] | None = None
        ) -> None:
            register_isolated(engine, name, cls, env=env, loader=loader)

        yield reg_isolated


@pytest.fixture
def run_engine(make_engine: MakeEngine, register: Register) -> RunEngine:
    """``async with run_engine({"WF": Cls}, env=..., **settings) as engine``."""

    @asynccontextmanager
    async def run(
        workflows: Mapping[str, type],
        *,
        env: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> AsyncIterator[Workflows]:
        engine = make_engine(**settings)
        for name, cls in workflows.items():
            register(engine, name, cls, env=env)
        async with engine:
            yield engine

    return run


# --- helpers, imported by the test modules (``from .conftest import ...``) ----------------


async def wait_until(
    inst: InstanceHandle,
    predicate: Callable[[InstanceStatus], bool],
    *,
    timeout: float = HANG_GUARD,
) -> InstanceStatus:
    """The first status that satisfies ``predicate``; the timeout is a hang guard only."""
    last: InstanceStatus | None = None
    try:
        with anyio.fail_after(timeout):
            while True:
                last = await inst.status()
                if predicate(last):
                    return last
                await anyio.sleep(0.005)
    except TimeoutError:
        seen = None if last is None else (last.status, last.error, last.steps)
        raise AssertionError(f"hang guard: {inst.id} never got there; last seen {seen}") from None


async def wait_status(
    inst: InstanceHandle, *statuses: str, timeout: float = HANG_GUARD
) -> InstanceStatus:
    """The status once it is one of ``statuses``."""
    return await wait_until(inst, lambda st: st.status in statuses, timeout=timeout)


def step_row(st: InstanceStatus, name: str, count: int = 1) -> dict[str, Any]:
    """The timeline entry of step ``name``-``count`` (S28)."""
    for row in st.steps:
        if row["name"] == name and row["count"] == count:
            return row
    raise AssertionError(f"no step {name}-{count} in {st.steps}")


def has_step(st: InstanceStatus, name: str, count: int = 1) -> bool:
    return any(row["name"] == name and row["count"] == count for row in st.steps)


def attempts(st: InstanceStatus, name: str, count: int = 1) -> int:
    return int(step_row(st, name, count)["attempts"]) if has_step(st, name, count) else 0


async def history(
    engine: Workflows, inst: InstanceHandle, kind: str | None = None, step: str | None = None
) -> list[dict[str, Any]]:
    """The instance's event log, optionally only one kind and one step key (``"name-1"``)."""
    records = await engine.history(inst.uid)
    return [
        r
        for r in records
        if (kind is None or r["kind"] == kind) and (step is None or r["step"] == step)
    ]


async def wait_record(
    engine: Workflows,
    inst: InstanceHandle,
    kind: str,
    *,
    count: int = 1,
    timeout: float = HANG_GUARD,
) -> dict[str, Any]:
    """Wait until the event log holds ``count`` records of ``kind`` (e.g. ``"hibernated"``:
    a test that means to replay after hibernation waits for it before moving on, since
    when a run hibernates is the engine's choice); returns the last of them."""
    try:
        with anyio.fail_after(timeout):
            while True:
                found = await history(engine, inst, kind)
                if len(found) >= count:
                    return found[count - 1]
                await anyio.sleep(0.005)
    except TimeoutError:
        kinds = [r["kind"] for r in await history(engine, inst)]
        raise AssertionError(f"hang guard: no {kind!r} record; log has {kinds}") from None


async def timer_set_for(clock: RecordingClock, when: float, *, timeout: float = HANG_GUARD) -> None:
    """Wait until the engine has asked the clock for a timer at exactly ``when``."""
    try:
        with anyio.fail_after(timeout):
            while True:
                if any(abs(w - when) < 1e-6 for w in clock.scheduled):
                    return
                await anyio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(
            f"no timer at {when - T0:+} s (from T0); timers asked for: "
            f"{[w - T0 for w in clock.scheduled]}"
        ) from None


async def drive_retries(
    inst: InstanceHandle, clock: RecordingClock, name: str, delays: list[float], count: int = 1
) -> InstanceStatus:
    """For each expected retry delay: wait until attempt ``i`` has failed and the instance
    waits, check the engine set its timer exactly ``delay`` later, and advance to it."""
    for i, delay in enumerate(delays, start=1):

        def failed(st: InstanceStatus, i: int = i) -> bool:
            return st.status == "waiting" and attempts(st, name, count) == i

        def next_started(st: InstanceStatus, i: int = i) -> bool:
            return attempts(st, name, count) > i

        await wait_until(inst, failed)
        await timer_set_for(clock, clock.now() + delay)
        clock.advance(delay)
        await wait_until(inst, next_started)
    return await wait_status(inst, "complete", "errored")
