"""Durable sleeps and hibernation through the public API: S19, S20."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dynamic_workflows.runtime import InstanceStatus
from dynamic_workflows.sdk import (
    StepContext,
    WorkflowEntrypoint,
    WorkflowError,
    WorkflowEvent,
    WorkflowStep,
    error_to_dict,
    gather,
)

from .conftest import (
    T0,
    MakeEngine,
    RecordingClock,
    Register,
    RunEngine,
    attempts,
    has_step,
    history,
    step_row,
    timer_set_for,
    wait_record,
    wait_status,
    wait_until,
)

HOUR = 3600.0
DAY = 86400.0

SEQUENTIAL_GATHER = (
    "sdk.gather runs branches in call order in wasm (no event loop): "
    "two waits are never pending at once"
)


class Sleeper(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        before = await step.do("before", lambda: "b")
        await step.sleep("nap", event.payload.get("duration", "1 hour"))
        after = await step.do("after", lambda: "a")
        return [before, after]


# --- S19 -----------------------------------------------------------------------------------


async def test_s19_sleep_waits_on_the_clock(run_engine: RunEngine, clock: RecordingClock) -> None:
    async with run_engine({"WF": Sleeper}) as engine:
        inst = await engine.binding("WF").create()
        st = await wait_status(inst, "waiting")
        assert step_row(st, "nap")["kind"] == "sleep"
        assert step_row(st, "nap")["state"] == "waiting"
        await timer_set_for(clock, T0 + HOUR)
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
    assert st.output == ["b", "a"]
    nap = step_row(st, "nap")
    assert (nap["state"], nap["start"], nap["end"]) == ("complete", T0, T0 + HOUR)


async def test_s19_duration_forms(run_engine: RunEngine, clock: RecordingClock) -> None:
    async with run_engine({"WF": Sleeper}) as engine:
        wf = engine.binding("WF")
        numeric = await wf.create(params={"duration": 90})
        text = await wf.create(params={"duration": "2 days"})
        for inst in (numeric, text):
            await wait_status(inst, "waiting")
        await timer_set_for(clock, T0 + 90)
        await timer_set_for(clock, T0 + 2 * DAY)
        clock.advance(90)
        st = await wait_status(numeric, "complete", "errored")
        assert step_row(st, "nap")["end"] == T0 + 90
        assert (await text.status()).status == "waiting"
        clock.advance(2 * DAY - 90)
        st = await wait_status(text, "complete", "errored")
        assert step_row(st, "nap")["end"] == T0 + 2 * DAY


async def test_s19_sleep_after_restart_waits_only_the_remainder(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    first = make_engine()
    register(first, "WF", Sleeper)
    async with first:
        inst = await first.binding("WF").create(id="s")
        await wait_status(inst, "waiting")
        clock.advance(20 * 60)
    second = make_engine()
    register(second, "WF", Sleeper)
    clock.scheduled.clear()
    async with second:
        inst = await second.binding("WF").get("s")
        await timer_set_for(clock, T0 + HOUR)  # the original end, not a new hour
        clock.advance(40 * 60)
        st = await wait_status(inst, "complete", "errored")
        assert len(await history(second, inst, "attempt_started", "before-1")) == 1
    assert st.output == ["b", "a"]
    assert step_row(st, "nap")["end"] == T0 + HOUR


async def test_s19_sleep_past_its_end_after_restart_returns_at_once(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    first = make_engine()
    register(first, "WF", Sleeper)
    async with first:
        inst = await first.binding("WF").create(id="s")
        await wait_status(inst, "waiting")
    clock.advance(2 * HOUR)  # while no engine runs
    second = make_engine()
    register(second, "WF", Sleeper)
    async with second:
        inst = await second.binding("WF").get("s")
        st = await wait_status(inst, "complete", "errored")
    assert st.output == ["b", "a"]
    assert step_row(st, "nap")["end"] == T0 + 2 * HOUR


class SleepsUntil(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        start = event.timestamp
        await step.sleep_until("epoch", start.timestamp() + self.env["offset"])
        await step.sleep_until("aware", start + timedelta(seconds=2 * self.env["offset"]))
        try:
            await step.sleep_until("past", start - timedelta(seconds=1))
        except WorkflowError as error:
            return error_to_dict(error)
        return "no error"


async def test_s19_sleep_until(run_engine: RunEngine, clock: RecordingClock) -> None:
    async with run_engine({"WF": SleepsUntil}, env={"offset": HOUR}) as engine:
        inst = await engine.binding("WF").create()
        await wait_status(inst, "waiting")
        await timer_set_for(clock, T0 + HOUR)
        clock.advance(HOUR)
        await wait_until(inst, lambda st: step_row(st, "epoch")["state"] == "complete")
        await timer_set_for(clock, T0 + 2 * HOUR)
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
    assert st.status == "complete"
    assert st.output["name"] == "WorkflowError"
    assert step_row(st, "aware")["end"] == T0 + 2 * HOUR


async def test_s19_sleep_until_target_is_pinned_at_first_execution(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    first = make_engine()
    register(first, "WF", SleepsUntil, env={"offset": HOUR})
    async with first:
        inst = await first.binding("WF").create(id="u")
        await wait_status(inst, "waiting")
    second = make_engine()
    register(second, "WF", SleepsUntil, env={"offset": 10 * HOUR})  # the code now asks later
    async with second:
        inst = await second.binding("WF").get("u")
        clock.advance(HOUR)
        st = await wait_until(inst, lambda st: step_row(st, "epoch")["state"] == "complete")
    assert step_row(st, "epoch")["end"] == T0 + HOUR


class LongestSleep(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.sleep("year", "365 days")
        return "awake"


async def test_s19_sleep_of_365_days_is_allowed(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": LongestSleep}) as engine:
        inst = await engine.binding("WF").create()
        await wait_status(inst, "waiting")
        await timer_set_for(clock, T0 + 365 * DAY)
        clock.advance(365 * DAY)
        st = await wait_status(inst, "complete", "errored")
    assert st.output == "awake"


# --- S20 -----------------------------------------------------------------------------------


class Journey(WorkflowEntrypoint):
    """Every kind of wait: a sleep, an event, a retry."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        doubled = await step.do("double", lambda: event.payload["x"] * 2)
        await step.sleep("nap", "2 hours")
        approval = await step.wait_for_event("approval", type="approved", timeout="1 day")

        def flaky(ctx: StepContext) -> int:
            if ctx.attempt == 1:
                raise ValueError("first attempt fails")
            return ctx.attempt

        retried = await step.do("flaky", flaky, retries={"limit": 1, "delay": "2 hours"})
        return {
            "doubled": doubled,
            "approval": approval.payload,
            "at": approval.timestamp.timestamp(),
            "retried": retried,
        }


