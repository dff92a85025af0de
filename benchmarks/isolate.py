"""Subprocess isolates: cold start, memory, beside a fresh interpreter, in one run.

Cold start is measured to the first *answered* call, at two layers:

- ``plain``: the bare isolate (``_subprocess`` with its plain guest): spawn, then one
  ping frame answered. From the warm pool (confined ahead, limits applied at hand-out), from
  a zygote fork (fork + full confinement per request), and from a fresh
  ``python -I -S`` interpreter importing the same guest (no confinement at all).
- ``rpc``: the full path a tenant sees (RPC's ``ChannelIsolate`` over the guest runtime):
  spawn, connect, load a one-module tenant ("send code, import it"), first ``fetch``
  answered. Same three sources.

Steps: one new step (``step.do`` with a trivial callback; the host's ops answer at once, no
store) and the replay of a run whose 100 steps are all in the shipped journal, in a confined
subprocess isolate beside the in-process backend (the floor: same guest, same channel code,
on a thread). ``benchmarks/rpc.py`` breaks the step round trip down further.

Memory: USS (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup) of idle isolates that
answered one call, against a fresh interpreter with the same imports.

Run: ``.venv/bin/python benchmarks/isolate.py [--quick]``; writes
``benchmarks/results/isolate.json``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._harness import console, progress, run_main, show, summarize, write_result
from dynamic_workflows.sandbox import CodeBundle, IsolateLimits, open_backend
from dynamic_workflows.sandbox._backends import ConfinedSubprocessBackend
from dynamic_workflows.sandbox._channel import ChannelIsolate
from dynamic_workflows.sandbox._subprocess import DEFAULT_GUEST, PLAIN_GUEST, SubprocessBackend
from dynamic_workflows.sandbox._subprocess._backend import python_paths
from dynamic_workflows.sdk import Decision, Outcome, Request, WorkflowEvent

LIMITS = IsolateLimits()
TENANT = """
from dynamic_workflows.sdk import Response

async def fetch(request, env):
    return Response.json({"ok": True})
