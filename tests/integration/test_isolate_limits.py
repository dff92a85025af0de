"""Limits on real isolates: wall time and step timeouts enforced from the host (the isolate
is killed and the call gets ``IsolateLost`` with the matching error), and the guest's own
CPU budget and ``MemoryError`` handling in confined subprocesses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from dynamic_workflows.sandbox import (
    CodeBundle,
    Isolate,
    IsolateBackend,
    IsolateLimits,
    IsolateLost,
    open_backend,
)
from dynamic_workflows.sdk import (
    IsolateLimitError,
    WorkflowInternalError,
    WorkflowTimeoutError,
)

from .test_isolate_behaviour import ScriptedOps, event

SOURCE = """
import asyncio
import os
import signal
import time

from dynamic_workflows.sdk import WorkerEntrypoint, WorkflowEntrypoint


def spin():
    while True:
        pass


class Spin(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("spin", spin)


class SpinPastTimeout(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("spin", spin, timeout="100 ms")


class BlockPastTimeout(WorkflowEntrypoint):
    async def run(self, event, step):
        def block():
            time.sleep(event.payload)  # blocks the guest's loop
            return "woke"

        return await step.do("block", block, timeout="100 ms")


class AsyncTimeout(WorkflowEntrypoint):
    async def run(self, event, step):
        async def slow():
            await asyncio.sleep(3600)

        try:
            await step.do("slow", slow, timeout="50 ms")
        except Exception as error:
            return [error.name, error.message]


class Hang(WorkflowEntrypoint):
    async def run(self, event, step):
        async def hang():
            await asyncio.sleep(3600)

        return await step.do("hang", hang)


class Hog(WorkflowEntrypoint):
    async def run(self, event, step):
        def hog():
            return len(bytearray(8 << 30))

        return await step.do("hog", hog)


class Crash(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("crash", lambda: os._exit(3))


class OverCpuRlimit(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("xcpu", lambda: os.kill(os.getpid(), signal.SIGXCPU))


class Ok(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("ok", lambda: "fine")


class Disarmed(WorkflowEntrypoint):
    async def run(self, event, step):
        def disarm_then_spin():
            signal.setitimer(signal.ITIMER_PROF, 0)  # defeat the guest's own CPU budget
            signal.signal(signal.SIGPROF, signal.SIG_IGN)
            spin()

        return await step.do("spin", disarm_then_spin)


class Api(WorkerEntrypoint):
    def hog(self):
        return len(bytearray(8 << 30))
"""


def code(limits: IsolateLimits) -> CodeBundle:
    return CodeBundle("index.py", {"index.py": SOURCE}, "v1", limits=limits)


async def start(isolates: IsolateBackend, limits: IsolateLimits) -> Isolate:
    isolate = await isolates.new_isolate(limits)
    await isolate.load(code(limits))
    return isolate


async def run(isolate: Isolate, entrypoint: str, ops: Any = None, payload: Any = 0) -> Any:
    with anyio.fail_after(60):
        return await isolate.run_workflow(
            entrypoint, event(payload=payload), ops or ScriptedOps(), {}, step_limit=10
        )


@pytest.fixture(params=["inprocess", "subprocess"])
async def isolates(request: pytest.FixtureRequest) -> AsyncIterator[IsolateBackend]:
    opened = await open_backend(request.param, step_grace=0.2)
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
async def confined() -> AsyncIterator[IsolateBackend]:
    opened = await open_backend("subprocess", step_grace=0.2)
    try:
        yield opened
    finally:
        await opened.aclose()


async def test_wall_limit_kills_the_isolate(isolates: IsolateBackend) -> None:
    limits = IsolateLimits(wall_seconds=0.5)
    isolate = await start(isolates, limits)
    bystander = await start(isolates, IsolateLimits())
    held = ScriptedOps(gate=asyncio.Event())  # waits on the host: its wall clock is paused
    outcomes: dict[str, BaseException] = {}

    async def lose(name: str, entrypoint: str, ops: Any) -> None:
        with pytest.raises(IsolateLost) as info:
            await run(isolate, entrypoint, ops)
        outcomes[name] = info.value

    async with anyio.create_task_group() as tg:
        tg.start_soon(lose, "held", "Ok", held)
        tg.start_soon(lose, "hang", "Hang", None)
    assert isinstance(outcomes["hang"].error, IsolateLimitError)  # type: ignore[attr-defined]
    assert outcomes["hang"].error.limit == "wall"  # type: ignore[attr-defined]
    collateral = outcomes["held"].error  # type: ignore[attr-defined]
    assert isinstance(collateral, WorkflowInternalError)
    assert collateral.message == "Attempt failed due to internal workflows error"
    assert not isolate.alive
    with pytest.raises(IsolateLost):
        await run(isolate, "Ok")
    assert (await run(bystander, "Ok")).value == "fine"


async def test_time_waiting_on_the_host_is_not_wall_time(isolates: IsolateBackend) -> None:
    isolate = await start(isolates, IsolateLimits(wall_seconds=1.0))
    gate = asyncio.Event()
    ops = ScriptedOps(gate=gate)
    async with anyio.create_task_group() as tg:

        async def release() -> None:
            await anyio.sleep(2.0)  # the host takes longer than the guest's wall limit
            gate.set()

        tg.start_soon(release)
        result = await run(isolate, "Ok", ops)
    assert result.value == "fine"
    assert isolate.alive


async def test_blocked_step_past_its_timeout_is_killed(isolates: IsolateBackend) -> None:
    isolate = await start(isolates, IsolateLimits())
    bystander = await start(isolates, IsolateLimits())
    # In-process the thread cannot be killed: it sleeps 2 s then finds its channel closed.
    entrypoint = "SpinPastTimeout" if isolate.backend == "subprocess" else "BlockPastTimeout"
    with pytest.raises(IsolateLost) as info:
        await run(isolate, entrypoint, payload=2.0)
    assert isinstance(info.value.error, WorkflowTimeoutError)
    assert info.value.error.message == "Execution timed out after 100ms"
    assert not isolate.alive
    assert (await run(bystander, "Ok")).value == "fine"


async def test_async_step_timeout_is_handled_inside_the_isolate(isolates: IsolateBackend) -> None:
    isolate = await start(isolates, IsolateLimits())
    result = await run(isolate, "AsyncTimeout")
    assert result.value == ["WorkflowTimeoutError", "Execution timed out after 50ms"]
    assert isolate.alive


async def test_cpu_budget_fails_the_step_and_the_isolate_survives(
    confined: IsolateBackend,
) -> None:
    isolate = await start(confined, IsolateLimits(cpu_seconds=0.3))
    ops = ScriptedOps()
    result = await run(isolate, "Spin", ops)
    ends = [c for c in ops.calls if c[0] == "do_end"]
    cpu_error = {
        "name": "IsolateLimitError",
        "message": "Isolate exceeded its cpu limit",
        "limit": "cpu",
    }
    assert ends[0][4] == {"error": cpu_error, "retryable": True}
    assert (result.outcome, result.error) == ("raise", cpu_error)
    assert isolate.alive
    assert (await run(isolate, "Ok")).value == "fine"


async def test_memory_error_fails_the_step_and_retires_the_isolate(
    confined: IsolateBackend,
) -> None:
    isolate = await start(confined, IsolateLimits(memory_mb=512))
    ops = ScriptedOps()
    result = await run(isolate, "Hog", ops)
    memory_error = {
        "name": "IsolateLimitError",
        "message": "Isolate exceeded its memory limit",
        "limit": "memory",
    }
    assert result.error == memory_error
    assert [c[4] for c in ops.calls if c[0] == "do_end"] == [
        {"error": memory_error, "retryable": True}
    ]
    with anyio.fail_after(30):
        while isolate.alive:  # noqa: ASYNC110 - the retire notice is one frame away
            await anyio.sleep(0.005)
    assert isolate.retiring == "memory"  # type: ignore[attr-defined]


async def test_a_crash_is_an_internal_error(confined: IsolateBackend) -> None:
    isolate = await start(confined, IsolateLimits())
    with pytest.raises(IsolateLost) as info:
        await run(isolate, "Crash")
    assert isinstance(info.value.error, WorkflowInternalError)
    assert info.value.error.message == "Attempt failed due to internal workflows error"


async def test_a_death_over_a_process_limit_names_the_limit(confined: IsolateBackend) -> None:
    isolate = await start(confined, IsolateLimits())
    with pytest.raises(IsolateLost) as info:
        await run(isolate, "OverCpuRlimit")
    assert isinstance(info.value.error, IsolateLimitError)
    assert info.value.error.limit == "cpu"


async def test_limits_keep_their_name_across_the_channel(confined: IsolateBackend) -> None:
    isolate = await start(confined, IsolateLimits(memory_mb=512))
    with pytest.raises(IsolateLimitError) as info:
        await isolate.call("Api", "hog", [])
    assert info.value.limit == "memory"


async def test_a_disarmed_cpu_budget_is_caught_by_the_host(confined: IsolateBackend) -> None:
    isolate = await start(confined, IsolateLimits(cpu_seconds=0.3))
    bystander = await start(confined, IsolateLimits())
    with pytest.raises(IsolateLost) as info:
        await run(isolate, "Disarmed")
    assert isinstance(info.value.error, IsolateLimitError)
    assert info.value.error.limit == "cpu"
    assert (await run(bystander, "Ok")).value == "fine"
