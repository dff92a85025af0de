"""The wasm backend runs workflows exactly like the in-process path: same ops calls, same
decisions, same outputs, because ``step`` inside the runner IS the sdk's ``WorkflowStep``."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from dynamic_workflows.sandbox._wasm import ALLOWLIST, WasmBackend
from dynamic_workflows.sdk import Request, WorkflowError

from .conftest import ScriptedOps, drive_inprocess, drive_wasm, event, load

pytestmark = pytest.mark.wasm

ORDER = {
    "main": """
from dynamic_workflows import NonRetryableError, WorkflowEntrypoint
from dynamic_workflows.sdk import gather
from shop.pricing import total
import shop

class Order(WorkflowEntrypoint):
    async def run(self, event, step):
        items = event.payload["items"]
        priced = await step.do("price", lambda: total(items), retries={"limit": 2, "delay": 1})
        attempts = []

        def flaky(ctx):
            attempts.append(ctx.attempt)
            if ctx.attempt < 3:
                raise ConnectionError(f"busy on attempt {ctx.attempt}")
            return {"attempt": ctx.attempt, "step": ctx.step.name, "count": ctx.step.count}

        charged = await step.do(
            "charge", flaky, retries={"limit": 3, "delay": "1 second", "backoff": "linear"},
            timeout="30 seconds",
        )
        await step.sleep("cool-off", "1 hour")
        approval = await step.wait_for_event("approve", type="approval", timeout="2 days")
        both = await gather(step.do("a", lambda: "A"), step.do("b", lambda: b"\\x00bytes"))
        again = await step.do("a", lambda: "A2")

        async def refuse():
            raise NonRetryableError("card declined", "CardError")

        try:
            await step.do("refund", refuse, retries={"limit": 5, "delay": 1})
        except Exception as error:
            refused = [type(error).__name__, error.name, str(error)]
        return {
            "priced": priced, "charged": charged, "approval": approval.payload,
            "type": approval.type, "both": both, "again": again, "refused": refused,
            "instance": event.instance_id, "shop": shop.NAME,
        }
""",
    "shop": 'NAME = "the shop"\n',
    "shop.pricing": """
from shop.tax import RATE

def total(items):
    return round(sum(i["price"] * i["qty"] for i in items) * (1 + RATE), 2)
""",
    "shop.tax": "RATE = 0.2\n",
}


def by_step(calls: list[tuple[Any, ...]]) -> dict[tuple[str, int], list[tuple[Any, ...]]]:
    grouped: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for call in calls:
        grouped.setdefault((call[1], call[2]), []).append(call)
    return grouped


def begun(calls: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [call for call in calls if call[0] != "do_end"]


async def test_same_ops_calls_and_output_as_in_process(backend: WasmBackend) -> None:
    payload = {"items": [{"price": 10, "qty": 2}, {"price": 2.5, "qty": 4}]}
    wasm_ops = ScriptedOps(events={"approval": {"ok": True}})
    local_ops = ScriptedOps(events={"approval": {"ok": True}})
    isolate = await load(backend, ORDER)

    wasm = await drive_wasm(isolate, "Order", event(payload), wasm_ops)
    local = await drive_inprocess(ORDER, "Order", event(payload), local_ops)

    assert [r.outcome for r in wasm] == ["stop", "return"]  # hibernated once on the sleep
    assert wasm == local
    # With an event loop, gather interleaves its steps' calls; without one (wasm) they run
    # one after the other. Each step sees the same calls, and steps begin in the same order.
    assert by_step(wasm_ops.calls) == by_step(local_ops.calls)
    assert begun(wasm_ops.calls) == begun(local_ops.calls)
    assert wasm_ops.journal == local_ops.journal
    out = wasm[-1].value
    assert out["priced"] == 36.0 and out["shop"] == "the shop"
    assert out["charged"] == {"attempt": 3, "step": "charge", "count": 1}
    assert out["both"] == ["A", {"$bytes": "AGJ5dGVz"}] and out["again"] == "A2"
    assert out["refused"] == ["RemoteError", "CardError", "card declined"]
    assert out["approval"] == {"ok": True} and out["type"] == "approval"
    # The replay answered the completed steps from the journal, with no round trip.
    assert set(wasm[-1].hits) == {"price-1", "charge-1", "cool-off-1"}
    charge_calls = [c for c in wasm_ops.calls if c[1] == "charge"]
    assert [c[0] for c in charge_calls] == ["do_begin", "do_end", "do_end", "do_end"]
    assert charge_calls[0][3] == {
        "retries": {"limit": 3, "delay": 1.0, "backoff": "linear"},
        "timeout": 30.0,
    }


async def test_stop_unwinds_and_waits_for_the_event(backend: WasmBackend) -> None:
    src = {
        "main": """
