"""The README pattern end to end (issue 5): one dispatcher, three tenants whose workflows
differ, each driven through its own ``fetch`` in a real isolate.

Checks: every instance runs its own tenant's code; sleeps survive eviction of the isolate
and a restart of the dispatcher; cross-tenant ``get`` is refused; metadata is invisible to
tenants; new code deployed mid-sleep does not change a running instance (S39); a tenant that
crashes its isolate does not disturb the others.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from dynamic_workflows.dispatch import (
    create_dynamic_workflow_entrypoint,
    scope_of,
    wrap_workflow_binding,
)
from dynamic_workflows.loader import WorkerCode, WorkerLoader, WorkerStub
from dynamic_workflows.runtime import InstanceStatus, ManualClock, Workflows
from dynamic_workflows.sandbox import BackendName
from dynamic_workflows.sdk import Request, WorkflowError

TERMINAL = ("complete", "errored", "terminated")

FETCH = """
from dynamic_workflows.sdk import Response, InstanceNotFoundError

async def fetch(request, env):
    if request.url.startswith("/get/"):
        try:
            handle = await env.WORKFLOWS.get(request.url[len("/get/"):])
        except InstanceNotFoundError as error:
            return Response.json({"error": error.name}, status=404)
        return Response.json(await handle.status())
    if request.url == "/crash":
        import os
        os._exit(3)
    instance = await env.WORKFLOWS.create(params=await request.json())
    return Response.json({"id": instance.id})
"""

ALPHA = (
    FETCH
    + """
from dynamic_workflows.sdk import WorkflowEntrypoint

class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        greeting = await step.do("greet", lambda: "hello " + event.payload["name"])
        await step.sleep("nap", "1 hour")
        return {"tenant": "alpha", "greeting": greeting, "payload": event.payload,
                "ctx_has_metadata": hasattr(self.ctx, "envelope") or hasattr(self.ctx, "metadata")}
"""
)

BETA = (
    FETCH
    + """
from dynamic_workflows.sdk import WorkflowEntrypoint
from helpers import add

class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        total = await step.do("sum", lambda: add(*event.payload["numbers"]))
        approval = await step.wait_for_event("approval", type="approved", timeout="1 day")
        return {"tenant": "beta", "total": total, "approved_by": approval.payload["by"]}
"""
)

BETA_HELPERS = "def add(*numbers):\n    return sum(numbers)\n"

GAMMA = (
    FETCH
    + """
from dynamic_workflows.sdk import WorkflowEntrypoint
VERSION = "{version}"

class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        before = await step.do("before", lambda: VERSION)
        await step.sleep("wait", "2 hours")
        after = await step.do("after", lambda: VERSION)
        return {"tenant": "gamma", "before": before, "after": after}
