"""The wasm backend: instantiation, cold start, new-step overhead, memory per live instance.

- instantiate: a fresh ``Store`` (+ empty WASI, limits, deadline) and ``linker.instantiate``
  of the compiled runner;
- first run: store + instance + the first ``run()`` of a trivial workflow (the target:
  ≤ 5 ms median), and the same through the public API (``new_isolate`` + ``load`` +
  ``run_workflow``, with its worker-thread hop);
- new-step overhead: ``await step.do(...)`` of a new step around a trivial callback, timed
  inside the guest (``do_begin`` + ``do_end`` host calls to a minimal host ``StepOps``), beside
  the same ``WorkflowStep`` over the same ops in-process (the baseline; target ≤ 150 µs);
- a real tenant's run (``tenants/etl``, its modules compiled once at load);
- memory per live instance: PSS and private-dirty growth per instance kept alive after a
  trivial run (``/proc/self/smaps_rollup``), in batches of 10.

Run: ``.venv/bin/python benchmarks/wasm.py [--quick]``; writes benchmarks/results/wasm.json.
The runner is built (or loaded from the cache) first, outside every measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import wasmtime
from _harness import console, progress, show, summarize, write_result

from dynamic_workflows.sandbox import CodeBundle, IsolateLimits
from dynamic_workflows.sandbox._wasm import WasmBackend, build_runner
from dynamic_workflows.sdk import Decision, Outcome, WorkflowEvent, WorkflowStep

TRIVIAL = """
class W:
    def __init__(self, ctx, env):
        pass
    async def run(self, event, step):
        return event.payload
"""
STEPS = """
import time
class W:
    def __init__(self, ctx, env):
        pass
    async def run(self, event, step):
        times = []
        for i in range(event.payload["n"]):
            t0 = time.perf_counter()
            await step.do("s", lambda: i)
            times.append(time.perf_counter() - t0)
        return times
