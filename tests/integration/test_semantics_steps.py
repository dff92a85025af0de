"""step.do through the public API: S1–S11."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import anyio
import pytest

from dynamic_workflows.sdk import (
    StepContext,
    WorkflowEntrypoint,
    WorkflowError,
    WorkflowEvent,
    WorkflowFatalError,
    WorkflowInternalError,
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
    drive_retries,
    has_step,
    history,
    step_row,
    timer_set_for,
    wait_record,
    wait_status,
    wait_until,
)

NAME_MSG = 'Step name "{}" exceeds max length (256 chars) or invalid characters found'
CONFIG_MSG = 'Step config for "{}" is in an invalid format'
NO_RETRY: dict[str, Any] = {"limit": 0, "delay": 0}

NEEDS_EVENT_LOOP = (
    "a callback that awaits forever needs an event loop in the guest; wasm has none and "
    "bounds a callback by its CPU and wall limits instead (docs/wasm.md)"
)


# --- S1 ------------------------------------------------------------------------------------


class CallbackForms(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def sync_plain() -> str:
            return "sync"

        def sync_ctx(ctx: StepContext) -> str:
            return f"sync:{ctx.step.name}:{ctx.attempt}"

        async def async_plain() -> str:
            return "async"

        async def async_ctx(ctx: StepContext) -> str:
            return f"async:{ctx.step.count}"

        return [
            await step.do("a", sync_plain),
            await step.do("b", sync_ctx),
            await step.do("c", async_plain),
            await step.do("d", async_ctx),
            await step.do(
                "e",
                lambda: "kw",
                retries={"limit": 1, "delay": "1 second", "backoff": "linear"},
                timeout="1 minute",
                sensitive=None,
            ),
        ]


async def test_s1_sync_async_with_and_without_context(run_engine: RunEngine) -> None:
    async with run_engine({"WF": CallbackForms}) as engine:
        inst = await engine.binding("WF").create()
        st = await wait_status(inst, "complete", "errored")
    assert st.status == "complete"
    assert st.error is None
    assert st.output == ["sync", "sync:b:1", "async", "async:1", "kw"]
    assert [(r["name"], r["kind"], r["state"]) for r in st.steps] == [
        (n, "do", "complete") for n in "abcde"
    ]


# --- S2 ------------------------------------------------------------------------------------


class NameRules(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        caught = []
        for name in event.payload["bad"]:
            try:
                await step.do(name, lambda: "ran")
            except WorkflowFatalError as error:
                caught.append(error_to_dict(error))
        ok = [await step.do(name, lambda: "ok") for name in event.payload["good"]]
        return {"caught": caught, "ok": ok}


class UncaughtBadName(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("first", lambda: 1)
        await step.do("bad\nname", lambda: 2)
        return "unreachable"


async def test_s2_step_names(run_engine: RunEngine) -> None:
    bad = ["x" * 257, "a\nb", "nul\x00", "\x1f"]
    good = ["", "名前 ✓", "x" * 256, "é" * 256, "with space"]
    async with run_engine({"WF": NameRules}) as engine:
        inst = await engine.binding("WF").create(params={"bad": bad, "good": good})
        st = await wait_status(inst, "complete", "errored")
    assert st.status == "complete"
    assert st.output == {
        "caught": [{"name": "WorkflowFatalError", "message": NAME_MSG.format(n)} for n in bad],
        "ok": ["ok"] * 5,
    }
    assert [r["name"] for r in st.steps] == good


async def test_s2_uncaught_invalid_name_errors_the_instance_without_retry(
    run_engine: RunEngine,
) -> None:
    async with run_engine({"WF": UncaughtBadName}) as engine:
        inst = await engine.binding("WF").create()
        st = await wait_status(inst, "complete", "errored")
    assert st.status == "errored"
    assert st.error == {"name": "WorkflowFatalError", "message": NAME_MSG.format("bad\nname")}
    assert [r["name"] for r in st.steps] == ["first"]


# --- S3 ------------------------------------------------------------------------------------


class ConfigRules(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        results = []
        for config in event.payload["configs"]:
            try:
                results.append(await step.do("cfg", lambda: "ran", **config))
            except WorkflowFatalError as error:
                results.append(error_to_dict(error))
        return results


async def test_s3_invalid_configs_are_fatal_with_exact_message(run_engine: RunEngine) -> None:
    bad: list[dict[str, Any]] = [
        {"retries": {"limit": 3}},
        {"retries": {"delay": "1 second"}},
        {"retries": {"limit": 3, "delay": 1, "jitter": True}},
        {"retries": {"limit": -1, "delay": 1}},
        {"retries": {"limit": 3, "delay": "1second"}},
        {"retries": {"limit": 3, "delay": 1, "backoff": "random"}},
        {"timeout": 0},
        {"timeout": "5 fortnights"},
        {"sensitive": "input"},
    ]
    good: list[dict[str, Any]] = [
        {"retries": {"limit": 0, "delay": 0}},
        {"retries": {"limit": 2, "delay": "1 minute", "backoff": "constant"}},
        {"timeout": "30 seconds"},
        {"sensitive": "output"},
    ]
    async with run_engine({"WF": ConfigRules}) as engine:
        inst = await engine.binding("WF").create(params={"configs": bad + good})
        st = await wait_status(inst, "complete", "errored")
    assert st.status == "complete"
    expected_error = {"name": "WorkflowFatalError", "message": CONFIG_MSG.format("cfg")}
    assert st.output == [expected_error] * len(bad) + ["ran"] * len(good)
    # invalid calls take no occurrence and leave no record
    assert [(r["name"], r["count"]) for r in st.steps] == [("cfg", c) for c in (1, 2, 3, 4)]


class ConfigOnReplay(WorkflowEntrypoint):
    """The config comes from ``env``, so a second engine can replay with a broken one."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        try:
            value = await step.do("cfg", lambda: "ran", retries=self.env["retries"])
        except WorkflowFatalError as error:
            return error_to_dict(error)
        await step.sleep("nap", "1 hour")
        return value