class W:
    def __init__(self, ctx, env):
        pass
    async def run(self, event, step):
        try:
            got = await step.wait_for_event("w", type="go")
        except BaseException as error:  # even a broad except must not swallow the stop
            raise
        return got.payload
"""
    }
    ops = ScriptedOps()
    isolate = await load(backend, src)
    first = await isolate.run_workflow("W", event(), ops, {}, step_limit=100)
    assert first.outcome == "stop"
    ops.events["go"] = [1, 2]
    second = await isolate.run_workflow("W", event(), ops, dict(ops.journal), step_limit=100)
    assert second.outcome == "return" and second.value == [1, 2]
    third = await isolate.run_workflow("W", event(), ops, dict(ops.journal), step_limit=100)
    assert third.value == [1, 2] and third.hits == ("w-1",)


async def test_errors_and_limits_match_in_process(backend: WasmBackend) -> None:
    src = {
        "main": """
import datetime
from dynamic_workflows import WorkflowEntrypoint

class Bad(WorkflowEntrypoint):
    async def run(self, event, step):
        kind = event.payload["kind"]
        if kind == "name":
            await step.do("x" * 300, lambda: 1)
        if kind == "config":
            await step.do("c", lambda: 1, retries={"limit": 1})
        if kind == "limit":
            for i in range(5):
                await step.do("s", lambda: i)
        if kind == "serial":
            await step.do("obj", lambda: object())
        if kind == "until":
            await step.sleep_until("u", datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC))
        raise ValueError("plain " + kind)
"""
    }
    isolate = await load(backend, src)
    for kind in ("name", "config", "limit", "serial", "until", "other"):
        wasm_ops, local_ops = ScriptedOps(), ScriptedOps()
        evt = event({"kind": kind})
        wasm = await isolate.run_workflow("Bad", evt, wasm_ops, {}, step_limit=3)
        from .conftest import run_inprocess

        local = await run_inprocess(src, "Bad", evt, local_ops, step_limit=3)
        assert wasm == local, kind
        assert wasm_ops.calls == local_ops.calls, kind
    assert wasm.error == {"name": "ValueError", "message": "plain other"}


async def test_missing_module_is_named_with_the_allowlist(backend: WasmBackend) -> None:
    # At load (the main module's imports) and at run time (an import inside a function).
    with pytest.raises(WorkflowError) as at_load:
        await load(backend, {"main": "import sqlite3\nclass W:\n    pass\n"})
    src = {
        "main": """
class W:
    def __init__(self, ctx, env):
        pass
    async def run(self, event, step):
        import ssl
"""
    }
    isolate = await load(backend, src)
    result = await isolate.run_workflow("W", event(), ScriptedOps(), {}, step_limit=10)
    assert result.outcome == "raise" and result.error is not None
    for error, module in ((at_load.value.to_dict(), "'sqlite3'"), (result.error, "'ssl'")):
        assert error["name"] == "ModuleNotFoundError"
        assert module in error["message"]
        assert "allowlist" in error["message"] and "docs/wasm.md" in error["message"]


async def test_every_allowlisted_module_imports(backend: WasmBackend) -> None:
    names = ", ".join(repr(n) for n in ALLOWLIST)
    src = {
        "main": f"""
import importlib
class W:
    def __init__(self, ctx, env):
        pass
    async def run(self, event, step):
        return [importlib.import_module(n).__name__ for n in ({names},)]
"""
    }
    isolate = await load(backend, src)
    result = await isolate.run_workflow("W", event(), ScriptedOps(), {}, step_limit=10)
    assert result.outcome == "return", result.error
    assert result.value == list(ALLOWLIST)


async def test_no_state_survives_between_runs(backend: WasmBackend) -> None:
    src = {
        "main": """
import random
import helper
class W:
    def __init__(self, ctx, env):
        pass
    async def run(self, event, step):
        helper.COUNT += 1
        return [helper.COUNT, random.random()]
