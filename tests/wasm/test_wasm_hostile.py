"""Hostile tenants against the wasm backend: a table of attack snippets, each blocked with
the expected error, and the host unharmed (the same backend runs a normal tenant after)."""

from __future__ import annotations

import json
import os
import socket
import textwrap
from functools import partial
from typing import Any

import anyio
import pytest

from dynamic_workflows.sandbox import IsolateLimits, IsolateLost, RunResult
from dynamic_workflows.sandbox._wasm import WasmBackend, WasmIsolate
from dynamic_workflows.sdk import IsolateLimitError, WorkflowInternalError

from .conftest import ScriptedOps, event, load

pytestmark = pytest.mark.wasm

LIMITS = IsolateLimits(memory_mb=48, cpu_seconds=0.5, wall_seconds=30.0)


def workflow(body: str) -> dict[str, str]:
    """A tenant whose ``run`` is ``body``."""
    indented = textwrap.indent(textwrap.dedent(body).strip("\n"), " " * 8)
    source = (
        "import os, sys, socket\n"
        "class W:\n"
        "    def __init__(self, ctx, env):\n"
        "        self.env = env\n"
        "    async def run(self, event, step):\n"
        f"{indented}\n"
    )
    return {"main": source}


async def attack(
    backend: WasmBackend, body: str, ops: ScriptedOps | None = None, sink: Any = None
) -> Any:
    """Run ``body``; the RunResult, or the exception the host raised."""
    isolate = await load(backend, workflow(body), limits=LIMITS)
    if sink is not None:
        isolate.on_log(sink)
    try:
        return await isolate.run_workflow("W", event(), ops or ScriptedOps(), {}, step_limit=100)
    except Exception as error:
        return error


async def host_is_fine(backend: WasmBackend) -> None:
    isolate = await load(backend, workflow("return await step.do('ok', lambda: 40 + 2)"))
    result = await isolate.run_workflow("W", event(), ScriptedOps(), {}, step_limit=10)
    assert result == RunResult("return", value=42)


RAISES = [
    ("read /etc/passwd", "open('/etc/passwd').read()", "FileNotFoundError"),
    ("list the root", "os.listdir('/')", "FileNotFoundError"),
    ("write a file", "open('/tmp/dynwf-wasm-pwned', 'w').write('x')", "FileNotFoundError"),
    ("spawn a process", "import subprocess\nsubprocess.run(['id'])", "OSError"),
    ("fork", "os.fork()", "AttributeError"),
    ("start a thread", "import threading\nthreading.Thread(target=print).start()", "RuntimeError"),
    (
        "udp out",
        "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('1.1.1.1', 53))",
        "PermissionError",
    ),
    ("listen", "s = socket.socket()\ns.bind(('0.0.0.0', 0))\ns.listen()", "PermissionError"),
    ("import ctypes", "import ctypes", "ModuleNotFoundError"),
    ("event loop", "import asyncio\nasyncio.run(asyncio.sleep(0))", "PermissionError"),
    ("plain recursion", "def f(n):\n    return f(n + 1)\nf(0)", "RecursionError"),
]


@pytest.mark.parametrize(("body", "name"), [r[1:] for r in RAISES], ids=[r[0] for r in RAISES])
async def test_blocked_with_a_python_error(backend: WasmBackend, body: str, name: str) -> None:
    result = await attack(backend, body)
    assert isinstance(result, RunResult), result
    assert result.outcome == "raise" and result.error is not None
    assert result.error["name"] == name, result.error
    assert not await anyio.Path("/tmp/dynwf-wasm-pwned").exists()  # the write attack's target
    await host_is_fine(backend)


async def test_tcp_connect_reaches_nobody(backend: WasmBackend) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        result = await attack(backend, f"socket.create_connection(('127.0.0.1', {port}))")
        assert isinstance(result, RunResult) and result.error is not None
        result = await attack(backend, f"s = socket.socket()\ns.connect(('127.0.0.1', {port}))")
        assert isinstance(result, RunResult) and result.error is not None
        assert result.error["name"] == "PermissionError"
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever connected
    await host_is_fine(backend)


