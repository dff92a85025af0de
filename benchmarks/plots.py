"""PNG plots of the result files (matplotlib, Agg backend).

Each benchmark calls its ``plot_<name>(figures)`` after writing its JSON; running this file
redraws every plot from ``benchmarks/results/*.json`` without measuring again:
``.venv/bin/python benchmarks/plots.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import RESULTS, console


def _save(fig: Any, name: str, out: Path | None) -> Path:
    """Write ``<out or results>/<name>.png`` (``fig``: a matplotlib Figure, untyped)."""
    directory = out or RESULTS
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    console.print(f"[green]wrote[/green] {path.name}")
    return path


def _bars(ax: Any, labels: list[str], series: dict[str, list[tuple[float, float]]]) -> None:
    """Grouped bars: one group per label, one bar per series; (median, p99) whiskers."""
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [x + i * width for x in range(len(labels))]
        medians = [m for m, _ in values]
        upper = [max(0.0, p - m) for m, p in values]
        ax.bar(xs, medians, width, label=name, yerr=[[0] * len(upper), upper], capsize=3)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))])
    ax.set_xticklabels(labels)


def plot_dispatch(figures: dict[str, Any], out: Path | None = None) -> Path:
    modes = ["engine", "inprocess", "subprocess"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, unit, title in (
        (left, "new_step_us", "µs", "one new step (median, whisker p99)"),
        (right, "replay_100_ms", "ms", "replay of 100 cached steps"),
    ):
        series = {
            durability: [
                (figures[durability][m][key]["median"], figures[durability][m][key]["p99"])
                for m in modes
            ]
            for durability in ("fsync", "os")
        }
        _bars(ax, modes, {f"durability={k}": v for k, v in series.items()})
        ax.set_yscale("log")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.legend()
    return _save(fig, "dispatch", out)


def plot_throughput(figures: dict[str, Any], out: Path | None = None) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, sweep, xlabel in (
        (left, "concurrency", "instances in flight"),
        (right, "tenants", "distinct tenants"),
    ):
        for mode, points in figures[sweep].items():
            xs = [int(x) for x in points]
            ys = [points[x]["instances_per_s"] for x in points]
            ax.plot(xs, ys, marker="o", label=mode)
        for name, line in figures.get("baselines", {}).items():
            ax.axhline(line, linestyle="--", linewidth=1, color="grey")
            ax.text(1, line, f" {name}", fontsize=7, va="bottom", color="grey")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("three-step instances/s")
        ax.set_title(f"throughput by {sweep}")
        ax.legend(fontsize=8)
    return _save(fig, "throughput", out)


def plot_memory(figures: dict[str, Any], out: Path | None = None) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    live = figures["dispatcher_rss_by_isolates"]
    xs = [int(x) for x in live]
    left.plot(xs, [live[x]["dispatcher_rss_mb"] for x in live], marker="o", label="dispatcher RSS")
    left.plot(
        xs, [live[x]["isolates_uss_total_mb"] for x in live], marker="s", label="isolates USS, sum"
    )
    left.set_xscale("log")
    left.set_xlabel("tenants loaded (LRU cap in the JSON)")
    left.set_ylabel("MiB")
    left.set_title("dispatcher and isolates")
    left.legend(fontsize=8)
    sleeping = figures["sleeping"]
    right.bar(
        ["before", f"{sleeping['instances']:,} sleeping"],
        [sleeping["rss_before_mb"], sleeping["rss_after_mb"]],
    )
    right.axhline(1024, linestyle="--", color="grey")
    right.text(0, 1024, " 1 GiB target", fontsize=8, va="bottom", color="grey")
    right.set_ylabel("dispatcher RSS, MiB")
    right.set_title("hibernated instances")
    return _save(fig, "memory", out)


def plot_peer(figures: dict[str, Any], out: Path | None = None) -> Path:
    rows = figures["rows"]
    fig, ax = plt.subplots(figsize=(9, 4))
    labels = list(rows)
    ax.barh(labels, [rows[label]["instances_per_s"] for label in labels])
    ax.set_xscale("log")
    ax.set_xlabel("three-step instances/s (log)")
    ax.set_title("same workflow: this engine, DBOS Transact, plain sqlite3")
    ax.invert_yaxis()
    return _save(fig, "peer", out)


PLOTS = {
    "dispatch": plot_dispatch,
    "throughput": plot_throughput,
    "memory": plot_memory,
    "peer": plot_peer,
}


def main() -> None:
    for name, plot in PLOTS.items():
        path = RESULTS / f"{name}.json"
        if path.is_file():
            plot(json.loads(path.read_text())["figures"])


if __name__ == "__main__":
    main()
