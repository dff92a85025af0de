"""Real isolates (in-process thread and confined subprocess) driven through ``Isolate``:
tenant modules that import each other, step ops calling back into a scripted host,
fetch, named calls, env capabilities, concurrent runs and captured output."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import cloudpickle
import pytest

from dynamic_workflows.sandbox import (
    CodeBundle,
    Isolate,
    IsolateBackend,
    IsolateLimits,
    open_backend,
)
from dynamic_workflows.sdk import (
    Decision,
    Outcome,
    Request,
    WorkflowEntrypoint,
    WorkflowError,
    WorkflowEvent,
    WorkflowStep,
)

HANG_GUARD = 30.0

INDEX = """
import asyncio
import logging

from dynamic_workflows.sdk import Response, WorkerEntrypoint, WorkflowEntrypoint

import util
from lib import shapes
from lib.shapes import area

log = logging.getLogger("tenant")


class Greeter(WorkflowEntrypoint):
    async def run(self, event, step):
        print("run", self.ctx.instance_id)
        log.warning("hello from %s", self.ctx.instance_id)
        greeting = await step.do("greet", lambda: util.greet(event.payload["name"]))
        size = await step.do("area", lambda ctx: area(ctx.attempt + 1))
        await step.sleep("nap", "1 hour")
        approval = await step.wait_for_event("approval", type="approved", timeout="1 hour")
        return {
            "greeting": greeting,
            "size": size,
            "approved": approval.payload,
            "ctx": [self.ctx.instance_id, self.ctx.workflow_name],
            "ctx_fields": sorted(vars(self.ctx)) if hasattr(self.ctx, "__dict__") else None,
            "shapes": shapes.__name__,
        }


class Flaky(WorkflowEntrypoint):
    async def run(self, event, step):
        def flaky(ctx):
            if ctx.attempt < 3:
                raise ValueError(f"attempt {ctx.attempt}")
            return ctx.attempt

        return await step.do("flaky", flaky, retries={"limit": 5, "delay": 0})


class Failing(WorkflowEntrypoint):
    async def run(self, event, step):
        raise KeyError("nope")


class Parallel(WorkflowEntrypoint):
    async def run(self, event, step):
        def make(i):
            return lambda: i * i

        print("parallel", event.payload)
        return await asyncio.gather(*(step.do(f"p{i}", make(i)) for i in range(5)))


class UsesEnv(WorkflowEntrypoint):
    async def run(self, event, step):
        handle = await self.env.WORKFLOWS.create(params={"n": event.payload})
        return {"id": handle.id, "status": await handle.status(), "label": self.env.LABEL}


class Chatty(WorkflowEntrypoint):
    async def run(self, event, step):
        for i in range(100):
            print("line", i, "x" * 50)
        return "done"


async def fetch(request, env):
    body = await request.json()
    instance = await env.WORKFLOWS.create(params=body)
    return Response.json({"id": instance.id, "url": request.url, "label": env["LABEL"]})