@pytest.mark.parametrize("mode", ["warn", "error"])
async def test_s3_config_validated_on_replay(
    make_engine: MakeEngine, register: Register, clock: RecordingClock, mode: str
) -> None:
    # The replay raises the config error into run() although cfg-1 is recorded. The run
    # then never asked for cfg-1, which S36 calls a divergence: with on_divergence="warn"
    # the run's own handling of the S3 error shows; with "error" the divergence wins.
    first = make_engine()
    register(first, "WF", ConfigOnReplay, env={"retries": {"limit": 1, "delay": 1}})
    async with first:
        inst = await first.binding("WF").create(id="replayed")
        await wait_status(inst, "waiting")
    second = make_engine(on_divergence=mode)
    register(second, "WF", ConfigOnReplay, env={"retries": {"limit": 1}})
    async with second:
        inst = await second.binding("WF").get("replayed")
        clock.advance(3600)
        st = await wait_status(inst, "complete", "errored")
    if mode == "warn":
        assert st.status == "complete"
        assert st.output == {"name": "WorkflowFatalError", "message": CONFIG_MSG.format("cfg")}
    else:
        assert st.status == "errored"
        assert st.error is not None
        assert st.error["name"] == "WorkflowNonDeterminismError"
        assert "cfg-1" in st.error["message"]


# --- S4 ------------------------------------------------------------------------------------


