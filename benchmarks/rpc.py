"""The RPC channel and the step proxy: what a new step costs, host side.

For each backend (in-process thread, confined subprocess), one isolate runs a workflow of N
new steps whose host ops answer at once, and the host's ops record:

- ``step_rtt``: from ``do_begin`` returning its ``attempt`` decision to ``do_end`` arriving
  (one round trip: the decision goes out, the trivial callback runs, the outcome comes back);
- ``new_step``: from one ``do_begin`` to the next (a whole new step: two round trips,
  ``do_begin`` and ``do_end``, plus the sdk's bookkeeping);
- ``replay_per_step``: a run whose 1000 steps are all in the shipped journal, per step
  (no round trip at all).

Baseline in the same run: ``echo``, one bare call to the guest's root (``hello``) over the
same channel. Run: ``.venv/bin/python benchmarks/rpc.py [--quick]``; writes
``benchmarks/results/rpc.json``.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

from benchmarks._harness import console, run_main, show, summarize, write_result
from dynamic_workflows.sandbox import ChannelIsolate, CodeBundle, open_backend
from dynamic_workflows.sdk import Decision, Outcome, WorkflowEvent

SOURCE = """
from dynamic_workflows.sdk import WorkflowEntrypoint

class Steps(WorkflowEntrypoint):
    async def run(self, event, step):
        for i in range(event.payload):
            await step.do(f"s{i}", lambda: i)
        return event.payload
"""


class TimedOps:
    def __init__(self) -> None:
        self.begin_called: list[float] = []
        self.begin_returned: list[float] = []
        self.end_called: list[float] = []

    async def do_begin(self, name: str, count: int, config: dict[str, Any]) -> Decision:
        self.begin_called.append(time.perf_counter())
        decision: Decision = {"action": "attempt", "attempt": 1, "config": config}
        self.begin_returned.append(time.perf_counter())
        return decision

    async def do_end(self, name: str, count: int, attempt: int, outcome: Outcome) -> Decision:
        self.end_called.append(time.perf_counter())
        return {"action": "value", "value": outcome.get("value")}

    async def sleep(self, *args: Any) -> Decision:
        return {"action": "stop"}

    async def wait_for_event(self, *args: Any) -> Decision:
        return {"action": "stop"}


def event(n: int) -> WorkflowEvent:
    return WorkflowEvent(payload=n, timestamp=datetime.now(UTC), instance_id="b", workflow_name="B")


async def measure(backend_name: str, steps: int, echoes: int) -> dict[str, Any]:
    backend = await open_backend(backend_name)  # type: ignore[arg-type]
    try:
        isolate = await backend.new_isolate()
        assert isinstance(isolate, ChannelIsolate)
        await isolate.load(CodeBundle("index.py", {"index.py": SOURCE}, "bench"))
        conn = isolate.connection
        for _ in range(50):
            await conn.call(0, "hello")
        echo = []
        for _ in range(echoes):
            t0 = time.perf_counter()
            await conn.call(0, "hello")
            echo.append((time.perf_counter() - t0) * 1e6)
        await isolate.run_workflow("Steps", event(20), TimedOps(), {}, step_limit=10**6)  # warm
        ops = TimedOps()
        result = await isolate.run_workflow("Steps", event(steps), ops, {}, step_limit=10**6)
        assert result.value == steps, result
        rtt = [(e - b) * 1e6 for b, e in zip(ops.begin_returned, ops.end_called, strict=True)]
        starts = ops.begin_called
        whole = [(b - a) * 1e6 for a, b in itertools.pairwise(starts)]
        journal: Any = {f"s{i}-1": {"kind": "do", "value": i} for i in range(1000)}
        replays = []
        for _ in range(5):
            t0 = time.perf_counter()
            replay = await isolate.run_workflow(
                "Steps", event(1000), TimedOps(), journal, step_limit=10**6
            )
            replays.append((time.perf_counter() - t0) * 1e6 / 1000)
            assert len(replay.hits) == 1000
        echo_median = summarize(echo)["median"]
        step = summarize(rtt)
        new = summarize(whole)
        return {
            "echo_us": summarize(echo),
            "step_rtt_us": step,
            "new_step_us": new,
            "replay_per_step_us": summarize(replays),
            "ratio_step_rtt_to_echo": round(float(step["median"]) / float(echo_median), 2),
            "ratio_new_step_to_echo": round(float(new["median"]) / float(echo_median), 2),
        }
    finally:
        await backend.aclose()


async def main(quick: bool) -> None:
    steps, echoes = (300, 300) if quick else (3000, 3000)
    figures = {}
    for name in ("inprocess", "subprocess"):
        console.print(f"[bold]{name}[/bold]: {steps} new steps, {echoes} echoes")
        figures[name] = await measure(name, steps, echoes)
    for name, f in figures.items():
        rows = [
            ("echo (baseline)", f["echo_us"], "µs"),
            ("step round trip", f["step_rtt_us"], "µs"),
            ("new step", f["new_step_us"], "µs"),
            ("replay, per cached step", f["replay_per_step_us"], "µs"),
        ]
        show(f"RPC step proxy: {name}", rows, baseline="echo (baseline)")
    write_result("rpc", {"steps": steps, "echoes": echoes, "quick": quick}, figures)


if __name__ == "__main__":
    run_main(main, __doc__.splitlines()[0] if __doc__ else "rpc")
