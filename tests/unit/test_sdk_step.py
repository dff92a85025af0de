"""``WorkflowStep`` driven by a small scripted host: the step-side logic of S1–S18.

``ScriptedOps`` is a real :class:`StepOps`: it merges configs like a host, runs attempts up
to ``retries.limit + 1``, answers sleeps and waits at once and records every call, so the
tests see exactly what the step asked and reported.
"""

from __future__ import annotations

import asyncio
import copy
import functools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dynamic_workflows.sdk import (
    Decision,
    Journal,
    NonRetryableDelayError,
    NonRetryableError,
    Outcome,
    StepContext,
    StopExecution,
    WorkflowError,
    WorkflowFatalError,
    WorkflowStep,
    WorkflowStepEvent,
    WorkflowTimeoutError,
    gather,
)

NAME_MSG = 'Step name "{}" exceeds max length (256 chars) or invalid characters found'
CONFIG_MSG = 'Step config for "{}" is in an invalid format'


class ScriptedOps:
    """A minimal host: attempts until success or ``limit + 1``; records every call."""

    def __init__(
        self,
        *,
        limit: int = 0,
        timeout: float | None = None,
        begin_yields: dict[str, int] | None = None,
    ) -> None:
        self.limit = limit
        self.timeout = timeout
        self.begin_yields = begin_yields or {}
        self.calls: list[tuple[Any, ...]] = []
        self.configs: dict[str, dict[str, Any]] = {}

    def _attempt(self, key: str, attempt: int) -> Decision:
        decision: Decision = {"action": "attempt", "attempt": attempt, "config": self.configs[key]}
        if self.timeout is not None:
            decision["timeout"] = self.timeout
        return decision

    async def do_begin(self, name: str, count: int, config: dict[str, Any]) -> Decision:
        self.calls.append(("do_begin", name, count, copy.deepcopy(config)))
        for _ in range(self.begin_yields.get(f"{name}-{count}", 0)):
            await asyncio.sleep(0)
        retries = {"limit": self.limit, "delay": 0.0, "backoff": "constant"}
        retries.update(config.get("retries", {}))
        if retries["delay"] == "dynamic":
            del retries["delay"]
        key = f"{name}-{count}"
        self.configs[key] = {"retries": retries, "timeout": self.timeout or 600.0}
        return self._attempt(key, 1)

    async def do_end(self, name: str, count: int, attempt: int, outcome: Outcome) -> Decision:
        self.calls.append(("do_end", name, count, attempt, copy.deepcopy(outcome)))
        key = f"{name}-{count}"
        if "value" in outcome:
            return {"action": "value", "value": outcome["value"]}
        if "fatal" in outcome:
            return {"action": "stop"}
        limit = self.configs[key]["retries"]["limit"]
        if outcome.get("retryable", True) and attempt <= limit:
            return self._attempt(key, attempt + 1)
        return {"action": "raise", "error": outcome["error"]}

    async def sleep(
        self, name: str, count: int, seconds: float | None, until: float | None
    ) -> Decision:
        self.calls.append(("sleep", name, count, seconds, until))
        return {"action": "value", "value": None}

    async def wait_for_event(
        self, name: str, count: int, type: str, timeout: float | None
    ) -> Decision:
        self.calls.append(("wait_for_event", name, count, type, timeout))
        record = {"payload": {"ok": True}, "timestamp": 1_700_000_000.0, "type": type}
        return {"action": "value", "value": record}

    def kinds(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]

    def ends(self) -> list[Outcome]:
        return [c[4] for c in self.calls if c[0] == "do_end"]


# --- S1 form -------------------------------------------------------------------------------


class _CallableObject:
    def __call__(self) -> str:
        return "object"


class _CallableWithCtx:
    def __call__(self, ctx: StepContext) -> str:
        return f"object-{ctx.attempt}"


def _sync_plain() -> str:
    return "sync"


def _sync_ctx(ctx: StepContext) -> str:
    return f"sync-{ctx.step.name}-{ctx.step.count}"


async def _async_plain() -> str:
    return "async"


async def _async_ctx(ctx: StepContext) -> str:
    return f"async-{ctx.attempt}"