"""
EVENT = WorkflowEvent({"n": 0}, datetime(2026, 1, 1, tzinfo=UTC), "bench", "bench")


class MinimalOps:
    """The cheapest honest host: every new step gets one attempt, every result is kept."""

    async def do_begin(self, name: str, count: int, config: dict[str, Any]) -> Decision:
        return {"action": "attempt", "attempt": 1, "timeout": 600.0, "config": config}

    async def do_end(self, name: str, count: int, attempt: int, outcome: Outcome) -> Decision:
        return {"action": "value", "value": outcome.get("value")}

    async def sleep(self, name: str, count: int, seconds: Any, until: Any) -> Decision:
        return {"action": "stop"}

    async def wait_for_event(self, name: str, count: int, type: str, timeout: Any) -> Decision:
        return {"action": "stop"}


def smaps() -> dict[str, int]:
    out = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def read_tenant(name: str) -> dict[str, str]:
    folder = Path(__file__).resolve().parent.parent / "tenants" / name
    return {path.name: path.read_text() for path in folder.glob("*.py")}


def raw_store(backend: WasmBackend) -> wasmtime.Store:
    store = wasmtime.Store(backend.engine)
    store.set_wasi(wasmtime.WasiConfig())
    store.set_limits(memory_size=256 << 20)
    store.set_epoch_deadline(10**9)
    return store


def raw_first_run(backend: WasmBackend, code: str, request: str) -> tuple[float, float, float, Any]:
    """(instantiate s, instance-to-first-run s, its CPU s in this thread, the live store)."""
    linker, component = backend._linker, backend._component
    assert linker is not None and component is not None
    c0 = time.thread_time()
    t0 = time.perf_counter()
    store = raw_store(backend)
    instance = linker.instantiate(store, component)
    t1 = time.perf_counter()
    run = instance.get_func(store, "run")
    assert run is not None
    result = run(store, code, request)
    run.post_return(store)
    t2 = time.perf_counter()
    cpu = time.thread_time() - c0
    assert orjson.loads(result)["outcome"] == "return", result
    return t1 - t0, t2 - t0, cpu, store


async def main(quick: bool) -> None:
    rounds = 30 if quick else 200
    steps = 50 if quick else 300
    console.print("runner:", build_runner(console.print))
    backend = WasmBackend()
    backend.start()
    await backend.ready()
    code = orjson.dumps({"main": "main", "modules": {"main": TRIVIAL}}).decode()
    request = orjson.dumps(
        {"kind": "workflow", "entrypoint": "W", "event": EVENT.to_wire(), "env": {},
         "journal": {}, "step_limit": 10_000}
    ).decode()  # fmt: skip

    instantiate, first_run, first_run_cpu = [], [], []
    with progress("instantiate + first run()", rounds) as advance:
        for _ in range(rounds):
            a, b, cpu, store = raw_first_run(backend, code, request)
            store.close()
            instantiate.append(a * 1e3)
            first_run.append(b * 1e3)
            first_run_cpu.append(cpu * 1e3)
            advance(1)

    limits = IsolateLimits(memory_mb=128)
    cold = []
    with progress("cold start via the public API", rounds) as advance:
        for _ in range(rounds):
            t0 = time.perf_counter()
            isolate = await backend.new_isolate(limits)
            await isolate.load(CodeBundle("main", {"main": TRIVIAL}, "v", limits=limits))
            await isolate.run_workflow("W", EVENT, MinimalOps(), {}, step_limit=10_000)
            cold.append((time.perf_counter() - t0) * 1e3)
            await isolate.close()
            advance(1)

    tenant = read_tenant("etl")
    tenant_runs = []
    isolate = await backend.new_isolate(limits)
    await isolate.load(CodeBundle("index.py", tenant, "v", limits=limits))
    with progress("a real tenant's run (tenants/etl)", rounds) as advance:
        for _ in range(rounds):
            t0 = time.perf_counter()
            await isolate.run_workflow("TenantWorkflow", EVENT, MinimalOps(), {}, step_limit=100)
            tenant_runs.append((time.perf_counter() - t0) * 1e3)
            advance(1)

    wasm_steps: list[float] = []
    local_steps: list[float] = []
    wasm_step_cpu: list[float] = []
    local_step_cpu: list[float] = []
    isolate = await backend.new_isolate(limits)
    await isolate.load(CodeBundle("main", {"main": STEPS}, "v", limits=limits))
    namespace: dict[str, Any] = {}
    exec(compile(STEPS, "steps", "exec"), namespace)
    event = WorkflowEvent({"n": steps}, EVENT.timestamp, "bench", "bench")
    batches = 5 if quick else 10
    with progress("new-step overhead (wasm, in-process)", batches) as advance:
        for _ in range(batches):
            c0 = time.process_time()  # every thread: guest, glue, hand-off, host ops
            result = await isolate.run_workflow("W", event, MinimalOps(), {}, step_limit=10**6)
            wasm_step_cpu.append((time.process_time() - c0) / steps * 1e6)
            wasm_steps += [t * 1e6 for t in result.value]
            step = WorkflowStep(MinimalOps(), {}, step_limit=10**6)
            c0 = time.process_time()
            local = await namespace["W"](None, None).run(event, step)
            local_step_cpu.append((time.process_time() - c0) / steps * 1e6)
            local_steps += [t * 1e6 for t in local]
            advance(1)

    per_instance_pss, per_instance_dirty = [], []
    keep: list[Any] = []
    batches = 3 if quick else 8
    with progress("memory per live instance (batches of 10)", batches) as advance:
        for _ in range(batches):
            before = smaps()
            batch = [raw_first_run(backend, code, request)[3] for _ in range(10)]
            after = smaps()
            keep += batch
            per_instance_pss.append((after["Pss"] - before["Pss"]) / 10 / 2**20)
            per_instance_dirty.append(
                (after["Private_Dirty"] - before["Private_Dirty"]) / 10 / 2**20
            )
            advance(1)
    for store in keep:
        store.close()
    await backend.aclose()

    figures: dict[str, Any] = {
        "instantiate_ms": summarize(instantiate),
        "instance_to_first_run_ms": summarize(first_run),
        "instance_to_first_run_cpu_ms": summarize(first_run_cpu),
        "cold_start_public_api_ms": summarize(cold),
        "etl_tenant_run_ms": summarize(tenant_runs),
        "new_step_us": summarize(wasm_steps),
        "new_step_inprocess_baseline_us": summarize(local_steps),
        "new_step_cpu_us_per_run": summarize(wasm_step_cpu),
        "new_step_inprocess_cpu_us_per_run": summarize(local_step_cpu),
        "new_step_ratio_to_inprocess": (
            summarize(wasm_steps)["median"] / summarize(local_steps)["median"]
        ),
        "pss_per_live_instance_mib": summarize(per_instance_pss),
        "private_dirty_per_live_instance_mib": summarize(per_instance_dirty),
        "targets": {
            "instance_to_first_run_ms_median": 5.0,
            "new_step_us_median": 150.0,
        },
    }
    show(
        "wasm backend",
        [
            ("instantiate", figures["instantiate_ms"], "ms"),
            ("instance → first run()", figures["instance_to_first_run_ms"], "ms"),
            ("  the same, CPU", figures["instance_to_first_run_cpu_ms"], "ms"),
            ("cold start (public API)", figures["cold_start_public_api_ms"], "ms"),
            ("tenants/etl run", figures["etl_tenant_run_ms"], "ms"),
        ],
    )
    show(
        "new step (inside the run)",
        [
            ("in-process", figures["new_step_inprocess_baseline_us"], "µs"),
            ("wasm", figures["new_step_us"], "µs"),
            ("in-process, CPU", figures["new_step_inprocess_cpu_us_per_run"], "µs"),
            ("wasm, CPU", figures["new_step_cpu_us_per_run"], "µs"),
        ],
        baseline="in-process",
    )
    show(
        "memory per live instance",
        [
            ("PSS", figures["pss_per_live_instance_mib"], "MiB"),
            ("private dirty", figures["private_dirty_per_live_instance_mib"], "MiB"),
        ],
    )
    write_result("wasm", {"quick": quick, "rounds": rounds, "steps_per_run": steps}, figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    asyncio.run(main(parser.parse_args().quick))
