"""The original dynamic-workflows library's behaviours, as pytest tests (issue 5), plus S37/S38.

Runners here are in-process objects so that each glue behaviour is pinned on its own; the
end-to-end tests with real isolates are in test_dispatch_e2e.py.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import anyio
import pytest

from dynamic_workflows.dispatch import (
    DynamicWorkflowBinding,
    LoadRunnerContext,
    create_dynamic_workflow_entrypoint,
    scope_of,
    wrap_workflow_binding,
)
from dynamic_workflows.loader import BindContext
from dynamic_workflows.runtime import Workflows
from dynamic_workflows.sdk import (
    InstanceNotFoundError,
    WorkflowError,
    WorkflowEvent,
    WorkflowStep,
)

TERMINAL = ("complete", "errored", "terminated")


class EchoRunner:
    """Stands in for a tenant: records what reached it and runs one real step."""

    def __init__(self, seen: list[dict[str, Any]], context: LoadRunnerContext) -> None:
        self.seen = seen
        self.context = context

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        value = await step.do("tenant step", lambda: {"ran": True})
        self.seen.append(
            {
                "payload": event.payload,
                "instance_id": event.instance_id,
                "timestamp": event.timestamp,
                "metadata": self.context.metadata,
                "env_keys": sorted(self.context.env),
                "version": self.context.code_version,
            }
        )
        return {"payload": event.payload, "step": value}


def make_dispatcher(tmp_path: Path, seen: list[dict[str, Any]]) -> tuple[Workflows, dict[str, Any]]:
    engine = Workflows(store=f"sqlite:///{tmp_path / 'state.db'}")
    dispatcher_env: dict[str, Any] = {}
    DynamicWorkflow = create_dynamic_workflow_entrypoint(lambda ctx: EchoRunner(seen, ctx))
    engine.register("WORKFLOWS", DynamicWorkflow, env={"DISPATCHER": "yes"})
    dispatcher_env["WORKFLOWS"] = engine.binding("WORKFLOWS")
    return engine, dispatcher_env


def bound(
    metadata: dict[str, Any], env: dict[str, Any], version: str = "v1"
) -> DynamicWorkflowBinding:
    return wrap_workflow_binding(metadata).bind_to_worker(BindContext("tenant", version, env))


async def finished(engine: Workflows, instance_id: str, scope: str) -> Any:
    with anyio.fail_after(30):
        statuses = await engine.list_instances(scope=scope)
        (status,) = [s for s in statuses if s.id == instance_id]
        handle = await engine.instance(status.uid)
        return await handle.wait_for_status(*TERMINAL)


async def test_metadata_is_attached_on_create_and_reaches_load_runner(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    engine, env = make_dispatcher(tmp_path, seen)
    metadata = {"tenantId": "acme", "plan": "pro"}
    async with engine:
        instance = await bound(metadata, env).create(params={"name": "Ada"})
        status = await finished(engine, instance.id, scope_of(metadata))
    assert status.status == "complete"
    assert status.output == {"payload": {"name": "Ada"}, "step": {"ran": True}}
    (record,) = seen
    assert record["metadata"] == metadata
    assert record["env_keys"] == ["DISPATCHER"]
    assert record["version"] == "v1"
    assert record["instance_id"] == instance.id


@pytest.mark.parametrize("kwargs", [{}, {"params": None}, {"id": "given-id"}])
async def test_create_without_params_is_still_tagged(
    tmp_path: Path, kwargs: dict[str, Any]
) -> None:
    seen: list[dict[str, Any]] = []
    engine, env = make_dispatcher(tmp_path, seen)
    metadata = {"tenantId": "t1"}
    async with engine:
        instance = await bound(metadata, env).create(**kwargs)
        status = await finished(engine, instance.id, scope_of(metadata))
        handle = await engine.instance(status.uid)
        envelope = await handle.envelope()
    assert status.status == "complete"
    assert seen[0]["payload"] == {}
    assert envelope is not None and envelope["metadata"] == metadata
    if "id" in kwargs:
        assert instance.id == "given-id"


async def test_every_item_of_create_batch_is_tagged(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    engine, env = make_dispatcher(tmp_path, seen)
    metadata = {"tenantId": "batchy"}
    async with engine:
        handles = await bound(metadata, env).create_batch(
            [{"id": "a", "params": {"n": 1}}, {"params": {"n": 2}}, {"id": "c"}]
        )
        for h in handles:
            await finished(engine, h.id, scope_of(metadata))
    assert handles[0].id == "a"
    assert len(seen) == 3
    assert all(r["metadata"] == metadata for r in seen)
    assert sorted(str(r["payload"]) for r in seen) == sorted(["{'n': 1}", "{'n': 2}", "{}"])


@pytest.mark.parametrize(
    "metadata",
    [
        {"tenantId": "x"},
        {"nested": {"deep": [1, 2, {"k": None}]}, "flag": True, "n": 1.5},
        {"unicode": "日本語", "empty": {}},
    ],
)
async def test_arbitrary_metadata_shapes_round_trip(
    tmp_path: Path, metadata: dict[str, Any]
) -> None:
    seen: list[dict[str, Any]] = []
    engine, env = make_dispatcher(tmp_path, seen)
    async with engine:
        instance = await bound(metadata, env).create(params={"p": 1})
        await finished(engine, instance.id, scope_of(metadata))
    assert seen[0]["metadata"] == metadata


async def test_callers_arguments_are_not_mutated_and_no_double_wrapping(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    engine, env = make_dispatcher(tmp_path, seen)
    metadata = {"tenantId": "same"}
    params = {"order": {"items": [1, 2]}}
    batch = [{"id": "b1", "params": {"x": 1}}]
    before = (copy.deepcopy(metadata), copy.deepcopy(params), copy.deepcopy(batch))
    binding = bound(metadata, env)
    async with engine:
        first = await binding.create(params=params)
        second = await binding.create(params=params)
        await binding.create_batch(batch)
        for instance_id in (first.id, second.id, "b1"):
            status = await finished(engine, instance_id, scope_of(metadata))
            handle = await engine.instance(status.uid)
            assert await handle.envelope() == {"metadata": metadata, "version": "v1"}
    assert (metadata, params, batch) == before
    assert [r["payload"] for r in seen[:2]] == [params, params]


async def test_binding_is_resolved_lazily_on_each_call(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    engine, env = make_dispatcher(tmp_path, seen)
    real = env.pop("WORKFLOWS")
    binding = bound({"tenantId": "lazy"}, env)
    async with engine:
        with pytest.raises(WorkflowError, match='no workflow binding named "WORKFLOWS"'):
            await binding.create(params={})
        env["WORKFLOWS"] = real  # registered after wrapping: the next call finds it
        instance = await binding.create(params={"late": True})
        status = await finished(engine, instance.id, scope_of({"tenantId": "lazy"}))
    assert status.status == "complete"


async def test_unregistered_binding_name_is_a_clear_error(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    engine, env = make_dispatcher(tmp_path, seen)
    binding = wrap_workflow_binding({"tenantId": "t"}, "NOPE").bind_to_worker(
        BindContext("t", "v1", env)
    )
    async with engine:
        with pytest.raises(WorkflowError) as caught:
            await binding.create(params={})
    assert '"NOPE"' in str(caught.value) and "WORKFLOWS" in str(caught.value)


async def test_unattached_wrapped_binding_says_how_to_attach_it() -> None:
    with pytest.raises(WorkflowError, match="WorkerLoader"):
        await wrap_workflow_binding({"tenantId": "t"}).create(params={})


@pytest.mark.parametrize(
    "metadata", [["not", "an", "object"], {"blob": "x" * (65 * 1024)}, {"b": b"x"}]
)
def test_invalid_metadata_is_refused(metadata: Any) -> None:
    with pytest.raises(WorkflowError, match="metadata"):
        wrap_workflow_binding(metadata)


async def test_missing_envelope_errors_the_instance(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    engine, _env = make_dispatcher(tmp_path, seen)
    async with engine:
        raw = await engine.binding("WORKFLOWS").create(params={"untagged": True})
        with anyio.fail_after(30):
            status = await raw.wait_for_status(*TERMINAL)
    assert status.status == "errored"
    assert status.error is not None
    assert status.error["name"] == "MissingDispatcherMetadataError"
    assert "wrap_workflow_binding" in status.error["message"]
    assert seen == []


async def test_tenants_see_only_their_instances_and_ids_are_per_tenant(tmp_path: Path) -> None:
    """S38: get() of another tenant's or an untagged instance is InstanceNotFoundError."""
    seen: list[dict[str, Any]] = []
    engine, env = make_dispatcher(tmp_path, seen)
    acme, globex = bound({"tenantId": "acme"}, env), bound({"tenantId": "globex"}, env)
    async with engine:
        a = await acme.create(id="order-1", params={"who": "acme"})
        g = await globex.create(id="order-1", params={"who": "globex"})
        raw = await engine.binding("WORKFLOWS").create(id="raw-1", params={})
        assert a.id == g.id == "order-1"
        for tenant in ("acme", "globex"):
            await finished(engine, "order-1", scope_of({"tenantId": tenant}))
        with pytest.raises(InstanceNotFoundError, match=r"instance\.not_found"):
            await acme.get(raw.id)
        with pytest.raises(InstanceNotFoundError):
            await globex.get("missing")
        mine = await acme.get("order-1")
        status = await mine.status()
    assert status["output"]["payload"] == {"who": "acme"}
    # S37: the tenant's status holds only its own params, never the metadata
    assert "tenantId" not in repr(status)
