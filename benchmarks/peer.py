"""Peer: the same three-step workflow on DBOS Transact (SQLite), on this engine, and as a
plain ``sqlite3`` loop, measured in one run.

- DBOS Transact (``pip install '.[bench-peers]'``), system database on SQLite: ``shipped``
  (DBOS's defaults: rollback journal, synchronous=FULL) and ``wal`` (the file switched to
  WAL before launch; synchronous stays FULL: the same power-loss guarantee as this engine's
  ``durability="fsync"``). Async workflow of three async ``@DBOS.step`` functions, started
  with ``start_workflow_async`` and awaited, N in flight. Each configuration runs in a
  child interpreter (DBOS is a process-wide singleton). Skipped, with a message, when
  ``dbos`` is not installed.
- This engine, same machine, same run: the in-process engine (``engine``) and the README
  dispatcher into subprocess isolates (``subprocess``), durability ``fsync`` (WAL+FULL) and,
  for the engine, ``os`` (WAL+NORMAL).
- The physical floor: plain ``sqlite3``, one transaction per step, WAL, FULL and NORMAL.

Run: ``.venv/bin/python benchmarks/peer.py [--quick]``; writes
``benchmarks/results/peer.json`` and ``peer.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import console, progress, sqlite_floor, summarize, write_result

DBOS_MODES = ("shipped", "wal", "wal-normal")


def dbos_available() -> bool:
    return importlib.util.find_spec("dbos") is not None


async def dbos_point(mode: str, concurrency: int, instances: int, seconds: float) -> dict[str, Any]:
    """Three-step instances/s on DBOS Transact (run in a child interpreter)."""
    import logging

    from dbos import DBOS

    @DBOS.step()
    async def one() -> int:
        return 1

    @DBOS.step()
    async def two() -> int:
        return 2

    @DBOS.step()
    async def three() -> int:
        return 3

    @DBOS.workflow()
    async def three_steps() -> int:
        return (await one()) + (await two()) + (await three())

    with tempfile.TemporaryDirectory(prefix="dynwf-dbos-") as tmp:
        db = Path(tmp) / "dbos.sqlite"
        if mode.startswith("wal"):
            conn = sqlite3.connect(db)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.close()
        config: dict[str, Any] = {
            "name": "bench",
            "system_database_url": f"sqlite:///{db}",
            "log_level": "WARNING",
        }
        if mode == "wal-normal":  # synchronous=NORMAL on every pooled connection

            def connect() -> sqlite3.Connection:
                conn = sqlite3.connect(db, check_same_thread=False)
                conn.execute("PRAGMA synchronous=NORMAL")
                return conn

            config["db_engine_kwargs"] = {"creator": connect}
        logging.getLogger("dbos").setLevel(logging.WARNING)
        dbos = DBOS(config=config)  # type: ignore[arg-type]
        DBOS.launch()
        try:
            conn = sqlite3.connect(db)
            journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
            conn.close()
            with dbos._sys_db.engine.connect() as probe:  # what DBOS's own connections use
                synchronous = probe.exec_driver_sql("PRAGMA synchronous").scalar()
            for _ in range(3):  # warm-up
                handle = await DBOS.start_workflow_async(three_steps)
                assert await handle.get_result() == 6
            latencies: list[float] = []
            issued = 0
            deadline = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal issued
                while issued < instances and time.perf_counter() < deadline:
                    issued += 1
                    t0 = time.perf_counter()
                    handle = await DBOS.start_workflow_async(three_steps)
                    if await handle.get_result() != 6:
                        raise RuntimeError("DBOS workflow returned a wrong result")
                    latencies.append((time.perf_counter() - t0) * 1e3)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        finally:
            DBOS.destroy()
    return {
        "instances_per_s": len(latencies) / elapsed,
        "instances": len(latencies),
        "capped_by_time": len(latencies) < instances,
        "latency_ms": summarize(latencies),
        "journal_mode": journal,
        "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
            int(synchronous or 0), synchronous
        ),
    }


def dbos_in_child(mode: str, concurrency: int, instances: int, seconds: float) -> dict[str, Any]:
    point = f"{mode}:{concurrency}:{instances}:{seconds}"
    proc = subprocess.run(
        [sys.executable, __file__, "--dbos-point", point],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"DBOS point {point} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


async def run(
    quick: bool, *, concurrency: tuple[int, ...] | None = None, base: int | None = None
) -> dict[str, Any]:
    """Every row; keyword arguments shrink it (the smoke test)."""
    from throughput import point

    concurrency = concurrency or ((1, 16) if quick else (1, 16, 128))
    base = base or (100 if quick else 300)
    seconds = 6.0 if quick else 12.0
    have_dbos = dbos_available()
    ours = [("engine", "fsync"), ("subprocess", "fsync"), ("engine", "os")]
    rows: dict[str, Any] = {}
    steps = len(concurrency) * (len(ours) + (len(DBOS_MODES) if have_dbos else 0)) + 2
    with progress("peer", steps) as advance:
        for c in concurrency:
            n = max(base, 2 * c)
            for mode, durability in ours:
                result = await point(
                    mode,
                    concurrency=c,
                    tenants=1,
                    instances=n,
                    seconds=seconds,
                    durability=durability,
                )
                rows[f"this engine, {mode}, {durability}, {c} in flight"] = result
                advance(1)
            if have_dbos:
                for mode in DBOS_MODES:
                    rows[f"DBOS {mode}, {c} in flight"] = dbos_in_child(mode, c, n, seconds)
                    advance(1)
        for durability in ("fsync", "os"):
            with tempfile.TemporaryDirectory(prefix="dynwf-floor-") as tmp:
                floor = sqlite_floor(Path(tmp) / "floor.db", durability, base)
            label = "FULL" if durability == "fsync" else "NORMAL"
            rows[f"plain sqlite3 floor, WAL {label}, 1 txn/step"] = floor
            advance(1)
    ratios: dict[str, float] = {}
    if have_dbos:
        for c in concurrency:

            def rate(label: str) -> float:
                value: float = rows[label]["instances_per_s"]
                return value

            dbos_wal = rate(f"DBOS wal, {c} in flight")
            for mode in ("engine", "subprocess"):
                mine = rate(f"this engine, {mode}, fsync, {c} in flight")
                ratios[f"{mode} fsync / DBOS wal, {c} in flight"] = mine / dbos_wal
                ratios[f"{mode} fsync / DBOS shipped, {c} in flight"] = mine / rate(
                    f"DBOS shipped, {c} in flight"
                )
            ratios[f"engine os / DBOS wal-normal, {c} in flight"] = rate(
                f"this engine, engine, os, {c} in flight"
            ) / rate(f"DBOS wal-normal, {c} in flight")
    figures: dict[str, Any] = {
        "rows": rows,
        "ratios": ratios,
        "dbos": (
            {"installed": True, "version": metadata.version("dbos")}
            if have_dbos
            else {
                "installed": False,
                "skipped": "dbos is not installed: pip install '.[bench-peers]'",
            }
        ),
    }
    if have_dbos:
        best = max(ratios[f"engine fsync / DBOS wal, {c} in flight"] for c in concurrency)
        figures["targets"] = {
            ">= 10x DBOS (WAL, same durability) on the same work": {
                "reached": best,
                "met": best >= 10,
            }
        }
    return figures


def report(figures: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="three-step workflow: this engine, DBOS Transact, plain sqlite3")
    for column in ("configuration", "instances/s", "latency median ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for label, row in figures["rows"].items():
        latency = row.get("latency_ms", {})
        table.add_row(
            label,
            f"{row['instances_per_s']:,.0f}",
            f"{latency.get('median', 0):,.1f}" if latency else "-",
            f"{latency.get('p99', 0):,.1f}" if latency else "-",
        )
    console.print(table)
    if not figures["dbos"]["installed"]:
        console.print(f"[yellow]DBOS skipped[/yellow]: {escape(figures['dbos']['skipped'])}")
    for name, ratio in figures["ratios"].items():
        console.print(f"{name}: {ratio:.1f}×")
    for name, target in figures.get("targets", {}).items():
        verdict = "[green]met[/green]" if target["met"] else "[red]missed[/red]"
        console.print(f"target: {name}: {target['reached']:.1f}× {verdict}")


async def main(quick: bool) -> None:
    figures = await run(quick)
    report(figures)
    parameters = {
        "quick": quick,
        "concurrency": [1, 16] if quick else [1, 16, 128],
        "instances_per_point": "max(base, 2 x concurrency)",
        "base_instances": 100 if quick else 300,
        "time_cap_s": 6.0 if quick else 12.0,
        "dbos_version": figures["dbos"].get("version"),
        "dbos_settings": {
            "shipped": "system_database_url sqlite:///file; rollback journal; synchronous=FULL",
            "wal": "the same after PRAGMA journal_mode=WAL on the file before launch",
            "wal-normal": "WAL and synchronous=NORMAL on every pooled connection (db_engine_kwargs "
            "creator): the same guarantee as this engine's durability='os'",
        },
        "workflow": "three trivial steps (this engine: _harness.TENANT_SOURCE kind 'three')",
    }
    write_result("peer", parameters, figures)
    from plots import plot_peer

    plot_peer(figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer points")
    parser.add_argument("--dbos-point", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dbos_point:
        mode, c, n, s = args.dbos_point.split(":")
        print(json.dumps(asyncio.run(dbos_point(mode, int(c), int(n), float(s)))))
    else:
        asyncio.run(main(args.quick))
