"""Throughput: three-step instances per second end to end, in-process and isolated.

One instance = the tenant's ``fetch`` creates it (``env.WORKFLOWS.create`` from inside the
isolate, back over RPC), the engine runs ``TenantWorkflow`` through the dispatch entrypoint
into the tenant's isolate (three ``step.do`` with trivial callbacks, each durably
committed), and the client waits for ``complete``. The ``engine`` mode is the floor: the same
class registered on the engine directly, created with ``binding.create``.

Sweeps (each point a fresh dispatcher and SQLite file, durability as given):
- concurrency 1, 16, 128, 1024 instances in flight, one tenant;
- 1, 10, 100, 1000 distinct tenants at 128 in flight, round robin, with the loader's default
  LRU cap of 100 live isolates (so 1000 tenants churn isolates: a cold start per miss).

Caps (to finish in a few minutes on a 2-core box): each point runs ``max(300, 2 ×
concurrency)`` instances (at least one per tenant) or stops issuing new ones after
``--seconds`` (default 12 s; instances in flight finish and count); ``--quick`` drops the
1024 and 1000 points and runs 100 instances (6 s cap).

Run: ``.venv/bin/python benchmarks/throughput.py [--quick]``; writes
``benchmarks/results/throughput.json`` and ``throughput.png``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Dispatcher,
    console,
    progress,
    run_main,
    sqlite_floor,
    summarize,
    write_result,
)

MODES = ("engine", "inprocess", "subprocess")
CONCURRENCY = (1, 16, 128, 1024)
TENANTS = (1, 10, 100, 1000)
TENANT_CONCURRENCY = 128
LRU_CAP = 100


async def point(
    backend: str,
    *,
    concurrency: int,
    tenants: int,
    instances: int,
    seconds: float,
    durability: str,
    advance: Any = None,
) -> dict[str, Any]:
    """Instances/s of one configuration (a fresh dispatcher and database)."""
    with tempfile.TemporaryDirectory(prefix="dynwf-bench-") as tmp:
        async with Dispatcher(Path(tmp), backend, durability=durability, max_isolates=LRU_CAP) as d:
            warm = min(tenants, LRU_CAP)  # warm what fits under the cap; beyond it, churn
            for t in range(warm):
                handle = await d.create(f"t{t}", {"kind": "three"})
                await handle.wait_for_status("complete", "errored")
            issued = 0
            latencies: list[float] = []
            errors: list[str] = []
            deadline = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal issued
                while issued < instances and time.perf_counter() < deadline:
                    tenant = f"t{issued % tenants}"
                    issued += 1
                    t0 = time.perf_counter()
                    handle = await d.create(tenant, {"kind": "three"})
                    status = await handle.wait_for_status("complete", "errored")
                    if status.status != "complete":
                        errors.append(f"{status.status}: {status.error}")
                    latencies.append((time.perf_counter() - t0) * 1e3)
                    if advance is not None:
                        advance(1)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
            live = len(d.loader.isolates()) if d.loader is not None else 0
    return {  # failed instances are counted and shown, never hidden: they are findings
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "instances_per_s": (len(latencies) - len(errors)) / elapsed,
        "instances": len(latencies),
        "seconds": elapsed,
        "capped_by_time": len(latencies) < instances,
        "latency_ms": summarize(latencies),
        "live_isolates_at_end": live,
        "warmed_tenants": warm,
    }


async def run(
    quick: bool,
    *,
    durability: str = "fsync",
    seconds: float | None = None,
    concurrency: tuple[int, ...] | None = None,
    tenants: tuple[int, ...] | None = None,
    modes: tuple[str, ...] = MODES,
    base: int | None = None,
) -> dict[str, Any]:
    """Both sweeps at one durability; keyword arguments shrink them (``tenants=()``: none)."""
    seconds = seconds or (6.0 if quick else 12.0)
    base = base or (100 if quick else 300)
    if concurrency is None:
        concurrency = CONCURRENCY[:3] if quick else CONCURRENCY
    if tenants is None:
        tenants = TENANTS[:3] if quick else TENANTS
    plan = [("concurrency", c, 1) for c in concurrency] + [
        ("tenants", min(TENANT_CONCURRENCY, max(concurrency)), t) for t in tenants
    ]
    figures: dict[str, Any] = {"concurrency": {}, "tenants": {}}
    total = sum(max(base, 2 * c, t) for _, c, t in plan) * len(modes)
    with progress(f"throughput ({durability})", total) as advance:
        for sweep, c, t in plan:
            for mode in modes:
                n = max(base, 2 * c, t)
                result = await point(
                    mode,
                    concurrency=c,
                    tenants=t,
                    instances=n,
                    seconds=seconds,
                    durability=durability,
                    advance=advance,
                )
                advance(n - result["instances"])
                key = str(c if sweep == "concurrency" else t)
                figures[sweep].setdefault(mode, {})[key] = result
    with tempfile.TemporaryDirectory(prefix="dynwf-floor-") as tmp:
        floor = sqlite_floor(Path(tmp) / "floor.db", durability, 300 if not quick else 100)
    figures["sqlite3_floor"] = floor
    figures["baselines"] = {"sqlite3 floor": floor["instances_per_s"]}
    best = {
        mode: max(
            (
                p["instances_per_s"]
                for sweep in ("concurrency", "tenants")
                for p in figures[sweep].get(mode, {}).values()
            ),
            default=0.0,
        )
        for mode in modes
    }
    figures["best_instances_per_s"] = best
    return figures


def targets(by_durability: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets against the best point at any durability (which one is named)."""

    def best(mode: str) -> tuple[float, str]:
        return max(
            (figures["best_instances_per_s"].get(mode, 0.0), durability)
            for durability, figures in by_durability.items()
        )

    engine, engine_at = best("engine")
    isolated, isolated_at = best("subprocess")
    return {
        "in-process engine >= 2000 instances/s": {
            "reached": engine,
            "durability": engine_at,
            "met": engine >= 2000,
        },
        "isolated (subprocess) >= 1000 instances/s": {
            "reached": isolated,
            "durability": isolated_at,
            "met": isolated >= 1000,
        },
    }


