"""The generic wasm runner. Runs INSIDE the component (CPython on WASI), never in the host.

componentize-py imports this module once at build time and snapshots the interpreter, so
everything imported here (the stdlib allowlist, the sdk) is already loaded in every fresh
instance, and nothing else exists. Tenant code is not compiled in: each ``run(code,
request)`` imports the tenant's modules from ``code`` into fresh module objects, builds
``step`` as the sdk's own ``WorkflowStep`` whose ops make one JSON host call per op, and
drives the coroutine without an event loop (step ops are synchronous host calls).

Everything this module sends is untrusted to the host, which validates it; a tenant may call
``host.call`` directly, and gains nothing by it.
"""

from __future__ import annotations

import binascii
import gc
import importlib
import importlib.abc
import importlib.machinery
import json
import marshal
import random
import sys
import types
from collections.abc import Awaitable, Sequence
from typing import Any

import dynwf_allowlist  # type: ignore[import-not-found]
import wit_world  # type: ignore[import-not-found]
from wit_world.imports import host  # type: ignore[import-not-found]

from dynamic_workflows import sdk

for _name in dynwf_allowlist.ALLOWLIST + dynwf_allowlist.HIDDEN:
    importlib.import_module(_name)

_call = host.call
_BUILTIN_MODULES = frozenset(sys.modules)


class _HostError(Exception):
    """The host refused a request; carries its ``{"name", "message"}``."""


_encode = json.JSONEncoder(separators=(",", ":")).encode  # one encoder, not one per call
_decode = json.JSONDecoder().decode


def _host(request: dict[str, Any]) -> Any:
    reply = _decode(_call(_encode(request)))
    if isinstance(reply, dict) and "error" in reply:
        raise sdk.error_from_dict(dict(reply["error"]))
    return reply


class _HostOps:
    """``StepOps`` over the one host import: each op is one synchronous host call."""

    async def do_begin(self, name: str, count: int, config: dict[str, Any]) -> Any:
        return _host({"op": "do_begin", "name": name, "count": count, "config": config})

    async def do_end(self, name: str, count: int, attempt: int, outcome: Any) -> Any:
        error = outcome.get("error")
        if error is not None and error.get("name") == "MemoryError":
            # The store's memory limit surfaces as MemoryError in the guest (S40).
            error = {"name": "IsolateLimitError", "message": _MEMORY}
            outcome = {"error": error, "retryable": True}
        request = {"op": "do_end", "name": name, "count": count, "attempt": attempt}
        return _host({**request, "outcome": outcome})

    async def sleep(self, name: str, count: int, seconds: Any, until: Any) -> Any:
        return _host(
            {"op": "sleep", "name": name, "count": count, "seconds": seconds, "until": until}
        )

    async def wait_for_event(self, name: str, count: int, type: str, timeout: Any) -> Any:
        request = {"op": "wait_for_event", "name": name, "count": count}
        return _host({**request, "type": type, "timeout": timeout})


_MEMORY = "Isolate exceeded its memory limit"
_steps: list[sdk.WorkflowStep] = []


class _Capability:
    """A host object handed over in ``env``: each method call is one ``cap`` host call;
    its ``props`` (static attributes) are read locally."""

    __slots__ = ("_cap", "_props")

    def __init__(self, cap: int, props: dict[str, Any]) -> None:
        self._cap = cap
        self._props = props

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)
        if method in self._props:
            return self._props[method]
        cap = self._cap

        async def invoke(*args: Any, **kwargs: Any) -> Any:
            reply = _host(
                {
                    "op": "cap",
                    "cap": cap,
                    "method": method,
                    "args": sdk.encode_value(list(args)),
                    "kwargs": sdk.encode_value(kwargs),
                }
            )
            return _revive(reply.get("value"))

        return invoke

    def __repr__(self) -> str:
        return f"<host capability {self._cap}>"


