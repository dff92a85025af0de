"""Memory: idle isolates, the dispatcher with many live isolates, and 50,000 sleeping
instances (hibernated: a row and a timer each, no process and no task).

Each point runs in a fresh child process (``--point``), so one point's heap does not inflate
the next one's RSS:

- ``idle``: 10 tenants loaded through the README dispatcher (subprocess backend), each ran
  one three-step instance; after a second idle, the USS (Private_Clean + Private_Dirty of
  ``/proc/PID/smaps_rollup``) of each isolate and the zygote's RSS/USS;
- ``live N/CAP``: N tenants touched (one three-step instance each, 16 in flight) with the
  loader's LRU cap at CAP live isolates; the dispatcher's RSS, live isolates and their USS;
- ``sleeping N``: N instances created in batches of 100 over 10 tenants with the envelope
  their wrapped binding attaches, each runs one step in its tenant's isolate and sleeps a
  day; once every execution has ended (hibernated), the dispatcher's RSS after a
  ``gc.collect()``, its task count and its child processes.

Run: ``.venv/bin/python benchmarks/memory.py [--quick]``; writes
``benchmarks/results/memory.json`` and ``memory.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Dispatcher,
    children,
    console,
    progress,
    rss_mb,
    show,
    summarize,
    uss_mb,
    write_result,
)

IDLE_TENANTS = 10
SLEEP_TENANTS = 10
TARGET_IDLE_USS_MB = 3.0
TARGET_SLEEPING_RSS_MB = 1024.0


async def _touch(d: Dispatcher, tenants: int, in_flight: int = 16) -> None:
    """One three-step instance per tenant, ``in_flight`` at a time."""
    todo = iter(range(tenants))

    async def worker() -> None:
        for t in todo:
            handle = await d.create(f"t{t}", {"kind": "three"})
            status = await handle.wait_for_status("complete", "errored")
            if status.status != "complete":
                raise RuntimeError(f"{status.status}: {status.error}")

    await asyncio.gather(*(worker() for _ in range(in_flight)))


def _reached(runs: dict[str, list[float]], count: int) -> bool:
    return len(runs) >= count


async def _until(check: Callable[[], bool], timeout: float) -> None:
    """Poll ``check()`` (a state, not a duration) with a hang guard."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("gave up waiting for the dispatcher")
        await asyncio.sleep(0.02)


def _zygote_figures() -> dict[str, float]:
    kids = children()
    if not kids:
        return {}
    zygote = max(kids, key=lambda pid: len(children(pid)))
    return {"zygote_rss_mb": rss_mb(zygote), "zygote_uss_mb": uss_mb(zygote)}


async def idle_point(directory: Path) -> dict[str, Any]:
    async with Dispatcher(directory, "subprocess", durability="os") as d:
        await _touch(d, IDLE_TENANTS, in_flight=1)
        await asyncio.sleep(1.0)
        pids = d.isolate_pids()
        uss = [uss_mb(pid) for pid in pids]
        rss = [rss_mb(pid) for pid in pids]
        return {
            "idle_isolate_uss_mb": summarize(uss),
            "idle_isolate_rss_mb": summarize(rss),
            **_zygote_figures(),
        }


async def live_point(directory: Path, tenants: int, cap: int) -> dict[str, Any]:
    rss_start = rss_mb()
    async with Dispatcher(directory, "subprocess", durability="os", max_isolates=cap) as d:
        started = time.perf_counter()
        await _touch(d, tenants)
        seconds = time.perf_counter() - started
        gc.collect()
        pids = d.isolate_pids()
        uss = [uss_mb(pid) for pid in pids]
        return {
            "tenants": tenants,
            "lru_cap": cap,
            "live_isolates": len(pids),
            "dispatcher_rss_start_mb": rss_start,
            "dispatcher_rss_mb": rss_mb(),
            "isolates_uss_total_mb": sum(uss),
            "isolate_uss_mb": summarize(uss),
            "seconds_to_touch": seconds,
            **_zygote_figures(),
        }


async def sleeping_point(directory: Path, instances: int) -> dict[str, Any]:
    from dynamic_workflows.dispatch import scope_of

    gc.collect()
    rss_before = rss_mb()
    async with Dispatcher(directory, "subprocess", durability="os") as d:
        await _touch(d, SLEEP_TENANTS, in_flight=1)  # the isolates exist before we count
        d.runs.clear()
        gc.collect()
        rss_loaded = rss_mb()
        wf = d.engine.binding("WORKFLOWS")
        started = time.perf_counter()
        created = 0
        while created < instances:
            tenant = f"t{(created // 100) % SLEEP_TENANTS}"
            metadata = {"tenantId": tenant}
            binding = wf.scoped(scope_of(metadata), {"metadata": metadata, "version": None})
            size = min(100, instances - created)
            await binding.create_batch([{"params": {"kind": "sleep"}} for _ in range(size)])
            created += size
            backlog = created - 2000  # keep the executions in flight bounded
            await _until(functools.partial(_reached, d.runs, backlog), 60)
        # every execution has ended: each instance hibernated
        await _until(lambda: len(d.runs) >= instances, 600)
        seconds = time.perf_counter() - started
        waiting = await d.engine.count_instances(status="waiting")
        d.runs.clear()
        gc.collect()
        await asyncio.sleep(0.5)
        return {
            "instances": instances,
            "waiting": waiting,
            "seconds_to_create_and_hibernate": seconds,
            "rss_before_mb": rss_before,
            "rss_loaded_mb": rss_loaded,
            "rss_after_mb": rss_mb(),
            "asyncio_tasks": len(asyncio.all_tasks()),
            "live_isolates": len(d.isolate_pids()),
            "child_processes": len(children()) + sum(len(children(p)) for p in children()),
        }


