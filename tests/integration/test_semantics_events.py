"""Events through the public API: S21–S23."""

from __future__ import annotations

from typing import Any

import pytest

from dynamic_workflows.sdk import (
    WorkflowEntrypoint,
    WorkflowError,
    WorkflowEvent,
    WorkflowStep,
    WorkflowTimeoutError,
    error_to_dict,
    gather,
)

from .conftest import (
    T0,
    MakeEngine,
    RecordingClock,
    Register,
    RunEngine,
    has_step,
    step_row,
    timer_set_for,
    wait_record,
    wait_status,
    wait_until,
)

HOUR = 3600.0

SEQUENTIAL_GATHER = (
    "sdk.gather runs branches in call order in wasm (no event loop): "
    "two waits are never pending at once"
)


def _waiting_on(name: str, count: int = 1) -> Any:
    def check(st: Any) -> bool:
        return has_step(st, name, count) and step_row(st, name, count)["state"] == "waiting"

    return check


# --- S21 -----------------------------------------------------------------------------------


class Approval(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        try:
            got = await step.wait_for_event("approval", type="approved", timeout="1 hour")
            result: Any = {
                "payload": got.payload,
                "type": got.type,
                "at": got.timestamp.timestamp(),
                "aware": got.timestamp.tzinfo is not None,
            }
        except WorkflowTimeoutError as error:
            result = {"timed_out": error_to_dict(error)["name"]}
        await step.sleep("after", "1 hour")  # the replay after it reads the wait's record
        return result


async def test_s21_event_received_persisted_and_replayed(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": Approval}, hibernate_after=1.0) as engine:
        inst = await engine.binding("WF").create()
        await wait_until(inst, _waiting_on("approval"))
        await wait_record(engine, inst, "hibernated")
        clock.advance(60)
        await inst.send_event(type="approved", payload={"by": "ada", "n": [1, 2]})
        await wait_until(inst, _waiting_on("after"))
        await wait_record(engine, inst, "hibernated", count=2)
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
    expected = {"payload": {"by": "ada", "n": [1, 2]}, "type": "approved", "at": T0 + 60}
    assert st.output == {**expected, "aware": True}
    assert step_row(st, "approval")["kind"] == "event"
    assert step_row(st, "approval")["state"] == "complete"


async def test_s21_timeout_is_persisted_and_catchable(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": Approval}, hibernate_after=1.0) as engine:
        inst = await engine.binding("WF").create()
        await wait_until(inst, _waiting_on("approval"))
        await timer_set_for(clock, T0 + HOUR)
        await wait_record(engine, inst, "hibernated")
        clock.advance(HOUR)
        await wait_until(inst, _waiting_on("after"))
        await wait_record(engine, inst, "hibernated", count=2)
        await inst.send_event(type="approved", payload="too late")  # taken by no one
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
    assert st.output == {"timed_out": "WorkflowTimeoutError"}
    assert step_row(st, "approval")["state"] == "errored"
    assert step_row(st, "approval")["error"]["name"] == "WorkflowTimeoutError"


class UncaughtWait(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.wait_for_event("approval", type="approved", timeout="1 hour")
        return "approved"


async def test_s21_uncaught_timeout_errors_the_instance(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": UncaughtWait}) as engine:
        inst = await engine.binding("WF").create()
        await wait_until(inst, _waiting_on("approval"))
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
    assert st.status == "errored"
    assert st.error is not None
    assert st.error["name"] == "WorkflowTimeoutError"


async def test_s21_deadline_is_durable_across_restart(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    first = make_engine()
    register(first, "WF", Approval)
    async with first:
        inst = await first.binding("WF").create(id="w")
        await wait_until(inst, _waiting_on("approval"))
    clock.advance(2 * HOUR)  # past the deadline while no engine runs
    second = make_engine()
    register(second, "WF", Approval)
    async with second:
        inst = await second.binding("WF").get("w")
        st = await wait_until(inst, _waiting_on("after"))
        assert step_row(st, "approval")["error"]["name"] == "WorkflowTimeoutError"
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
    assert st.output == {"timed_out": "WorkflowTimeoutError"}


async def test_s21_wait_survives_restart_and_gets_the_event(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    first = make_engine()
    register(first, "WF", Approval)
    async with first:
        inst = await first.binding("WF").create(id="w")
        await wait_until(inst, _waiting_on("approval"))
    clock.advance(30 * 60)
    second = make_engine()
    register(second, "WF", Approval)
    async with second:
        inst = await second.binding("WF").get("w")
        await inst.send_event(type="approved", payload=1)
        await wait_until(inst, _waiting_on("after"))
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
    assert st.output == {"payload": 1, "type": "approved", "at": T0 + 30 * 60, "aware": True}


# --- S22 -----------------------------------------------------------------------------------


class Buffered(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        if event.payload.get("sleep_first"):
            await step.sleep("first", "1 hour")
        got = []
        for _ in range(event.payload["t"]):
            got.append((await step.wait_for_event("t", type="t", timeout="1 hour")).payload)
        for _ in range(event.payload["other"]):
            got.append((await step.wait_for_event("o", type="other", timeout="1 hour")).payload)
        return got


async def test_s22_events_buffered_per_type_fifo(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": Buffered}) as engine:
        inst = await engine.binding("WF").create(params={"sleep_first": True, "t": 3, "other": 1})
        await wait_status(inst, "waiting")
        for type_, payload in [("t", 1), ("other", "x"), ("t", 2), ("t", 3)]:
            await inst.send_event(type=type_, payload=payload)
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
    assert st.output == [1, 2, 3, "x"]


async def test_s22_event_sent_right_after_create_is_buffered(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Buffered}) as engine:
        inst = await engine.binding("WF").create(params={"t": 1, "other": 0})
        await inst.send_event(type="t", payload="early")
        st = await wait_status(inst, "complete", "errored")
    assert st.output == ["early"]


class TwoWaiters(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        async def wait(timeout: str) -> Any:
            try:
                return (await step.wait_for_event("w", type="t", timeout=timeout)).payload
            except WorkflowTimeoutError as error:
                return error_to_dict(error)["name"]

        return await gather(wait(event.payload["first"]), wait(event.payload["second"]))


@pytest.mark.not_wasm(reason=SEQUENTIAL_GATHER)
async def test_s22_each_event_goes_to_the_oldest_waiter(run_engine: RunEngine) -> None:
    async with run_engine({"WF": TwoWaiters}) as engine:
        inst = await engine.binding("WF").create(params={"first": "1 day", "second": "1 day"})
        await wait_until(inst, lambda st: _waiting_on("w", 1)(st) and _waiting_on("w", 2)(st))
        await inst.send_event(type="t", payload="p1")
        await wait_until(inst, lambda st: step_row(st, "w", 1)["state"] == "complete")
        await inst.send_event(type="t", payload="p2")
        st = await wait_status(inst, "complete", "errored")
    assert st.output == ["p1", "p2"]


@pytest.mark.not_wasm(reason=SEQUENTIAL_GATHER)
async def test_s22_a_timed_out_waiter_takes_no_later_event(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": TwoWaiters}) as engine:
        inst = await engine.binding("WF").create(params={"first": "1 hour", "second": "1 day"})
        await wait_until(inst, lambda st: _waiting_on("w", 1)(st) and _waiting_on("w", 2)(st))
        clock.advance(HOUR)
        await wait_until(inst, lambda st: step_row(st, "w", 1)["state"] == "errored")
        await inst.send_event(type="t", payload="late")
        st = await wait_status(inst, "complete", "errored")
    assert st.output == ["WorkflowTimeoutError", "late"]


# --- S23 -----------------------------------------------------------------------------------


async def test_s23_event_type_and_payload_rules(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": Buffered}) as engine:
        inst = await engine.binding("WF").create(params={"sleep_first": True, "t": 0, "other": 2})
        await wait_status(inst, "waiting")
        for bad in ["", "-start", "has space", "dot.ted", "é", "x" * 101]:
            with pytest.raises(WorkflowError):
                await inst.send_event(type=bad, payload=1)
        with pytest.raises(WorkflowError):
            await inst.send_event(type="other", payload="x" * (1 << 20))
        with pytest.raises(WorkflowError):
            await inst.send_event(type="other", payload={"set": {1, 2}})
        await inst.send_event(type="other", payload="small")
        for good in ["x" * 100, "a-b_c", "_", "9", "A-"]:
            await inst.send_event(type=good, payload="valid type")
        await inst.send_event(type="other", payload="x" * ((1 << 20) - 2))
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
    # the rejected sends left nothing in the buffer
    assert st.output == ["small", "x" * ((1 << 20) - 2)]


async def test_s23_send_event_wakes_a_hibernating_instance(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": UncaughtWait}, hibernate_after=1.0) as engine:
        inst = await engine.binding("WF").create()
        await wait_until(inst, _waiting_on("approval"))
        await wait_record(engine, inst, "hibernated")
        await inst.send_event(type="approved", payload=None)
        st = await wait_status(inst, "complete", "errored")
    assert st.output == "approved"


class Quick(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        if event.payload.get("fail"):
            raise ValueError("failed")
        if event.payload.get("wait"):
            await step.wait_for_event("w", type="t")
        return "done"


async def test_s23_send_event_to_a_finished_instance_is_an_error(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Quick}) as engine:
        wf = engine.binding("WF")
        done = await wf.create(params={})
        failed = await wf.create(params={"fail": True})
        stopped = await wf.create(params={"wait": True})
        await wait_until(stopped, _waiting_on("w"))
        await stopped.terminate()
        assert (await wait_status(done, "complete")).status == "complete"
        assert (await wait_status(failed, "errored")).status == "errored"
        for inst in (done, failed, stopped):
            with pytest.raises(WorkflowError):
                await inst.send_event(type="t", payload=1)


# --- more S21, S22 ---------------------------------------------------------------------------


class DefaultTimeout(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        try:
            await step.wait_for_event("bad", type="not a type")
        except WorkflowError as error:
            bad = error_to_dict(error)["name"]
        try:
            await step.wait_for_event("w", type="t")
        except WorkflowTimeoutError as error:
            return {"bad": bad, "timeout": error_to_dict(error)["name"]}
        return "no timeout"


async def test_s21_default_timeout_is_24_hours_and_type_is_checked(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": DefaultTimeout}) as engine:
        inst = await engine.binding("WF").create()
        await wait_until(inst, _waiting_on("w"))
        await timer_set_for(clock, T0 + 24 * HOUR)
        clock.advance(24 * HOUR)
        st = await wait_status(inst, "complete", "errored")
    assert st.output == {"bad": "WorkflowError", "timeout": "WorkflowTimeoutError"}
    assert step_row(st, "w")["end"] == T0 + 24 * HOUR


async def test_s22_buffer_is_durable_across_restart(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    first = make_engine()
    register(first, "WF", Buffered)
    async with first:
        inst = await first.binding("WF").create(
            id="b", params={"sleep_first": True, "t": 2, "other": 1}
        )
        await wait_status(inst, "waiting")
        for type_, payload in [("other", "o"), ("t", "one"), ("t", "two")]:
            await inst.send_event(type=type_, payload=payload)
    second = make_engine()
    register(second, "WF", Buffered)
    async with second:
        inst = await second.binding("WF").get("b")
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
    assert st.output == ["one", "two", "o"]
