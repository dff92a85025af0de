"""Dispatch overhead: what a step costs through the dispatcher into an isolate, beside the
in-process engine floor, at both durability settings, in one run.

Modes (all run the same tenant module, ``_harness.TENANT_SOURCE``):

- ``engine``: the workflow class registered on the engine directly (the in-process floor);
- ``inprocess``: the README dispatcher with the in-process backend (the channel and the
  guest runtime on a thread: RPC cost without a process boundary);
- ``subprocess``: the README dispatcher into a confined subprocess isolate.

Figures per mode and durability:

Modes are measured interleaved: all three dispatchers open at once, each round runs a
share of the new steps and one replay in every mode.

- ``new step``: the time ``await step.do(...)`` takes, measured inside the workflow around a
  trivial callback (two step ops to the host, the attempt, one durable commit);
- ``replay 100``: an instance that completed 100 steps and hibernated on a long
  ``wait_for_event``, woken by the event: the host-side wall time of that whole execution
  (ship the journal, replay 100 cached steps, return), by the dispatch entrypoint's clock.

Run: ``.venv/bin/python benchmarks/dispatch.py [--quick]``; writes
``benchmarks/results/dispatch.json`` and ``dispatch.png``.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    show,
    sqlite_floor,
    summarize,
    write_result,
)

MODES = ("engine", "inprocess", "subprocess")
DURABILITIES = ("fsync", "os")
REPLAY_STEPS = 100


async def _until(check: Any, what: str, timeout: float = 120.0) -> None:
    """Poll ``check()`` (a state of the run, not a duration) with a hang guard."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await asyncio.sleep(0.005)


async def new_steps(d: Dispatcher, steps: int) -> list[float]:
    """Per-step times (µs) of one instance doing ``steps`` new steps."""
    handle = await d.create("bench", {"kind": "timed", "n": steps})
    status = await handle.wait_for_status("complete", "errored")
    if status.status != "complete":
        raise RuntimeError(f"timed workflow {status.status}: {status.error}")
    return [t * 1e6 for t in status.output]


async def replay(d: Dispatcher) -> float:
    """Host-side time (ms) of the execution that replays ``REPLAY_STEPS`` cached steps."""
    handle = await d.create("bench", {"kind": "replay", "n": REPLAY_STEPS})
    # the first execution ends when the long wait hibernates it
    runs = d.runs.setdefault(handle.id, [])
    await _until(lambda: len(runs) >= 1, "the first execution")
    await handle.send_event(type="go", payload=None)
    status = await handle.wait_for_status("complete", "errored")
    if status.status != "complete" or len(runs) != 2:
        raise RuntimeError(f"replay run {status.status}: {status.error} {runs}")
    return runs[1] * 1e3


async def measure(durability: str, steps: int, instances: int, advance: Any) -> dict[str, Any]:
    """Every mode at ``durability``, interleaved round by round (the disk and the load
    drift during a run; interleaving spreads the drift over all modes alike)."""
    step_us: dict[str, list[float]] = {mode: [] for mode in MODES}
    replay_ms: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="dynwf-bench-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            dispatchers = {}
            for mode in MODES:
                directory = Path(tmp) / mode
                directory.mkdir()
                d = Dispatcher(directory, mode, durability=durability)
                dispatchers[mode] = await stack.enter_async_context(d)
                await new_steps(d, 10)  # warm-up: isolate loaded, code imported
            for round_ in range(instances):
                share = steps // instances + (1 if round_ < steps % instances else 0)
                for mode, d in dispatchers.items():
                    if share:
                        step_us[mode] += await new_steps(d, share)
                    replay_ms[mode].append(await replay(d))
                advance()
    return {
        mode: {"new_step_us": summarize(step_us[mode]), "replay_100_ms": summarize(replay_ms[mode])}
        for mode in MODES
    }


async def run(
    quick: bool, *, steps: int | None = None, instances: int | None = None
) -> dict[str, Any]:
    """Measure everything; ``steps``/``instances`` override the sizes (the smoke test)."""
    steps = steps or (100 if quick else 500)
    instances = instances or (5 if quick else 20)
    floor_instances = max(10, steps // 3)
    figures: dict[str, Any] = {}
    with progress("dispatch", len(DURABILITIES) * instances) as advance:
        for durability in DURABILITIES:
            per_mode: dict[str, Any] = {}
            with tempfile.TemporaryDirectory(prefix="dynwf-floor-") as tmp:
                per_mode["sqlite3 floor"] = sqlite_floor(
                    Path(tmp) / "floor.db", durability, floor_instances
                )
            per_mode.update(await measure(durability, steps, instances, advance))
            floor = per_mode["engine"]
            for backend in MODES[1:]:
                mine = per_mode[backend]
                mine["new_step_ratio_to_engine"] = (
                    mine["new_step_us"]["median"] / floor["new_step_us"]["median"]
                )
                mine["new_step_overhead_us"] = (
                    mine["new_step_us"]["median"] - floor["new_step_us"]["median"]
                )
                mine["replay_ratio_to_engine"] = (
                    mine["replay_100_ms"]["median"] / floor["replay_100_ms"]["median"]
                )
            figures[durability] = per_mode
    sub_os = figures["os"]["subprocess"]["new_step_us"]["median"]
    figures["targets"] = {
        "new step through a subprocess isolate, durability=os, median <= 150 us": {
            "reached_us": sub_os,
            "met": sub_os <= 150,
        }
    }
    return figures


def report(figures: dict[str, Any]) -> None:
    for durability in DURABILITIES:
        per = figures[durability]
        rows = [
            ("sqlite3 commit (floor)", per["sqlite3 floor"]["commit_us"], "µs"),
            *((f"{m}: new step", per[m]["new_step_us"], "µs") for m in MODES),
        ]
        show(f"new step, durability={durability}", rows, baseline="engine: new step")
        show(
            f"replay of {REPLAY_STEPS} cached steps, durability={durability}",
            [(f"{m}: replay", per[m]["replay_100_ms"], "ms") for m in MODES],
            baseline="engine: replay",
        )
    for name, target in figures["targets"].items():
        verdict = "[green]met[/green]" if target["met"] else "[red]missed[/red]"
        console.print(f"target: {name}: {target['reached_us']:.0f} µs {verdict}")


async def main(quick: bool) -> None:
    figures = await run(quick)
    report(figures)
    parameters = {
        "quick": quick,
        "modes": list(MODES),
        "durabilities": list(DURABILITIES),
        "new_step_samples": 100 if quick else 500,
        "replay_instances": 5 if quick else 20,
        "replay_steps": REPLAY_STEPS,
        "workflow": "benchmarks/_harness.py TENANT_SOURCE (kinds 'timed' and 'replay')",
        "units": {"new_step_us": "µs", "replay_100_ms": "ms", "commit_us": "µs"},
    }
    write_result("dispatch", parameters, figures)
    from plots import plot_dispatch

    plot_dispatch(figures)


if __name__ == "__main__":
    run_main(main, "dispatch overhead: new step and replay through an isolate")
