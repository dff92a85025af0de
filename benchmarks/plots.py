"""PNG plots of the result files (matplotlib, Agg backend).

Each benchmark calls its ``plot_<name>(figures)`` after writing its JSON; running this file
redraws every plot from ``benchmarks/results/*.json`` without measuring again, and with
``--readme`` rewrites the figures table of benchmarks/README.md from them:
``.venv/bin/python benchmarks/plots.py [--readme]``.
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

COLORS = {"engine": "tab:blue", "inprocess": "tab:orange", "subprocess": "tab:green"}


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
    """``figures``: ``{"fsync": run(...), "os": run(...)}`` as throughput.py writes them."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, sweep, xlabel in (
        (left, "concurrency", "instances in flight (1 tenant)"),
        (right, "tenants", "distinct tenants (128 in flight, LRU cap 100)"),
    ):
        for durability, style in (("fsync", "-"), ("os", "--")):
            per = figures.get(durability, {})
            for mode, points in per.get(sweep, {}).items():
                xs = [int(x) for x in points]
                ys = [points[x]["instances_per_s"] for x in points]
                color = COLORS.get(mode)
                ax.plot(xs, ys, style, color=color, marker="o", label=f"{mode}, {durability}")
        floor = figures.get("fsync", {}).get("baselines", {}).get("sqlite3 floor")
        if floor:
            ax.axhline(floor, linestyle=":", linewidth=1, color="grey")
            ax.text(1, floor, " sqlite3 floor (FULL, 1 txn/step)", fontsize=7, color="grey")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("three-step instances/s")
        ax.set_title(f"throughput by {sweep}")
        ax.legend(fontsize=7)
    return _save(fig, "throughput", out)


def plot_memory(figures: dict[str, Any], out: Path | None = None) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    live = figures["dispatcher_rss_by_isolates"]
    labels = [f"{p['tenants']} tenants\n{p['live_isolates']} live" for p in live.values()]
    _bars(
        left,
        labels,
        {
            "dispatcher RSS": [(p["dispatcher_rss_mb"],) * 2 for p in live.values()],
            "isolates' USS, sum": [(p["isolates_uss_total_mb"],) * 2 for p in live.values()],
        },
    )
    left.set_yscale("log")
    left.set_ylabel("MiB")
    left.set_title("dispatcher and isolates (LRU cap in the JSON)")
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


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return None
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def _best(sweeps: dict[str, Any], mode: str) -> tuple[dict[str, Any], str]:
    """The fastest point of ``mode`` across durabilities and sweeps, and its label."""
    found: list[tuple[float, dict[str, Any], str]] = []
    for durability in ("fsync", "os"):
        for sweep, points in sweeps.get(durability, {}).items():
            if sweep not in ("concurrency", "tenants"):
                continue
            for key, p in points.get(mode, {}).items():
                unit = "in flight" if sweep == "concurrency" else "tenants"
                found.append((p["instances_per_s"], p, f"{durability}, {key} {unit}"))
    _, point, label = max(found, key=lambda item: item[0])
    return point, label


def _ok(met: bool) -> str:
    return "yes" if met else "**no**"


