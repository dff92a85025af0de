"""Instances through the public API: S24–S35."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import anyio
import pytest

from dynamic_workflows.runtime import InstanceStatus
from dynamic_workflows.sdk import (
    InstanceNotFoundError,
    StepContext,
    WorkflowEntrypoint,
    WorkflowError,
    WorkflowEvent,
    WorkflowStep,
    error_to_dict,
    gather,
)

from .conftest import (
    HANG_GUARD,
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
MIB = 1 << 20
INVALID_ID = "Workflow instance has invalid id"
CANNOT_TERMINATE = (
    "(instance.cannot_terminate) Cannot terminate instance since its on a finite state"
)

# In-process gates: a callback of a GATED workflow waits until the test opens the gate
# named by its instance id. Shared Python state, so those tests are inprocess_only.
GATES: dict[str, asyncio.Event] = {}

NEEDS_EVENT_LOOP = (
    "a callback that awaits forever needs an event loop in the guest; wasm has none and "
    "bounds a callback by its CPU and wall limits instead (docs/wasm.md)"
)


def gate(instance_id: str) -> asyncio.Event:
    return GATES.setdefault(instance_id, asyncio.Event())


def new_gate(instance_id: str) -> asyncio.Event:
    """A closed gate for this test (the suite runs again on other stores and backends in the
    same process, so a gate left open by an earlier run must not leak in)."""
    GATES[instance_id] = asyncio.Event()
    return GATES[instance_id]


def _waiting_on(name: str, count: int = 1) -> Any:
    def check(st: InstanceStatus) -> bool:
        return has_step(st, name, count) and step_row(st, name, count)["state"] == "waiting"

    return check


def _running(name: str) -> Any:
    def check(st: InstanceStatus) -> bool:
        return has_step(st, name) and step_row(st, name)["state"] == "running"

    return check


class Gated(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        async def held(ctx: StepContext) -> str:
            await GATES[event.instance_id].wait()
            return f"held {ctx.attempt}"

        first = await step.do("held", held, retries={"limit": 2, "delay": 0})
        second = await step.do("next", lambda: "next")
        return [first, second]


class Sleeper(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        token = await step.do("token", lambda: uuid.uuid4().hex)
        await step.sleep("nap", "1 hour")
        after = await step.do("after", lambda: "after")
        return {"token": token, "after": after, "params": event.payload}


class Hangs(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        async def forever() -> None:
            await asyncio.Event().wait()

        await step.do("forever", forever)
        return await step.do("after", lambda: "after")


class WaitsForEvent(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        got = await step.wait_for_event("approval", type="approved", timeout="1 hour")
        return await step.do("after", lambda: got.payload)


class Echo(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return event.payload


# --- S24 -----------------------------------------------------------------------------------


class EventInfo(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return {
            "payload": event.payload,
            "aware": event.timestamp.tzinfo is not None,
            "ts": event.timestamp.timestamp(),
            "instance_id": event.instance_id,
            "workflow_name": event.workflow_name,
        }


async def test_s24_run_event(run_engine: RunEngine) -> None:
    async with run_engine({"Orders": EventInfo}) as engine:
        wf = engine.binding("Orders")
        bare = await wf.create(id="bare")
        full = await wf.create(id="full", params={"a": [1, {"b": None}]})
        st_bare = await wait_status(bare, "complete", "errored")
        st_full = await wait_status(full, "complete", "errored")
    assert st_bare.output == {
        "payload": {},
        "aware": True,
        "ts": T0,
        "instance_id": "bare",
        "workflow_name": "Orders",
    }
    assert st_bare.created == T0
    assert st_full.output["payload"] == {"a": [1, {"b": None}]}
    assert st_full.output["instance_id"] == "full"


class EventAfterReplay(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.sleep("nap", "1 hour")
        return {
            "ts": event.timestamp.timestamp(),
            "payload": event.payload,
            "id": event.instance_id,
        }


async def test_s24_event_is_the_same_in_every_replay(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": EventAfterReplay}, hibernate_after=1.0) as engine:
        inst = await engine.binding("WF").create(id="e", params={"k": "v"})
        await wait_record(engine, inst, "hibernated")
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
    assert st.output == {"ts": T0, "payload": {"k": "v"}, "id": "e"}


# --- S25 -----------------------------------------------------------------------------------


@pytest.mark.not_wasm(reason=NEEDS_EVENT_LOOP)
async def test_s25_create_returns_at_once_with_a_uuid4(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Hangs}) as engine:
        inst = await engine.binding("WF").create()
        first = await inst.status()
        assert uuid.UUID(inst.id).version == 4
        assert first.status in ("queued", "running")
        st = await wait_until(inst, _running("forever"))
        assert st.status == "running"


@pytest.mark.parametrize("bad", ["", "x" * 101, "-lead", "has space", "a/b", "é", "a.b", 7])
async def test_s25_invalid_ids(run_engine: RunEngine, bad: Any) -> None:
    async with run_engine({"WF": Echo}) as engine:
        with pytest.raises(WorkflowError) as info:
            await engine.binding("WF").create(id=bad)
        assert str(info.value) == INVALID_ID
        assert await engine.count_instances() == 0


async def test_s25_valid_ids_and_duplicates(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Echo}) as engine:
        wf = engine.binding("WF")
        for good in ["a", "x" * 100, "_a-b_c", "A1", "0"]:
            inst = await wf.create(id=good, params={"id": good})
            assert inst.id == good
            assert (await wait_status(inst, "complete")).output == {"id": good}
        with pytest.raises(WorkflowError) as info:
            await wf.create(id="a", params={"other": True})
        assert info.value.name == "WorkflowError"
        assert (await (await wf.get("a")).status()).output == {"id": "a"}


@pytest.mark.parametrize(
    "params", [{"blob": "x" * MIB}, {"s": {1, 2}}, {"f": float("nan")}, {1: "int key"}]
)
async def test_s25_invalid_params_write_nothing(run_engine: RunEngine, params: Any) -> None:
    async with run_engine({"WF": Echo}) as engine:
        wf = engine.binding("WF")
        with pytest.raises(WorkflowError):
            await wf.create(id="p", params=params)
        with pytest.raises(InstanceNotFoundError):
            await wf.get("p")
        assert await engine.count_instances() == 0
        ok = await wf.create(id="p", params={"fine": True})
        assert (await wait_status(ok, "complete")).output == {"fine": True}


# --- S26 -----------------------------------------------------------------------------------


async def test_s26_create_batch(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Echo}) as engine:
        wf = engine.binding("WF")
        await wf.create(id="taken", params="first")
        handles = await wf.create_batch(
            [
                {"id": "b1", "params": 1},
                {"id": "taken", "params": "second"},
                {"params": 3},
                {"id": "b4"},
            ]
        )
        assert len(handles) == 3
        assert handles[0].id == "b1"
        assert uuid.UUID(handles[1].id).version == 4
        assert handles[2].id == "b4"
        outputs = [(await wait_status(h, "complete")).output for h in handles]
        assert outputs == [1, 3, {}]
        assert (await wait_status(await wf.get("taken"), "complete")).output == "first"
        # idempotent: the same batch again creates nothing
        assert await wf.create_batch([{"id": "b1"}, {"id": "b4"}]) == []


async def test_s26_batch_rules(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Echo}) as engine:
        wf = engine.binding("WF")
        with pytest.raises(WorkflowError) as info:
            await wf.create_batch([])
        assert str(info.value) == "batchCreate should have at least 1 instance"
        with pytest.raises(WorkflowError) as info:
            await wf.create_batch([{"id": f"i{i}"} for i in range(101)])
        assert "100" in str(info.value)
        with pytest.raises(WorkflowError) as info:
            await wf.create_batch([{"id": "ok1"}, {"id": "bad id"}])
        assert str(info.value) == INVALID_ID
        with pytest.raises(WorkflowError):
            await wf.create_batch([{"id": "ok2"}, {"id": "big", "params": "x" * MIB}])
        assert await engine.count_instances() == 0  # nothing half-written
        handles = await wf.create_batch([{"id": f"i{i}"} for i in range(100)])
        assert [h.id for h in handles] == [f"i{i}" for i in range(100)]


# --- S27 -----------------------------------------------------------------------------------


async def test_s27_get(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Echo, "Other": Echo}) as engine:
        wf = engine.binding("WF")
        await wf.create(id="known", params="k")
        got = await wf.get("known")
        assert got.id == "known"
        assert (await wait_status(got, "complete")).output == "k"
        for unknown in ("unknown", "bad id"):
            with pytest.raises(InstanceNotFoundError) as info:
                await wf.get(unknown)
            assert "instance.not_found" in str(info.value)
        with pytest.raises(InstanceNotFoundError):
            await engine.binding("Other").get("known")
        with pytest.raises(WorkflowError):
            engine.binding("Nope")


# --- S28 -----------------------------------------------------------------------------------


class Timeline(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        loaded = await step.do("load", lambda: {"n": 1})
        await step.sleep("nap", "1 hour")
        got = await step.wait_for_event("approval", type="approved", timeout="1 hour")
        if event.payload.get("fail"):
            raise ValueError("after the event")
        return {"loaded": loaded, "event": got.payload}


async def test_s28_status_and_timeline(run_engine: RunEngine, clock: RecordingClock) -> None:
    async with run_engine({"WF": Timeline}) as engine:
        wf = engine.binding("WF")
        inst = await wf.create(id="t")
        # "waiting" once every branch waits (SPEC-5: on isolates a little after the record)
        st = await wait_until(inst, lambda st: st.status == "waiting" and _waiting_on("nap")(st))
        assert (st.status, st.output, st.error) == ("waiting", None, None)
        assert st.id == "t"
        assert st.workflow == "WF"
        load = step_row(st, "load")
        assert load == {
            "name": "load",
            "count": 1,
            "kind": "do",
            "state": "complete",
            "attempts": 1,
            "start": T0,
            "end": T0,
            "output": {"n": 1},
            "error": None,
        }
        clock.advance(HOUR)
        await wait_until(inst, _waiting_on("approval"))
        clock.advance(60)
        await inst.send_event(type="approved", payload="yes")
        st = await wait_status(inst, "complete", "errored")
        failing = await wf.create(id="f", params={"fail": True})
        await wait_until(failing, _waiting_on("nap"))
        clock.advance(HOUR)
        await wait_until(failing, _waiting_on("approval"))
        await failing.send_event(type="approved", payload="yes")
        st_failed = await wait_status(failing, "complete", "errored")
    assert (st.status, st.error) == ("complete", None)
    assert st.output == {"loaded": {"n": 1}, "event": "yes"}
    assert [(r["name"], r["kind"], r["state"]) for r in st.steps] == [
        ("load", "do", "complete"),
        ("nap", "sleep", "complete"),
        ("approval", "event", "complete"),
    ]
    nap = step_row(st, "nap")
    assert (nap["start"], nap["end"]) == (T0, T0 + HOUR)
    assert step_row(st, "approval")["output"]["payload"] == "yes"
    assert (st_failed.status, st_failed.output) == ("errored", None)
    assert st_failed.error == {"name": "ValueError", "message": "after the event"}


# --- S29 -----------------------------------------------------------------------------------


class Fails(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        raise RuntimeError("boom")


@pytest.mark.not_wasm(reason=NEEDS_EVENT_LOOP)
async def test_s29_status_strings(run_engine: RunEngine, clock: RecordingClock) -> None:
    async with run_engine({"Sleep": Sleeper, "Hang": Hangs, "Fail": Fails}) as engine:
        sleeping = await engine.binding("Sleep").create()
        hanging = await engine.binding("Hang").create()
        failing = await engine.binding("Fail").create()
        assert (await wait_status(sleeping, "waiting")).status == "waiting"
        assert (await wait_until(hanging, _running("forever"))).status == "running"
        assert (await wait_status(failing, "errored")).error == {
            "name": "RuntimeError",
            "message": "boom",
        }
        await sleeping.pause()
        assert (await sleeping.status()).status == "paused"
        await sleeping.resume()
        assert (await sleeping.status()).status in ("running", "waiting")
        await hanging.terminate()
        assert (await hanging.status()).status == "terminated"
        clock.advance(HOUR)
        assert (await wait_status(sleeping, "complete")).status == "complete"


# --- S30 -----------------------------------------------------------------------------------


async def test_s30_pause_with_nothing_in_flight_freezes_timers(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": Sleeper}) as engine:
        inst = await engine.binding("WF").create()
        await wait_status(inst, "waiting")
        await inst.pause()
        assert (await inst.status()).status == "paused"
        clock.advance(DAY)  # the sleep's end passes while paused
        assert (await inst.status()).status == "paused"
        assert not has_step(await inst.status(), "after")
        await inst.resume()
        await wait_status(inst, "waiting")
        await timer_set_for(clock, T0 + DAY + HOUR)
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
    assert st.output["after"] == "after"
    assert step_row(st, "nap")["end"] == T0 + DAY + HOUR


@pytest.mark.inprocess_only
async def test_s30_pause_waits_for_callbacks_in_flight(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Gated}) as engine:
        new_gate("g1")
        inst = await engine.binding("WF").create(id="g1")
        await wait_until(inst, _running("held"))
        await inst.pause()  # returns without waiting for the callback
        assert (await inst.status()).status == "waitingForPause"
        gate("g1").set()
        st = await wait_status(inst, "paused")
        assert step_row(st, "held")["state"] == "complete"
        assert step_row(st, "held")["output"] == "held 1"
        assert not has_step(st, "next")  # no new step starts while pausing
        await inst.resume()
        st = await wait_status(inst, "complete", "errored")
        assert len(await history(engine, inst, "attempt_started", "held-1")) == 1
    assert st.output == ["held 1", "next"]


async def test_s30_paused_stays_paused_across_restart(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    first = make_engine()
    register(first, "WF", Sleeper)
    async with first:
        inst = await first.binding("WF").create(id="p")
        await wait_status(inst, "waiting")
        await inst.pause()
        assert (await inst.status()).status == "paused"
    clock.advance(DAY)
    second = make_engine()
    register(second, "WF", Sleeper)
    async with second:
        inst = await second.binding("WF").get("p")
        assert (await inst.status()).status == "paused"
        clock.advance(DAY)
        assert (await inst.status()).status == "paused"
        await inst.resume()
        await wait_status(inst, "waiting")
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
    assert st.output["after"] == "after"
    assert step_row(st, "nap")["end"] == T0 + 2 * DAY + HOUR


@pytest.mark.inprocess_only
async def test_s30_waiting_for_pause_found_at_start_becomes_paused(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    first = make_engine()
    register(first, "WF", Gated)
    async with first:
        new_gate("g2")
        inst = await first.binding("WF").create(id="g2")
        await wait_until(inst, _running("held"))
        await inst.pause()
        assert (await inst.status()).status == "waitingForPause"
    second = make_engine()
    register(second, "WF", Gated)
    async with second:
        inst = await second.binding("WF").get("g2")
        assert (await wait_status(inst, "paused", "waitingForPause")).status == "paused"
        gate("g2").set()
        await inst.resume()
        st = await wait_status(inst, "complete", "errored")
    assert st.status == "complete"
    assert st.output == ["held 2", "next"]  # the attempt lost with the engine was retried


async def test_s30_pause_on_a_finished_instance_changes_nothing(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Echo}) as engine:
        inst = await engine.binding("WF").create(params="x")
        await wait_status(inst, "complete")
        with contextlib.suppress(WorkflowError):
            await inst.pause()
        st = await inst.status()
        assert (st.status, st.output) == ("complete", "x")


# --- S31 -----------------------------------------------------------------------------------


@pytest.mark.inprocess_only
async def test_s31_resume_from_waiting_for_pause_cancels_the_pause(
    run_engine: RunEngine,
) -> None:
    async with run_engine({"WF": Gated}) as engine:
        new_gate("g3")
        inst = await engine.binding("WF").create(id="g3")
        await wait_until(inst, _running("held"))
        await inst.pause()
        assert (await inst.status()).status == "waitingForPause"
        await inst.resume()
        assert (await inst.status()).status == "running"
        gate("g3").set()
        st = await wait_status(inst, "complete", "errored")
        kinds = [r["kind"] for r in await history(engine, inst)]
    assert st.output == ["held 1", "next"]
    assert "paused" not in kinds


async def test_s31_resume_shifts_the_sleep_end(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": Sleeper}) as engine:
        inst = await engine.binding("WF").create()
        await wait_status(inst, "waiting")
        clock.advance(30 * 60)
        await inst.pause()
        clock.advance(5 * HOUR)
        await inst.resume()
        await timer_set_for(clock, T0 + 6 * HOUR)
        clock.advance(30 * 60)
        st = await wait_status(inst, "complete", "errored")
    assert step_row(st, "nap")["end"] == T0 + 6 * HOUR


class RetriesHourly(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def once(ctx: StepContext) -> int:
            if ctx.attempt == 1:
                raise ValueError("first")
            return ctx.attempt

        return await step.do("r", once, retries={"limit": 1, "delay": "1 hour"})


async def test_s31_resume_shifts_the_retry_time(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": RetriesHourly}) as engine:
        inst = await engine.binding("WF").create()
        await wait_until(inst, lambda st: st.status == "waiting" and attempts(st, "r") == 1)
        await inst.pause()
        assert (await inst.status()).status == "paused"
        clock.advance(10 * HOUR)
        await inst.resume()
        await timer_set_for(clock, T0 + 11 * HOUR)
        clock.advance(HOUR)
        st = await wait_status(inst, "complete", "errored")
        started = await history(engine, inst, "attempt_started", "r-1")
    assert st.output == 2
    assert [r["ts"] for r in started] == [T0, T0 + 11 * HOUR]


async def test_s31_resume_shifts_the_event_deadline(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": WaitsForEvent}) as engine:
        inst = await engine.binding("WF").create()
        await wait_until(inst, _waiting_on("approval"))
        clock.advance(30 * 60)
        await inst.pause()
        clock.advance(10 * HOUR)
        await inst.resume()
        await timer_set_for(clock, T0 + 11 * HOUR)
        clock.advance(20 * 60)
        await inst.send_event(type="approved", payload="in time")
        st = await wait_status(inst, "complete", "errored")
    assert st.output == "in time"


async def test_s31_resume_otherwise_is_a_no_op(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": Sleeper}) as engine:
        inst = await engine.binding("WF").create()
        await wait_status(inst, "waiting")
        await inst.resume()
        assert (await inst.status()).status == "waiting"
        clock.advance(HOUR)
        st = await wait_status(inst, "complete")
        await inst.resume()
        assert (await inst.status()).output == st.output


# --- S32 -----------------------------------------------------------------------------------


async def test_s32_terminate_while_waiting_for_an_event(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": WaitsForEvent}) as engine:
        inst = await engine.binding("WF").create()
        await wait_until(inst, _waiting_on("approval"))
        await inst.terminate()
        assert (await inst.status()).status == "terminated"
        with pytest.raises(WorkflowError):
            await inst.send_event(type="approved", payload="too late")
        clock.advance(2 * HOUR)
        st = await inst.status()
        assert await history(engine, inst, "terminated")
    assert (st.status, st.output, st.error) == ("terminated", None, None)
    assert not has_step(st, "after")


@pytest.mark.not_wasm(reason=NEEDS_EVENT_LOOP)
async def test_s32_terminate_while_a_callback_runs_and_while_sleeping(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"Hang": Hangs, "Sleep": Sleeper}) as engine:
        hanging = await engine.binding("Hang").create()
        sleeping = await engine.binding("Sleep").create()
        await wait_until(hanging, _running("forever"))
        await wait_status(sleeping, "waiting")
        await hanging.terminate()
        await sleeping.terminate()
        assert (await hanging.status()).status == "terminated"
        assert (await sleeping.status()).status == "terminated"
        clock.advance(2 * HOUR)
        await wait_record(engine, sleeping, "terminated")
        for inst in (hanging, sleeping):
            st = await inst.status()
            assert st.status == "terminated"
            assert not has_step(st, "after")
            with pytest.raises(WorkflowError) as info:
                await inst.terminate()
            assert str(info.value) == CANNOT_TERMINATE


async def test_s32_terminate_a_finished_instance(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Echo, "Fail": Fails}) as engine:
        done = await engine.binding("WF").create(params=1)
        failed = await engine.binding("Fail").create()
        await wait_status(done, "complete")
        await wait_status(failed, "errored")
        for inst in (done, failed):
            with pytest.raises(WorkflowError) as info:
                await inst.terminate()
            assert str(info.value) == CANNOT_TERMINATE
        assert (await done.status()).status == "complete"
        assert (await failed.status()).status == "errored"


# --- S33 -----------------------------------------------------------------------------------


async def test_s33_restart_a_complete_instance(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": Sleeper}) as engine:
        inst = await engine.binding("WF").create(id="r", params={"p": 1})
        await wait_status(inst, "waiting")
        clock.advance(HOUR)
        before = await wait_status(inst, "complete")
        await inst.restart()
        st = await inst.status()
        assert st.status == "running"
        assert st.output is None
        assert await history(engine, inst, "restarted")
        waiting = await wait_status(inst, "waiting")
        clock.advance(HOUR)
        after = await wait_status(inst, "complete")
    assert after.output["params"] == {"p": 1}
    assert after.output["token"] != before.output["token"]  # the step ran again
    assert [r["name"] for r in waiting.steps] == ["token", "nap"]
    assert step_row(after, "nap")["start"] == T0 + HOUR


async def test_s33_restart_while_sleeping_starts_over(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": Sleeper}) as engine:
        inst = await engine.binding("WF").create()
        first = await wait_status(inst, "waiting")
        clock.advance(30 * 60)
        await inst.restart()
        assert (await inst.status()).status == "running"
        second = await wait_until(
            inst,
            lambda st: (
                st.status == "waiting"
                and step_row(st, "token")["output"] != step_row(first, "token")["output"]
            ),
        )
        assert step_row(second, "nap")["start"] == T0 + 30 * 60
        await timer_set_for(clock, T0 + 90 * 60)
        clock.advance(30 * 60)  # the old sleep's end: it no longer counts
        clock.advance(30 * 60)
        st = await wait_status(inst, "complete", "errored")
    assert step_row(st, "nap")["end"] == T0 + 90 * 60


async def test_s33_restart_discards_event_records(run_engine: RunEngine) -> None:
    async with run_engine({"WF": WaitsForEvent, "Fail": Fails}) as engine:
        inst = await engine.binding("WF").create()
        await wait_until(inst, _waiting_on("approval"))
        await inst.send_event(type="approved", payload="first")
        assert (await wait_status(inst, "complete")).output == "first"
        await inst.restart()
        await wait_until(inst, _waiting_on("approval"))
        await inst.send_event(type="approved", payload="second")
        assert (await wait_status(inst, "complete")).output == "second"
        failed = await engine.binding("Fail").create()
        await wait_status(failed, "errored")
        await failed.restart()
        assert (await wait_status(failed, "errored")).error == {
            "name": "RuntimeError",
            "message": "boom",
        }
        assert len(await history(engine, failed, "restarted")) == 1


async def test_s33_restart_a_terminated_instance(run_engine: RunEngine) -> None:
    async with run_engine({"WF": WaitsForEvent}) as engine:
        inst = await engine.binding("WF").create()
        await wait_until(inst, _waiting_on("approval"))
        await inst.terminate()
        await inst.restart()
        assert (await inst.status()).status == "running"
        await wait_until(inst, _waiting_on("approval"))
        await inst.send_event(type="approved", payload="again")
        assert (await wait_status(inst, "complete")).output == "again"


# --- S34 -----------------------------------------------------------------------------------


@pytest.mark.not_wasm(reason=NEEDS_EVENT_LOOP)
async def test_s34_delete(run_engine: RunEngine, clock: RecordingClock) -> None:
    async with run_engine({"WF": Sleeper, "Hang": Hangs, "Echo": Echo}) as engine:
        done = await engine.binding("Echo").create(id="done", params=1)
        sleeping = await engine.binding("WF").create(id="sleeping")
        hanging = await engine.binding("Hang").create(id="hanging")
        await wait_status(done, "complete")
        await wait_status(sleeping, "waiting")
        await wait_until(hanging, _running("forever"))
        for inst, name in ((done, "Echo"), (sleeping, "WF"), (hanging, "Hang")):
            await inst.delete()
            with pytest.raises(InstanceNotFoundError):
                await engine.binding(name).get(inst.id)
        clock.advance(2 * HOUR)  # the deleted sleeper's timer does not bring it back
        assert await engine.count_instances() == 0
        with pytest.raises(InstanceNotFoundError):
            await engine.binding("WF").get("sleeping")


# --- S35 -----------------------------------------------------------------------------------


class LongSleep(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        try:
            await step.sleep("long", event.payload["duration"])
        except WorkflowError as error:
            return error_to_dict(error)
        return "slept"


async def test_s35_default_limits(run_engine: RunEngine) -> None:
    async with run_engine({"WF": LongSleep, "Echo": Echo}) as engine:
        wf = engine.binding("WF")
        too_long = await wf.create(params={"duration": "366 days"})
        st = await wait_status(too_long, "complete", "errored")
        assert st.output is not None
        assert st.output["name"] in ("WorkflowError", "WorkflowFatalError")
        assert "365" in st.output["message"] or str(365 * 86400) in st.output["message"]
        assert not has_step(st, "long")
        echo = engine.binding("Echo")
        with pytest.raises(WorkflowError) as info:
            await echo.create(id="big", params="x" * MIB)
        assert any(s in str(info.value) for s in ("1MiB", str(MIB), "1 MiB"))
        with pytest.raises(WorkflowError) as info:
            await echo.create(id="x" * 101)
        assert str(info.value) == INVALID_ID
        with pytest.raises(WorkflowError) as info:
            await echo.create_batch([{} for _ in range(101)])
        assert "100" in str(info.value)
        assert await engine.count_instances(workflow="Echo") == 0


class UsesLimits(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        results: list[Any] = []
        for name, size in event.payload["steps"]:
            try:
                value = await step.do(
                    name, lambda n=size: "y" * n, retries={"limit": 0, "delay": 0}
                )
                results.append(len(value))
            except WorkflowError as error:
                results.append(error_to_dict(error))
        try:
            await step.sleep("sleep", event.payload["sleep"])
            results.append("slept")
        except WorkflowError as error:
            results.append(error_to_dict(error)["name"])
        got = await step.wait_for_event("w", type="t", timeout="30 minutes")
        results.append(got.payload)
        return results


async def test_s35_configured_limits(run_engine: RunEngine) -> None:
    settings: dict[str, Any] = {
        "max_payload_bytes": 1000,
        "max_step_name": 8,
        "max_id_length": 5,
        "max_batch": 2,
        "max_sleep_seconds": HOUR,
    }
    async with run_engine({"WF": UsesLimits}, **settings) as engine:
        wf = engine.binding("WF")
        with pytest.raises(WorkflowError) as info:
            await wf.create(id="abcdef")
        assert str(info.value) == INVALID_ID
        with pytest.raises(WorkflowError):
            await wf.create(id="big", params={"steps": [], "sleep": 1, "pad": "x" * 1000})
        with pytest.raises(WorkflowError):
            await wf.create_batch([{"id": "a"}, {"id": "b"}, {"id": "c"}])
        assert await engine.count_instances() == 0
        steps = [["12345678", 10], ["123456789", 10], ["out", 1000]]
        inst = await wf.create(id="ok", params={"steps": steps, "sleep": "2 hours"})
        await wait_until(inst, _waiting_on("w"))
        with pytest.raises(WorkflowError):
            await inst.send_event(type="abcdef", payload=None)
        with pytest.raises(WorkflowError):
            await inst.send_event(type="t", payload="z" * 1000)
        await inst.send_event(type="t", payload="small")
        st = await wait_status(inst, "complete", "errored")
    assert st.status == "complete"
    fits, bad_name, too_big, slept, got = st.output
    assert fits == 10
    assert bad_name == {
        "name": "WorkflowFatalError",
        "message": 'Step name "123456789" exceeds max length (8 chars) or invalid characters found',
    }
    assert too_big["name"] == "WorkflowInternalError"
    assert too_big["message"].startswith("Step out-1 output is too large.")
    assert slept in ("WorkflowError", "WorkflowFatalError")
    assert got == "small"


# --- more S29–S34: transitions from every state ------------------------------------------


async def test_s29_wait_for_status(run_engine: RunEngine, clock: RecordingClock) -> None:
    async with run_engine({"WF": Sleeper}) as engine:
        inst = await engine.binding("WF").create()
        with anyio.fail_after(HANG_GUARD):
            assert (await inst.wait_for_status("waiting")).status == "waiting"
        clock.advance(HOUR)
        with anyio.fail_after(HANG_GUARD):
            st = await inst.wait_for_status("complete", "errored", "terminated")
    assert st.status == "complete"
    assert st.output is not None
    assert st.output["after"] == "after"


async def test_s30_event_sent_while_paused_is_delivered_after_resume(
    run_engine: RunEngine,
) -> None:
    async with run_engine({"WF": WaitsForEvent}) as engine:
        inst = await engine.binding("WF").create()
        await wait_until(inst, _waiting_on("approval"))
        await inst.pause()
        assert (await inst.status()).status == "paused"
        await inst.send_event(type="approved", payload="while paused")
        assert (await inst.status()).status == "paused"
        assert not has_step(await inst.status(), "after")
        await inst.resume()
        st = await wait_status(inst, "complete", "errored")
    assert st.output == "while paused"


async def test_s30_pause_right_after_create(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Echo}) as engine:
        inst = await engine.binding("WF").create(params="p")
        await inst.pause()
        st = await inst.status()
        # the run may have finished before the pause arrived; otherwise it is held
        assert st.status in ("paused", "waitingForPause", "complete")
        if st.status != "complete":
            st = await wait_status(inst, "paused")
            await inst.resume()
            st = await wait_status(inst, "complete", "errored")
    assert st.output == "p"


async def test_s32_terminate_a_paused_instance(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": Sleeper}) as engine:
        inst = await engine.binding("WF").create()
        await wait_status(inst, "waiting")
        await inst.pause()
        await inst.terminate()
        assert (await inst.status()).status == "terminated"
        await inst.resume()  # a no-op on a terminal instance
        clock.advance(2 * HOUR)
        st = await inst.status()
    assert st.status == "terminated"
    assert not has_step(st, "after")


@pytest.mark.inprocess_only
async def test_s32_terminate_while_waiting_for_pause(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Gated}) as engine:
        new_gate("g4")
        inst = await engine.binding("WF").create(id="g4")
        await wait_until(inst, _running("held"))
        await inst.pause()
        assert (await inst.status()).status == "waitingForPause"
        await inst.terminate()
        assert (await inst.status()).status == "terminated"
        gate("g4").set()  # the callback was stopped: nothing it returns is recorded
        await wait_record(engine, inst, "terminated")
        st = await inst.status()
    assert st.status == "terminated"
    assert step_row(st, "held")["state"] != "complete"
    assert not has_step(st, "next")


@pytest.mark.not_wasm(reason=NEEDS_EVENT_LOOP)
async def test_s33_restart_a_paused_instance_and_one_in_flight(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Sleeper, "Hang": Hangs}) as engine:
        paused = await engine.binding("WF").create()
        await wait_status(paused, "waiting")
        await paused.pause()
        await paused.restart()
        assert (await paused.status()).status == "running"
        await wait_until(paused, _waiting_on("nap"))
        hanging = await engine.binding("Hang").create()
        await wait_until(hanging, _running("forever"))
        await hanging.restart()
        assert (await hanging.status()).status == "running"
        await wait_until(hanging, _running("forever"))
        started = await history(engine, hanging, "attempt_started", "forever-1")
    assert len(started) == 2  # once per run from scratch


async def test_s34_delete_a_paused_instance(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Sleeper}) as engine:
        inst = await engine.binding("WF").create(id="d")
        await wait_status(inst, "waiting")
        await inst.pause()
        await inst.delete()
        with pytest.raises(InstanceNotFoundError):
            await engine.binding("WF").get("d")
        assert await engine.count_instances() == 0


# --- more S25/S26/S35 ----------------------------------------------------------------------


async def test_s25_params_none_means_empty_dict_and_exactly_1_mib_is_allowed(
    run_engine: RunEngine,
) -> None:
    async with run_engine({"WF": Echo}) as engine:
        wf = engine.binding("WF")
        none = await wf.create(params=None)
        assert (await wait_status(none, "complete")).output == {}
        exact = {"p": "x" * (MIB - len('{"p":""}'))}
        inst = await wf.create(id="exact", params=exact)
        assert (await wait_status(inst, "complete")).output == exact
        with pytest.raises(WorkflowError):
            await wf.create(id="over", params={"p": "x" * (MIB - len('{"p":""}') + 1)})


async def test_s26_duplicate_ids_within_one_batch(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Echo}) as engine:
        handles = await engine.binding("WF").create_batch(
            [{"id": "d", "params": 1}, {"id": "d", "params": 2}, {"id": "e", "params": 3}]
        )
        assert [h.id for h in handles] == ["d", "e"]
        assert (await wait_status(handles[0], "complete")).output == 1
        assert await engine.count_instances() == 2


async def test_s25_ids_are_unique_per_workflow(run_engine: RunEngine) -> None:
    async with run_engine({"A": Echo, "B": Echo}) as engine:
        a = await engine.binding("A").create(id="same", params="a")
        b = await engine.binding("B").create(id="same", params="b")
        assert (await wait_status(a, "complete")).output == "a"
        assert (await wait_status(b, "complete")).output == "b"
        assert (await (await engine.binding("B").get("same")).status()).output == "b"


async def test_s34_a_deleted_id_can_be_used_again(run_engine: RunEngine) -> None:
    async with run_engine({"WF": Echo}) as engine:
        wf = engine.binding("WF")
        first = await wf.create(id="again", params=1)
        await wait_status(first, "complete")
        await first.delete()
        second = await wf.create(id="again", params=2)
        st = await wait_status(second, "complete")
    assert st.output == 2
    assert [r["name"] for r in st.steps] == []


async def test_s32_terminate_during_a_retry_wait(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": RetriesHourly}) as engine:
        inst = await engine.binding("WF").create()
        await wait_until(inst, lambda st: st.status == "waiting" and attempts(st, "r") == 1)
        await inst.terminate()
        clock.advance(2 * HOUR)  # the retry time passes
        await wait_record(engine, inst, "terminated")
        st = await inst.status()
        started = await history(engine, inst, "attempt_started", "r-1")
    assert st.status == "terminated"
    assert len(started) == 1


class TwoGated(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        async def held(ctx: StepContext) -> str:
            await GATES[f"{event.instance_id}-{ctx.step.count}"].wait()
            return f"held {ctx.step.count}"

        both = await gather(step.do("held", held), step.do("held", held))
        return [*both, await step.do("next", lambda: "next")]


@pytest.mark.inprocess_only
async def test_s30_pause_waits_for_every_callback_in_flight(run_engine: RunEngine) -> None:
    async with run_engine({"WF": TwoGated}) as engine:
        new_gate("two-1")
        new_gate("two-2")
        inst = await engine.binding("WF").create(id="two")
        await wait_until(
            inst,
            lambda st: has_step(st, "held", 2) and step_row(st, "held", 2)["state"] == "running",
        )
        await inst.pause()
        assert (await inst.status()).status == "waitingForPause"
        gate("two-2").set()
        st = await wait_until(inst, lambda st: step_row(st, "held", 2)["state"] == "complete")
        assert st.status == "waitingForPause"
        gate("two-1").set()
        st = await wait_status(inst, "paused")
        assert [step_row(st, "held", c)["state"] for c in (1, 2)] == ["complete", "complete"]
        assert not has_step(st, "next")
        await inst.resume()
        st = await wait_status(inst, "complete", "errored")
    assert st.output == ["held 1", "held 2", "next"]
