"""Replay rules: divergence detection (S36), and replay after every kind of interruption (S7).

The workflow's shape comes from ``env``, so an engine restarted with a different ``env``
replays the same instance with different code, the way a deploy would.
"""

from __future__ import annotations

from typing import Any

from dynamic_workflows.sdk import WorkflowEntrypoint, WorkflowEvent, WorkflowStep

from .conftest import (
    MakeEngine,
    RecordingClock,
    Register,
    history,
    step_row,
    wait_status,
)

HOUR = 3600.0


class Versioned(WorkflowEntrypoint):
    """v1: do a, do b, sleep. v2: do a, do c, sleep (b is gone). v3: sleep where a was."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        version = self.env["version"]
        if version == 3:
            await step.sleep("a", "1 minute")
            out: list[Any] = ["slept"]
        else:
            out = [await step.do("a", lambda: "a")]
            second = "b" if version == 1 else "c"
            out.append(await step.do(second, lambda: second))
        await step.sleep("nap", "1 hour")
        return out


async def _deploy(
    make_engine: MakeEngine,
    register: Register,
    clock: RecordingClock,
    version: int,
    **settings: Any,
) -> tuple[Any, list[str]]:
    """Start an instance on v1, let it sleep, restart the engine with ``version``."""
    first = make_engine()
    register(first, "WF", Versioned, env={"version": 1})
    async with first:
        inst = await first.binding("WF").create(id="v")
        await wait_status(inst, "waiting")
    second = make_engine(**settings)
    register(second, "WF", Versioned, env={"version": version})
    async with second:
        inst = await second.binding("WF").get("v")
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
        kinds = [r["kind"] for r in await history(second, inst)]
    return st, kinds


async def test_s36_same_code_replays_cleanly(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    st, kinds = await _deploy(make_engine, register, clock, 1)
    assert st.status == "complete"
    assert st.output == ["a", "b"]
    assert "divergence_warning" not in kinds


async def test_s36_missing_recorded_step_is_an_error(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    st, _ = await _deploy(make_engine, register, clock, 2)
    assert st.status == "errored"
    assert st.error is not None
    assert st.error["name"] == "WorkflowNonDeterminismError"
    assert "b-1" in st.error["message"]


async def test_s36_kind_mismatch_is_an_error(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    st, _ = await _deploy(make_engine, register, clock, 3)
    assert st.status == "errored"
    assert st.error is not None
    assert st.error["name"] == "WorkflowNonDeterminismError"
    assert "a-1" in st.error["message"]
    assert step_row(st, "a")["kind"] == "do"  # the record is not overwritten


async def test_s36_warn_records_and_continues(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    st, kinds = await _deploy(make_engine, register, clock, 2, on_divergence="warn")
    assert st.status == "complete"
    assert st.output == ["a", "c"]
    assert "divergence_warning" in kinds


class RaisesOnV2(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("a", lambda: "a")
        if self.env["version"] == 2:
            raise ValueError("new code raises before b")
        await step.do("b", lambda: "b")
        await step.sleep("nap", "1 hour")
        return "done"


async def test_s36_replay_that_raises_before_a_recorded_step(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    first = make_engine()
    register(first, "WF", RaisesOnV2, env={"version": 1})
    async with first:
        inst = await first.binding("WF").create(id="r")
        await wait_status(inst, "waiting")
    second = make_engine()
    register(second, "WF", RaisesOnV2, env={"version": 2})
    async with second:
        inst = await second.binding("WF").get("r")
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
    assert st.status == "errored"
    assert st.error is not None
    assert st.error["name"] == "WorkflowNonDeterminismError"
    assert "b-1" in st.error["message"]