"""
BUNDLE = CodeBundle(main_module="index.py", modules={"index.py": TENANT}, version="bench")
_FRESH = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[1]); import importlib; "
    "importlib.import_module(sys.argv[2]).serve(int(sys.argv[3]))"
)


# -- the plain layer ---------------------------------------------------------------------------
async def _ping(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    data = b'{"op": "ping"}'
    await loop.sock_sendall(sock, struct.pack("!I", len(data)) + data)
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + struct.unpack("!I", buf[:4])[0]:
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            raise EOFError("isolate closed its channel")
        buf += chunk
    assert json.loads(buf[4:])["ok"]


class Fresh:
    """A fresh ``python -I -S`` child importing ``guest`` and serving one socketpair."""

    def __init__(self, guest: str) -> None:
        self.guest = guest
        self.sys_path, _ = python_paths()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> socket.socket:
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                _FRESH,
                json.dumps(self.sys_path),
                self.guest,
                str(theirs.fileno()),
            ],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        ours.setblocking(False)
        return ours

    def stop(self, sock: socket.socket) -> None:
        sock.close()
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


Sample = tuple[str, dict[str, Any], list[float]]


async def interleaved(
    layer: str,
    n: int,
    n_fresh: int,
    warm: Callable[[], Awaitable[float]],
    fork: Callable[[], Awaitable[float]],
    fresh: Callable[[], Awaitable[float]],
) -> list[Sample]:
    """Warm, fork and (every few rounds) fresh samples taken in turn, so the load of this
    shared machine weighs on all three alike."""
    times: dict[str, list[float]] = {"warm pool": [], "zygote fork": [], "fresh python -I -S": []}
    every = max(1, n // max(1, n_fresh))
    with progress(f"{layer}: warm pool / zygote fork / fresh", n + n_fresh) as advance:
        for i in range(n):
            times["warm pool"].append(await warm())
            times["zygote fork"].append(await fork())
            advance(1)
            if i % every == 0 and len(times["fresh python -I -S"]) < n_fresh:
                times["fresh python -I -S"].append(await fresh())
                advance(1)
    return [(f"{layer}: {name}", summarize(t), t) for name, t in times.items()]


async def plain_figures(n: int, n_fresh: int) -> list[Sample]:
    fresh = Fresh(PLAIN_GUEST)
    async with SubprocessBackend(guest=PLAIN_GUEST, pool_size=2) as backend:

        async def from_source(warm: bool) -> float:
            if warm:
                await backend.wait_pool()
            t0 = time.perf_counter()
            child = await backend.spawn(LIMITS, warm=warm)
            await _ping(child.sock)
            elapsed = time.perf_counter() - t0
            assert child.confinement["warm"] is warm
            await child.aclose()
            return elapsed * 1e3

        async def from_fresh() -> float:
            t0 = time.perf_counter()
            sock = fresh.start()
            await _ping(sock)
            elapsed = time.perf_counter() - t0
            fresh.stop(sock)
            return elapsed * 1e3

        return await interleaved(
            "plain", n, n_fresh, lambda: from_source(True), lambda: from_source(False), from_fresh
        )


# -- the RPC layer -----------------------------------------------------------------------------
async def _first_fetch(isolate: ChannelIsolate) -> None:
    await isolate.load(BUNDLE)
    response = await isolate.fetch(None, Request("GET", "/"))
    assert response.status == 200, response


async def rpc_figures(n: int, n_fresh: int) -> list[Sample]:
    fresh = Fresh(DEFAULT_GUEST)
    spawner = SubprocessBackend(guest=DEFAULT_GUEST, pool_size=2)
    await spawner.start()
    backend = ConfinedSubprocessBackend(spawner)
    try:

        async def from_source(warm: bool) -> float:
            if warm:
                await spawner.wait_pool()
            t0 = time.perf_counter()
            child = await spawner.spawn(LIMITS, warm=warm)
            isolate = await ChannelIsolate.connect(
                child.sock,
                LIMITS,
                backend="subprocess",
                process=child,
                confinement=child.confinement,
            )
            await _first_fetch(isolate)
            elapsed = time.perf_counter() - t0
            await isolate.close()
            return elapsed * 1e3

        async def from_fresh() -> float:
            t0 = time.perf_counter()
            sock = fresh.start()
            isolate = await ChannelIsolate.connect(sock, LIMITS, backend="subprocess")
            await _first_fetch(isolate)
            elapsed = time.perf_counter() - t0
            await isolate.close()
            fresh.stop(sock)
            return elapsed * 1e3

        return await interleaved(
            "rpc", n, n_fresh, lambda: from_source(True), lambda: from_source(False), from_fresh
        )
    finally:
        await backend.aclose()


# -- memory ------------------------------------------------------------------------------------
def uss_mb(pid: int) -> float:
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                fields[parts[0].rstrip(":")] = int(parts[1])
    return (fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / 1024


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def memory_figures(count: int) -> dict[str, Any]:
    spawner = SubprocessBackend(guest=DEFAULT_GUEST, pool_size=2)
    await spawner.start()
    isolates = []
    try:
        for _ in range(count):
            child = await spawner.spawn(LIMITS)
            isolate = await ChannelIsolate.connect(
                child.sock,
                LIMITS,
                backend="subprocess",
                process=child,
                confinement=child.confinement,
            )
            await _first_fetch(isolate)
            isolates.append((child.pid, isolate))
        await asyncio.sleep(1.0)
        uss = [uss_mb(pid) for pid, _ in isolates]
        zygote = spawner.zygote_pid
        assert zygote is not None
        figures = {
            "idle_isolate_uss_mb": summarize(uss),
            "zygote_rss_mb": rss_mb(zygote),
            "zygote_uss_mb": uss_mb(zygote),
        }
        for _, isolate in isolates:
            await isolate.close()
    finally:
        await spawner.aclose()
    fresh = Fresh(DEFAULT_GUEST)
    sock = fresh.start()
    isolate = await ChannelIsolate.connect(sock, LIMITS, backend="subprocess")
    await _first_fetch(isolate)
    await asyncio.sleep(1.0)
    assert fresh.proc is not None
    figures["fresh_interpreter_uss_mb"] = uss_mb(fresh.proc.pid)
    await isolate.close()
    fresh.stop(sock)
    return figures


# -- steps ------------------------------------------------------------------------------------
STEPS = """
from dynamic_workflows.sdk import WorkflowEntrypoint

class Steps(WorkflowEntrypoint):
    async def run(self, event, step):
        for i in range(event.payload):
            await step.do(f"s{i}", lambda: i)
        return event.payload