def report(figures: dict[str, Any], durability: str) -> None:
    from rich.table import Table

    for sweep in ("concurrency", "tenants"):
        if not figures[sweep]:
            continue
        table = Table(title=f"three-step instances/s by {sweep} (durability={durability})")
        table.add_column(sweep, justify="right")
        modes = list(figures[sweep])
        for mode in modes:
            table.add_column(f"{mode} inst/s", justify="right")
            table.add_column("p99 ms", justify="right")
        keys = list(figures[sweep][modes[0]])
        for key in keys:
            cells = [key]
            for mode in modes:
                p = figures[sweep][mode][key]
                mark = ("*" if p["capped_by_time"] else "") + ("!" if p["errors"] else "")
                cells += [f"{p['instances_per_s']:,.0f}{mark}", f"{p['latency_ms']['p99']:,.1f}"]
            table.add_row(*cells)
        console.print(table)
    floor = figures["sqlite3_floor"]
    console.print(
        f"floor: plain sqlite3, one transaction per step: {floor['instances_per_s']:,.0f} "
        f"three-step instances/s (commit median {floor['commit_us']['median']:.0f} µs); "
        "* = stopped by the time cap"
    )
    for sweep in ("concurrency", "tenants"):
        for mode, points in figures[sweep].items():
            for key, p in points.items():
                if p["errors"]:
                    console.print(
                        f"[red]! {mode}, {sweep} {key}: {p['errors']} of {p['instances']} "
                        f"instances failed[/red] (not counted), e.g. {p['first_error']}"
                    )


async def main(quick: bool) -> None:
    figures: dict[str, Any] = {}
    figures["fsync"] = await run(quick, durability="fsync")
    report(figures["fsync"], "fsync")
    figures["os"] = await run(quick, durability="os", tenants=())
    report(figures["os"], "os")
    figures["targets"] = targets({"fsync": figures["fsync"], "os": figures["os"]})
    for name, target in figures["targets"].items():
        verdict = "[green]met[/green]" if target["met"] else "[red]missed[/red]"
        console.print(
            f"target: {name}: {target['reached']:,.0f} "
            f"(durability={target['durability']}) {verdict}"
        )
    parameters = {
        "quick": quick,
        "durability": "fsync: both sweeps; os: the concurrency sweep",
        "modes": list(MODES),
        "concurrency": list(CONCURRENCY[:3] if quick else CONCURRENCY),
        "tenants": list(TENANTS[:3] if quick else TENANTS),
        "tenant_sweep_concurrency": TENANT_CONCURRENCY,
        "lru_cap": LRU_CAP,
        "instances_per_point": "max(base, 2 x concurrency, tenants)",
        "base_instances": 100 if quick else 300,
        "time_cap_s": 6.0 if quick else 12.0,
        "workflow": "benchmarks/_harness.py TENANT_SOURCE kind 'three'",
    }
    write_result("throughput", parameters, figures)
    from plots import plot_throughput

    plot_throughput(figures)


if __name__ == "__main__":
    run_main(main, "three-step instances/s end to end, in-process and isolated")
