"""Shared benchmark plumbing: statistics, machine info, JSON results, progress, plots.

Every benchmark measures its baseline in the same run and reports ratios against it; the
figures go to ``benchmarks/results/<name>.json`` (and a PNG when a plot helps).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"
console = Console(stderr=True)


def summarize(samples: Sequence[float]) -> dict[str, float | int]:
    """median, p90, p99, min, max, mean and count of ``samples`` (any unit)."""
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)

    def pct(q: float) -> float:
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index]

    return {
        "median": statistics.median(ordered),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "min": ordered[0],
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
        "count": len(ordered),
    }


def machine_info() -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": load,
        "commit": commit,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {
            d: version(d)
            for d in ("dynamic-workflows", "anyio", "orjson", "msgspec", "wasmtime", "dbos")
        },
    }


def write_result(name: str, parameters: dict[str, Any], figures: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` atomically and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    payload = {
        "benchmark": name,
        "machine": machine_info(),
        "parameters": parameters,
        "figures": figures,
    }
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    console.print(f"[green]wrote[/green] {shown}")
    return path


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar; yields ``advance(n)``."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def show(
    title: str, rows: list[tuple[str, dict[str, Any], str]], baseline: str | None = None
) -> None:
    """Print a table of figures: (label, summary, unit), with ratios against ``baseline``."""
    table = Table(title=title)
    for column in ("figure", "median", "p99", "n", "× baseline"):
        table.add_column(column, justify="right" if column != "figure" else "left")
    base = next((s for label, s, _ in rows if label == baseline), None)
    for label, summary, unit in rows:
        ratio = ""
        if base and summary.get("median") and base.get("median"):
            ratio = f"{summary['median'] / base['median']:.2f}"
        table.add_row(
            label,
            f"{summary.get('median', 0):.3g} {unit}",
            f"{summary.get('p99', 0):.3g} {unit}",
            str(summary.get("count", "")),
            ratio,
        )
    console.print(table)