def _revive(value: Any) -> Any:
    """``decode_value`` that also turns ``{"$cap": n, "props": {...}}`` into proxies."""
    if isinstance(value, list):
        return [_revive(v) for v in value]
    if isinstance(value, dict):
        cap = value.get("$cap")
        if isinstance(cap, int) and set(value) <= {"$cap", "props"}:
            props = value.get("props")
            return _Capability(cap, _revive(props) if isinstance(props, dict) else {})
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == "$esc" and isinstance(inner, dict):
                return {k: _revive(v) for k, v in inner.items()}
            if key == "$bytes":
                return sdk.decode_value(value)
        return {k: _revive(v) for k, v in value.items()}
    return value


class _Env(types.SimpleNamespace):
    """``self.env``: bindings by attribute (``env.WORKFLOWS``) and by key."""

    def __getitem__(self, key: str) -> Any:
        return self.__dict__[key]

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__

    def keys(self) -> list[str]:
        return list(self.__dict__)

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__.get(key, default)


class _Context:
    """The ``ctx`` an entrypoint receives: its own names, never dispatcher metadata."""

    def __init__(self, instance_id: str | None = None, workflow_name: str | None = None) -> None:
        self.instance_id = instance_id
        self.workflow_name = workflow_name


class _TenantFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports the tenant's modules (and only them) from their sources, freshly per run."""

    def __init__(self, files: dict[str, str], compiled: dict[str, str]) -> None:
        self.modules: dict[str, str] = {}
        self.packages: set[str] = set()
        self.compiled = compiled
        """Module name -> base64 ``marshal`` of its code, made by this runner at load."""
        for path, source in files.items():
            name = _module_name(path)
            if name.endswith(".__init__"):
                name = name.removesuffix(".__init__")
                self.packages.add(name)
            self.modules[name] = source
        for name in list(self.modules):  # folders without an __init__.py are packages too
            parts = name.split(".")
            for i in range(1, len(parts)):
                self.packages.add(".".join(parts[:i]))

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in self.modules or fullname in self.packages:
            is_package = fullname in self.packages
            spec = importlib.machinery.ModuleSpec(fullname, self, is_package=is_package)
            spec.has_location = False
            return spec
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        filename = module.__name__.replace(".", "/") + ".py"
        module.__file__ = filename
        exec(self.code(module.__name__), module.__dict__)  # noqa: S102 - the point

    def code(self, name: str) -> types.CodeType:
        compiled = self.compiled.get(name)
        if compiled is not None:
            # Made by this runner at load; inside the sandbox, bad bytes hurt only this run.
            code = marshal.loads(binascii.a2b_base64(compiled))  # noqa: S302
            if isinstance(code, types.CodeType):
                return code
        filename = name.replace(".", "/") + ".py"
        return compile(self.modules.get(name, ""), filename, "exec")

    def marshalled(self) -> dict[str, str]:
        """Every module compiled once (at load): later runs skip ``compile`` (~1 ms/KB)."""
        return {
            name: binascii.b2a_base64(marshal.dumps(self.code(name)), newline=False).decode()
            for name in self.modules
        }


def _module_name(path: str) -> str:
    """``"lib/util.py"`` (the loader's form) and ``"lib.util"`` both name ``lib.util``."""
    return path.removesuffix(".py").replace("/", ".") if path.endswith(".py") else path


