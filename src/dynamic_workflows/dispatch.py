"""The glue: one dispatcher entrypoint runs every tenant's workflows in that tenant's code.

``wrap_workflow_binding(metadata)`` gives a tenant a binding that tags each ``create()`` with
the tenant's metadata; ``create_dynamic_workflow_entrypoint(load_runner)`` reads the tag back
when the engine runs the instance (seconds or days later) and forwards ``run(event, step)``
into the right tenant's isolate.

Beyond the original library: the metadata is stored beside the instance in a hidden
envelope, never in the tenant's params or status (S37); a wrapped binding is scoped by its
metadata, so a tenant sees only its own instances and ids are unique per tenant (S38); and
the envelope records the code version, so an instance keeps running the code it started
with (S39).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .loader import BindContext, EntrypointStub
from .runtime import InstanceHandle, WorkflowBinding
from .sdk import (
    MissingDispatcherMetadataError,
    NotJSONError,
    WorkflowEntrypoint,
    WorkflowError,
    WorkflowEvent,
    WorkflowStep,
    encode_value,
)

MAX_METADATA_BYTES = 64 * 1024


@dataclass(frozen=True)
class LoadRunnerContext:
    """What ``load_runner`` receives: the tenant's metadata, the dispatcher's env, the
    engine's execution context and the code version the instance is pinned to."""

    metadata: Any
    env: Any
    ctx: Any
    code_version: str | None


Runner = Any  # anything with ``async run(event, step)``, usually an EntrypointStub
LoadRunner = Callable[[LoadRunnerContext], Runner | Awaitable[Runner]]


def _check_metadata(metadata: object) -> dict[str, Any]:
    if not isinstance(metadata, Mapping):
        raise WorkflowError("dispatcher metadata must be a JSON object")
    try:
        encoded = encode_value(dict(metadata), allow_bytes=False, path="metadata")
    except NotJSONError as error:
        raise WorkflowError(f"dispatcher metadata must be JSON: {error}") from None
    if len(json.dumps(encoded).encode()) > MAX_METADATA_BYTES:
        raise WorkflowError(f"dispatcher metadata is larger than {MAX_METADATA_BYTES} bytes")
    return dict(metadata)


def scope_of(metadata: Mapping[str, Any]) -> str:
    """The engine scope of a tenant: a hash of its canonical metadata."""
    canonical = json.dumps(metadata, sort_keys=True, separators=(",", ":"))
    return "t:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


class TenantInstance:
    """An instance handle as a tenant sees it: its own params and status, nothing else."""

    __rpc_methods__ = frozenset({"status", "pause", "resume", "terminate", "restart", "send_event"})
    __rpc_props__ = ("id",)

    def __init__(self, handle: InstanceHandle) -> None:
        self._handle = handle
        self.id = handle.id

    async def status(self) -> dict[str, Any]:
        st = await self._handle.status()
        return {
            "id": self.id,
            "status": st.status,
            "output": encode_value(st.output),
            "error": st.error,
        }

    async def pause(self) -> None:
        await self._handle.pause()

    async def resume(self) -> None:
        await self._handle.resume()

    async def terminate(self) -> None:
        await self._handle.terminate()

    async def restart(self) -> None:
        await self._handle.restart()

    async def send_event(self, type: str, payload: Any = None) -> None:
        await self._handle.send_event(type=type, payload=payload)