""",
        "helper": "COUNT = 0\n",
    }
    isolate = await load(backend, src)
    first = await isolate.run_workflow("W", event(), ScriptedOps(), {}, step_limit=10)
    second = await isolate.run_workflow("W", event(), ScriptedOps(), {}, step_limit=10)
    assert first.value[0] == second.value[0] == 1
    assert first.value[1] != second.value[1]  # reseeded: not the build-time snapshot's seed


async def test_tenants_do_not_see_each_other(backend: WasmBackend) -> None:
    secret = "SECRET = 'a-secret'\nclass W:\n    def __init__(self, c, e):\n        pass\n"
    secret += "    async def run(self, event, step):\n        return SECRET\n"
    a = await load(backend, {"main": secret, "private_a": "X = 1\n"})
    assert (
        await a.run_workflow("W", event(), ScriptedOps(), {}, step_limit=10)
    ).value == "a-secret"
    spy = {
        "main": """
import sys
class W:
    def __init__(self, ctx, env):
        pass
    async def run(self, event, step):
        found = [
            n for n, m in list(sys.modules.items())
            if "a-secret" in repr(getattr(m, "__dict__", {}))
        ]
        try:
            import private_a
            imported = True
        except ImportError:
            imported = False
        return {"found": found, "imported": imported}
"""
    }
    b = await load(backend, spy)
    result = await b.run_workflow("W", event(), ScriptedOps(), {}, step_limit=10)
    assert result.value == {"found": [], "imported": False}


class Counter:
    """A host object handed to the tenant as a capability: only ``add`` is callable."""

    __rpc_methods__: ClassVar[frozenset[str]] = frozenset({"add", "child"})
    __rpc_props__: ClassVar[tuple[str, ...]] = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label
        self.total = 0

    async def add(self, n: int, *, times: int = 1) -> int:
        self.total += n * times
        return self.total

    def child(self, label: str) -> Counter:
        return Counter(label)

    def secret(self) -> str:
        return "host secret"


async def test_env_bindings_are_capabilities(backend: WasmBackend) -> None:
    counter = Counter("main-counter")
    src = {
        "main": """
from dynamic_workflows import Response, WorkerEntrypoint

class Api(WorkerEntrypoint):
    async def fetch(self, request):
        body = await request.json()
        total = await self.env.COUNTER.add(body["n"], times=2)
        child = await self.env["COUNTER"].child("kid")
        kid = await child.add(5)
        try:
            await self.env.COUNTER.secret()
        except Exception as error:
            refused = error.name
        return Response.json({
            "total": total, "label": self.env.COUNTER.label, "kid": [child.label, kid],
            "refused": refused, "plan": self.env.PLAN,
        })

    async def double(self, x):
        return x * 2
"""
    }
    isolate = await load(backend, src, env={"COUNTER": counter, "PLAN": {"tier": "gold"}})
    request = Request("POST", "/count", {"content-type": "application/json"}, b'{"n": 3}')
    response = await isolate.fetch("Api", request)
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    import json

    assert json.loads(response.body_bytes()) == {
        "total": 6,
        "label": "main-counter",
        "kid": ["kid", 5],
        "refused": "CapabilityError",
        "plan": {"tier": "gold"},
    }
    assert counter.total == 6
    assert await isolate.call("Api", "double", [21]) == 42
    with pytest.raises(WorkflowError, match="cannot be called"):
        await isolate.call("Api", "_private", [])


async def test_module_level_fetch_and_logs(backend: WasmBackend) -> None:
    src = {
        "main": """
import logging
from dynamic_workflows import Response

async def fetch(request, env):
    print("hello from", request.url)
    logging.getLogger("t").warning("careful")
    print("x" * 5000)
    return Response("ok " + request.method, status=201)
"""
    }
    isolate = await backend.new_isolate()
    logs: list[dict[str, Any]] = []
    isolate.on_log(logs.append)
    from dynamic_workflows.sandbox import CodeBundle, IsolateLimits

    limits = IsolateLimits(max_log_bytes=1024)
    await isolate.load(CodeBundle("main", src, "v1", limits=limits))
    response = await isolate.fetch(None, Request("GET", "/hi"))
    assert (response.status, response.body_bytes()) == (201, b"ok GET")
    lines = [(r["stream"], r["line"][:20]) for r in logs]
    assert ("stdout", "hello from /hi") in lines
    assert ("stderr", "careful") in lines
    assert any("dropped" in r["line"] for r in logs)  # capped at max_log_bytes per stream
    assert sum(len(r["line"]) for r in logs if r["stream"] == "stdout") <= 1024


async def test_gather_runs_steps_in_call_order(backend: WasmBackend) -> None:
    src = {
        "main": """
from dynamic_workflows.sdk import gather
class W:
    def __init__(self, ctx, env):
        pass
    async def run(self, event, step):
        async def work(i):
            return i * i
        return await gather(*[step.do("sq", lambda i=i: work(i)) for i in range(4)])