"""
)


@dataclass
class Dispatcher:
    """The README's dispatcher, rebuilt on demand (a restart re-creates it from disk)."""

    tmp_path: Path
    backend: BackendName
    clock: ManualClock
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    engine: Workflows | None = None
    loader: WorkerLoader | None = None

    def load_tenant(self, tenant_id: str) -> WorkerStub:
        assert self.loader is not None

        def factory() -> WorkerCode:
            if tenant_id not in self.sources:
                raise WorkflowError(f"unknown tenant {tenant_id}")
            return WorkerCode(
                main_module="index.py",
                modules=dict(self.sources[tenant_id]),
                env={"WORKFLOWS": wrap_workflow_binding({"tenantId": tenant_id})},
            )

        return self.loader.get(tenant_id, factory)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Dispatcher]:
        self.engine = Workflows(
            store=f"sqlite:///{self.tmp_path / 'state.db'}",
            clock=self.clock,
            hibernate_after=60.0,
        )
        dynamic = create_dynamic_workflow_entrypoint(
            lambda ctx: self.load_tenant(ctx.metadata["tenantId"]).get_entrypoint("TenantWorkflow")
        )
        self.engine.register("WORKFLOWS", dynamic)
        self.loader = WorkerLoader(
            backend=self.backend,
            env={"WORKFLOWS": self.engine.binding("WORKFLOWS")},
            code_dir=self.tmp_path / "code",
        )
        async with self.loader, self.engine:  # the engine stops its runs first
            yield self

    async def post(self, tenant: str, url: str, body: Any = None) -> tuple[int, Any]:
        request = Request(
            "POST", url, {"content-type": "application/json"}, json.dumps(body).encode()
        )
        response = await self.load_tenant(tenant).get_entrypoint().fetch(request)
        return response.status, json.loads(response.body_bytes() or b"null")

    async def status(self, tenant: str, instance_id: str) -> InstanceStatus:
        assert self.engine is not None
        (listed,) = [
            s
            for s in await self.engine.list_instances(scope=scope_of({"tenantId": tenant}))
            if s.id == instance_id
        ]
        return await (await self.engine.instance(listed.uid)).status()

    async def hibernated(self, tenant: str, instance_id: str) -> None:
        """Wait until the instance's run has left its isolate (the engine logged it)."""
        assert self.engine is not None
        uid = (await self.wait(tenant, instance_id, "waiting")).uid
        with anyio.fail_after(60):
            while not any(r["kind"] == "hibernated" for r in await self.engine.history(uid)):  # noqa: ASYNC110
                await anyio.sleep(0.01)

    async def wait(self, tenant: str, instance_id: str, *statuses: str) -> InstanceStatus:
        assert self.engine is not None
        (listed,) = [
            s
            for s in await self.engine.list_instances(scope=scope_of({"tenantId": tenant}))
            if s.id == instance_id
        ]
        with anyio.fail_after(60):
            return await (await self.engine.instance(listed.uid)).wait_for_status(*statuses)


BACKENDS = ["inprocess", "subprocess", pytest.param("wasm", marks=pytest.mark.wasm)]


@pytest.fixture(params=BACKENDS)
def dispatcher(request: pytest.FixtureRequest, tmp_path: Path) -> Dispatcher:
    if request.param == "wasm":
        request.getfixturevalue("wasm_runner")  # built once per session
    d = Dispatcher(tmp_path, request.param, ManualClock(start=1_700_000_000.0))
    d.sources = {
        "alpha": {"index.py": ALPHA},
        "beta": {"index.py": BETA, "helpers.py": BETA_HELPERS},
        "gamma": {"index.py": GAMMA.replace("{version}", "v1")},
    }
    return d


async def test_three_tenants_each_run_their_own_code(dispatcher: Dispatcher) -> None:
    async with dispatcher.running() as d:
        code_a, a = await d.post("alpha", "/", {"name": "Ada"})
        code_b, b = await d.post("beta", "/", {"numbers": [1, 2, 3]})
        code_g, g = await d.post("gamma", "/", {})
        assert (code_a, code_b, code_g) == (200, 200, 200)
        await d.wait("alpha", a["id"], "waiting")
        await d.wait("beta", b["id"], "waiting")
        await d.wait("gamma", g["id"], "waiting")
        assert d.engine is not None
        # the approval event goes to beta's instance through the admin side
        (beta_status,) = await d.engine.list_instances(scope=scope_of({"tenantId": "beta"}))
        await (await d.engine.instance(beta_status.uid)).send_event(
            type="approved", payload={"by": "ops"}
        )
        assert d.loader is not None
        isolates = d.loader.isolates()
        assert sorted(i["worker"] for i in isolates) == ["alpha", "beta", "gamma"]
        if d.backend == "subprocess":  # each tenant in its own confined process
            for isolate in isolates:
                report = isolate["confinement"]
                assert report["seccomp"] and report["landlock"] and report["netns"]
        d.clock.advance(3 * 3600)
        alpha = await d.wait("alpha", a["id"], *TERMINAL)
        beta = await d.wait("beta", b["id"], *TERMINAL)
        gamma = await d.wait("gamma", g["id"], *TERMINAL)
    assert alpha.output == {
        "tenant": "alpha",
        "greeting": "hello Ada",
        "payload": {"name": "Ada"},  # S37: only its own params, no dispatcher metadata
        "ctx_has_metadata": False,
    }
    assert beta.output == {"tenant": "beta", "total": 6, "approved_by": "ops"}
    assert gamma.output == {"tenant": "gamma", "before": "v1", "after": "v1"}