def _with_default(value: str = "default") -> str:
    return value


def _two(a: str, b: str) -> str:
    return a + b


@pytest.mark.parametrize(
    ("callback", "expected"),
    [
        (_sync_plain, "sync"),
        (_sync_ctx, "sync-s-1"),
        (_async_plain, "async"),
        (_async_ctx, "async-1"),
        (lambda: "lambda", "lambda"),
        (lambda ctx: ctx.step.name, "s"),
        (_CallableObject(), "object"),
        (_CallableWithCtx(), "object-1"),
        (_with_default, "default"),
        (functools.partial(_two, "a", "b"), "ab"),
    ],
)
async def test_s1_callback_forms(callback: Any, expected: str) -> None:
    step = WorkflowStep(ScriptedOps())
    assert await step.do("s", callback) == expected


async def test_s1_result_goes_through_the_host_encoded() -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    assert await step.do("b", lambda: b"\x00raw") == b"\x00raw"
    assert ops.ends() == [{"value": {"$bytes": "AHJhdw=="}}]
    assert await step.do("esc", lambda: {"$cap": 1}) == {"$cap": 1}
    assert ops.ends()[-1] == {"value": {"$esc": {"$cap": 1}}}


# --- S2 names ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "x" * 256, "naïve ✓ 名前", " spaced ", "a\x7fb", "-"])
async def test_s2_valid_names(name: str) -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    assert await step.do(name, lambda: 1) == 1
    assert ops.kinds("do_begin")[0][1:3] == (name, 1)


@pytest.mark.parametrize("name", ["x" * 257, "a\nb", "\x00", "tab\there", "esc\x1f"])
async def test_s2_invalid_names_raise_fatal_with_exact_message(name: str) -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    called: list[int] = []
    with pytest.raises(WorkflowFatalError) as info:
        await step.do(name, lambda: called.append(1))
    assert str(info.value) == NAME_MSG.format(name)
    assert info.value.name == "WorkflowFatalError"
    for call in (step.sleep(name, 1), step.wait_for_event(name, type="t")):
        with pytest.raises(WorkflowFatalError) as info:
            await call
        assert str(info.value) == NAME_MSG.format(name)
    with pytest.raises(WorkflowFatalError):
        await step.sleep_until(name, 1_800_000_000.0)
    assert called == []
    assert ops.calls == []


async def test_s2_non_string_name_is_invalid() -> None:
    step = WorkflowStep(ScriptedOps())
    with pytest.raises(WorkflowFatalError):
        await step.do(42, lambda: 1)  # type: ignore[arg-type]


# --- S3 config -----------------------------------------------------------------------------


def _delay_fn(ctx: StepContext, error: Exception) -> float:
    return 1.0


@pytest.mark.parametrize(
    "config",
    [
        {"retries": {"limit": 0, "delay": 0}},
        {"retries": {"limit": 3, "delay": "2 seconds", "backoff": "constant"}},
        {"retries": {"limit": 3, "delay": timedelta(seconds=1), "backoff": "linear"}},
        {"retries": {"limit": 3, "delay": 1.5, "backoff": "exponential"}},
        {"retries": {"limit": 1, "delay": _delay_fn}},
        {"timeout": "30 seconds"},
        {"timeout": 0.5},
        {"timeout": timedelta(minutes=1)},
        {"sensitive": "output"},
        {"retries": None, "timeout": None, "sensitive": None},
    ],
)
async def test_s3_valid_configs(config: dict[str, Any]) -> None:
    step = WorkflowStep(ScriptedOps())
    assert await step.do("ok", lambda: 1, **config) == 1


