"""The benchmark modules still import and their smallest configurations still run end to
end (tiny sizes, real isolates and SQLite files, no timing assertions): benchmarks do not
run in the test suite, but they must not rot."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


def bench(name: str) -> ModuleType:
    for path in (str(ROOT), str(BENCHMARKS)):
        if path not in sys.path:
            sys.path.insert(0, path)
    return importlib.import_module(name)


def test_the_cli_entry_lists_every_benchmark() -> None:
    main = bench("benchmarks.__main__")
    assert {"dispatch", "throughput", "memory", "peer"} <= set(main.available())
    assert main.main(["--list"]) == 0
    with pytest.raises(SystemExit):
        main.main(["no-such-benchmark"])


def test_harness_summary_and_floor(tmp_path: Path) -> None:
    harness = bench("_harness")
    summary = harness.summarize([3.0, 1.0, 2.0])
    assert (summary["median"], summary["min"], summary["max"], summary["count"]) == (
        2.0,
        1.0,
        3.0,
        3,
    )
    floor = harness.sqlite_floor(tmp_path / "floor.db", "os", 3)
    assert floor["instances"] == 3 and floor["commit_us"]["count"] == 9
    assert harness.tenant_class().__name__ == "TenantWorkflow"


async def test_dispatch_smallest(tmp_path: Path) -> None:
    dispatch = bench("dispatch")
    figures = await dispatch.run(True, steps=3, instances=1)
    for durability in ("fsync", "os"):
        for mode in dispatch.MODES:
            assert figures[durability][mode]["new_step_us"]["count"] == 3
            assert figures[durability][mode]["replay_100_ms"]["count"] == 1
    assert bench("plots").plot_dispatch(figures, tmp_path).is_file()


async def test_throughput_smallest(tmp_path: Path) -> None:
    throughput = bench("throughput")
    figures = await throughput.run(
        True, seconds=30.0, concurrency=(2,), tenants=(2,), base=4, modes=("engine", "subprocess")
    )
    point: dict[str, Any] = figures["tenants"]["subprocess"]["2"]
    assert point["instances"] == 4 and point["live_isolates_at_end"] == 2
    assert figures["concurrency"]["engine"]["2"]["instances"] == 4
    assert throughput.targets({"fsync": figures})["in-process engine >= 2000 instances/s"]
    assert bench("plots").plot_throughput({"fsync": figures}, tmp_path).is_file()


async def test_memory_smallest(tmp_path: Path) -> None:
    memory = bench("memory")
    live = await memory.run_point("live:2/1")
    # both tenants may be in flight at once; the cap evicts only idle isolates on a miss
    assert live["tenants"] == 2 and 1 <= live["live_isolates"] <= 2
    sleeping = await memory.run_point("sleeping:20")
    assert sleeping["waiting"] == 20
    assert sleeping["live_isolates"] <= memory.SLEEP_TENANTS  # no process per instance
    figures = {
        "dispatcher_rss_by_isolates": {"2": {**live}},
        "sleeping": sleeping,
    }
    assert bench("plots").plot_memory(figures, tmp_path).is_file()


async def test_peer_smallest(tmp_path: Path) -> None:
    peer = bench("peer")
    figures = await peer.run(True, concurrency=(1,), base=2)
    assert any(label.startswith("plain sqlite3 floor") for label in figures["rows"])
    if figures["dbos"]["installed"]:
        assert figures["rows"]["DBOS wal, 1 in flight"]["instances"] == 2
    else:
        assert "pip install" in figures["dbos"]["skipped"]
    assert bench("plots").plot_peer(figures, tmp_path).is_file()