class ShowConfig(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        defaults = await step.do("defaults", lambda ctx: ctx.config)
        merged = await step.do(
            "merged", lambda ctx: ctx.config, retries={"limit": 1, "delay": "2 seconds"}
        )
        return {"defaults": defaults, "merged": merged}


async def test_s4_defaults_and_per_key_merge(run_engine: RunEngine) -> None:
    async with run_engine({"WF": ShowConfig}) as engine:
        inst = await engine.binding("WF").create()
        st = await wait_status(inst, "complete", "errored")
    assert st.output == {
        "defaults": {
            "retries": {"limit": 5, "delay": 10, "backoff": "exponential"},
            "timeout": 600,
        },
        "merged": {
            "retries": {"limit": 1, "delay": 2, "backoff": "exponential"},
            "timeout": 600,
        },
    }


class AlwaysFails(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def fail(ctx: StepContext) -> None:
            raise ValueError(f"fail {ctx.attempt}")

        return await step.do("flaky", fail)


async def test_s4_default_retries_six_attempts_exponential_from_10s(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": AlwaysFails}) as engine:
        inst = await engine.binding("WF").create()
        st = await drive_retries(inst, clock, "flaky", [10, 20, 40, 80, 160])
    assert st.status == "errored"
    assert st.error == {"name": "ValueError", "message": "fail 6"}
    assert step_row(st, "flaky")["attempts"] == 6
    assert step_row(st, "flaky")["state"] == "errored"


# --- S5 ------------------------------------------------------------------------------------


class ManySteps(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        out = []
        for i in range(event.payload["steps"]):
            out.append(await step.do(f"s{i}", lambda i=i: i))
            if event.payload["sleep"]:
                await step.sleep(f"nap{i}", "1 hour")
        return out


async def test_s5_step_limit_counts_do_calls_not_sleeps(run_engine: RunEngine) -> None:
    async with run_engine({"WF": ManySteps}, step_limit=3) as engine:
        wf = engine.binding("WF")
        ok = await wf.create(params={"steps": 3, "sleep": False})
        over = await wf.create(params={"steps": 4, "sleep": False})
        st_ok = await wait_status(ok, "complete", "errored")
        st_over = await wait_status(over, "complete", "errored")
    assert st_ok.status == "complete"
    assert st_ok.output == [0, 1, 2]
    assert st_over.status == "errored"
    assert st_over.error is not None
    assert st_over.error["name"] == "WorkflowFatalError"
    assert st_over.error["message"].startswith("The limit of 3 steps has been reached")
    assert not has_step(st_over, "s3")


async def test_s5_cache_hits_count_across_replays(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    # each execution runs one new step after replaying the earlier ones from the journal:
    # the replayed calls count, so the fourth step is over the limit of 3
    async with run_engine({"WF": ManySteps}, step_limit=3, hibernate_after=1.0) as engine:
        wf = engine.binding("WF")
        done = []
        for steps in (3, 4):
            inst = await wf.create(params={"steps": steps, "sleep": True})
            for slept in range(1, 4):
                await wait_record(engine, inst, "hibernated", count=slept)
                clock.advance(3600)
            done.append(await wait_status(inst, "complete", "errored"))
        st_ok, st_over = done
    assert st_ok.status == "complete"
    assert st_ok.output == [0, 1, 2]
    assert st_over.status == "errored"
    assert st_over.error is not None
    assert st_over.error["message"].startswith("The limit of 3 steps has been reached")


# --- S6 ------------------------------------------------------------------------------------


class Occurrences(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        seq = [await step.do("x", lambda: "first"), await step.do("x", lambda: "second")]
        par = await gather(
            step.do("y", lambda ctx: f"p1:{ctx.step.count}"),
            step.do("y", lambda ctx: f"p2:{ctx.step.count}"),
            step.do("y", lambda ctx: f"p3:{ctx.step.count}"),
        )
        await step.sleep("nap", "1 hour")
        return {"seq": seq, "par": par}


async def test_s6_identity_is_name_and_occurrence(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": Occurrences}, hibernate_after=1.0) as engine:
        inst = await engine.binding("WF").create()
        await wait_record(engine, inst, "hibernated")
        clock.advance(3600)
        st = await wait_status(inst, "complete", "errored")
        # the replay after the sleep got every value from the journal: one attempt each
        for key in ("x-1", "x-2", "y-1", "y-2", "y-3"):
            assert len(await history(engine, inst, "attempt_started", key)) == 1
    assert st.output == {"seq": ["first", "second"], "par": ["p1:1", "p2:2", "p3:3"]}
    assert [(r["name"], r["count"], r["output"]) for r in st.steps if r["kind"] == "do"] == [
        ("x", 1, "first"),
        ("x", 2, "second"),
        ("y", 1, "p1:1"),
        ("y", 2, "p2:2"),
        ("y", 3, "p3:3"),
    ]


# --- S7 ------------------------------------------------------------------------------------


class Replayed(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        token = await step.do("token", lambda: uuid.uuid4().hex)
        nothing = await step.do("nothing", lambda: None)
        await step.sleep("nap", "1 hour")
        echo = await step.do("echo", lambda: token)
        return {"token": token, "nothing": nothing, "echo": echo}


async def test_s7_replay_after_hibernation_returns_persisted_results(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": Replayed}, hibernate_after=1.0) as engine:
        inst = await engine.binding("WF").create()
        await wait_record(engine, inst, "hibernated")
        clock.advance(3600)
        st = await wait_status(inst, "complete", "errored")
        assert len(await history(engine, inst, "attempt_started", "token-1")) == 1
        assert len(await history(engine, inst, "attempt_started", "nothing-1")) == 1
    assert st.status == "complete"
    assert st.output["nothing"] is None
    assert st.output["token"] == st.output["echo"] == step_row(st, "token")["output"]


async def test_s7_replay_after_engine_restart(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    first = make_engine()
    register(first, "WF", Replayed)
    async with first:
        inst = await first.binding("WF").create(id="r1")
        before = await wait_status(inst, "waiting")
    token = step_row(before, "token")["output"]
    second = make_engine()
    register(second, "WF", Replayed)
    async with second:
        inst = await second.binding("WF").get("r1")
        clock.advance(3600)
        st = await wait_status(inst, "complete", "errored")
        assert len(await history(second, inst, "attempt_started", "token-1")) == 1
    assert st.output == {"token": token, "nothing": None, "echo": token}


# --- S8 ------------------------------------------------------------------------------------


class HangsOnFirstAttempt(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        before = await step.do("before", lambda: "kept")

        async def slow(ctx: StepContext) -> str:
            if ctx.attempt == 1:
                await asyncio.Event().wait()  # in flight when the engine goes away
            return f"attempt {ctx.attempt}"

        during = await step.do("slow", slow, retries={"limit": 2, "delay": "1 minute"})
        return {"before": before, "during": during}


@pytest.mark.not_wasm(reason=NEEDS_EVENT_LOOP)
async def test_s8_attempt_in_flight_at_shutdown_fails_and_is_retried(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    first = make_engine()
    register(first, "WF", HangsOnFirstAttempt)
    async with first:
        inst = await first.binding("WF").create(id="inflight")
        await wait_until(inst, lambda st: attempts(st, "slow") == 1)
    second = make_engine()
    register(second, "WF", HangsOnFirstAttempt)
    async with second:
        inst = await second.binding("WF").get("inflight")
        st = await drive_retries(inst, clock, "slow", [60])
        failed = await history(second, inst, "attempt_failed", "slow-1")
        assert len(await history(second, inst, "attempt_started", "before-1")) == 1
    assert st.status == "complete"
    assert st.output == {"before": "kept", "during": "attempt 2"}
    assert len(failed) == 1
    assert failed[0]["data"]["error"] == {
        "name": "WorkflowInternalError",
        "message": "Attempt failed due to internal workflows error",
    }


# --- S9 ------------------------------------------------------------------------------------


class PinnedConfig(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def fail(ctx: StepContext) -> None:
            raise ValueError(f"attempt {ctx.attempt} of limit {ctx.config['retries']['limit']}")

        retries = {"limit": self.env["limit"], "delay": "1 hour", "backoff": "constant"}
        return await step.do("pinned", fail, retries=retries)


async def test_s9_config_pinned_at_first_attempt(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    first = make_engine()
    register(first, "WF", PinnedConfig, env={"limit": 3})
    async with first:
        inst = await first.binding("WF").create(id="pinned")
        await wait_until(inst, lambda st: st.status == "waiting" and attempts(st, "pinned") == 1)
    second = make_engine()
    register(second, "WF", PinnedConfig, env={"limit": 0})  # the live config changed
    async with second:
        inst = await second.binding("WF").get("pinned")
        st = await drive_retries(inst, clock, "pinned", [3600, 3600, 3600])
    assert st.status == "errored"
    assert st.error == {"name": "ValueError", "message": "attempt 4 of limit 3"}
    assert step_row(st, "pinned")["attempts"] == 4


# --- S10 -----------------------------------------------------------------------------------


class NotSerialisable(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        try:
            await step.do("bad", lambda: {1, 2}, retries={"limit": 3, "delay": 0})
        except Exception as error:
            return {"caught": error_to_dict(error)}
        return "unreachable"


async def test_s10_non_serialisable_result_fails_the_instance_at_once(
    run_engine: RunEngine,
) -> None:
    async with run_engine({"WF": NotSerialisable}) as engine:
        inst = await engine.binding("WF").create()
        st = await wait_status(inst, "complete", "errored")
        started = await history(engine, inst, "attempt_started", "bad-1")
    assert st.status == "errored"
    assert st.error is not None
    assert st.error["name"] == "WorkflowFatalError"
    assert st.error["message"].endswith('the step "bad" returned a value which is not serialisable')
    assert len(started) == 1


class SizedResults(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        exact = await step.do("exact", lambda: "x" * ((1 << 20) - 2), retries=NO_RETRY)
        blob = await step.do("blob", lambda: bytes(range(256)), retries=NO_RETRY)
        try:
            await step.do("big", lambda: "x" * (1 << 20), retries=NO_RETRY)
            big: Any = "no error"
        except WorkflowInternalError as error:
            big = error_to_dict(error)
        await step.sleep("nap", "1 hour")
        return {"exact": len(exact), "blob": [type(blob).__name__, blob.hex()], "big": big}


async def test_s10_size_limit_and_bytes(run_engine: RunEngine, clock: RecordingClock) -> None:
    async with run_engine({"WF": SizedResults}, hibernate_after=1.0) as engine:
        inst = await engine.binding("WF").create()
        await wait_record(engine, inst, "hibernated")
        clock.advance(3600)  # the output below comes from a replay of the journal
        st = await wait_status(inst, "complete", "errored")
    assert st.status == "complete"
    assert st.output == {
        "exact": (1 << 20) - 2,
        "blob": ["bytes", bytes(range(256)).hex()],
        "big": {
            "name": "WorkflowInternalError",
            "message": "Step big-1 output is too large. Maximum allowed size is 1MiB.",
        },
    }


# --- S11 -----------------------------------------------------------------------------------

SECRET = "s3cr3t-value-4b1d"


class Sensitive(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        secret = await step.do("secret", lambda: {"token": SECRET}, sensitive="output")

        def fail() -> None:
            raise ValueError("errors stay visible")

        try:
            await step.do("failing", fail, sensitive="output", retries=NO_RETRY)
            error: Any = None
        except Exception as caught:
            error = error_to_dict(caught)
        await step.sleep("nap", "1 hour")
        return {"reversed": secret["token"][::-1], "error": error}


async def test_s11_sensitive_output_is_redacted_everywhere_it_is_shown(
    run_engine: RunEngine, clock: RecordingClock
) -> None:
    async with run_engine({"WF": Sensitive}, hibernate_after=1.0) as engine:
        inst = await engine.binding("WF").create()
        await wait_record(engine, inst, "hibernated")
        waiting = await inst.status()
        clock.advance(3600)
        st = await wait_status(inst, "complete", "errored")
        records = await history(engine, inst)
        listed = await engine.list_instances(workflow="WF")
    assert st.status == "complete"
    assert st.output == {
        "reversed": SECRET[::-1],  # the workflow got the real value
        "error": {"name": "ValueError", "message": "errors stay visible"},
    }
    for shown in (waiting, st):
        assert step_row(shown, "secret")["output"] == "[REDACTED]"
        assert step_row(shown, "failing")["error"] == {
            "name": "ValueError",
            "message": "errors stay visible",
        }
    assert SECRET not in repr(records)
    assert SECRET not in repr([s.steps for s in listed])
    assert "errors stay visible" in repr(records)


async def test_s11_live_log_shows_redacted(run_engine: RunEngine, clock: RecordingClock) -> None:
    records: list[dict[str, Any]] = []
    async with run_engine({"WF": Sensitive}) as engine:

        async def consume() -> None:
            live = engine.watch()
            try:
                async for record in live:
                    records.append(record)
                    if record["kind"] in ("complete", "errored"):
                        return
            finally:
                aclose = getattr(live, "aclose", None)
                if aclose is not None:
                    await aclose()

        task = asyncio.create_task(consume())
        await asyncio.sleep(0)  # the watcher subscribes before anything happens
        inst = await engine.binding("WF").create()
        await wait_status(inst, "waiting")
        clock.advance(3600)
        await wait_status(inst, "complete", "errored")
        with anyio.fail_after(HANG_GUARD):
            await task
    succeeded = [r for r in records if r["kind"] == "step_succeeded" and r["step"] == "secret-1"]
    assert len(succeeded) == 1
    assert "[REDACTED]" in repr(succeeded)
    assert SECRET not in repr(records)


# --- more S2, S5, S9 -------------------------------------------------------------------------


class BadNamesEverywhere(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        caught = []
        for call in (
            lambda: step.sleep("bad\nsleep", 1),
            lambda: step.sleep_until("bad\nuntil", 2_000_000_000),
            lambda: step.wait_for_event("bad\nwait", type="t", timeout=1),
        ):
            try:
                await call()
            except WorkflowFatalError as error:
                caught.append(error_to_dict(error))
        return caught


async def test_s2_names_of_sleeps_and_waits(run_engine: RunEngine) -> None:
    async with run_engine({"WF": BadNamesEverywhere}) as engine:
        inst = await engine.binding("WF").create()
        st = await wait_status(inst, "complete", "errored")
    assert st.output == [
        {"name": "WorkflowFatalError", "message": NAME_MSG.format(n)}
        for n in ("bad\nsleep", "bad\nuntil", "bad\nwait")
    ]
    assert st.steps == []


async def test_s5_default_limit_is_10000(run_engine: RunEngine) -> None:
    async with run_engine({"WF": ManySteps}) as engine:
        inst = await engine.binding("WF").create(params={"steps": 10_001, "sleep": False})
        # the engine's own wait: polling a 10,000-step timeline would starve the run
        with anyio.fail_after(100):
            st = await inst.wait_for_status("complete", "errored")
    assert st.status == "errored"
    assert st.error is not None
    assert st.error["message"].startswith("The limit of 10000 steps has been reached")
    assert len(st.steps) == 10_000


class LiveDelay(WorkflowEntrypoint):
    """The delay callable comes from ``env``: S9 takes it from the live call."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        delay_text = self.env["delay"]

        def delay(ctx: StepContext, error: Exception) -> str:
            return str(delay_text)

        def fail(ctx: StepContext) -> None:
            raise ValueError(f"attempt {ctx.attempt}")

        retries = {"limit": 2, "delay": delay, "backoff": "constant"}
        return await step.do("live", fail, retries=retries)


async def test_s9_dynamic_delay_comes_from_the_live_call(
    make_engine: MakeEngine, register: Register, clock: RecordingClock
) -> None:
    first = make_engine()
    register(first, "WF", LiveDelay, env={"delay": "1 hour"})
    async with first:
        inst = await first.binding("WF").create(id="live")
        await wait_until(inst, lambda st: st.status == "waiting" and attempts(st, "live") == 1)
        await timer_set_for(clock, T0 + 3600)
    second = make_engine()
    register(second, "WF", LiveDelay, env={"delay": "5 seconds"})
    async with second:
        inst = await second.binding("WF").get("live")
        clock.advance(3600)  # the first retry time was persisted with the first attempt
        await wait_until(inst, lambda st: st.status == "waiting" and attempts(st, "live") == 2)
        await timer_set_for(clock, T0 + 3600 + 5)
        clock.advance(5)
        st = await wait_status(inst, "complete", "errored")
    assert st.status == "errored"
    assert st.error == {"name": "ValueError", "message": "attempt 3"}


# --- S1/S24: what run must be and return -----------------------------------------------------


class ReturnsASet(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("fine", lambda: 1)
        return {1, 2}


async def test_s24_output_must_be_json(run_engine: RunEngine) -> None:
    async with run_engine({"WF": ReturnsASet}) as engine:
        inst = await engine.binding("WF").create()
        st = await wait_status(inst, "complete", "errored")
    assert st.status == "errored"
    assert st.output is None
    assert st.error is not None
    assert st.error["name"] == "WorkflowFatalError"


class SyncRun:
    def __init__(self, ctx: Any, env: Any) -> None:
        pass

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return "not async"


@pytest.mark.inprocess_only
async def test_s1_register_checks_the_class_at_once(make_engine: MakeEngine) -> None:
    engine = make_engine()
    for bad in (SyncRun, object, "not a class"):
        with pytest.raises((TypeError, WorkflowError)):
            engine.register("WF", bad)  # type: ignore[arg-type]


class HangsWithoutRetries(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        async def slow() -> str:
            await asyncio.Event().wait()  # in flight when the engine goes away
            return "never"

        return await step.do("slow", slow, retries={"limit": 0, "delay": 0})


@pytest.mark.not_wasm(reason=NEEDS_EVENT_LOOP)
async def test_s8_lost_attempt_with_no_retries_left_errors_the_instance(
    make_engine: MakeEngine, register: Register
) -> None:
    first = make_engine()
    register(first, "WF", HangsWithoutRetries)
    async with first:
        inst = await first.binding("WF").create(id="lost")
        await wait_until(inst, lambda st: attempts(st, "slow") == 1)
    second = make_engine()
    register(second, "WF", HangsWithoutRetries)
    async with second:
        inst = await second.binding("WF").get("lost")
        st = await wait_status(inst, "complete", "errored")
    assert st.status == "errored"
    assert st.error == {
        "name": "WorkflowInternalError",
        "message": "Attempt failed due to internal workflows error",
    }
    assert step_row(st, "slow")["attempts"] == 1