async def _journey(
    make_engine: MakeEngine, register: Register, tmp_path: Path, hibernate_after: float
) -> tuple[InstanceStatus, list[str], list[str]]:
    clock = RecordingClock(T0)
    db = tmp_path / f"hibernate-{hibernate_after}.db"
    engine = make_engine(store=f"sqlite:///{db}", clock=clock, hibernate_after=hibernate_after)
    register(engine, "WF", Journey)
    statuses = []
    async with engine:
        inst = await engine.binding("WF").create(id="journey", params={"x": 21})
        statuses.append((await wait_status(inst, "waiting")).status)
        clock.advance(2 * HOUR)
        st = await wait_until(inst, lambda st: has_step(st, "approval") and st.status == "waiting")
        statuses.append(st.status)
        clock.advance(HOUR)
        await inst.send_event(type="approved", payload={"by": "ada"})
        st = await wait_until(
            inst, lambda st: st.status == "waiting" and attempts(st, "flaky") == 1
        )
        statuses.append(st.status)
        clock.advance(2 * HOUR)
        st = await wait_status(inst, "complete", "errored")
        kinds = [r["kind"] for r in await history(engine, inst)]
    return st, statuses, kinds


async def test_s20_results_identical_with_and_without_hibernation(
    make_engine: MakeEngine, register: Register, tmp_path: Path
) -> None:
    small, small_statuses, small_kinds = await _journey(make_engine, register, tmp_path, 1.0)
    large, large_statuses, large_kinds = await _journey(make_engine, register, tmp_path, 1e9)
    assert small.status == large.status == "complete"
    assert (
        small.output
        == large.output
        == {
            "doubled": 42,
            "approval": {"by": "ada"},
            "at": T0 + 3 * HOUR,
            "retried": 2,
        }
    )
    assert small.steps == large.steps
    assert small_statuses == large_statuses == ["waiting", "waiting", "waiting"]
    # small threshold: dropped from memory at each long wait; large: never
    assert small_kinds.count("hibernated") >= 3
    assert "hibernated" not in large_kinds