async def test_no_environment_argv_or_stdin(backend: WasmBackend) -> None:
    os.environ["DYNWF_WASM_CANARY"] = "host secret"
    try:
        result = await attack(
            backend,
            "return [dict(os.environ), sys.argv, sys.stdin.read(), os.getenv('HOME'), os.getcwd()]",
        )
    finally:
        del os.environ["DYNWF_WASM_CANARY"]
    assert isinstance(result, RunResult)
    assert result.value == [{}, [], "", None, "/"]


MEMORY_BOMBS = [
    ("list bomb", "x = [0] * (10 ** 9)"),
    ("bytes bomb", "x = bytearray(10 ** 9)"),
    ("append loop", "keep = []\nwhile True:\n    keep.append('x' * 100_000)"),
]


@pytest.mark.parametrize("body", [r[1] for r in MEMORY_BOMBS], ids=[r[0] for r in MEMORY_BOMBS])
async def test_memory_bombs_fail_the_run_with_the_limit(backend: WasmBackend, body: str) -> None:
    # As in the subprocess guest: a MemoryError escaping run() fails the instance with
    # IsolateLimitError("memory"); the store (capped at limits.memory_mb) is then discarded.
    result = await attack(backend, body)
    assert isinstance(result, RunResult), result
    assert result.outcome == "raise"
    assert result.error == IsolateLimitError("memory").to_dict()
    await host_is_fine(backend)


LIMITED = [
    ("cpu spin", "while True:\n    pass", "cpu"),
    (
        "spin catching",
        "while True:\n    try:\n        sum(range(10**6))\n    except BaseException:\n        pass",
        "cpu",
    ),
    (
        "deep recursion",
        "sys.setrecursionlimit(10 ** 7)\ndef f(n):\n    return f(n + 1) + 1\nf(0)",
        "stack",
    ),
]


@pytest.mark.parametrize(("body", "limit"), [r[1:] for r in LIMITED], ids=[r[0] for r in LIMITED])
async def test_limits_end_the_call(backend: WasmBackend, body: str, limit: str) -> None:
    result = await attack(backend, body)
    assert isinstance(result, IsolateLost), result
    assert isinstance(result.error, IsolateLimitError)
    assert result.error.limit == limit
    await host_is_fine(backend)


async def test_cpu_spin_in_a_step_is_the_cpu_limit(backend: WasmBackend) -> None:
    ops = ScriptedOps()
    body = """
    def spin():
        while True:
            pass
    await step.do("spin", spin)
    """
    result = await attack(backend, body, ops)
    assert isinstance(result, IsolateLost) and isinstance(result.error, IsolateLimitError)
    assert result.error.limit == "cpu"
    assert [c[0] for c in ops.calls] == ["do_begin"]  # the attempt was in flight


async def test_memory_bomb_in_a_step_fails_that_attempt(backend: WasmBackend) -> None:
    ops = ScriptedOps()
    body = """
    def bomb():
        return len([0] * (10 ** 9))
    try:
        await step.do("bomb", bomb, retries={"limit": 1, "delay": 0})
    except Exception as error:
        return [error.name, getattr(error, "limit", None)]
    """
    result = await attack(backend, body, ops)
    assert isinstance(result, RunResult) and result.outcome == "return"
    assert result.value[0] == "IsolateLimitError"
    ends = [c for c in ops.calls if c[0] == "do_end"]
    assert len(ends) == 2  # retried per the step's config
    assert all(c[4]["error"]["name"] == "IsolateLimitError" for c in ends)