@pytest.mark.parametrize(
    "config",
    [
        {"retries": {"limit": 3}},
        {"retries": {"delay": "1 second"}},
        {"retries": {}},
        {"retries": {"limit": 3, "delay": 1, "jitter": True}},
        {"retries": {"limit": -1, "delay": 1}},
        {"retries": {"limit": True, "delay": 1}},
        {"retries": {"limit": 1.5, "delay": 1}},
        {"retries": {"limit": "3", "delay": 1}},
        {"retries": {"limit": 3, "delay": "1second"}},
        {"retries": {"limit": 3, "delay": -1}},
        {"retries": {"limit": 3, "delay": 1, "backoff": "random"}},
        {"retries": {"limit": 3, "delay": 1, "backoff": None}},
        {"retries": [3, 1]},
        {"retries": 3},
        {"timeout": 0},
        {"timeout": "0 seconds"},
        {"timeout": -5},
        {"timeout": "5 fortnights"},
        {"timeout": float("nan")},
        {"sensitive": "input"},
        {"sensitive": True},
    ],
)
async def test_s3_invalid_configs_raise_fatal_with_exact_message(config: dict[str, Any]) -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    with pytest.raises(WorkflowFatalError) as info:
        await step.do("cfg", lambda: 1, **config)
    assert str(info.value) == CONFIG_MSG.format("cfg")
    assert ops.calls == []


async def test_s3_config_validated_on_replay_too() -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops, {"cfg-1": {"kind": "do", "value": 1}})
    with pytest.raises(WorkflowFatalError) as info:
        await step.do("cfg", lambda: 1, retries={"limit": 1})
    assert str(info.value) == CONFIG_MSG.format("cfg")


async def test_s3_config_reaches_the_host_as_json() -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    await step.do(
        "c",
        lambda: 1,
        retries={"limit": 2, "delay": "1 minute", "backoff": "linear"},
        timeout="2 seconds",
        sensitive="output",
    )
    await step.do("d", lambda: 1, retries={"limit": 2, "delay": _delay_fn})
    await step.do("e", lambda: 1)
    begins = [c[3] for c in ops.kinds("do_begin")]
    assert begins == [
        {
            "retries": {"limit": 2, "delay": 60.0, "backoff": "linear"},
            "timeout": 2.0,
            "sensitive": "output",
        },
        {"retries": {"limit": 2, "delay": "dynamic"}},
        {},
    ]


async def test_s3_non_callable_callback_is_invalid() -> None:
    step = WorkflowStep(ScriptedOps())
    with pytest.raises(WorkflowFatalError) as info:
        await step.do("n", 5)  # type: ignore[arg-type]
    assert str(info.value) == CONFIG_MSG.format("n")


# --- S5 step limit -------------------------------------------------------------------------


async def test_s5_step_limit_counts_cache_hits_but_not_sleeps() -> None:
    journal: Journal = {"a-1": {"kind": "do", "value": 1}, "a-2": {"kind": "do", "value": 2}}
    ops = ScriptedOps()
    step = WorkflowStep(ops, journal, step_limit=3)
    assert await step.do("a", lambda: 0) == 1
    assert await step.do("a", lambda: 0) == 2
    await step.sleep("nap", 1)
    await step.wait_for_event("ev", type="t")
    assert await step.do("b", lambda: 3) == 3
    with pytest.raises(WorkflowFatalError) as info:
        await step.do("c", lambda: 4)
    assert str(info.value).startswith("The limit of 3 steps has been reached")
    assert [c[1] for c in ops.kinds("do_begin")] == ["b"]


async def test_s5_default_step_limit_is_10000() -> None:
    step = WorkflowStep(ScriptedOps())
    assert step.step_limit == 10_000


# --- S6 identity ---------------------------------------------------------------------------


async def test_s6_sequential_occurrences() -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    assert await step.do("x", lambda: "one") == "one"
    assert await step.do("y", lambda: "why") == "why"
    assert await step.do("x", lambda: "two") == "two"
    assert [c[1:3] for c in ops.kinds("do_begin")] == [("x", 1), ("y", 1), ("x", 2)]


async def test_s6_occurrences_count_across_kinds_of_the_same_name() -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    await step.do("a", lambda: 1)
    await step.sleep("a", 1)
    await step.wait_for_event("a", type="t")
    assert [c[:3] for c in ops.calls if c[0] != "do_end"] == [
        ("do_begin", "a", 1),
        ("sleep", "a", 2),
        ("wait_for_event", "a", 3),
    ]


