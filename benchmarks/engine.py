"""The in-process engine floor: three-step workflows on SQLite, beside plain sqlite3.

For each durability setting (``fsync`` = synchronous=FULL, ``os`` = NORMAL):
- one at a time: create an instance, wait until it is complete, repeat;
- 100 at once: create 100, wait for all (group commit shares transactions between them);
- per-step overhead: the time ``await step.do(...)`` takes around a trivial callback
  (decision, attempt start, the durable commit of its result), median and p99;
- the floor: plain ``sqlite3``, one ~200-byte INSERT per transaction, same pragmas, same
  disk, measured in the same run.

Run: ``.venv/bin/python benchmarks/engine.py [--quick]``; writes
``benchmarks/results/engine.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from dynamic_workflows.runtime import Workflows
from dynamic_workflows.sdk import WorkflowEntrypoint, WorkflowEvent, WorkflowStep

STEP_TIMES: list[float] = []


class ThreeSteps(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        out = []
        for name in ("one", "two", "three"):
            t0 = time.perf_counter()
            out.append(await step.do(name, lambda: {"ok": True, "payload": "x" * 100}))
            STEP_TIMES.append(time.perf_counter() - t0)
        return len(out)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_us(values: list[float]) -> dict[str, float]:
    return {
        "median_us": round(statistics.median(values) * 1e6, 1),
        "p99_us": round(pct(values, 0.99) * 1e6, 1),
        "n": len(values),
    }


def sqlite_floor(path: Path, durability: str, n: int) -> dict[str, float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'fsync' else 'NORMAL'}")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
    times = []
    row = "x" * 200
    for i in range(n + 20):
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t (v) VALUES (?)", (row,))
        conn.execute("COMMIT")
        if i >= 20:
            times.append(time.perf_counter() - t0)
    conn.close()
    return summary_us(times)


async def run_engine(
    path: Path, durability: str, sequential: int, batches: int, progress: Progress
) -> dict[str, Any]:
    engine = Workflows(f"sqlite:///{path}", durability=durability)  # type: ignore[arg-type]
    engine.register("BENCH", ThreeSteps)
    result: dict[str, Any] = {}
    async with engine:
        wf = engine.binding("BENCH")
        for _ in range(5):  # warm-up
            await (await wf.create()).wait_for_status("complete")
        STEP_TIMES.clear()
        task = progress.add_task(f"{durability}: one at a time", total=sequential)
        latencies = []
        t0 = time.perf_counter()
        for _ in range(sequential):
            s = time.perf_counter()
            inst = await wf.create()
            st = await inst.wait_for_status("complete", "errored")
            assert st.status == "complete", st.error
            latencies.append(time.perf_counter() - s)
            progress.advance(task)
        elapsed = time.perf_counter() - t0
        result["one_at_a_time"] = {
            "instances": sequential,
            "instances_per_s": round(sequential / elapsed, 1),
            "instance_latency": summary_us(latencies),
            "step_overhead": summary_us(STEP_TIMES),
        }
        STEP_TIMES.clear()
        store = engine.store
        commits0 = getattr(store, "commits", 0)
        writes0 = getattr(store, "writes", 0)
        task = progress.add_task(f"{durability}: 100 at once", total=batches * 100)
        t0 = time.perf_counter()
        for _ in range(batches):
            handles = await wf.create_batch([{} for _ in range(100)])
            done = await asyncio.gather(
                *(h.wait_for_status("complete", "errored") for h in handles)
            )
            assert all(d.status == "complete" for d in done)
            progress.advance(task, 100)
        elapsed = time.perf_counter() - t0
        commits = getattr(store, "commits", 0) - commits0
        writes = getattr(store, "writes", 0) - writes0
        result["hundred_at_once"] = {
            "instances": batches * 100,
            "instances_per_s": round(batches * 100 / elapsed, 1),
            "step_overhead": summary_us(STEP_TIMES),
            "transactions": commits,
            "writes": writes,
            "writes_per_transaction": round(writes / commits, 2) if commits else None,
        }
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer instances")
    parser.add_argument(
        "--dir", default=None, help="where the SQLite files go (default: a temp dir)"
    )
    args = parser.parse_args()
    sequential, batches, floor_n = (50, 2, 300) if args.quick else (300, 5, 1000)
    console = Console()
    results: dict[str, Any] = {
        "benchmark": "engine",
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "quick": args.quick,
        "modes": {},
    }
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, Progress(console=console) as progress:
        for durability in ("fsync", "os"):
            floor = sqlite_floor(Path(tmp) / f"floor-{durability}.db", durability, floor_n)
            engine = await run_engine(
                Path(tmp) / f"engine-{durability}.db", durability, sequential, batches, progress
            )
            engine["sqlite_floor_commit"] = floor
            engine["step_overhead_vs_floor"] = round(
                engine["one_at_a_time"]["step_overhead"]["median_us"] / floor["median_us"], 2
            )
            results["modes"][durability] = engine

    table = Table(title="engine: three-step workflows, in-process, SQLite")
    for column in (
        "durability",
        "1-at-a-time inst/s",
        "100-at-once inst/s",
        "step median µs",
        "step p99 µs",
        "sqlite floor median µs",
        "floor p99 µs",
        "ratio",
        "writes/txn (100)",
    ):
        table.add_column(column, justify="right")
    for durability, r in results["modes"].items():
        one = r["one_at_a_time"]
        table.add_row(
            durability,
            str(one["instances_per_s"]),
            str(r["hundred_at_once"]["instances_per_s"]),
            str(one["step_overhead"]["median_us"]),
            str(one["step_overhead"]["p99_us"]),
            str(r["sqlite_floor_commit"]["median_us"]),
            str(r["sqlite_floor_commit"]["p99_us"]),
            f"{r['step_overhead_vs_floor']}x",
            str(r["hundred_at_once"]["writes_per_transaction"]),
        )
    console.print(table)
    out = Path(__file__).parent / "results" / "engine.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