class SleepRules(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        results: list[Any] = []
        await step.sleep("zero", 0)
        results.append("zero ok")
        for duration in ("1second", -5, "5 fortnights"):
            try:
                await step.sleep("bad", duration)
                results.append("slept")
            except WorkflowError as error:
                results.append(error_to_dict(error)["name"])
        far = event.timestamp + timedelta(days=400)
        try:
            await step.sleep_until("far", far)
            results.append("slept")
        except WorkflowError as error:
            results.append(error_to_dict(error)["name"])
        return results


async def test_s19_sleep_rules(run_engine: RunEngine) -> None:
    async with run_engine({"WF": SleepRules}) as engine:
        inst = await engine.binding("WF").create()
        st = await wait_status(inst, "complete", "errored")
    assert st.status == "complete"
    errors = ("WorkflowError", "WorkflowFatalError")
    assert st.output[0] == "zero ok"
    assert all(name in errors for name in st.output[1:])
    assert [r["name"] for r in st.steps] == ["zero"]


async def test_s20_default_threshold_is_60_seconds(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": Sleeper}) as engine:  # hibernate_after left at its default
        wf = engine.binding("WF")
        short = await wf.create(params={"duration": 30})
        long = await wf.create(params={"duration": 120})
        await wait_status(short, "waiting")
        await wait_status(long, "waiting")
        await wait_record(engine, long, "hibernated")
        clock.advance(30)
        assert (await wait_status(short, "complete")).output == ["b", "a"]
        assert await history(engine, short, "hibernated") == []
        clock.advance(90)
        assert (await wait_status(long, "complete")).output == ["b", "a"]


class ParallelWaits(WorkflowEntrypoint):
    """Branches waiting at once: a sleep, an event and a retry, joined by ``gather``."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def flaky(ctx: StepContext) -> int:
            if ctx.attempt == 1:
                raise ValueError("first attempt fails")
            return ctx.attempt

        async def nap() -> str:
            await step.sleep("nap", "2 hours")
            return "slept"

        async def approval() -> Any:
            got = await step.wait_for_event("approval", type="approved", timeout="1 day")
            return got.payload

        async def retried() -> Any:
            return await step.do("flaky", flaky, retries={"limit": 1, "delay": "3 hours"})

        results = await gather(nap(), approval(), retried())
        return {"results": results, "after": await step.do("after", lambda: "after")}


async def _parallel(
    make_engine: MakeEngine, register: Register, tmp_path: Path, hibernate_after: float
) -> tuple[InstanceStatus, list[str]]:
    clock = RecordingClock(T0)
    db = tmp_path / f"parallel-{hibernate_after}.db"
    engine = make_engine(store=f"sqlite:///{db}", clock=clock, hibernate_after=hibernate_after)
    register(engine, "WF", ParallelWaits)
    async with engine:
        inst = await engine.binding("WF").create(id="parallel")
        await wait_until(
            inst,
            lambda st: (
                st.status == "waiting"
                and has_step(st, "approval")
                and has_step(st, "nap")
                and attempts(st, "flaky") == 1
            ),
        )
        clock.advance(2 * HOUR)
        await wait_until(inst, lambda st: step_row(st, "nap")["state"] == "complete")
        await inst.send_event(type="approved", payload="yes")
        await wait_until(inst, lambda st: step_row(st, "approval")["state"] == "complete")
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
        kinds = [r["kind"] for r in await history(engine, inst)]
    return st, kinds


@pytest.mark.not_wasm(reason=SEQUENTIAL_GATHER)
async def test_s20_parallel_waits_identical_with_and_without_hibernation(
    make_engine: MakeEngine, register: Register, tmp_path: Path
) -> None:
    small, small_kinds = await _parallel(make_engine, register, tmp_path, 1.0)
    large, large_kinds = await _parallel(make_engine, register, tmp_path, 1e9)
    assert small.status == large.status == "complete"
    assert small.output == large.output == {"results": ["slept", "yes", 2], "after": "after"}
    assert small.steps == large.steps
    assert "hibernated" in small_kinds
    assert "hibernated" not in large_kinds