"""
    }
    wasm_ops, local_ops = ScriptedOps(), ScriptedOps()
    isolate = await load(backend, src)
    wasm = await drive_wasm(isolate, "W", event(), wasm_ops)
    local = await drive_inprocess(src, "W", event(), local_ops)
    assert wasm[-1].value == [0, 1, 4, 9]
    assert wasm == local
    assert by_step(wasm_ops.calls) == by_step(local_ops.calls)
    assert begun(wasm_ops.calls) == begun(local_ops.calls)
    assert [c[2] for c in wasm_ops.calls if c[0] == "do_begin"] == [1, 2, 3, 4]


async def test_awaiting_a_future_is_a_clear_error(backend: WasmBackend) -> None:
    src = {
        "main": """
import asyncio
class W:
    def __init__(self, ctx, env):
        pass
    async def run(self, event, step):
        await asyncio.sleep(0)  # a bare yield is fine
        await asyncio.sleep(5)
"""
    }
    isolate = await load(backend, src)
    result = await isolate.run_workflow("W", event(), ScriptedOps(), {}, step_limit=10)
    assert result.outcome == "raise" and result.error is not None
    assert result.error["name"] == "RuntimeError"  # no running event loop


async def test_callback_signatures_match_in_process(backend: WasmBackend) -> None:
    # The runner answers "does the callback take the context?" from the code object for
    # plain functions; every shape must get the same answer as in-process.
    src = {
        "main": """
import functools

def positional_only(ctx, /):
    return ctx.attempt

def keyword_only(*, ctx=None):
    return ctx

class Callable:
    def __call__(self, ctx):
        return ctx.step.name

class Holder:
    def method(self, ctx):
        return ctx.step.count

    def plain(self):
        return "plain"

class W:
    def __init__(self, ctx, env):
        pass

    async def run(self, event, step):
        async def coro_ctx(ctx):
            return ctx.attempt

        def star(*args):
            return len(args)

        def kw(**kwargs):
            return len(kwargs)

        def wrapped(ctx):
            return "wrapped"

        @functools.wraps(wrapped)
        def wrapper(*args, **kwargs):
            return wrapped(*args, **kwargs)

        shapes = [
            lambda: "none", lambda ctx: ctx.attempt, lambda ctx=None: ctx is None,
            lambda i=1, j=2: i + j, star, kw, positional_only, keyword_only, coro_ctx,
            Callable(), Holder().method, Holder().plain, functools.partial(lambda a, b=2: a + b, 1),
            wrapper,
        ]
        out = []
        for i, fn in enumerate(shapes):
            try:
                out.append(await step.do(f"s{i}", fn))
            except Exception as error:
                out.append(type(error).__name__)
        return out
"""
    }
    wasm_ops, local_ops = ScriptedOps(), ScriptedOps()
    isolate = await load(backend, src)
    wasm = await drive_wasm(isolate, "W", event(), wasm_ops)
    local = await drive_inprocess(src, "W", event(), local_ops)
    assert wasm == local, (wasm, local)
    assert wasm[-1].outcome == "return", wasm
    assert wasm[-1].value[:4] == ["none", 1, True, 3], wasm


async def test_the_confinement_is_probed_at_start(backend: WasmBackend) -> None:
    report = backend.confinement_report()
    assert report["backend"] == "wasm" and report["runner_ready"] is True
    assert report["probe"] == {
        "env_empty": True,
        "argv_empty": True,
        "stdin_empty": True,
        "no_files": True,
        "no_network": True,
        "memory_capped": True,
    }
    isolate = await backend.new_isolate()
    assert isolate.confinement["probe"] == report["probe"]


async def test_a_broken_bundle_fails_at_load(backend: WasmBackend) -> None:
    isolate = await backend.new_isolate()
    from dynamic_workflows.sandbox import CodeBundle

    with pytest.raises(WorkflowError) as raised:
        await isolate.load(CodeBundle("index.py", {"index.py": "def broken(:\n"}, "v1"))
    assert raised.value.name == "SyntaxError"
    with pytest.raises(WorkflowError) as missing:
        await isolate.load(CodeBundle("index.py", {"index.py": "import numpy\n"}, "v2"))
    assert missing.value.name == "ModuleNotFoundError" and "'numpy'" in str(missing.value)
    loaded = {"index.py": "from lib.util import X\nclass W:\n    pass\n", "lib/util.py": "X = 1\n"}
    await isolate.load(CodeBundle("index.py", loaded, "v3"))  # the loader's path form
