"""The host side of the step protocol treats every request as untrusted: a malformed
request gets a typed ``raise`` decision (or fails only its own instance), never a crash,
and the engine goes on serving others."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anyio

from dynamic_workflows.runtime import ManualClock, Workflows
from dynamic_workflows.sdk import Decision, WorkflowEntrypoint, WorkflowEvent, WorkflowStep


def shown(decision: Decision) -> str:
    error = decision.get("error")
    return f"{decision['action']}:{error['name'] if error else ''}"


class Hostile(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        ops: Any = step.ops
        out: dict[str, str] = {}
        out["control_char_name"] = shown(await ops.do_begin("a\x00b", 1, {}))
        out["long_name"] = shown(await ops.do_begin("x" * 300, 1, {}))
        out["name_not_str"] = shown(await ops.do_begin(["a"], 1, {}))
        out["zero_count"] = shown(await ops.do_begin("a", 0, {}))
        out["bool_count"] = shown(await ops.do_begin("a", True, {}))
        out["config_shape"] = shown(await ops.do_begin("a", 1, {"retries": "lots"}))
        out["config_nan"] = shown(await ops.do_begin("a", 1, {"timeout": math.nan}))
        out["end_without_begin"] = shown(await ops.do_end("never", 1, 1, {"value": 1}))
        begun = await ops.do_begin("m", 1, {"retries": {"limit": 0}})
        out["begin"] = shown(begun)
        out["again_while_in_flight"] = shown(await ops.do_begin("m", 1, {}))
        out["wrong_attempt"] = shown(await ops.do_end("m", 1, 2, {"value": 1}))
        out["two_outcomes"] = shown(
            await ops.do_end("m", 1, 1, {"value": 1, "error": {"name": "E", "message": ""}})
        )
        out["replayed_failure"] = shown(await ops.do_begin("m", 1, {}))
        await ops.do_begin("big", 1, {"retries": {"limit": 0}})
        huge = {"name": "E" * 5000, "message": "m" * 200_000}
        failed = await ops.do_end("big", 1, 1, {"error": huge, "retryable": "yes"})
        out["retryable_not_bool"] = shown(failed)
        await ops.do_begin("bounded", 1, {"retries": {"limit": 0}})
        bounded = await ops.do_end("bounded", 1, 1, {"error": huge})
        out["bounded_error_sizes"] = (
            f"{len(bounded['error']['name'])},{len(bounded['error']['message'])}"
        )
        out["sleep_both"] = shown(await ops.sleep("s", 1, 1.0, 2.0))
        out["sleep_neither"] = shown(await ops.sleep("s", 1, None, None))
        out["sleep_nan"] = shown(await ops.sleep("s", 1, math.nan, None))
        out["sleep_too_long"] = shown(await ops.sleep("s", 1, 400 * 86400.0, None))
        out["event_bad_type"] = shown(await ops.wait_for_event("e", 1, "bad type", 1.0))
        out["event_bad_timeout"] = shown(await ops.wait_for_event("e", 1, "t", -1))
        return out


class NotJSONValue(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        ops: Any = step.ops
        await ops.do_begin("v", 1, {})
        return await ops.do_end("v", 1, 1, {"value": {"x": math.nan}})


class Fine(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return await step.do("ok", lambda: "still serving")


async def test_malformed_requests_get_typed_errors(tmp_path: Path) -> None:
    engine = Workflows(f"sqlite:///{tmp_path / 's.db'}", clock=ManualClock(), durability="os")
    engine.register("HOSTILE", Hostile)
    engine.register("NOTJSON", NotJSONValue)
    engine.register("FINE", Fine)
    async with engine:
        hostile = await engine.binding("HOSTILE").create()
        not_json = await engine.binding("NOTJSON").create()
        fine = await engine.binding("FINE").create()
        with anyio.fail_after(20):  # hang guard only
            st = await hostile.wait_for_status("complete", "errored")
            bad = await not_json.wait_for_status("complete", "errored")
            ok = await fine.wait_for_status("complete", "errored")
    assert st.status == "complete", st.error
    assert st.output == {
        "control_char_name": "raise:WorkflowFatalError",
        "long_name": "raise:WorkflowFatalError",
        "name_not_str": "raise:WorkflowFatalError",
        "zero_count": "raise:WorkflowError",
        "bool_count": "raise:WorkflowError",
        "config_shape": "raise:WorkflowFatalError",
        "config_nan": "raise:WorkflowFatalError",
        "end_without_begin": "raise:WorkflowError",
        "begin": "attempt:",
        "again_while_in_flight": "raise:WorkflowError",
        "wrong_attempt": "raise:WorkflowError",
        "two_outcomes": "raise:WorkflowInternalError",
        "replayed_failure": "raise:WorkflowInternalError",
        "retryable_not_bool": "raise:WorkflowInternalError",
        "bounded_error_sizes": "256,65536",
        "sleep_both": "raise:WorkflowError",
        "sleep_neither": "raise:WorkflowError",
        "sleep_nan": "raise:WorkflowError",
        "sleep_too_long": "raise:WorkflowError",
        "event_bad_type": "raise:WorkflowError",
        "event_bad_timeout": "raise:WorkflowError",
    }
    assert bad.status == "errored"
    assert bad.error is not None
    assert bad.error["name"] == "WorkflowFatalError"
    assert "not serialisable" in bad.error["message"]
    assert (ok.status, ok.output) == ("complete", "still serving")


class LateSleeper(WorkflowEntrypoint):
    """Drives the ops as a remote runner would (not through this process's step), with the
    second branch's op arriving late, after the first branch alone went idle."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        import asyncio

        ops: Any = step.ops

        async def late() -> Decision:
            await asyncio.sleep(0.2)  # channel latency: later than the hibernation grace
            decision: Decision = await ops.sleep("late", 1, 2 * 3600.0, None)
            return decision

        first, second = await asyncio.gather(ops.wait_for_event("w", 1, "go", 86400.0), late())
        return [first["action"], second["action"]]


async def test_a_sleep_asked_while_hibernating_is_recorded_with_its_own_timer(
    tmp_path: Path,
) -> None:
    clock = ManualClock(1_700_000_000.0)
    engine = Workflows(f"sqlite:///{tmp_path / 's.db'}", clock=clock, durability="os")
    engine.register("LATE", LateSleeper)
    async with engine:
        inst = await engine.binding("LATE").create()
        with anyio.fail_after(20):  # hang guard only
            # a long wait shows "waiting" only through its hibernation's record
            st = await inst.wait_for_status("waiting")
        log = await engine.history(inst.uid)
    started = {r["step"]: r for r in log if r["kind"] in ("sleep_started", "wait_started")}
    assert set(started) == {"w-1", "late-1"}
    assert started["late-1"]["data"]["until"] == 1_700_000_000.0 + 2 * 3600  # pinned when asked
    hibernated = [r for r in log if r["kind"] == "hibernated"]
    assert hibernated[-1]["data"]["until"] == 1_700_000_000.0 + 2 * 3600  # the earlier timer
    assert st.status == "waiting"