async def test_sleep_survives_eviction_and_dispatcher_restart(dispatcher: Dispatcher) -> None:
    async with dispatcher.running() as d:
        _, a = await d.post("alpha", "/", {"name": "Grace"})
        _, g = await d.post("gamma", "/", {})
        await d.hibernated("alpha", a["id"])
        await d.hibernated("gamma", g["id"])
        assert d.loader is not None
        await d.loader.evict()  # every isolate goes away while the instances sleep
        assert d.loader.isolates() == []
        d.clock.advance(3600)
        alpha = await d.wait("alpha", a["id"], *TERMINAL)
    assert alpha.status == "complete"
    assert alpha.output["greeting"] == "hello Grace"
    # the whole dispatcher goes away; a new one on the same files finishes gamma
    async with dispatcher.running() as d:
        d.clock.advance(2 * 3600)
        gamma = await d.wait("gamma", g["id"], *TERMINAL)
    assert gamma.output == {"tenant": "gamma", "before": "v1", "after": "v1"}


async def test_new_code_mid_sleep_keeps_the_running_instance_on_its_version(
    dispatcher: Dispatcher,
) -> None:
    async with dispatcher.running() as d:
        _, old = await d.post("gamma", "/", {})
        await d.wait("gamma", old["id"], "waiting")
        dispatcher.sources["gamma"] = {"index.py": GAMMA.replace("{version}", "v2")}
        assert d.loader is not None
        d.loader.invalidate("gamma")  # deploy: the next load runs the factory again
        _, new = await d.post("gamma", "/", {})
        await d.wait("gamma", new["id"], "waiting")
        d.clock.advance(2 * 3600)
        old_status = await d.wait("gamma", old["id"], *TERMINAL)
        new_status = await d.wait("gamma", new["id"], *TERMINAL)
    assert old_status.output == {"tenant": "gamma", "before": "v1", "after": "v1"}
    assert new_status.output == {"tenant": "gamma", "before": "v2", "after": "v2"}


async def test_cross_tenant_get_is_refused(dispatcher: Dispatcher) -> None:
    async with dispatcher.running() as d:
        _, a = await d.post("alpha", "/", {"name": "Ada"})
        code, body = await d.post("beta", f"/get/{a['id']}")
        assert (code, body) == (404, {"error": "InstanceNotFoundError"})
        code, own = await d.post("alpha", f"/get/{a['id']}")
    assert code == 200
    assert own["id"] == a["id"]
    assert "tenantId" not in json.dumps(own)


async def test_a_crashing_tenant_does_not_disturb_the_others(tmp_path: Path) -> None:
    """Subprocess only: ``os._exit`` in an in-process isolate would end the test runner."""
    d = Dispatcher(tmp_path, "subprocess", ManualClock(start=1_700_000_000.0))
    d.sources = {"alpha": {"index.py": ALPHA}, "crashy": {"index.py": FETCH}}
    async with d.running():
        _, a = await d.post("alpha", "/", {"name": "Ada"})
        with pytest.raises(WorkflowError):
            await d.post("crashy", "/crash")
        await d.wait("alpha", a["id"], "waiting")
        d.clock.advance(3600)
        alpha = await d.wait("alpha", a["id"], *TERMINAL)
        code, _ = await d.post("crashy", "/", {})  # the crashed tenant is reloaded on next use
    assert alpha.status == "complete"
    assert code == 200