@pytest.mark.parametrize("use_sdk_gather", [False, True])
async def test_s6_concurrent_calls_take_occurrences_in_call_order(use_sdk_gather: bool) -> None:
    # the first call's host answer is the slowest, so completion order differs from call order
    ops = ScriptedOps(begin_yields={"x-1": 20, "x-2": 5, "x-3": 0})
    step = WorkflowStep(ops)
    calls = (
        step.do("x", lambda ctx: f"first:{ctx.step.count}"),
        step.do("x", lambda ctx: f"second:{ctx.step.count}"),
        step.do("x", lambda ctx: f"third:{ctx.step.count}"),
    )
    results = await gather(*calls) if use_sdk_gather else await asyncio.gather(*calls)
    assert list(results) == ["first:1", "second:2", "third:3"]
    assert [c[2] for c in ops.kinds("do_begin")] == [1, 2, 3]
    assert [c[2] for c in ops.kinds("do_end")] == [3, 2, 1]


# --- S7 replay -----------------------------------------------------------------------------


async def test_s7_journal_hits_need_no_round_trip_and_no_callback() -> None:
    journal: Journal = {
        "a-1": {"kind": "do", "value": {"n": 1}},
        "none-1": {"kind": "do", "value": None},
        "blob-1": {"kind": "do", "value": {"$bytes": "AAE="}},
        "nap-1": {"kind": "sleep"},
        "ev-1": {
            "kind": "event",
            "value": {"payload": {"p": 1}, "timestamp": 1_700_000_000.5, "type": "go"},
        },
    }
    ops = ScriptedOps()
    step = WorkflowStep(ops, journal)
    ran: list[str] = []
    assert await step.do("a", lambda: ran.append("a")) == {"n": 1}
    assert await step.do("none", lambda: ran.append("none")) is None
    assert await step.do("blob", lambda: ran.append("blob")) == b"\x00\x01"
    await step.sleep("nap", "1 day")
    event = await step.wait_for_event("ev", type="go")
    assert event == WorkflowStepEvent(
        payload={"p": 1}, timestamp=datetime.fromtimestamp(1_700_000_000.5, tz=UTC), type="go"
    )
    assert ran == []
    assert ops.calls == []
    assert step.hits() == ["a-1", "none-1", "blob-1", "nap-1", "ev-1"]
    # the next occurrence is new: it goes to the host
    assert await step.do("a", lambda: "fresh") == "fresh"
    assert [c[1:3] for c in ops.kinds("do_begin")] == [("a", 2)]
    assert step.hits() == ["a-1", "none-1", "blob-1", "nap-1", "ev-1"]


async def test_s36_absorb_hits_keeps_only_journal_keys() -> None:
    # hits reported by an isolate are untrusted: only keys of this run's journal count
    step = WorkflowStep(ScriptedOps(), {"a-1": {"kind": "do", "value": 1}})
    step.absorb_hits(["a-1", "forged-1", 7, None])  # type: ignore[list-item]
    assert step.hits() == ["a-1"]


async def test_s7_recorded_errors_are_re_raised_without_running() -> None:
    journal: Journal = {
        "bad-1": {"kind": "do", "error": {"name": "ValueError", "message": "nope"}},
        "late-1": {
            "kind": "event",
            "error": {"name": "WorkflowTimeoutError", "message": "timed out"},
        },
    }
    ops = ScriptedOps()
    step = WorkflowStep(ops, journal)
    with pytest.raises(WorkflowError) as info:
        await step.do("bad", lambda: 1)
    assert info.value.to_dict() == {"name": "ValueError", "message": "nope"}
    with pytest.raises(WorkflowTimeoutError) as timeout_info:
        await step.wait_for_event("late", type="t")
    assert timeout_info.value.message == "timed out"
    assert ops.calls == []


async def test_s7_kind_mismatch_goes_to_the_host() -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops, {"a-1": {"kind": "sleep"}})
    assert await step.do("a", lambda: 5) == 5
    assert [c[:3] for c in ops.kinds("do_begin")] == [("do_begin", "a", 1)]
    assert step.hits() == []


# --- attempts, S12, S18 ----------------------------------------------------------------------