class _Missing(importlib.abc.MetaPathFinder):
    """Last on the path: a module the runner does not have is named, with the way out."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> None:
        raise ModuleNotFoundError(
            f"No module named {fullname!r} in the wasm runner: it offers the tenant's own "
            "modules, dynamic_workflows and the standard-library allowlist in docs/wasm.md "
            "(dynamic_workflows.sandbox._wasm.ALLOWLIST); use the subprocess backend for more",
            name=fullname,
        )


def _drive(awaitable: Awaitable[Any]) -> Any:
    """Run a coroutine to completion without an event loop: step ops never suspend."""
    coro = awaitable.__await__()
    error: BaseException | None = None
    while True:
        try:
            yielded = coro.throw(error) if error is not None else coro.send(None)
        except StopIteration as stop:
            return stop.value
        error = None
        if yielded is not None:  # a Future: only an event loop could resolve it
            error = sdk.WorkflowError(
                "the wasm runner has no event loop: await step operations, "
                "sdk.gather(...) and plain coroutines only"
            )


def _entry_class(main: types.ModuleType, entrypoint: str) -> Any:
    cls = getattr(main, entrypoint, None)
    if not isinstance(cls, type):
        raise sdk.WorkflowError(f"entrypoint {entrypoint!r} is not a class in {main.__name__!r}")
    return cls


def _execute(code: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    modules = {str(k): str(v) for k, v in dict(code["modules"]).items()}
    for name in [n for n in sys.modules if n not in _BUILTIN_MODULES]:
        del sys.modules[name]
    compiled = {str(k): str(v) for k, v in dict(code.get("compiled") or {}).items()}
    finder = _TenantFinder(modules, compiled)
    sys.meta_path[:] = [finder, _Missing()]
    random.seed()  # the snapshot was seeded at build time; every instance reseeds
    main = importlib.import_module(_module_name(str(code["main"])))
    env = _Env(**{str(k): _revive(v) for k, v in dict(request.get("env") or {}).items()})
    ctx = _Context()
    kind = request["kind"]
    if kind == "load":  # import once when the isolate is loaded, so errors surface there
        loaded = sorted(n for n in sys.modules if n not in _BUILTIN_MODULES)
        return {"outcome": "return", "value": {"modules": loaded, "compiled": finder.marshalled()}}
    if kind == "workflow":
        event = sdk.WorkflowEvent.from_wire(request["event"])
        ctx = _Context(event.instance_id, event.workflow_name)
        instance = _entry_class(main, str(request["entrypoint"]))(ctx, env)
        step = sdk.WorkflowStep(
            _HostOps(),
            request.get("journal") or {},
            step_limit=int(request["step_limit"]),
        )
        _steps.append(step)
        value = _drive(instance.run(event, step))
        try:
            encoded = sdk.encode_value(value, path="the workflow's return value")
        except sdk.NotJSONError as bad:
            raise sdk.output_not_serialisable(bad) from None
        return {"outcome": "return", "value": encoded}
    if kind == "fetch":
        http = sdk.Request.from_wire(request["request"])
        entrypoint = request.get("entrypoint")
        if entrypoint is None:
            handler = getattr(main, "fetch", None)
            if not callable(handler):
                raise sdk.WorkflowError(f"module {main.__name__!r} defines no fetch(request, env)")
            response = _drive(handler(http, env))
        else:
            response = _drive(_entry_class(main, str(entrypoint))(ctx, env).fetch(http))
        if not isinstance(response, sdk.Response):
            raise sdk.WorkflowError("fetch must return a Response")
        return {"outcome": "return", "value": response.to_wire()}
    if kind == "call":
        method = str(request["method"])
        if method.startswith("_") or method in {"run", "fetch"}:
            raise sdk.WorkflowError(f"method {method!r} cannot be called")
        entrypoint = str(request["entrypoint"])
        target = getattr(_entry_class(main, entrypoint)(ctx, env), method, None)
        if not callable(target):
            raise sdk.WorkflowError(f"entrypoint {entrypoint!r} has no method {method!r}")
        args = [_revive(a) for a in request.get("args") or []]
        value = _drive(target(*args))
        return {"outcome": "return", "value": sdk.encode_value(value, path="the result")}
    raise sdk.WorkflowError(f"unknown request kind {kind!r}")


class WitWorld(wit_world.WitWorld):  # type: ignore[misc]
    def run(self, code: str, request: str) -> str:
        try:
            result = _execute(_decode(code), _decode(request))
        except sdk.StopExecution:
            result = {"outcome": "stop"}
        except MemoryError:  # the store's memory limit (S40); the host reports it
            result = {"outcome": "limit", "limit": "memory"}
        except BaseException as error:  # SystemExit too: the tenant's, not ours
            result = {"outcome": "raise", "error": sdk.error_to_dict(error)}
        if _steps:
            result["hits"] = _steps.pop().hits()
        try:
            return _encode(result)
        except MemoryError:
            return '{"outcome":"limit","limit":"memory"}'


# Move every object created during pre-initialisation into the permanent generation, so the
# cyclic GC never walks (and so never copy-on-write-faults) the snapshot's heap.
gc.collect()
gc.freeze()
