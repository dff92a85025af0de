"""Durable step commit on PostgreSQL against SQLite, in the same run.

    .venv/bin/python tests/postgres/bench_commit.py [--commits 1000] [--steps 300]

Starts a throwaway PostgreSQL 15 cluster (fsync=on, ``_server.py``) and a SQLite file in a
temp dir, then measures for each store and durability:
- ``commit``: one step completion (step row + instance column + one log line) committed and
  awaited, one in flight at a time: the latency a workflow sees before moving past a step;
- ``burst``: 200 such commits submitted at once (group commit): wall time per commit;
- ``engine_step``: a workflow doing ``--steps`` ``step.do`` calls in sequence through the
  public API; the interval between consecutive ``step_succeeded`` records.
Writes benchmarks/results/postgres.json (median/p99, ratio to SQLite at the same durability).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "src"), str(ROOT / "tests")]

from _harness import summarize, write_result  # type: ignore[import-not-found]  # noqa: E402

from dynamic_workflows.runtime import Workflows, open_store  # noqa: E402
from dynamic_workflows.runtime._store import (  # noqa: E402
    Ident,
    InstanceRow,
    LogEntry,
    StepRow,
    Store,
    Tx,
)
from dynamic_workflows.sdk import WorkflowEntrypoint, WorkflowEvent, WorkflowStep  # noqa: E402
from postgres._server import running  # noqa: E402


class Steps(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        total = 0
        for i in range(int(event.payload["n"])):
            total += await step.do(f"s{i}", lambda i=i: i)
        return total


def _tx(n: int) -> Tx:
    now = time.time()
    step = StepRow(f"s-{n}", "s", n, "do", "complete", 1, None, now, now, None, {"n": n})
    return Tx(
        Ident("u1", "bench", "B", ""),
        instance={"updated": now},
        steps=[step],
        log=[LogEntry("step_succeeded", now, f"s-{n}", {"output": {"n": n}})],
    )


async def _store_figures(store: Store, commits: int) -> dict[str, Any]:
    await store.open()
    try:
        row = InstanceRow("u1", "B", "", "bench", {}, None, "running", created=1.0, updated=1.0)
        await store.create([row], [LogEntry("queued", 1.0)], skip_existing=False)
        for n in range(50):  # warm up (prepared statements, caches)
            await store.commit(_tx(n))
        samples = []
        for n in range(commits):
            t = time.perf_counter()
            await store.commit(_tx(100 + n))
            samples.append((time.perf_counter() - t) * 1e6)
        burst = 200
        t = time.perf_counter()
        await asyncio.gather(*(store.commit(_tx(10**6 + n)) for n in range(burst)))
        per_commit = (time.perf_counter() - t) * 1e6 / burst
    finally:
        await store.close()
    return {"commit_us": summarize(samples), "burst_us_per_commit": per_commit}


async def _engine_figures(url: str, durability: Any, steps: int) -> dict[str, Any]:
    engine = Workflows(url, durability=durability)
    engine.register("S", Steps)
    async with engine:
        inst = await engine.binding("S").create(params={"n": steps})
        st = await inst.wait_for_status("complete", "errored")
        assert st.status == "complete", st.error
        records = await engine.history(inst.uid)
    ts = [r["ts"] for r in records if r["kind"] == "step_succeeded"]
    gaps = [(b - a) * 1e6 for a, b in itertools.pairwise(ts)]
    return {"engine_step_us": summarize(gaps[10:])}  # without the first steps (warm-up)


async def main(commits: int, steps: int) -> None:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, running(fsync=True) as server:
        for durability in ("fsync", "os"):
            for kind in ("sqlite", "postgres"):
                name = f"{kind}-{durability}"
                if kind == "sqlite":
                    store_url = f"sqlite:///{tmp}/{name}.db"
                    engine_url = f"sqlite:///{tmp}/{name}-engine.db"
                else:
                    store_url = server.create_database(name.replace("-", "_"))
                    engine_url = server.create_database(name.replace("-", "_") + "_engine")
                figures = await _store_figures(
                    open_store(store_url, durability=durability), commits
                )
                figures |= await _engine_figures(engine_url, durability, steps)
                results[name] = figures
                print(
                    f"{name:16} commit median {figures['commit_us']['median']:8.1f} µs  "
                    f"p99 {figures['commit_us']['p99']:8.1f} µs  "
                    f"burst {figures['burst_us_per_commit']:7.1f} µs/commit  "
                    f"engine step median {figures['engine_step_us']['median']:8.1f} µs  "
                    f"p99 {figures['engine_step_us']['p99']:8.1f} µs",
                    flush=True,
                )
    ratios = {
        f"postgres/sqlite {d} {f} {m}": results[f"postgres-{d}"][f][m]
        / results[f"sqlite-{d}"][f][m]
        for d in ("fsync", "os")
        for f in ("commit_us", "engine_step_us")
        for m in ("median", "p99")
    }
    for key, value in ratios.items():
        print(f"{key:36} {value:6.2f}×")
    path = write_result(
        "postgres",
        {"commits": commits, "engine_steps": steps, "postgres": "15, fsync=on, 127.0.0.1 TCP"},
        {"stores": results, "ratios": ratios},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.commits, args.steps))
