"""200 instances in flight at once on one engine: mixed in-memory and hibernated sleeps,
events sent before and after their waits, all complete with the right outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from dynamic_workflows.runtime import InstanceHandle, ManualClock, Workflows
from dynamic_workflows.sdk import WorkflowEntrypoint, WorkflowEvent, WorkflowStep

N = 200
HOUR = 3600.0


class Mixed(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        n = event.payload["n"]
        a = await step.do("a", lambda: n * 2)
        if n % 3 == 0:
            await step.sleep("long nap", f"{n % 5 + 1} hours")  # hibernates
        elif n % 3 == 1:
            await step.sleep("short nap", 10)  # waits in memory
        got = None
        if n % 2 == 0:
            ev = await step.wait_for_event("approval", type="go", timeout="1 day")
            got = ev.payload
        b = await step.do("b", lambda: a + 1)
        return {"n": n, "b": b, "got": got}


async def drive_mixed(engine: Workflows, clock: ManualClock) -> None:
    """Start N ``Mixed`` instances on a running engine and drive them all to complete: half
    the events arrive before their instance waits (buffered), half after."""
    wf = engine.binding("MIXED")
    handles: list[InstanceHandle] = []
    for start in range(0, N, 100):
        handles += await wf.create_batch(
            [{"id": f"i{n}", "params": {"n": n}} for n in range(start, start + 100)]
        )
    assert len(handles) == N
    for n in range(0, N, 4):
        await handles[n].send_event(type="go", payload={"for": n})
    sent: set[int] = set()
    with anyio.fail_after(90):  # hang guard only
        for _ in range(12):
            async with anyio.create_task_group() as tg:
                for h in handles:
                    tg.start_soon(h.wait_for_status, "waiting", "complete")
            for n in range(2, N, 4):
                if n not in sent and (await handles[n].status()).status == "waiting":
                    sent.add(n)
                    await handles[n].send_event(type="go", payload={"for": n})
            clock.advance(HOUR)
        async with anyio.create_task_group() as tg:
            for h in handles:
                tg.start_soon(h.wait_for_status, "complete", "errored")
    for n, h in enumerate(handles):
        st = await h.status()
        assert st.status == "complete", (n, st.error)
        assert st.output == {"n": n, "b": 2 * n + 1, "got": {"for": n} if n % 2 == 0 else None}
    assert await engine.count_instances(workflow="MIXED", status="complete") == N


async def test_200_instances_in_flight(tmp_path: Path) -> None:
    clock = ManualClock(1_700_000_000.0)
    engine = Workflows(
        f"sqlite:///{tmp_path / 'state.db'}", clock=clock, durability="os", hibernate_after=60
    )
    engine.register("MIXED", Mixed)
    async with engine:
        await drive_mixed(engine, clock)
