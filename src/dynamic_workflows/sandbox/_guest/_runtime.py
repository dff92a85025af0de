"""The guest's root capability: load tenant code, run workflows, fetch, call.

Everything here runs inside the isolate and trusts the host: arguments from the host are
used as given, and cloudpickle payloads (classes shipped by value from trusted host code)
are unpickled here, never on the host.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ...rpc import Capability, Connection, FrameTooLargeError, RemoteObject
from ...sdk import (
    Decision,
    IsolateLimitError,
    Journal,
    NotJSONError,
    Outcome,
    Request,
    Response,
    StopExecution,
    WorkflowError,
    WorkflowEvent,
    WorkflowStep,
    encode_value,
    error_to_dict,
    output_not_serialisable,
)
from ._context import Budget, CallState, calling, current_budget
from ._modules import TenantModules


@dataclass(frozen=True)
class TenantContext:
    """The ``ctx`` a tenant's entrypoint receives: its own names, never dispatcher metadata."""

    instance_id: str | None = None
    workflow_name: str | None = None


class Env:
    """The tenant's ``env``: JSON values and host capabilities, by attribute or key."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)

    def __getitem__(self, name: str) -> Any:
        return self.__dict__[name]

    def __contains__(self, name: object) -> bool:
        return name in self.__dict__

    def keys(self) -> list[str]:
        return list(self.__dict__)

    def get(self, name: str, default: Any = None) -> Any:
        return self.__dict__.get(name, default)


_LIMIT_MESSAGES = {IsolateLimitError(limit).message: limit for limit in ("cpu", "memory")}


def _memory_error() -> dict[str, str]:
    return {**IsolateLimitError("memory").to_dict(), "limit": "memory"}


def _error_dict(error: BaseException) -> dict[str, str]:
    """``{"name", "message"}``, plus ``limit`` for an ``IsolateLimitError``."""
    data = error_to_dict(error)
    if isinstance(error, IsolateLimitError):
        data["limit"] = error.limit
    return data


def _with_limit(error: Any) -> Any:
    """Name the limit of an ``IsolateLimitError`` the sdk reported as name and message."""
    if isinstance(error, dict) and error.get("name") == "IsolateLimitError":
        limit = _LIMIT_MESSAGES.get(str(error.get("message")))
        if limit is not None:
            return {**error, "limit": limit}
    return error


class RemoteOps:
    """The step's ``ops`` inside the isolate: each op is one call to the host's step ops.

    Around an attempt it swaps in a fresh CPU budget and reports ``MemoryError`` as the
    memory limit (and asks the host to retire this isolate).
    """

    def __init__(self, ops: RemoteObject, guest: Guest, cpu_seconds: float) -> None:
        self._ops = ops
        self._guest = guest
        self._cpu_seconds = cpu_seconds
        self._run_budget = current_budget.get()

    async def do_begin(self, name: str, count: int, config: dict[str, Any]) -> Decision:
        decision: Decision = await self._ops.do_begin(name, count, config)
        if decision.get("action") == "attempt":
            current_budget.set(Budget(self._cpu_seconds))
        return decision

    async def do_end(self, name: str, count: int, attempt: int, outcome: Outcome) -> Decision:
        current_budget.set(self._run_budget)
        error = outcome.get("error")
        if error is not None and error.get("name") == "MemoryError":
            outcome = {"error": _memory_error(), "retryable": True}  # type: ignore[typeddict-item]
            self._guest.retire("memory")
        elif error is not None:
            outcome = {**outcome, "error": _with_limit(error)}
        try:
            decision: Decision = await self._ops.do_end(name, count, attempt, outcome)
        except FrameTooLargeError:
            # Far over the 1 MiB step output limit (S10): report it as that failure.
            message = f"Step {name}-{count} output is too large. Maximum allowed size is 1MiB."
            too_large: Outcome = {
                "error": {"name": "WorkflowInternalError", "message": message},
                "retryable": False,
            }
            decision = await self._ops.do_end(name, count, attempt, too_large)
        if decision.get("action") == "attempt":
            current_budget.set(Budget(self._cpu_seconds))
        return decision

    async def sleep(
        self, name: str, count: int, seconds: float | None, until: float | None
    ) -> Decision:
        decision: Decision = await self._ops.sleep(name, count, seconds, until)
        return decision

    async def wait_for_event(
        self, name: str, count: int, type: str, timeout: float | None
    ) -> Decision:
        decision: Decision = await self._ops.wait_for_event(name, count, type, timeout)
        return decision


class Guest(Capability):
    """Capability 0 of the guest side of the channel."""

    __rpc_methods__ = frozenset({"hello", "load", "run_workflow", "fetch", "call"})

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self._modules: TenantModules | None = None
        self._main: ModuleType | None = None
        self._pickled: dict[str, Any] = {}
        self.env = Env({})
        self.cpu_seconds = 30.0
        self.max_log_bytes = 1 << 20
        self._retiring = False
        self._retire_task: asyncio.Task[None] | None = None

    # -- helpers -------------------------------------------------------------------------

    def _state(self, instance_id: str | None) -> CallState:
        assert self.conn is not None
        return CallState(self.conn, instance_id, self.max_log_bytes)

    def retire(self, reason: str) -> None:
        """Ask the host to replace this isolate once its calls are done (after a MemoryError
        the heap may be in any state)."""
        if self._retiring or self.conn is None or self.conn.closed:
            return
        self._retiring = True
        self._retire_task = asyncio.get_running_loop().create_task(self._tell_retire(reason))
        self._retire_task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _tell_retire(self, reason: str) -> None:
        assert self.conn is not None
        await self.conn.call(0, "retire", [reason])

    def _entry(self, name: str) -> Any:
        if name in self._pickled:
            return self._pickled[name]
        if self._main is None:
            raise WorkflowError("no tenant code loaded")
        entry = getattr(self._main, name, None)
        if entry is None:
            raise WorkflowError(f"entrypoint {name!r} not found in the tenant's main module")
        return entry

    # -- capability methods --------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "python": sys.version.split()[0]}

    def load(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Import the tenant's modules and unpickle classes shipped by value."""
        if self._modules is not None:
            raise WorkflowError("this isolate already holds tenant code")
        channel = dict(bundle.get("channel") or {})
        if self.conn is not None and "max_frame" in channel:
            self.conn.max_send = int(channel["max_frame"])
        limits = dict(bundle.get("limits") or {})
        self.cpu_seconds = float(limits.get("cpu_seconds", self.cpu_seconds))
        self.max_log_bytes = int(limits.get("max_log_bytes", self.max_log_bytes))
        modules = TenantModules(dict(bundle.get("modules") or {}))
        env = dict(bundle.get("env") or {})
        pickled = dict(bundle.get("pickled") or {})
        with calling(self._state(None), Budget(self.cpu_seconds)):
            try:
                main = bundle.get("main_module")
                if main and bundle.get("modules"):
                    self._main = modules.load(str(main).removesuffix(".py").replace("/", "."))
                if pickled:
                    import cloudpickle

                    for name, data in pickled.items():
                        self._pickled[name] = cloudpickle.loads(base64.b64decode(data))
            except MemoryError:
                self.retire("memory")
                raise IsolateLimitError("memory") from None
        self._modules = modules
        self.env = Env(env)
        return {"modules": sorted(modules.modules), "entrypoints": sorted(self._pickled)}

    async def run_workflow(
        self,
        entrypoint: str,
        event: dict[str, Any],
        ops: RemoteObject,
        journal: Journal,
        step_limit: int,
    ) -> dict[str, Any]:
        """``Entrypoint(ctx, env).run(event, step)``; the outcome, never an exception."""
        instance_id = str(event.get("instance_id", ""))
        workflow_name = str(event.get("workflow_name", ""))
        with calling(self._state(instance_id), Budget(self.cpu_seconds)):
            step = WorkflowStep(
                RemoteOps(ops, self, self.cpu_seconds), journal, step_limit=step_limit
            )
            try:
                cls = self._entry(entrypoint)
                instance = cls(TenantContext(instance_id, workflow_name), self.env)
                value = await instance.run(WorkflowEvent.from_wire(event), step)
                try:
                    encoded = encode_value(value, path="the workflow's return value")
                except NotJSONError as bad:
                    raise output_not_serialisable(bad) from None
            except StopExecution:
                return {"outcome": "stop", "hits": step.hits()}
            except MemoryError:
                self.retire("memory")
                return {"outcome": "raise", "error": _memory_error(), "hits": step.hits()}
            except asyncio.CancelledError:
                raise
            except BaseException as error:  # SystemExit too: the tenant's, not ours
                return {"outcome": "raise", "error": _error_dict(error), "hits": step.hits()}
            return {"outcome": "return", "value": encoded, "hits": step.hits()}

    async def fetch(self, entrypoint: str | None, request: dict[str, Any]) -> dict[str, Any]:
        """The module's ``fetch(request, env)`` or ``Entrypoint(ctx, env).fetch(request)``."""
        with calling(self._state(None), Budget(self.cpu_seconds)):
            try:
                req = Request.from_wire(request)
                if entrypoint is None:
                    handler = self._entry("fetch")
                    response = await handler(req, self.env)
                else:
                    obj = self._entry(entrypoint)(TenantContext(), self.env)
                    response = await obj.fetch(req)
            except MemoryError:
                self.retire("memory")
                raise IsolateLimitError("memory") from None
            if not isinstance(response, Response):
                raise WorkflowError(f"fetch returned {type(response).__name__}, not a Response")
            return response.to_wire()

    async def call(self, entrypoint: str, method: str, args: list[Any]) -> Any:
        """Any other public method of a named entrypoint; JSON in and out."""
        if method.startswith("_") or method in {"run", "fetch"}:
            raise WorkflowError(f"method {method!r} cannot be called")
        with calling(self._state(None), Budget(self.cpu_seconds)):
            try:
                obj = self._entry(entrypoint)(TenantContext(), self.env)
                fn = getattr(obj, method, None)
                if not callable(fn):
                    raise WorkflowError(f"entrypoint {entrypoint!r} has no method {method!r}")
                result = fn(*args)
                if inspect.isawaitable(result):
                    result = await result
            except MemoryError:
                self.retire("memory")
                raise IsolateLimitError("memory") from None
            return encode_value(result, path=f"the result of {method}()")
