"""Fixtures for the wasm backend: the runner built once (cached on disk across runs), a real
backend per test, a scripted host-side ``StepOps`` and an in-process driver to compare with.

The session fixture ``wasm_runner`` (tests/conftest.py) calls ``build_runner``: on this
machine it finds the component and its compiled form in the cache (``$DYNWF_CACHE_DIR`` or
``~/.cache/dynamic-workflows/wasm``); on a fresh machine it builds them in the test set-up
(about 10–30 s).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dynamic_workflows.sandbox import CodeBundle, IsolateLimits, RunResult
from dynamic_workflows.sandbox._wasm import WasmBackend, WasmIsolate
from dynamic_workflows.sdk import (
    Decision,
    Journal,
    Outcome,
    StopExecution,
    WorkflowEvent,
    WorkflowStep,
    encode_value,
    error_to_dict,
    step_key,
)


@pytest.fixture
async def backend(wasm_runner: Path) -> AsyncIterator[WasmBackend]:
    backend = WasmBackend()
    backend.start()
    await backend.ready()
    try:
        yield backend
    finally:
        await backend.aclose()


FAST = IsolateLimits(memory_mb=64, cpu_seconds=2.0, wall_seconds=30.0)


async def load(
    backend: WasmBackend,
    modules: dict[str, str],
    *,
    main: str = "main",
    env: dict[str, Any] | None = None,
    limits: IsolateLimits = FAST,
) -> WasmIsolate:
    isolate = await backend.new_isolate(limits)
    await isolate.load(CodeBundle(main, modules, "v1", env=env or {}, limits=limits))
    return isolate


def event(payload: Any = None, instance_id: str = "inst-1") -> WorkflowEvent:
    return WorkflowEvent(payload or {}, datetime(2026, 1, 1, tzinfo=UTC), instance_id, "wf")


@dataclass
class ScriptedOps:
    """A small but real ``StepOps``: it journals results, retries per the step's config
    (no waiting), hibernates on every sleep once, and delivers events from ``events``."""

    events: dict[str, Any] = field(default_factory=dict)
    journal: Journal = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def do_begin(self, name: str, count: int, config: dict[str, Any]) -> Decision:
        self.calls.append(("do_begin", name, count, config))
        key = step_key(name, count)
        entry = self.journal.get(key)
        if entry is not None:
            if "error" in entry:
                return {"action": "raise", "error": entry["error"]}
            return {"action": "value", "value": entry.get("value")}
        self.configs[key] = config
        timeout = float(config.get("timeout", 600.0))
        return {"action": "attempt", "attempt": 1, "timeout": timeout, "config": config}

    async def do_end(self, name: str, count: int, attempt: int, outcome: Outcome) -> Decision:
        self.calls.append(("do_end", name, count, attempt, dict(outcome)))
        key = step_key(name, count)
        if "value" in outcome:
            self.journal[key] = {"kind": "do", "value": outcome["value"]}
            return {"action": "value", "value": outcome["value"]}
        if "fatal" in outcome:
            return {"action": "stop"}
        error = outcome.get("error") or {"name": "Error", "message": ""}
        config = self.configs.get(key, {})
        limit = int(config.get("retries", {}).get("limit", 0))
        if outcome.get("retryable", True) and attempt <= limit:
            timeout = float(config.get("timeout", 600.0))
            return {
                "action": "attempt",
                "attempt": attempt + 1,
                "timeout": timeout,
                "config": config,
            }
        self.journal[key] = {"kind": "do", "error": error}
        return {"action": "raise", "error": error}

    async def sleep(
        self, name: str, count: int, seconds: float | None, until: float | None
    ) -> Decision:
        self.calls.append(("sleep", name, count, seconds, until))
        self.journal[step_key(name, count)] = {"kind": "sleep"}
        return {"action": "stop"}  # hibernate: the replay finds the sleep completed

    async def wait_for_event(
        self, name: str, count: int, type: str, timeout: float | None
    ) -> Decision:
        self.calls.append(("wait_for_event", name, count, type, timeout))
        if type not in self.events:
            return {"action": "stop"}
        value = {"payload": self.events.pop(type), "timestamp": 1767225600.0, "type": type}
        self.journal[step_key(name, count)] = {"kind": "event", "value": value}
        return {"action": "value", "value": value}


class _Sources(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports test-defined tenant sources in the host, for the in-process comparison."""

    def __init__(self, modules: dict[str, str]) -> None:
        self.modules = modules
        self.packages = {name.rpartition(".")[0] for name in modules if "." in name}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in self.modules or fullname in self.packages:
            return importlib.machinery.ModuleSpec(
                fullname, self, is_package=fullname in self.packages
            )
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        exec(
            compile(self.modules.get(module.__name__, ""), module.__name__, "exec"), module.__dict__
        )


def inprocess_module(modules: dict[str, str], main: str = "main") -> types.ModuleType:
    finder = _Sources(modules)
    names = set(modules) | finder.packages
    sys.meta_path.insert(0, finder)
    try:
        return importlib.import_module(main)
    finally:
        sys.meta_path.remove(finder)
        for name in names:
            sys.modules.pop(name, None)


async def run_inprocess(
    modules: dict[str, str],
    entrypoint: str,
    evt: WorkflowEvent,
    ops: ScriptedOps,
    *,
    env: Any = None,
    step_limit: int = 10_000,
) -> RunResult:
    """What the in-process backend does: the same ``WorkflowStep`` over the same ops."""
    cls = getattr(inprocess_module(modules), entrypoint)
    step = WorkflowStep(ops, dict(ops.journal), step_limit=step_limit)
    try:
        value = await cls(None, env).run(evt, step)
    except StopExecution:
        return RunResult("stop", hits=tuple(step.hits()))
    except Exception as error:
        return RunResult("raise", error=error_to_dict(error), hits=tuple(step.hits()))
    return RunResult("return", value=encode_value(value), hits=tuple(step.hits()))


async def drive_wasm(
    isolate: WasmIsolate, entrypoint: str, evt: WorkflowEvent, ops: ScriptedOps, rounds: int = 10
) -> list[RunResult]:
    """Run, replaying after every stop, until the run ends (or ``rounds`` runs)."""
    results = []
    for _ in range(rounds):
        result = await isolate.run_workflow(
            entrypoint, evt, ops, dict(ops.journal), step_limit=10_000
        )
        results.append(result)
        if result.outcome != "stop":
            break
    return results


async def drive_inprocess(
    modules: dict[str, str], entrypoint: str, evt: WorkflowEvent, ops: ScriptedOps, rounds: int = 10
) -> list[RunResult]:
    results = []
    for _ in range(rounds):
        result = await run_inprocess(modules, entrypoint, evt, ops)
        results.append(result)
        if result.outcome != "stop":
            break
    return results


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty ``$DYNWF_CACHE_DIR`` for tests of the cache itself."""
    monkeypatch.setenv("DYNWF_CACHE_DIR", str(tmp_path / "cache"))
    yield tmp_path / "cache"