"""


class Ops:
    """Host step ops that answer at once and time each new step (do_begin to do_begin)."""

    def __init__(self) -> None:
        self.begins: list[float] = []

    async def do_begin(self, name: str, count: int, config: dict[str, Any]) -> Decision:
        self.begins.append(time.perf_counter())
        return {"action": "attempt", "attempt": 1, "config": config}

    async def do_end(self, name: str, count: int, attempt: int, outcome: Outcome) -> Decision:
        return {"action": "value", "value": outcome.get("value")}

    async def sleep(self, *args: Any) -> Decision:
        return {"action": "stop"}

    async def wait_for_event(self, *args: Any) -> Decision:
        return {"action": "stop"}


def _event(n: int) -> WorkflowEvent:
    return WorkflowEvent(payload=n, timestamp=datetime.now(UTC), instance_id="b", workflow_name="B")


async def step_figures(steps: int, replays: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    journal: Any = {f"s{i}-1": {"kind": "do", "value": i} for i in range(100)}
    for name in ("inprocess", "subprocess"):
        backend = await open_backend(name)
        try:
            isolate = await backend.new_isolate(LIMITS)
            await isolate.load(CodeBundle("index.py", {"index.py": STEPS}, "bench"))
            await isolate.run_workflow("Steps", _event(20), Ops(), {}, step_limit=10**6)
            ops = Ops()
            with progress(f"{name}: {steps} new steps", 1) as advance:
                await isolate.run_workflow("Steps", _event(steps), ops, {}, step_limit=10**6)
                advance(1)
            new = [(b - a) * 1e6 for a, b in zip(ops.begins, ops.begins[1:], strict=False)]
            replay: list[float] = []
            with progress(f"{name}: replay 100 cached steps", replays) as advance:
                for _ in range(replays):
                    t0 = time.perf_counter()
                    result = await isolate.run_workflow(
                        "Steps", _event(100), Ops(), journal, step_limit=10**6
                    )
                    replay.append((time.perf_counter() - t0) * 1e3)
                    assert len(result.hits) == 100, result
                    advance(1)
            out[name] = {"new_step_us": summarize(new), "replay_100_ms": summarize(replay)}
        finally:
            await backend.aclose()
    return out


async def main(quick: bool) -> None:
    n, n_fresh, n_mem = (40, 10, 4) if quick else (200, 30, 10)
    rows = await plain_figures(n, n_fresh) + await rpc_figures(n // 2, n_fresh)
    steps = await step_figures(300 if quick else 2000, 10 if quick else 50)
    memory = await memory_figures(n_mem)
    figures: dict[str, Any] = {label: summary for label, summary, _ in rows}
    figures["steps"] = steps
    ratios = {}
    for layer in ("plain", "rpc"):
        fresh = figures[f"{layer}: fresh python -I -S"]["median"]
        for source in ("warm pool", "zygote fork"):
            ratios[f"{layer}: fresh / {source}"] = fresh / figures[f"{layer}: {source}"]["median"]
    for figure in ("new_step_us", "replay_100_ms"):
        floor = steps["inprocess"][figure]["median"]
        ratios[f"steps: subprocess / inprocess {figure}"] = (
            steps["subprocess"][figure]["median"] / floor
        )
    figures["ratios"] = ratios
    figures["memory"] = memory
    targets = {
        "plain: warm pool median <= 1 ms": figures["plain: warm pool"]["median"] <= 1.0,
        "plain: zygote fork median <= 5 ms": figures["plain: zygote fork"]["median"] <= 5.0,
        "plain: fresh / warm pool >= 20x": ratios["plain: fresh / warm pool"] >= 20,
        "rpc: warm pool median <= 1 ms": figures["rpc: warm pool"]["median"] <= 1.0,
        "rpc: zygote fork median <= 5 ms": figures["rpc: zygote fork"]["median"] <= 5.0,
        "idle isolate USS <= 3 MB": memory["idle_isolate_uss_mb"]["median"] <= 3.0,
        "new step <= 150 us (subprocess)": steps["subprocess"]["new_step_us"]["median"] <= 150,
    }
    figures["targets_met"] = targets
    show(
        "cold start to first answered call (bare isolate)",
        [(r[0], r[1], "ms") for r in rows[:3]],
        baseline="plain: fresh python -I -S",
    )
    show(
        "cold start to first answered fetch (RPC channel, load + fetch)",
        [(r[0], r[1], "ms") for r in rows[3:]],
        baseline="rpc: fresh python -I -S",
    )
    show(
        "steps: one new step (µs) and replay of 100 cached steps (ms)",
        [
            (f"{backend}: {figure}", steps[backend][figure], "µs" if "us" in figure else "ms")
            for figure in ("new_step_us", "replay_100_ms")
            for backend in ("inprocess", "subprocess")
        ],
    )
    console.print(f"ratios: { {k: round(v, 1) for k, v in ratios.items()} }")
    console.print(
        f"idle isolate USS median {memory['idle_isolate_uss_mb']['median']:.2f} MB "
        f"(fresh interpreter {memory['fresh_interpreter_uss_mb']:.2f} MB; zygote RSS "
        f"{memory['zygote_rss_mb']:.1f} MB)"
    )
    for name, ok in targets.items():
        console.print(f"  {'[green]met' if ok else '[red]missed'}[/] {name}")
    write_result(
        "isolate",
        {
            "samples": n,
            "fresh_samples": n_fresh,
            "memory_isolates": n_mem,
            "quick": quick,
            "limits": LIMITS.to_wire(),
        },
        figures,
    )


if __name__ == "__main__":
    run_main(main, __doc__.splitlines()[0] if __doc__ else "isolate")