class Api(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("api:" + request.url, status=201)

    async def add(self, a, b):
        return a + b

    def shout(self, text):
        return text.upper()

    def leave(self):
        import sys

        sys.exit(3)
"""

MODULES = {
    "index.py": INDEX,
    "util.py": "def greet(name):\n    return f'Hello, {name}!'\n",
    "lib/__init__.py": "",
    "lib/shapes.py": (
        "from . import units\n\ndef area(side):\n    return side * side * units.SCALE\n"
    ),
    "lib/units.py": "SCALE = 10\n",
}


class Handle:
    __rpc_methods__ = frozenset({"status"})
    __rpc_props__ = ("id",)

    def __init__(self, id: str, params: Any) -> None:
        self.id = id
        self.params = params

    async def status(self) -> dict[str, Any]:
        return {"status": "queued", "params": self.params}


class FakeWorkflows:
    """A host binding handed to the tenant as a capability."""

    __rpc_methods__ = frozenset({"create"})

    def __init__(self) -> None:
        self.created: list[Handle] = []

    async def create(self, params: Any = None) -> Handle:
        handle = Handle(f"wf-{len(self.created) + 1}", params)
        self.created.append(handle)
        return handle

    def secret(self) -> str:
        return "never callable from the tenant"


class ScriptedOps:
    """A small, real ``StepOps``: attempts with retries, sleeps and events answered at once
    (or ``stop``), every op recorded. ``gate`` lets a test hold ``do_begin``."""

    def __init__(
        self,
        *,
        events: dict[str, Any] | None = None,
        stop_on_sleep: bool = False,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.events = events or {}
        self.stop_on_sleep = stop_on_sleep
        self.gate = gate
        self.configs: dict[tuple[str, int], dict[str, Any]] = {}

    async def do_begin(self, name: str, count: int, config: dict[str, Any]) -> Decision:
        self.calls.append(("do_begin", name, count))
        if self.gate is not None:
            await self.gate.wait()
        self.configs[(name, count)] = config
        return self._attempt(config, 1)

    @staticmethod
    def _attempt(config: dict[str, Any], attempt: int) -> Decision:
        decision: Decision = {"action": "attempt", "attempt": attempt, "config": config}
        if "timeout" in config:
            decision["timeout"] = config["timeout"]
        return decision

    async def do_end(self, name: str, count: int, attempt: int, outcome: Outcome) -> Decision:
        self.calls.append(("do_end", name, count, attempt, dict(outcome)))
        if "value" in outcome:
            return {"action": "value", "value": outcome["value"]}
        if "fatal" in outcome:
            return {"action": "raise", "error": outcome["fatal"]}
        config = self.configs[(name, count)]
        limit = config.get("retries", {}).get("limit", 0)
        if outcome.get("retryable", True) and attempt <= limit:
            return self._attempt(config, attempt + 1)
        return {"action": "raise", "error": outcome["error"]}

    async def sleep(
        self, name: str, count: int, seconds: float | None, until: float | None
    ) -> Decision:
        self.calls.append(("sleep", name, count, seconds))
        return {"action": "stop"} if self.stop_on_sleep else {"action": "value", "value": None}

    async def wait_for_event(
        self, name: str, count: int, type: str, timeout: float | None
    ) -> Decision:
        self.calls.append(("wait_for_event", name, count, type, timeout))
        record = {"payload": self.events.get(type), "timestamp": 1.0, "type": type}
        return {"action": "value", "value": record}


def event(instance_id: str = "inst-1", payload: Any = None) -> WorkflowEvent:
    return WorkflowEvent(
        payload=payload if payload is not None else {"name": "Ada"},
        timestamp=datetime.now(UTC),
        instance_id=instance_id,
        workflow_name="WF",
    )


def bundle(
    env: dict[str, Any] | None = None, limits: IsolateLimits | None = None, **extra: Any
) -> CodeBundle:
    return CodeBundle(
        main_module="index.py",
        modules=MODULES,
        version="v1",
        env=env if env is not None else {"WORKFLOWS": FakeWorkflows(), "LABEL": "blue"},
        limits=limits or IsolateLimits(),
        **extra,
    )


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait for a state; the deadline is only a hang guard."""
    with anyio.fail_after(HANG_GUARD):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.005)


@pytest.fixture(params=["inprocess", "subprocess"])
async def isolates(request: pytest.FixtureRequest) -> AsyncIterator[IsolateBackend]:
    backend = await open_backend(request.param)
    try:
        yield backend
    finally:
        await backend.aclose()


@pytest.fixture
async def isolate(isolates: IsolateBackend) -> Isolate:
    made = await isolates.new_isolate()
    await made.load(bundle())
    return made


async def test_tenant_modules_import_each_other_and_steps_call_the_host(
    isolate: Isolate,
) -> None:
    ops = ScriptedOps(events={"approved": {"by": "Grace"}})
    result = await isolate.run_workflow("Greeter", event(), ops, {}, step_limit=100)
    assert result.outcome == "return", result
    assert result.value == {
        "greeting": "Hello, Ada!",
        "size": 40,
        "approved": {"by": "Grace"},
        "ctx": ["inst-1", "WF"],
        "ctx_fields": ["instance_id", "workflow_name"],
        "shapes": "lib.shapes",
    }
    assert [c[0] for c in ops.calls] == [
        "do_begin",
        "do_end",
        "do_begin",
        "do_end",
        "sleep",
        "wait_for_event",
    ]
    assert ops.calls[1] == ("do_end", "greet", 1, 1, {"value": "Hello, Ada!"})
    assert ops.calls[4] == ("sleep", "nap", 1, 3600.0)
    assert result.hits == ()


