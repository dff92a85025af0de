"""The real engine (SQLite, injected clock) running tenant source through the loader on the
wasm backend: retries, a durable sleep, an event, a memory limit in a step; the same
statuses and outputs as the in-process backend for everything both can do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from dynamic_workflows.loader import WorkerCode, WorkerLoader
from dynamic_workflows.runtime import InstanceHandle, InstanceStatus, ManualClock, Workflows
from dynamic_workflows.sandbox import BackendName, IsolateLimits
from dynamic_workflows.sdk import WorkflowEntrypoint, WorkflowEvent, WorkflowStep

pytestmark = pytest.mark.wasm

ORDER = """
from dynamic_workflows import WorkflowEntrypoint
from pricing import total

class Order(WorkflowEntrypoint):
    async def run(self, event, step):
        def flaky(ctx):
            if ctx.attempt < 2:
                raise ConnectionError(f"busy on attempt {ctx.attempt}")
            return total(event.payload["items"])

        priced = await step.do(
            "price", flaky, retries={"limit": 2, "delay": "5 seconds", "backoff": "constant"}
        )
        await step.sleep("cool-off", "1 hour")
        approval = await step.wait_for_event("approve", type="approval", timeout="1 day")
        print("approved by", approval.payload["by"])
        return {"priced": priced, "by": approval.payload["by"], "id": event.instance_id}
"""
PRICING = "def total(items):\n    return sum(i['price'] * i['qty'] for i in items)\n"
BOMB = """
from dynamic_workflows import WorkflowEntrypoint

class Bomb(WorkflowEntrypoint):
    async def run(self, event, step):
        def bomb():
            return len(bytearray(10 ** 9))
        try:
            await step.do("bomb", bomb, retries={"limit": 1, "delay": "1 second"})
        except Exception as error:
            return [error.name, getattr(error, "limit", None), str(error)]
"""


def isolated(loader: WorkerLoader, code: WorkerCode, name: str) -> type:
    """The host entrypoint that forwards ``run`` into the tenant's isolate (as dispatch does)."""
    entry = loader.deploy(f"tenant-{name}", code).get_entrypoint(name)

    class Isolated(WorkflowEntrypoint):
        async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            return await entry.run(event, step)

    return Isolated


async def until(
    inst: InstanceHandle, ok: Callable[[InstanceStatus], bool], clock: ManualClock
) -> InstanceStatus:
    with anyio.fail_after(60):  # a hang guard only
        while True:
            status = await inst.status()
            if ok(status):
                return status
            await anyio.sleep(0.005)


def waiting_on(name: str) -> Callable[[InstanceStatus], bool]:
    def check(status: InstanceStatus) -> bool:
        rows = [row for row in status.steps if row["name"] == name]
        return status.status == "waiting" and bool(rows)

    return check


async def drive_order(backend: BackendName, tmp_path: Path) -> tuple[InstanceStatus, list[str]]:
    clock = ManualClock()
    engine = Workflows(store=f"sqlite:///{tmp_path / backend}.db", clock=clock, durability="os")
    logs: list[str] = []
    async with WorkerLoader(backend=backend, code_dir=tmp_path / f"code-{backend}") as loader:
        loader.on_log(lambda record: logs.append(str(record.get("line"))))
        code = WorkerCode("index.py", {"index.py": ORDER, "pricing.py": PRICING})
        engine.register("ORDER", isolated(loader, code, "Order"))
        async with engine:
            items = [{"price": 4.5, "qty": 2}, {"price": 1, "qty": 3}]
            inst = await engine.binding("ORDER").create(id="order-1", params={"items": items})
            await until(inst, waiting_on("price"), clock)
            clock.advance(5)  # the retry delay
            await until(inst, waiting_on("cool-off"), clock)
            clock.advance(3600)
            await until(inst, waiting_on("approve"), clock)
            await inst.send_event(type="approval", payload={"by": "ops"})
            final = await until(inst, lambda s: s.status in ("complete", "errored"), clock)
    return final, logs


async def test_same_statuses_and_output_as_in_process(wasm_runner: Path, tmp_path: Path) -> None:
    wasm, wasm_logs = await drive_order("wasm", tmp_path)
    local, _ = await drive_order("inprocess", tmp_path)
    assert wasm.status == local.status == "complete", (wasm.error, local.error)
    assert wasm.output == local.output == {"priced": 12.0, "by": "ops", "id": "order-1"}

    def timeline(status: InstanceStatus) -> list[tuple[Any, ...]]:
        return [(r["name"], r["count"], r.get("kind"), r.get("state")) for r in status.steps]

    assert timeline(wasm) == timeline(local)
    assert "approved by ops" in wasm_logs


async def test_memory_limit_in_a_step_is_an_isolate_limit_error(
    wasm_runner: Path, tmp_path: Path
) -> None:
    clock = ManualClock()
    engine = Workflows(store=f"sqlite:///{tmp_path / 'bomb'}.db", clock=clock, durability="os")
    limits = IsolateLimits(memory_mb=64)
    async with WorkerLoader(backend="wasm", code_dir=tmp_path / "code") as loader:
        code = WorkerCode("index.py", {"index.py": BOMB}, limits=limits)
        engine.register("BOMB", isolated(loader, code, "Bomb"))
        async with engine:
            inst = await engine.binding("BOMB").create(id="bomb-1")
            await until(inst, waiting_on("bomb"), clock)
            clock.advance(1)  # the one retry
            final = await until(inst, lambda s: s.status in ("complete", "errored"), clock)
    assert final.status == "complete", final.error
    assert final.output == ["IsolateLimitError", "memory", "Isolate exceeded its memory limit"]