FORGED = [
    "not json",
    "[]",
    "{}",
    '{"op": "exec", "code": "print(1)"}',
    '{"op": "do_begin", "name": "x", "count": 1}',
    '{"op": "do_begin", "name": "x", "count": 0, "config": {}}',
    '{"op": "do_begin", "name": "x", "count": 1, "config": {"retries": {"limit": -1}}}',
    '{"op": "do_begin", "name": "x", "count": 1, "config": {}, "extra": 1}',
    '{"op": "do_begin", "name": "bad\\u0000name", "count": 1, "config": {}}',
    '{"op": "do_begin", "name": "' + "n" * 300 + '", "count": 1, "config": {}}',
    '{"op": "do_end", "name": "x", "count": 1, "attempt": 1, "outcome": {}}',
    '{"op": "do_end", "name": "x", "count": 1, "attempt": 1, "outcome": {"value": 1, '
    '"error": {"name": "a", "message": "b"}}}',
    '{"op": "sleep", "name": "s", "count": 1, "seconds": 1, "until": 2}',
    '{"op": "sleep", "name": "s", "count": 1, "seconds": -5}',
    '{"op": "wait_for_event", "name": "w", "count": 1, "type": 7}',
    '{"op": "cap", "cap": 1, "method": "__class__"}',
    '{"op": "cap", "cap": 1, "method": "_secret"}',
    '{"op": "do_end", "name": "x", "count": 1, "attempt": 1, "outcome": {"value": '
    + "[" * 200
    + "]" * 200
    + "}}",
    '{"op": "cap", "cap": 1, "method": "peek", "args": ' + "[" * 100_000 + "]" * 100_000 + "}",
]


async def test_forged_host_calls_are_refused(backend: WasmBackend) -> None:
    ops = ScriptedOps()
    logs: list[dict[str, Any]] = []
    forged = json.dumps(FORGED)
    body = f"""
    from wit_world.imports import host
    replies = []
    for raw in {forged} + ["x" * (9 << 20)]:
        replies.append(json.loads(host.call(raw)))
    return replies
    """
    result = await attack(backend, "import json\n" + textwrap.dedent(body), ops, logs.append)
    assert isinstance(result, RunResult) and result.outcome == "return", result
    assert len(result.value) == len(FORGED) + 1
    refused = [r["line"] for r in logs if r["stream"] == "log"]
    assert len(refused) == 11 and "more host calls refused" in refused[-1]  # attributed, capped
    assert all(r["instance_id"] == "inst-1" for r in logs)
    for raw, reply in zip(FORGED, result.value, strict=False):
        assert reply["error"]["name"] == "GuestRequestError", (raw, reply)
        assert "invalid host call" in reply["error"]["message"]
    assert "limit" in result.value[-1]["error"]["message"]
    assert ops.calls == []  # nothing reached the host's ops
    await host_is_fine(backend)


class Vault:
    __rpc_methods__ = frozenset({"peek"})

    def peek(self) -> str:
        return "public"

    def secret(self) -> str:
        raise AssertionError("never reachable from the guest")


async def test_capabilities_cannot_be_guessed_or_widened(backend: WasmBackend) -> None:
    body = """
    from wit_world.imports import host
    def call(cap, method):
        raw = json.dumps({"op": "cap", "cap": cap, "method": method})
        return json.loads(host.call(raw))
    return [
        call(1, "peek"), call(1, "secret"), call(2, "peek"), call(0, "peek"),
        call(99, "peek"), (await self.env.V.peek()),
    ]
    """
    source = workflow("import json\n" + textwrap.dedent(body))
    isolate = await load(backend, source, env={"V": Vault()}, limits=LIMITS)
    result = await isolate.run_workflow("W", event(), ScriptedOps(), {}, step_limit=10)
    assert result.outcome == "return", result.error
    peek, secret, *unknown, proper = result.value
    assert peek == {"value": "public"}
    assert secret["error"]["name"] == "CapabilityError"
    assert all(u["error"]["name"] == "CapabilityError" for u in unknown)
    assert proper == "public"