async def test_tenant_ctx_carries_only_its_own_names(isolate: Isolate) -> None:
    result = await isolate.run_workflow("Greeter", event(), ScriptedOps(), {}, step_limit=100)
    assert result.value["ctx"] == ["inst-1", "WF"]
    assert result.value["ctx_fields"] == ["instance_id", "workflow_name"]  # no metadata


async def test_journal_hits_cost_no_round_trip(isolate: Isolate) -> None:
    ops = ScriptedOps()
    journal: Any = {
        "greet-1": {"kind": "do", "value": "cached greeting"},
        "area-1": {"kind": "do", "value": 7},
        "nap-1": {"kind": "sleep"},
    }
    result = await isolate.run_workflow("Greeter", event(), ops, journal, step_limit=100)
    assert result.outcome == "return"
    assert result.value["greeting"] == "cached greeting"
    assert result.value["size"] == 7
    assert result.hits == ("greet-1", "area-1", "nap-1")
    assert [c[0] for c in ops.calls] == ["wait_for_event"]


async def test_stop_unwinds_the_run(isolate: Isolate) -> None:
    ops = ScriptedOps(stop_on_sleep=True)
    result = await isolate.run_workflow("Greeter", event(), ops, {}, step_limit=100)
    assert result.outcome == "stop"
    assert ops.calls[-1][0] == "sleep"


async def test_retries_and_errors_cross_by_name(isolate: Isolate) -> None:
    ops = ScriptedOps()
    result = await isolate.run_workflow("Flaky", event(), ops, {}, step_limit=100)
    assert (result.outcome, result.value) == ("return", 3)
    ends = [c for c in ops.calls if c[0] == "do_end"]
    assert [c[3] for c in ends] == [1, 2, 3]
    assert ends[0][4] == {
        "error": {"name": "ValueError", "message": "attempt 1"},
        "retryable": True,
    }
    failed = await isolate.run_workflow("Failing", event(), ScriptedOps(), {}, step_limit=100)
    assert failed.outcome == "raise"
    assert failed.error == {"name": "KeyError", "message": "'nope'"}
    missing = await isolate.run_workflow("Nowhere", event(), ScriptedOps(), {}, step_limit=100)
    assert missing.outcome == "raise"
    assert missing.error is not None
    assert "not found" in missing.error["message"]


async def test_fetch_and_named_calls(isolate: Isolate) -> None:
    response = await isolate.fetch(None, Request("POST", "/orders", {}, b'{"n": 1}'))
    assert response.status == 200
    assert response.body == b'{"id": "wf-1", "url": "/orders", "label": "blue"}'
    api = await isolate.fetch("Api", Request(url="/x"))
    assert (api.status, api.body) == (201, b"api:/x")
    assert await isolate.call("Api", "add", [2, 3]) == 5
    assert await isolate.call("Api", "shout", ["hi"]) == "HI"
    with pytest.raises(WorkflowError) as exited:
        await isolate.call("Api", "leave", [])  # sys.exit() is the tenant's error
    assert exited.value.name == "SystemExit"
    for method in ("_private", "__init__", "run"):
        with pytest.raises(WorkflowError):
            await isolate.call("Api", method, [])
    assert isolate.alive


async def test_env_capabilities_are_allow_listed(isolates: IsolateBackend) -> None:
    binding = FakeWorkflows()
    made = await isolates.new_isolate()
    await made.load(bundle(env={"WORKFLOWS": binding, "LABEL": "green"}))
    result = await made.run_workflow("UsesEnv", event(payload=5), ScriptedOps(), {}, step_limit=10)
    assert result.value == {
        "id": "wf-1",
        "status": {"status": "queued", "params": {"n": 5}},
        "label": "green",
    }
    assert binding.created[0].params == {"n": 5}
    probe = CodeBundle(
        "probe.py",
        {
            "probe.py": (
                "from dynamic_workflows.sdk import WorkerEntrypoint\n"
                "class Probe(WorkerEntrypoint):\n"
                "    async def secret(self):\n"
                "        return await self.env.WORKFLOWS.secret()\n"
                "    async def private(self):\n"
                "        return await self.env.WORKFLOWS._rpc_methods()\n"
            )
        },
        "v1",
        env={"WORKFLOWS": binding},
    )
    prober = await isolates.new_isolate()
    await prober.load(probe)
    with pytest.raises(WorkflowError, match="no method 'secret'"):
        await prober.call("Probe", "secret", [])
    with pytest.raises(WorkflowError, match=r"AttributeError|_rpc_methods"):
        await prober.call("Probe", "private", [])  # no private name reaches the host
    assert prober.alive


