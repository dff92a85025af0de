"""Retries and timeouts through the public API: S12–S18."""

from __future__ import annotations

import asyncio
import copy
import itertools
from typing import Any

import pytest

from dynamic_workflows.sdk import (
    NonRetryableError,
    StepContext,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
    error_to_dict,
)

from .conftest import (
    RecordingClock,
    RunEngine,
    drive_retries,
    has_step,
    history,
    step_row,
    wait_record,
    wait_status,
    wait_until,
)

# --- S12 -----------------------------------------------------------------------------------

NEEDS_EVENT_LOOP = (
    "a callback that awaits forever needs an event loop in the guest; wasm has none and "
    "bounds a callback by its CPU and wall limits instead (docs/wasm.md)"
)


class SucceedsOnThird(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def third(ctx: StepContext) -> int:
            if ctx.attempt < 3:
                raise ValueError(f"attempt {ctx.attempt}")
            return ctx.attempt

        return await step.do("s", third, retries={"limit": event.payload["limit"], "delay": 0})


async def test_s12_attempts_numbered_from_1_total_limit_plus_one(run_engine: RunEngine) -> None:
    async with run_engine({"WF": SucceedsOnThird}) as engine:
        wf = engine.binding("WF")
        enough = await wf.create(params={"limit": 2})
        short = await wf.create(params={"limit": 1})
        st_enough = await wait_status(enough, "complete", "errored")
        st_short = await wait_status(short, "complete", "errored")
        started = await history(engine, enough, "attempt_started", "s-1")
    assert st_enough.status == "complete"
    assert st_enough.output == 3
    assert step_row(st_enough, "s")["attempts"] == 3
    assert len(started) == 3
    assert st_short.status == "errored"
    assert st_short.error == {"name": "ValueError", "message": "attempt 2"}
    assert step_row(st_short, "s")["attempts"] == 2


# --- S13 -----------------------------------------------------------------------------------


class Backoff(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def fail(ctx: StepContext) -> None:
            raise ValueError(f"attempt {ctx.attempt}")

        retries = {"limit": 3, "delay": "10 seconds", "backoff": event.payload["backoff"]}
        return await step.do("b", fail, retries=retries)


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        ("constant", [10, 10, 10]),
        ("linear", [10, 20, 30]),
        ("exponential", [10, 20, 40]),
    ],
)
async def test_s13_backoff_without_jitter(
    run_engine: RunEngine, clock: RecordingClock, backoff: str, delays: list[float]
) -> None:
    async with run_engine({"WF": Backoff}) as engine:
        inst = await engine.binding("WF").create(params={"backoff": backoff})
        st = await drive_retries(inst, clock, "b", delays)
        started = await history(engine, inst, "attempt_started", "b-1")
    assert st.status == "errored"
    assert st.error == {"name": "ValueError", "message": "attempt 4"}
    # each attempt started exactly when its timer was due
    times = [r["ts"] for r in started]
    assert [b - a for a, b in itertools.pairwise(times)] == delays


# --- S14 -----------------------------------------------------------------------------------


class DynamicDelay(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        mode = event.payload["mode"]

        def fail(ctx: StepContext) -> None:
            raise ValueError(f"attempt {ctx.attempt}")

        async def delay(ctx: StepContext, error: Exception) -> Any:
            if mode == "raise":
                raise RuntimeError(f"no delay for {error}")
            if mode == "slow":
                await asyncio.Event().wait()
            if mode == "invalid":
                return "5 fortnights"
            return f"{ctx.attempt * 5} seconds"

        try:
            await step.do(
                "d", fail, retries={"limit": 3, "delay": delay, "backoff": event.payload["backoff"]}
            )
        except Exception as error:
            return error_to_dict(error)
        return "unreachable"


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [("constant", [5, 10, 15]), ("linear", [5, 20, 45]), ("exponential", [5, 20, 60])],
)
async def test_s14_dynamic_delay_is_the_base(
    run_engine: RunEngine, clock: RecordingClock, backoff: str, delays: list[float]
) -> None:
    async with run_engine({"WF": DynamicDelay}) as engine:
        inst = await engine.binding("WF").create(params={"mode": "ok", "backoff": backoff})
        st = await drive_retries(inst, clock, "d", delays)
    assert st.status == "complete"
    assert st.output == {"name": "ValueError", "message": "attempt 4"}


async def test_s14_delay_function_raising(run_engine: RunEngine) -> None:
    async with run_engine({"WF": DynamicDelay}) as engine:
        inst = await engine.binding("WF").create(params={"mode": "raise", "backoff": "constant"})
        st = await wait_status(inst, "complete", "errored")
    assert st.output == {
        "name": "NonRetryableDelayError",
        "message": 'The delay function for step "d-1" threw an error: no delay for attempt 1',
    }
    assert step_row(st, "d")["attempts"] == 1


async def test_s14_delay_function_invalid_value(run_engine: RunEngine) -> None:
    async with run_engine({"WF": DynamicDelay}) as engine:
        inst = await engine.binding("WF").create(params={"mode": "invalid", "backoff": "constant"})
        st = await wait_status(inst, "complete", "errored")
    assert st.output["name"] == "NonRetryableDelayError"
    assert st.output["message"].startswith(
        'The delay function for step "d-1" returned an invalid delay value'
    )


@pytest.mark.not_wasm(reason=NEEDS_EVENT_LOOP)
async def test_s14_delay_function_too_slow(run_engine: RunEngine) -> None:
    # the function never returns; the 5 s bound is the sdk's own, so allow it real time
    async with run_engine({"WF": DynamicDelay}) as engine:
        inst = await engine.binding("WF").create(params={"mode": "slow", "backoff": "constant"})
        st = await wait_status(inst, "complete", "errored", timeout=60)
    assert st.output == {
        "name": "NonRetryableDelayError",
        "message": 'The delay function for step "d-1" did not return within 5 seconds',
    }