async def test_step_ops_outside_a_workflow_are_refused(backend: WasmBackend) -> None:
    source = {
        "main": """
import json
from wit_world.imports import host
from dynamic_workflows import Response

async def fetch(request, env):
    raw = json.dumps({"op": "do_begin", "name": "x", "count": 1, "config": {}})
    return Response(host.call(raw))
"""
    }
    isolate = await load(backend, source)
    from dynamic_workflows.sdk import Request

    reply = json.loads((await isolate.fetch(None, Request())).body_bytes())
    assert reply["error"]["name"] == "GuestRequestError"
    assert "outside a workflow" in reply["error"]["message"]


async def test_tampering_with_the_runner_is_contained(backend: WasmBackend) -> None:
    # A tenant that breaks the runner's own JSON makes its result garbage: the call is lost
    # (the S8 crash error), the host parses nothing it should not, and the next run is clean.
    body = "import dynwf_guest\ndynwf_guest._encode = lambda value: 'garbage'\nreturn 1"
    result = await attack(backend, body)
    assert isinstance(result, IsolateLost)
    assert isinstance(result.error, WorkflowInternalError)
    isolate: WasmIsolate = await load(backend, workflow("import dynwf_guest\nreturn 'clean'"))
    clean = await isolate.run_workflow("W", event(), ScriptedOps(), {}, step_limit=10)
    assert clean.value == "clean"
    await host_is_fine(backend)


class Stalling(ScriptedOps):
    """A host whose ``do_begin`` never answers (a stuck engine, or a slow binding)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = anyio.Event()

    async def do_begin(self, name: str, count: int, config: dict[str, Any]) -> Any:
        self.entered.set()
        await anyio.sleep_forever()


async def test_wall_time_bounds_a_stuck_host_call(backend: WasmBackend) -> None:
    limits = IsolateLimits(memory_mb=48, cpu_seconds=5.0, wall_seconds=0.3)
    isolate = await load(backend, workflow("await step.do('x', lambda: 1)"), limits=limits)
    with anyio.fail_after(30):
        with pytest.raises(IsolateLost) as lost:
            await isolate.run_workflow("W", event(), Stalling(), {}, step_limit=10)
    assert isinstance(lost.value.error, IsolateLimitError) and lost.value.error.limit == "wall"
    await host_is_fine(backend)


async def test_cancelling_the_caller_stops_the_guest(backend: WasmBackend) -> None:
    ops = Stalling()
    isolate = await load(backend, workflow("await step.do('x', lambda: 1)"))
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(isolate.run_workflow, "W", event(), ops, {}, step_limit=10))
            await ops.entered.wait()
            tg.cancel_scope.cancel()
    await host_is_fine(backend)


async def test_poisoning_its_own_compiled_cache_hurts_only_that_tenant(
    backend: WasmBackend,
) -> None:
    # At load the runner hands the host each module compiled (marshal), which later runs
    # reuse. A tenant can forge that answer; the host only stores it for that same isolate
    # and never interprets it, so the forgery breaks nobody else's runs.
    poison = """
import dynwf_guest
dynwf_guest._TenantFinder.marshalled = lambda self: {"main": "Z2FyYmFnZQ=="}
class W:
    def __init__(self, ctx, env):
        pass
    async def run(self, event, step):
        return "unreachable"