async def test_attempt_loop_retries_until_success_with_context() -> None:
    ops = ScriptedOps(limit=3)
    step = WorkflowStep(ops)
    seen: list[tuple[str, int, int]] = []

    def flaky(ctx: StepContext) -> str:
        seen.append((ctx.step.name, ctx.step.count, ctx.attempt))
        if ctx.attempt < 3:
            raise ValueError(f"fail {ctx.attempt}")
        return "done"

    assert await step.do("f", flaky) == "done"
    assert seen == [("f", 1, 1), ("f", 1, 2), ("f", 1, 3)]
    assert ops.ends() == [
        {"error": {"name": "ValueError", "message": "fail 1"}, "retryable": True},
        {"error": {"name": "ValueError", "message": "fail 2"}, "retryable": True},
        {"value": "done"},
    ]


async def test_s12_exhaustion_raises_the_last_error_by_name() -> None:
    ops = ScriptedOps(limit=2)
    step = WorkflowStep(ops)

    def always(ctx: StepContext) -> None:
        raise KeyError(f"k{ctx.attempt}")

    with pytest.raises(WorkflowError) as info:
        await step.do("k", always)
    assert info.value.to_dict() == {"name": "KeyError", "message": "'k3'"}
    assert len(ops.ends()) == 3


async def test_s18_context_config_is_a_copy() -> None:
    ops = ScriptedOps(limit=2)
    step = WorkflowStep(ops)
    configs: list[dict[str, Any]] = []

    def mutate(ctx: StepContext) -> str:
        configs.append(copy.deepcopy(ctx.config))
        ctx.config["retries"]["limit"] = 0
        ctx.config["timeout"] = 1
        if ctx.attempt == 1:
            raise ValueError("again")
        return "ok"

    assert await step.do("m", mutate, retries={"limit": 2, "delay": 5}) == "ok"
    expected = {"retries": {"limit": 2, "delay": 5.0, "backoff": "constant"}, "timeout": 600.0}
    assert configs == [expected, expected]
    assert ops.configs["m-1"] == expected


async def test_s18_mutating_context_config_does_not_change_retries() -> None:
    # the author zeroes ctx.config's retry limit: the step still retries per its real
    # config, and the dynamic delay is still asked for (engine-findings: SPEC-1)
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    delays: list[int] = []

    def delay(ctx: StepContext, error: Exception) -> float:
        delays.append(ctx.attempt)
        return 3.0

    def mutate(ctx: StepContext) -> str:
        ctx.config["retries"]["limit"] = 0
        if ctx.attempt == 1:
            raise ValueError("again")
        return "ok"

    assert await step.do("m", mutate, retries={"limit": 2, "delay": delay}) == "ok"
    assert delays == [1]
    assert ops.ends()[0]["delay"] == 3.0


# --- S14 dynamic delay -----------------------------------------------------------------------


async def test_s14_dynamic_delay_called_per_retried_failure_with_ctx_and_error() -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    calls: list[tuple[int, str, bool]] = []

    async def delay(ctx: StepContext, error: Exception) -> str:
        calls.append((ctx.attempt, str(error), "delay" in ctx.config["retries"]))
        return f"{ctx.attempt} minutes"

    def always(ctx: StepContext) -> None:
        raise ValueError(f"e{ctx.attempt}")

    with pytest.raises(WorkflowError) as info:
        await step.do("d", always, retries={"limit": 2, "delay": delay, "backoff": "linear"})
    assert info.value.to_dict() == {"name": "ValueError", "message": "e3"}
    # called for attempts 1 and 2 (retried), not for the last one
    assert calls == [(1, "e1", False), (2, "e2", False)]
    ends = ops.ends()
    assert [e.get("delay") for e in ends] == [60.0, 120.0, None]


async def test_s14_sync_dynamic_delay_returning_timedelta() -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)

    def once(ctx: StepContext) -> str:
        if ctx.attempt == 1:
            raise ValueError("first")
        return "second"

    result = await step.do(
        "t", once, retries={"limit": 1, "delay": lambda ctx, err: timedelta(seconds=7)}
    )
    assert result == "second"
    assert ops.ends()[0]["delay"] == 7.0


