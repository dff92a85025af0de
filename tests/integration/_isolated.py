"""Run the behaviour suite's workflow classes inside real isolates (issues 4 and 8).

``register_isolated`` ships a test's workflow class into an isolate through the loader and
registers a thin host entrypoint that forwards ``run(event, step)`` into it, exactly as the
dispatch glue does for tenants. The engine cannot tell the difference, so every S-number test
checks the same outputs in every backend.

- subprocess: the class goes by value (cloudpickle, host to isolate only).
- wasm: the runner's Python (3.14) cannot load the host's pickled code, so the class goes as
  *source*: the test module, cut down by :func:`tenant_source` to what a tenant could write
  (sdk and stdlib imports, classes, helper functions, constants), which is also what a real
  tenant ships.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import sys
from collections.abc import Mapping
from typing import Any

from dynamic_workflows.loader import WorkerCode, WorkerLoader
from dynamic_workflows.runtime import Workflows
from dynamic_workflows.sandbox._wasm import ALLOWLIST
from dynamic_workflows.sdk import WorkflowEntrypoint, WorkflowEvent, WorkflowStep

# what the wasm runner offers tenant modules (docs/wasm.md): a module that needs more is
# cut down to what it can hold there, and a test that needs the rest says not_wasm
_STDLIB = {"__future__"} | {name.split(".")[0] for name in ALLOWLIST}


def tenant_source(cls: type) -> str:
    """The module defining ``cls``, keeping only what a tenant module could hold.

    Imports of the sdk and the standard library stay; test-only imports (pytest, conftest,
    relative ones) go, and so does every top-level statement that needs a name they gave
    (tests, fixtures, constants computed from test helpers).
    """
    module = sys.modules[cls.__module__]
    tree = ast.parse(inspect.getsource(module))
    known = set(dir(builtins))
    kept: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            if _tenant_import(node):
                kept.append(node)
                known |= {(a.asname or a.name).split(".")[0] for a in node.names}
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
            node.name.startswith("test_") or node.decorator_list
        ):
            continue
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            evaluated: list[ast.AST] = [*node.decorator_list]
            if isinstance(node, ast.ClassDef):
                evaluated += [*node.bases, *(k.value for k in node.keywords)]
            else:
                evaluated += [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]
            if _uses_only(evaluated, known):
                kept.append(node)
                known.add(node.name)
        elif (
            isinstance(node, ast.Assign | ast.AnnAssign)
            and node.value is not None
            and _uses_only([node.value], known)
        ):
            kept.append(node)
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            known |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return ast.unparse(ast.Module(body=kept, type_ignores=[]))


def _tenant_import(node: ast.Import | ast.ImportFrom) -> bool:
    """The sdk and the standard library: what a tenant module may import."""
    names = (
        [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
    )
    if isinstance(node, ast.ImportFrom) and node.level:
        return False
    return all(
        n.split(".")[0] in _STDLIB
        or n == "dynamic_workflows.sdk"
        or n.startswith("dynamic_workflows.sdk.")
        for n in names
    )


def _uses_only(nodes: list[ast.AST], known: set[str]) -> bool:
    return all(
        n.id in known
        for node in nodes
        for n in ast.walk(node)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    )


def worker_code(cls: type, backend: str, env: Mapping[str, Any] | None) -> WorkerCode:
    if backend == "wasm":
        return WorkerCode("index.py", {"index.py": tenant_source(cls)}, env=dict(env or {}))
    return WorkerCode.from_entrypoint(cls, env=dict(env or {}))


def register_isolated(
    engine: Workflows,
    name: str,
    cls: type,
    *,
    env: Mapping[str, Any] | None,
    loader: WorkerLoader,
) -> None:
    stub = loader.deploy(name, worker_code(cls, loader.default_backend, env))
    entry = stub.get_entrypoint(cls.__name__)

    class Isolated(WorkflowEntrypoint):
        async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            return await entry.run(event, step)

    Isolated.__name__ = Isolated.__qualname__ = f"Isolated{cls.__name__}"
    engine.register(name, Isolated, env=dict(env or {}))