class DynamicWorkflowBinding:
    """A workflow binding that tags every instance with its tenant's metadata.

    Made by :func:`wrap_workflow_binding` inside a tenant's ``WorkerCode.env``; the loader
    binds it to the dispatcher's env and the code version when the tenant's isolate starts.
    The engine binding is looked up by name on every call, so it may be registered later.
    """

    __rpc_methods__ = frozenset({"create", "create_batch", "get"})

    def __init__(
        self,
        metadata: Mapping[str, Any],
        binding_name: str = "WORKFLOWS",
        *,
        env: Mapping[str, Any] | None = None,
        version: str | None = None,
    ) -> None:
        self.metadata = _check_metadata(metadata)
        self.binding_name = binding_name
        self._env = env
        self.version = version

    def bind_to_worker(self, context: BindContext) -> DynamicWorkflowBinding:
        return DynamicWorkflowBinding(
            self.metadata, self.binding_name, env=context.loader_env, version=context.version
        )

    def _scoped(self) -> WorkflowBinding:
        if self._env is None:
            raise WorkflowError(
                "this wrapped binding is not attached to a dispatcher: pass it in "
                "WorkerCode.env and load the code through a WorkerLoader"
            )
        binding = self._env.get(self.binding_name)
        if not isinstance(binding, WorkflowBinding):
            known = ", ".join(sorted(self._env)) or "none"
            raise WorkflowError(
                f"wrap_workflow_binding: the dispatcher env has no workflow binding named "
                f'"{self.binding_name}" (it has: {known}); pass it to WorkerLoader(env=...)'
            )
        envelope = {"metadata": self.metadata, "version": self.version}
        return binding.scoped(scope_of(self.metadata), envelope)

    async def create(self, id: str | None = None, params: Any = None) -> TenantInstance:
        return TenantInstance(await self._scoped().create(id=id, params=params))

    async def create_batch(self, items: Sequence[Mapping[str, Any]]) -> list[TenantInstance]:
        return [TenantInstance(h) for h in await self._scoped().create_batch(list(items))]

    async def get(self, id: str) -> TenantInstance:
        return TenantInstance(await self._scoped().get(id))


def wrap_workflow_binding(
    metadata: Mapping[str, Any], binding_name: str = "WORKFLOWS"
) -> DynamicWorkflowBinding:
    """A binding for a tenant's env that tags each ``create()`` with ``metadata``."""
    return DynamicWorkflowBinding(metadata, binding_name)


async def dispatch_workflow(
    ctx: Any, env: Any, event: WorkflowEvent, step: WorkflowStep, load_runner: LoadRunner
) -> Any:
    """Read the instance's envelope, load the tenant's runner and forward ``run`` into it.

    The lower-level primitive behind :func:`create_dynamic_workflow_entrypoint`, for authors
    who subclass ``WorkflowEntrypoint`` themselves.
    """
    envelope = getattr(ctx, "envelope", None)
    if not isinstance(envelope, Mapping) or not isinstance(envelope.get("metadata"), Mapping):
        instance_id = getattr(ctx, "instance_id", event.instance_id)
        raise MissingDispatcherMetadataError(
            f"Instance {instance_id!r} has no dispatcher metadata: create it through a "
            "binding made by wrap_workflow_binding(), not the raw engine binding"
        )
    version = envelope.get("version")
    context = LoadRunnerContext(
        metadata=dict(envelope["metadata"]),
        env=env,
        ctx=ctx,
        code_version=version if isinstance(version, str) else None,
    )
    runner = load_runner(context)
    if inspect.isawaitable(runner):
        runner = await runner
    if isinstance(runner, EntrypointStub) and context.code_version is not None:
        runner = runner.at_version(context.code_version)
    return await runner.run(event, step)


def create_dynamic_workflow_entrypoint(load_runner: LoadRunner) -> type[WorkflowEntrypoint]:
    """One entrypoint class for the engine that runs each instance in its tenant's code."""

    class DynamicWorkflow(WorkflowEntrypoint):
        async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            return await dispatch_workflow(self.ctx, self.env, event, step, load_runner)

    return DynamicWorkflow


__all__ = [
    "DynamicWorkflowBinding",
    "LoadRunnerContext",
    "MissingDispatcherMetadataError",
    "TenantInstance",
    "create_dynamic_workflow_entrypoint",
    "dispatch_workflow",
    "scope_of",
    "wrap_workflow_binding",
]