# --- S15 -----------------------------------------------------------------------------------


class Refuses(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def refuse() -> None:
            raise NonRetryableError("card declined")

        if event.payload["catch"]:
            try:
                await step.do("pay", refuse)
            except NonRetryableError as error:
                return {"caught": error_to_dict(error)}
        return await step.do("pay", refuse)


async def test_s15_non_retryable_error(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Refuses}) as engine:
        wf = engine.binding("WF")
        caught = await wf.create(params={"catch": True})
        escaped = await wf.create(params={"catch": False})
        st_caught = await wait_status(caught, "complete", "errored")
        st_escaped = await wait_status(escaped, "complete", "errored")
    assert st_caught.output == {"caught": {"name": "NonRetryableError", "message": "card declined"}}
    assert step_row(st_caught, "pay")["attempts"] == 1
    assert st_escaped.status == "errored"
    assert st_escaped.error == {"name": "NonRetryableError", "message": "card declined"}
    assert step_row(st_escaped, "pay")["attempts"] == 1


# --- S16 -----------------------------------------------------------------------------------


class Exhausts(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def fail(ctx: StepContext) -> None:
            raise KeyError(f"missing {ctx.attempt}")

        try:
            await step.do("e", fail, retries={"limit": 1, "delay": 0})
        except Exception as error:
            caught = error_to_dict(error)
        await step.sleep("nap", "1 hour")  # the replay after it re-raises from the journal
        if event.payload["rethrow"]:
            await step.do("e", fail, retries={"limit": 1, "delay": 0})
        return caught


async def test_s16_exhaustion_persists_the_final_error(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": Exhausts}, hibernate_after=1.0) as engine:
        wf = engine.binding("WF")
        kept = await wf.create(params={"rethrow": False})
        # not just "waiting": the retry of delay 0 may show as waiting for a moment
        await wait_until(
            kept, lambda st: has_step(st, "nap") and step_row(st, "nap")["state"] == "waiting"
        )
        await wait_record(engine, kept, "hibernated")
        clock.advance(3600)
        st = await wait_status(kept, "complete", "errored")
        started = await history(engine, kept, "attempt_started", "e-1")
    assert st.status == "complete"
    assert st.output == {"name": "KeyError", "message": "'missing 2'"}
    assert len(started) == 2
    assert step_row(st, "e")["state"] == "errored"
    assert step_row(st, "e")["error"] == {"name": "KeyError", "message": "'missing 2'"}


class ExhaustsUncaught(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def fail(ctx: StepContext) -> None:
            raise KeyError(f"missing {ctx.attempt}")

        return await step.do("e", fail, retries={"limit": 2, "delay": 0})


async def test_s16_uncaught_exhaustion_errors_the_instance(run_engine: RunEngine) -> None:
    async with run_engine({"WF": ExhaustsUncaught}) as engine:
        inst = await engine.binding("WF").create()
        st = await wait_status(inst, "complete", "errored")
    assert st.status == "errored"
    assert st.error == {"name": "KeyError", "message": "'missing 3'"}


# --- S17 -----------------------------------------------------------------------------------


class TimesOut(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        async def hang(ctx: StepContext) -> str:
            if ctx.attempt <= event.payload["hang"]:
                await asyncio.Event().wait()  # never set: only the timeout ends it
            return f"attempt {ctx.attempt}"

        try:
            return await step.do("t", hang, timeout="100 ms", retries={"limit": 1, "delay": 0})
        except Exception as error:
            return error_to_dict(error)


@pytest.mark.not_wasm(reason=NEEDS_EVENT_LOOP)
async def test_s17_timeout_fails_the_attempt_and_is_retryable(run_engine: RunEngine) -> None:
    async with run_engine({"WF": TimesOut}) as engine:
        wf = engine.binding("WF")
        once = await wf.create(params={"hang": 1})
        always = await wf.create(params={"hang": 2})
        st_once = await wait_status(once, "complete", "errored")
        st_always = await wait_status(always, "complete", "errored")
        failed = await history(engine, once, "attempt_failed", "t-1")
    timeout_error = {"name": "WorkflowTimeoutError", "message": "Execution timed out after 100ms"}
    assert st_once.output == "attempt 2"
    assert [r["data"]["error"] for r in failed] == [timeout_error]
    assert st_always.output == timeout_error
    assert step_row(st_always, "t")["attempts"] == 2


# --- S18 -----------------------------------------------------------------------------------


class Context(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def delay(ctx: StepContext, error: Exception) -> float:
            return 0

        def inspect(ctx: StepContext) -> dict[str, Any]:
            seen = {
                "name": ctx.step.name,
                "count": ctx.step.count,
                "attempt": ctx.attempt,
                "config": copy.deepcopy(ctx.config),
            }
            ctx.config["retries"]["limit"] = 0  # changes nothing
            ctx.config["timeout"] = 0.001
            if ctx.attempt < 3:
                raise ValueError("again")
            return seen

        await step.do("ctx", lambda: "first occurrence")
        return await step.do(
            "ctx",
            inspect,
            retries={"limit": 4, "delay": delay, "backoff": "linear"},
            timeout="1 minute",
        )


async def test_s18_step_context(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Context}) as engine:
        inst = await engine.binding("WF").create()
        st = await wait_status(inst, "complete", "errored")
    assert st.status == "complete"
    assert st.output == {
        "name": "ctx",
        "count": 2,
        "attempt": 3,
        "config": {"retries": {"limit": 4, "backoff": "linear"}, "timeout": 60},
    }