def in_child(point: str) -> dict[str, Any]:
    """Run ``point`` in a fresh interpreter and return its JSON."""
    proc = subprocess.run(
        [sys.executable, __file__, "--point", point],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory point {point} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


async def run_point(point: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dynwf-mem-") as tmp:
        directory = Path(tmp)
        kind, _, arg = point.partition(":")
        if kind == "idle":
            return await idle_point(directory)
        if kind == "live":
            tenants, _, cap = arg.partition("/")
            return await live_point(directory, int(tenants), int(cap))
        if kind == "sleeping":
            return await sleeping_point(directory, int(arg))
    raise ValueError(f"unknown point {point!r}")


def plan(quick: bool) -> tuple[list[tuple[int, int]], int]:
    live = [(1, 100), (100, 100), (1000, 100)]
    if not quick:
        live.append((1000, 1000))
    return live, (5_000 if quick else 50_000)


def run(
    quick: bool, *, live: list[tuple[int, int]] | None = None, sleeping: int | None = None
) -> dict[str, Any]:
    """Every point, each in a child process; keyword arguments shrink them (smoke test)."""
    default_live, default_sleeping = plan(quick)
    live = live if live is not None else default_live
    sleeping = sleeping or default_sleeping
    figures: dict[str, Any] = {"dispatcher_rss_by_isolates": {}}
    with progress("memory", 2 + len(live)) as advance:
        figures["idle"] = in_child("idle")
        advance(1)
        for tenants, cap in live:
            key = f"{tenants}" if cap == 100 else f"{tenants} (cap {cap})"
            figures["dispatcher_rss_by_isolates"][key] = in_child(f"live:{tenants}/{cap}")
            advance(1)
        figures["sleeping"] = in_child(f"sleeping:{sleeping}")
        advance(1)
    idle_uss = figures["idle"]["idle_isolate_uss_mb"]["median"]
    rss = figures["sleeping"]["rss_after_mb"]
    figures["targets"] = {
        f"idle isolate USS <= {TARGET_IDLE_USS_MB} MB": {
            "reached_mb": idle_uss,
            "met": idle_uss <= TARGET_IDLE_USS_MB,
        },
        f"{sleeping:,} sleeping instances, dispatcher RSS < 1 GiB": {
            "reached_mb": rss,
            "met": rss < TARGET_SLEEPING_RSS_MB,
        },
    }
    return figures


def report(figures: dict[str, Any]) -> None:
    from rich.table import Table

    idle = figures["idle"]
    show(
        "idle isolates (subprocess, after one instance each)",
        [
            ("isolate USS", idle["idle_isolate_uss_mb"], "MiB"),
            ("isolate RSS", idle["idle_isolate_rss_mb"], "MiB"),
        ],
    )
    console.print(
        f"zygote: RSS {idle.get('zygote_rss_mb', 0):.1f} MiB, "
        f"USS {idle.get('zygote_uss_mb', 0):.1f} MiB"
    )
    table = Table(title="dispatcher with live isolates")
    for column in ("tenants", "LRU cap", "live", "dispatcher RSS MiB", "isolates USS sum MiB", "s"):
        table.add_column(column, justify="right")
    for p in figures["dispatcher_rss_by_isolates"].values():
        table.add_row(
            str(p["tenants"]),
            str(p["lru_cap"]),
            str(p["live_isolates"]),
            f"{p['dispatcher_rss_mb']:.0f}",
            f"{p['isolates_uss_total_mb']:.0f}",
            f"{p['seconds_to_touch']:.1f}",
        )
    console.print(table)
    s = figures["sleeping"]
    console.print(
        f"{s['instances']:,} sleeping instances ({s['waiting']:,} waiting): dispatcher RSS "
        f"{s['rss_before_mb']:.0f} → {s['rss_after_mb']:.0f} MiB, {s['asyncio_tasks']} tasks, "
        f"{s['live_isolates']} isolates, {s['child_processes']} processes "
        f"({s['seconds_to_create_and_hibernate']:.0f} s to create and hibernate)"
    )
    for name, target in figures["targets"].items():
        verdict = "[green]met[/green]" if target["met"] else "[red]missed[/red]"
        console.print(f"target: {name}: {target['reached_mb']:,.1f} MiB {verdict}")


def main(quick: bool) -> None:
    figures = run(quick)
    report(figures)
    live, sleeping = plan(quick)
    parameters = {
        "quick": quick,
        "idle_tenants": IDLE_TENANTS,
        "live_points": [{"tenants": t, "lru_cap": c} for t, c in live],
        "sleeping_instances": sleeping,
        "sleeping_tenants": SLEEP_TENANTS,
        "durability": "os",
        "uss": "Private_Clean + Private_Dirty of /proc/PID/smaps_rollup",
        "each point": "a fresh child interpreter",
    }
    write_result("memory", parameters, figures)
    from plots import plot_memory

    plot_memory(figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller points")
    parser.add_argument("--point", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.point:
        print(json.dumps(asyncio.run(run_point(args.point))))
    else:
        main(args.quick)