async def test_concurrent_runs_share_one_isolate_and_logs_are_attributed(
    isolate: Isolate,
) -> None:
    records: list[dict[str, Any]] = []
    isolate.on_log(records.append)
    gate = asyncio.Event()
    ops = ScriptedOps(gate=gate)
    results: dict[str, Any] = {}

    async def one(i: int) -> None:
        result = await isolate.run_workflow("Parallel", event(f"i{i}", i), ops, {}, step_limit=50)
        results[f"i{i}"] = result

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(one, i)
        # All 8 runs x 5 parallel steps are waiting on the host at once.
        await eventually(lambda: len(ops.calls) == 40)
        gate.set()
    assert {k: (r.outcome, r.value) for k, r in results.items()} == {
        f"i{i}": ("return", [0, 1, 4, 9, 16]) for i in range(8)
    }
    await eventually(lambda: len(records) == 8)
    assert sorted((r["instance_id"], r["line"]) for r in records) == sorted(
        (f"i{i}", f"parallel {i}") for i in range(8)
    )
    assert {r["stream"] for r in records} == {"stdout"}


async def test_print_and_logging_are_captured_and_capped(isolates: IsolateBackend) -> None:
    made = await isolates.new_isolate()
    await made.load(bundle(limits=IsolateLimits(max_log_bytes=1000)))
    records: list[dict[str, Any]] = []
    made.on_log(records.append)
    result = await made.run_workflow("Chatty", event("c1"), ScriptedOps(), {}, step_limit=10)
    assert result.value == "done"
    await eventually(lambda: any("dropped" in r["line"] for r in records))
    kept = [r for r in records if r["line"].startswith("line")]
    assert 0 < len(kept) < 100
    assert sum(len(r["line"]) + 1 for r in kept) <= 1000
    assert all(r["instance_id"] == "c1" for r in records)
    greeter = await made.run_workflow("Greeter", event("g1"), ScriptedOps(), {}, step_limit=10)
    assert greeter.outcome == "return"
    await eventually(lambda: any(r["stream"] == "log" for r in records))
    assert [r["line"] for r in records if r["stream"] == "log"] == ["WARNING:tenant:hello from g1"]


class ShippedByValue(WorkflowEntrypoint):
    """Defined in this test module, shipped to the isolate with cloudpickle."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        doubled = await step.do("double", lambda: event.payload * 2)
        return {"doubled": doubled, "where": __name__}


async def test_classes_shipped_by_value(isolates: IsolateBackend) -> None:
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        data = cloudpickle.dumps(ShippedByValue)
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    made = await isolates.new_isolate()
    await made.load(CodeBundle("index.py", {}, "v1", pickled_entrypoints={"ShippedByValue": data}))
    result = await made.run_workflow(
        "ShippedByValue", event(payload=21), ScriptedOps(), {}, step_limit=10
    )
    assert result.value == {"doubled": 42, "where": __name__}


async def test_tenant_code_stays_private_to_its_isolate(isolates: IsolateBackend) -> None:
    first = await isolates.new_isolate()
    second = await isolates.new_isolate()
    source = (
        "from dynamic_workflows.sdk import WorkerEntrypoint\nimport util\n"
        "class Api(WorkerEntrypoint):\n    async def who(self):\n        return util.NAME\n"
    )
    await first.load(CodeBundle("index.py", {"index.py": source, "util.py": "NAME = 'a'"}, "1"))
    await second.load(CodeBundle("index.py", {"index.py": source, "util.py": "NAME = 'b'"}, "1"))
    assert await first.call("Api", "who", []) == "a"
    assert await second.call("Api", "who", []) == "b"
    assert "util" not in sys.modules  # nothing leaked into the host's module table


async def test_broken_tenant_code_is_a_clear_error(isolates: IsolateBackend) -> None:
    made = await isolates.new_isolate()
    with pytest.raises(WorkflowError) as info:
        await made.load(CodeBundle("index.py", {"index.py": "def broken(:\n"}, "v1"))
    assert info.value.name == "SyntaxError"
    assert made.alive
    with pytest.raises(WorkflowError, match="not importable"):
        await (await isolates.new_isolate()).load(
            CodeBundle("index.py", {"index.py": "", "../x.py": ""}, "v1")
        )


async def test_circular_and_nested_tenant_imports(isolates: IsolateBackend) -> None:
    made = await isolates.new_isolate()
    modules = {
        "index.py": (
            "from dynamic_workflows.sdk import WorkerEntrypoint\n"
            "import a\nfrom lib import *\nfrom lib.sub import deep\nimport lib.sub as ls\n"
            "class Api(WorkerEntrypoint):\n"
            "    async def probe(self):\n"
            "        return [a.f(), star, deep, ls.s2]\n"
        ),
        "a.py": "import b\ndef f():\n    return b.g()\n",
        "b.py": "import a\ndef g():\n    return 'b'\n",
        "lib/__init__.py": "star = 1\n__all__ = ['star']\n",
        "lib/sub/__init__.py": "from .inner import deep\nfrom .. import star as s2\n",
        "lib/sub/inner.py": "deep = 2\n",
    }
    await made.load(CodeBundle("index.py", modules, "v1"))
    assert await made.call("Api", "probe", []) == ["b", 1, 2, 1]


BIG = """
from dynamic_workflows.sdk import WorkflowEntrypoint