"""
    isolate = await load(backend, {"main": poison}, limits=LIMITS)
    try:
        result: Any = await isolate.run_workflow("W", event(), ScriptedOps(), {}, step_limit=10)
    except IsolateLost as lost:
        result = lost
    assert isinstance(result, IsolateLost) or (
        isinstance(result, RunResult) and result.outcome == "raise"
    ), result
    await host_is_fine(backend)


async def test_a_tenant_over_its_limits_does_not_disturb_another(backend: WasmBackend) -> None:
    spinner = await load(backend, workflow("while True:\n    pass"), limits=LIMITS)
    bomber = await load(backend, workflow("x = bytearray(10 ** 9)"), limits=LIMITS)
    steps = "return [await step.do(f's{i}', lambda: i) for i in range(20)]"
    calm = await load(backend, workflow(steps))
    results: dict[str, Any] = {}

    async def run(name: str, isolate: WasmIsolate) -> None:
        try:
            results[name] = await isolate.run_workflow(
                "W", event(), ScriptedOps(), {}, step_limit=100
            )
        except IsolateLost as lost:
            results[name] = lost

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for name, isolate in (("spinner", spinner), ("bomber", bomber), ("calm", calm)):
                tg.start_soon(run, name, isolate)
    assert results["calm"] == RunResult("return", value=list(range(20)))
    assert isinstance(results["spinner"], IsolateLost)
    assert isinstance(results["spinner"].error, IsolateLimitError)
    assert results["spinner"].error.limit == "cpu"
    assert results["bomber"].error == IsolateLimitError("memory").to_dict()


async def test_a_step_past_its_timeout_is_killed(backend: WasmBackend) -> None:
    # S17 in an isolate: the callback is really stopped, not abandoned. Here it spins.
    limits = IsolateLimits(memory_mb=48, cpu_seconds=30.0, wall_seconds=60.0)
    body = """
    def spin():
        while True:
            pass
    await step.do("spin", spin, timeout="0.3 seconds")
    """
    isolate = await load(backend, workflow(body), limits=limits)
    with anyio.fail_after(30), pytest.raises(IsolateLost) as lost:
        await isolate.run_workflow("W", event(), ScriptedOps(), {}, step_limit=10)
    assert lost.value.error.to_dict() == {
        "name": "WorkflowTimeoutError",
        "message": "Execution timed out after 300ms",
    }
    await host_is_fine(backend)


class Slow:
    __rpc_methods__ = frozenset({"wait"})

    async def wait(self) -> None:
        await anyio.sleep_forever()


async def test_a_step_stuck_in_a_host_call_is_killed_at_its_timeout(
    backend: WasmBackend,
) -> None:
    limits = IsolateLimits(memory_mb=48, cpu_seconds=30.0, wall_seconds=60.0)
    body = """
    async def stuck():
        await self.env.SLOW.wait()
    await step.do("stuck", stuck, timeout="0.2 seconds")
    """
    isolate = await load(backend, workflow(body), env={"SLOW": Slow()}, limits=limits)
    with anyio.fail_after(30), pytest.raises(IsolateLost) as lost:
        await isolate.run_workflow("W", event(), ScriptedOps(), {}, step_limit=10)
    assert lost.value.error.to_dict()["name"] == "WorkflowTimeoutError"
    await host_is_fine(backend)


async def test_each_attempt_gets_a_fresh_cpu_budget(backend: WasmBackend) -> None:
    # Four attempts of ~0.4 s of CPU each: together over the 1 s budget, each well within it.
    limits = IsolateLimits(memory_mb=48, cpu_seconds=1.0, wall_seconds=60.0)
    body = """
    import time
    def burn():
        end = time.perf_counter() + 0.4
        while time.perf_counter() < end:
            pass
        return "burnt"
    return [await step.do(f"burn{i}", burn) for i in range(4)]
    """
    isolate = await load(backend, workflow(body), limits=limits)
    result = await isolate.run_workflow("W", event(), ScriptedOps(), {}, step_limit=10)
    assert result == RunResult("return", value=["burnt"] * 4)


async def test_a_cancelled_spinning_guest_is_stopped(backend: WasmBackend) -> None:
    limits = IsolateLimits(memory_mb=48, cpu_seconds=600.0, wall_seconds=600.0)
    isolate = await load(backend, workflow("while True:\n    pass"), limits=limits)
    with anyio.move_on_after(0.2):
        await isolate.run_workflow("W", event(), ScriptedOps(), {}, step_limit=10)
    with anyio.fail_after(20):  # a hang guard: the guest is stopped at its next epoch tick
        while backend._limiter.borrowed_tokens:  # noqa: ASYNC110 - a worker thread's state
            await anyio.sleep(0.01)
    await host_is_fine(backend)