def readme_rows() -> list[str]:
    """Markdown rows of the latest figures (from results/*.json) for benchmarks/README.md."""
    rows = [
        "| figure | median | p99 | baseline, same run | target | met |",
        "|---|---|---|---|---|---|",
    ]
    dispatch = _load("dispatch")
    if dispatch:
        f = dispatch["figures"]
        for durability in ("os", "fsync"):
            floor = f[durability]["engine"]["new_step_us"]
            for mode in ("subprocess", "inprocess"):
                s = f[durability][mode]["new_step_us"]
                target = "≤ 150 µs" if (mode, durability) == ("subprocess", "os") else ""
                met = _ok(s["median"] <= 150) if target else ""
                rows.append(
                    f"| new step, {mode} isolate, durability={durability} | {s['median']:,.0f} µs "
                    f"| {s['p99']:,.0f} µs | in-process engine {floor['median']:,.0f} µs "
                    f"(×{s['median'] / floor['median']:.1f}) | {target} | {met} |"
                )
        for durability in ("os", "fsync"):
            s = f[durability]["subprocess"]["replay_100_ms"]
            floor = f[durability]["engine"]["replay_100_ms"]
            rows.append(
                f"| replay of 100 cached steps, subprocess, durability={durability} "
                f"| {s['median']:.2f} ms | {s['p99']:.2f} ms | in-process engine "
                f"{floor['median']:.2f} ms (×{s['median'] / floor['median']:.1f}) | | |"
            )
    throughput = _load("throughput")
    if throughput:
        f = throughput["figures"]
        for mode, label, goal in (
            ("engine", "in-process engine", 2000),
            ("subprocess", "isolated (subprocess)", 1000),
        ):
            point, where = _best(f, mode)
            floor = f["fsync"]["sqlite3_floor"]["instances_per_s"]
            rows.append(
                f"| three-step instances/s, {label}, best ({where}) "
                f"| {point['instances_per_s']:,.0f}/s "
                f"| latency {point['latency_ms']['p99']:,.0f} ms "
                f"| plain sqlite3 FULL, 1 txn/step: {floor:,.0f}/s | ≥ {goal:,}/s "
                f"| {_ok(point['instances_per_s'] >= goal)} |"
            )
        tenants = f["fsync"]["tenants"].get("subprocess", {})
        if tenants:
            key = max(tenants, key=int)
            p = tenants[key]
            rows.append(
                f"| isolated, {key} tenants (LRU cap 100, 128 in flight, fsync) "
                f"| {p['instances_per_s']:,.0f}/s | latency {p['latency_ms']['p99']:,.0f} ms "
                f"| 1 tenant: {tenants['1']['instances_per_s']:,.0f}/s | | |"
            )
    if throughput:
        for durability, per in throughput["figures"].items():
            if durability not in ("fsync", "os"):
                continue
            for sweep, modes in per.items():
                if sweep not in ("concurrency", "tenants"):
                    continue
                for mode, points in modes.items():
                    for key, p in points.items():
                        if p.get("errors"):
                            unit = "in flight, 1 tenant" if sweep == "concurrency" else "tenants"
                            rows.append(
                                f"| **failed instances**: {mode}, {key} {unit}, {durability} "
                                f"| {p['errors']} of {p['instances']} | | "
                                f"{p['first_error']} | none | **no** |"
                            )
    peer = _load("peer")
    if peer and peer["figures"]["dbos"]["installed"]:
        f = peer["figures"]
        ratios = f["ratios"]
        version = f["dbos"]["version"]
        for prefix, label in (
            ("engine fsync / DBOS wal, ", "in-process engine (fsync) / DBOS (WAL, FULL)"),
            ("subprocess fsync / DBOS wal, ", "isolated (fsync) / DBOS (WAL, FULL)"),
            ("engine os / DBOS wal-normal, ", "in-process engine (os) / DBOS (WAL, NORMAL)"),
        ):
            keys = [k for k in ratios if k.startswith(prefix)]
            if not keys:
                continue
            best = max(keys, key=ratios.__getitem__)
            spread = ", ".join(f"×{ratios[k]:.1f} at {k[len(prefix) :]}" for k in keys)
            peer_goal = "≥ ×10" if prefix.startswith("engine fsync") else ""
            met = _ok(ratios[best] >= 10) if peer_goal else ""
            rows.append(
                f"| {label}, DBOS {version}, best | ×{ratios[best]:.1f} | | {spread} "
                f"| {peer_goal} | {met} |"
            )
    memory = _load("memory")
    if memory:
        f = memory["figures"]
        idle = f["idle"]["idle_isolate_uss_mb"]
        rows.append(
            f"| idle isolate USS (loaded, ran one instance) | {idle['median']:.2f} MiB "
            f"| {idle['p99']:.2f} MiB | zygote USS {f['idle'].get('zygote_uss_mb', 0):.1f} MiB "
            f"| ≤ 3 MB | {_ok(idle['median'] <= 3.0)} |"
        )
        for p in f["dispatcher_rss_by_isolates"].values():
            rows.append(
                f"| dispatcher RSS, {p['tenants']} tenants touched, LRU cap {p['lru_cap']}, "
                f"{p['live_isolates']} live isolates "
                f"| {p['dispatcher_rss_mb']:.0f} MiB | | isolates' USS sum "
                f"{p['isolates_uss_total_mb']:.0f} MiB | | |"
            )
        s = f["sleeping"]
        rows.append(
            f"| dispatcher RSS with {s['instances']:,} sleeping instances "
            f"| {s['rss_after_mb']:.0f} MiB | | before: {s['rss_before_mb']:.0f} MiB; "
            f"{s['live_isolates']} isolates, {s['asyncio_tasks']} tasks | < 1 GiB "
            f"| {_ok(s['rss_after_mb'] < 1024)} |"
        )
    return rows


def machine_line() -> str:
    """Where and how the latest results were measured."""
    seen = [r for r in (_load(n) for n in PLOTS) if r]
    if not seen:
        return ""
    m = seen[0]["machine"]
    quick = any(r["parameters"].get("quick") for r in seen)
    loads = ", ".join(f"{r['machine']['load_average'][0]:.1f}" for r in seen)
    return (
        f"Measured {m['when']} at commit {m['commit']} on {m['cpu']} ({m['cores']} cores), "
        f"Python {m['python']}, {m['platform']}; 1-min load average at the end of each "
        f"benchmark: {loads}{' (--quick)' if quick else ''}."
    )


def update_readme() -> None:
    """Rewrite the figures section of benchmarks/README.md from the result files."""
    readme = Path(__file__).resolve().parent / "README.md"
    text = readme.read_text()
    start, end = "<!-- figures:start -->", "<!-- figures:end -->"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    body = "\n".join([machine_line(), "", *readme_rows()])
    readme.write_text(f"{head}{start}\n{body}\n{end}{tail}")
    console.print(f"[green]updated[/green] {readme.name}")


def main() -> None:
    for name, plot in PLOTS.items():
        result = _load(name)
        if result:
            plot(result["figures"])
    if "--readme" in sys.argv:
        update_readme()


if __name__ == "__main__":
    main()