def _failing(ctx: StepContext) -> None:
    raise ValueError("callback failed")


async def _delay_raises(ctx: StepContext, error: Exception) -> float:
    raise RuntimeError("boom")


async def test_s14_delay_function_raising_fails_the_step_at_once() -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    with pytest.raises(NonRetryableDelayError) as info:
        await step.do("x", _failing, retries={"limit": 5, "delay": _delay_raises})
    message = 'The delay function for step "x-1" threw an error: boom'
    assert info.value.to_dict() == {"name": "NonRetryableDelayError", "message": message}
    assert ops.ends() == [
        {"error": {"name": "NonRetryableDelayError", "message": message}, "retryable": False}
    ]


@pytest.mark.parametrize("bad", ["5 fortnights", -1, None, "abc", float("nan")])
async def test_s14_delay_function_returning_invalid_value(bad: object) -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    with pytest.raises(NonRetryableDelayError) as info:
        await step.do("x", _failing, retries={"limit": 5, "delay": lambda c, e: bad})
    assert info.value.message.startswith(
        'The delay function for step "x-1" returned an invalid delay value'
    )
    assert len(ops.ends()) == 1


async def test_s14_delay_function_not_returning_within_5_seconds() -> None:
    # the function never returns: what is measured is the sdk's own 5 s bound, not our speed
    ops = ScriptedOps()
    step = WorkflowStep(ops)

    async def forever(ctx: StepContext, error: Exception) -> float:
        await asyncio.Event().wait()
        return 1.0

    with pytest.raises(NonRetryableDelayError) as info:
        await step.do("x", _failing, retries={"limit": 5, "delay": forever})
    assert info.value.message == 'The delay function for step "x-1" did not return within 5 seconds'
    assert len(ops.ends()) == 1


# --- S15 NonRetryableError -------------------------------------------------------------------


async def test_s15_non_retryable_error_stops_retries_and_is_catchable() -> None:
    ops = ScriptedOps(limit=5)
    step = WorkflowStep(ops)
    attempts: list[int] = []

    def refuse(ctx: StepContext) -> None:
        attempts.append(ctx.attempt)
        raise NonRetryableError("card declined")

    with pytest.raises(NonRetryableError) as info:
        await step.do("pay", refuse)
    assert info.value.to_dict() == {"name": "NonRetryableError", "message": "card declined"}
    assert attempts == [1]
    assert ops.ends() == [
        {"error": {"name": "NonRetryableError", "message": "card declined"}, "retryable": False}
    ]


async def test_s15_custom_name_is_kept() -> None:
    ops = ScriptedOps(limit=5)
    step = WorkflowStep(ops)

    def refuse() -> None:
        raise NonRetryableError("no", name="Declined")

    with pytest.raises(WorkflowError) as info:
        await step.do("pay", refuse)
    assert info.value.to_dict() == {"name": "Declined", "message": "no"}
    assert ops.ends()[0]["retryable"] is False


async def test_s15_non_retryable_delay_is_not_called() -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    called: list[int] = []

    def delay(ctx: StepContext, error: Exception) -> float:
        called.append(1)
        return 1.0

    def refuse() -> None:
        raise NonRetryableError("stop")

    with pytest.raises(NonRetryableError):
        await step.do("n", refuse, retries={"limit": 3, "delay": delay})
    assert called == []


# --- S17 timeout ---------------------------------------------------------------------------


async def test_s17_attempt_timeout_is_a_retryable_timeout_error() -> None:
    # the callback never finishes on its own, so the bound is what ends it
    ops = ScriptedOps(limit=1, timeout=0.05)
    step = WorkflowStep(ops)

    async def hang(ctx: StepContext) -> str:
        if ctx.attempt == 2:
            return "second time lucky"
        await asyncio.Event().wait()
        return "never"

    assert await step.do("slow", hang) == "second time lucky"
    assert ops.ends() == [
        {
            "error": {"name": "WorkflowTimeoutError", "message": "Execution timed out after 50ms"},
            "retryable": True,
        },
        {"value": "second time lucky"},
    ]