class Big(WorkflowEntrypoint):
    async def run(self, event, step):
        huge = await step.do("huge", lambda: "x" * (6 << 20))  # over the 4 MiB frame limit
        return len(huge)
"""


async def test_large_journals_reach_the_guest_and_huge_outputs_fail_the_step(
    isolates: IsolateBackend,
) -> None:
    made = await isolates.new_isolate()
    await made.load(bundle())
    journal: Any = {
        "greet-1": {"kind": "do", "value": "g" * (3 << 20)},
        "unused-1": {"kind": "do", "value": "u" * (3 << 20)},
    }
    result = await made.run_workflow("Greeter", event(), ScriptedOps(), journal, step_limit=10)
    assert result.outcome == "return"
    assert len(result.value["greeting"]) == 3 << 20  # a 6 MiB run frame, host to guest
    big = await isolates.new_isolate()
    await big.load(CodeBundle("index.py", {"index.py": BIG}, "v1"))
    ops = ScriptedOps()
    failed = await big.run_workflow("Big", event(), ops, {}, step_limit=10)
    assert failed.error == {
        "name": "WorkflowInternalError",
        "message": "Step huge-1 output is too large. Maximum allowed size is 1MiB.",
    }
    assert big.alive  # the guest refused to send it; nothing oversized crossed


DETACHED = """
import asyncio
from dynamic_workflows.sdk import WorkflowEntrypoint

LEFT_BEHIND = []


class Detached(WorkflowEntrypoint):
    async def run(self, event, step):
        LEFT_BEHIND.append(asyncio.ensure_future(step.wait_for_event("w", type="t")))
        return await step.do("after", lambda: "done")

    async def left_behind(self):
        try:
            await LEFT_BEHIND[0]
        except Exception as error:
            return [error.name, error.message]
"""


class HoldingOps(ScriptedOps):
    """Holds every ``wait_for_event`` until it is cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = asyncio.Event()

    async def wait_for_event(
        self, name: str, count: int, type: str, timeout: float | None
    ) -> Decision:
        self.calls.append(("wait_for_event", name, count, type, timeout))
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("unreachable")


async def test_ops_left_behind_do_not_outlive_the_run(isolates: IsolateBackend) -> None:
    made = await isolates.new_isolate()
    await made.load(CodeBundle("index.py", {"index.py": DETACHED}, "v1"))
    ops = HoldingOps()
    with anyio.fail_after(HANG_GUARD):
        result = await made.run_workflow("Detached", event(), ops, {}, step_limit=10)
    assert (result.outcome, result.value) == ("return", "done")
    assert ("wait_for_event", "w", 1, "t", 86400.0) in ops.calls
    assert ops.cancelled.is_set()  # withdrawn when the run ended, not left waiting
    # ...and the tenant's task that was left behind hears so.
    assert await made.call("Detached", "left_behind", []) == [
        "WorkflowError",
        "the call was withdrawn",
    ]
    assert made.alive