async def test_s17_timeout_exhausted_raises_timeout_error() -> None:
    ops = ScriptedOps(timeout=0.02)
    step = WorkflowStep(ops)

    async def hang() -> None:
        await asyncio.Event().wait()

    with pytest.raises(WorkflowTimeoutError) as info:
        await step.do("slow", hang)
    assert info.value.message == "Execution timed out after 20ms"


# --- S10 result rules ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [object(), {1, 2}, {"a": float("inf")}, [datetime.now(UTC)]])
async def test_s10_non_serialisable_result_is_a_fatal_outcome(bad: object) -> None:
    ops = ScriptedOps(limit=5)
    step = WorkflowStep(ops)
    with pytest.raises(StopExecution):
        await step.do("load", lambda: bad)
    ends = ops.ends()
    assert len(ends) == 1
    assert set(ends[0]) == {"fatal"}
    fatal = ends[0]["fatal"]
    assert fatal["name"] == "WorkflowFatalError"
    assert fatal["message"].endswith('the step "load" returned a value which is not serialisable')


# --- host decisions ------------------------------------------------------------------------


class _StopOps(ScriptedOps):
    async def do_begin(self, name: str, count: int, config: dict[str, Any]) -> Decision:
        return {"action": "stop"}

    async def sleep(
        self, name: str, count: int, seconds: float | None, until: float | None
    ) -> Decision:
        return {"action": "stop"}


async def test_stop_decision_unwinds_run_past_except_exception() -> None:
    step = WorkflowStep(_StopOps())
    assert not issubclass(StopExecution, Exception)
    caught = False
    with pytest.raises(StopExecution):
        try:
            await step.do("a", lambda: 1)
        except Exception:
            caught = True
    assert not caught
    with pytest.raises(StopExecution):
        await step.sleep("s", "1 hour")


# --- sleeps and waits (S19, S21) -------------------------------------------------------------


async def test_s19_sleep_forms_reach_the_host_in_seconds() -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    await step.sleep("a", "1 hour")
    await step.sleep("b", timedelta(days=2))
    await step.sleep("c", 1.5)
    when = datetime(2030, 1, 1, tzinfo=UTC)
    await step.sleep_until("d", when)
    await step.sleep_until("e", 1_900_000_000)
    assert ops.kinds("sleep") == [
        ("sleep", "a", 1, 3600.0, None),
        ("sleep", "b", 1, 172800.0, None),
        ("sleep", "c", 1, 1.5, None),
        ("sleep", "d", 1, None, when.timestamp()),
        ("sleep", "e", 1, None, 1_900_000_000.0),
    ]


@pytest.mark.parametrize("duration", ["1second", -1, "abc", float("inf")])
async def test_s19_invalid_sleep_duration_is_a_workflow_error(duration: object) -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    with pytest.raises(WorkflowError):
        await step.sleep("s", duration)
    assert ops.calls == []


@pytest.mark.parametrize("when", [datetime(2030, 1, 1), "tomorrow", True])
async def test_s19_sleep_until_needs_aware_datetime_or_epoch(when: Any) -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    with pytest.raises(WorkflowError):
        await step.sleep_until("s", when)
    assert ops.calls == []


async def test_s21_wait_for_event_asks_the_host_and_returns_a_step_event() -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    event = await step.wait_for_event("approval", type="approved")
    assert event == WorkflowStepEvent(
        payload={"ok": True},
        timestamp=datetime.fromtimestamp(1_700_000_000.0, tz=UTC),
        type="approved",
    )
    await step.wait_for_event("approval", type="x", timeout="1 hour")
    assert ops.kinds("wait_for_event") == [
        ("wait_for_event", "approval", 1, "approved", 86400.0),
        ("wait_for_event", "approval", 2, "x", 3600.0),
    ]


async def test_s21_invalid_wait_timeout_is_a_workflow_error() -> None:
    ops = ScriptedOps()
    step = WorkflowStep(ops)
    with pytest.raises(WorkflowError):
        await step.wait_for_event("w", type="t", timeout="soon")
    assert ops.calls == []
