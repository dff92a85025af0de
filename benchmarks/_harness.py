"""Shared benchmark plumbing: statistics, machine info, JSON results, progress, plots.

Every benchmark measures its baseline in the same run and reports ratios against it; the
figures go to ``benchmarks/results/<name>.json`` (and a PNG when a plot helps).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
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

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance


def _number(value: float) -> str:
    """A figure for a table: no scientific notation, three significant digits or more."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


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
            f"{_number(summary.get('median', 0))} {unit}",
            f"{_number(summary.get('p99', 0))} {unit}",
            str(summary.get("count", "")),
            ratio,
        )
    console.print(table)


# -- shared by dispatch, throughput, memory and peer (BENCH) ---------------------------------

TENANT_SOURCE = '''
import time
from dynamic_workflows.sdk import Response, WorkflowEntrypoint


async def fetch(request, env):
    instance = await env.WORKFLOWS.create(params=await request.json())
    return Response.json({"id": instance.id})


class TenantWorkflow(WorkflowEntrypoint):
    """The benchmark workflow; ``kind`` picks the shape."""

    async def run(self, event, step):
        kind = event.payload.get("kind", "three")
        if kind == "three":  # the throughput workflow: three trivial steps
            a = await step.do("one", lambda: 1)
            b = await step.do("two", lambda: 2)
            c = await step.do("three", lambda: 3)
            return a + b + c
        if kind == "timed":  # n new steps, each timed where the author awaits it
            times = []
            for i in range(event.payload["n"]):
                t0 = time.perf_counter()
                await step.do("s%d" % i, lambda: i)
                times.append(time.perf_counter() - t0)
            return times
        if kind == "replay":  # n steps, then a long wait (hibernates); the event replays them
            for i in range(event.payload["n"]):
                await step.do("s%d" % i, lambda: i)
            await step.wait_for_event("go", type="go", timeout="1 day")
            return event.payload["n"]
        if kind == "sleep":  # one step, then a long sleep (hibernates: no process, no task)
            await step.do("one", lambda: 1)
            await step.sleep("nap", "1 day")
            return 1
        raise ValueError(kind)
'''
"""The one tenant module every dispatcher benchmark loads (and the in-process floor runs)."""


def tenant_class() -> type[Any]:
    """``TenantWorkflow`` of :data:`TENANT_SOURCE`, defined in this process: the in-process
    floor runs exactly the code an isolate runs (our own trusted source)."""
    namespace: dict[str, Any] = {"__name__": "bench_tenant"}
    exec(compile(TENANT_SOURCE, "bench_tenant.py", "exec"), namespace)
    cls: type[Any] = namespace["TenantWorkflow"]
    return cls


def uss_mb(pid: int) -> float:
    """Unique memory (Private_Clean + Private_Dirty) of ``pid`` in MiB."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total / 1024


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of ``pid`` (default: this process) in MiB."""
    with open(f"/proc/{pid or os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int | None = None) -> list[int]:
    """Direct children of ``pid`` (default: this process)."""
    pid = pid or os.getpid()
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def sqlite_floor(path: Path, durability: str, instances: int) -> dict[str, Any]:
    """The physical floor: plain ``sqlite3`` doing the three-step workflow's durable work
    with one transaction per step (the instance row is inserted in the first), WAL, the
    engine's pragmas for ``durability``; returns per-commit and per-instance figures."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'fsync' else 'NORMAL'}")
    conn.execute("CREATE TABLE IF NOT EXISTS inst (id INTEGER PRIMARY KEY, status TEXT)")
    conn.execute("CREATE TABLE IF NOT EXISTS step (inst INTEGER, name TEXT, out TEXT)")
    commits: list[float] = []
    started = time.perf_counter()
    for i in range(instances):
        for n, name in enumerate(("one", "two", "three")):
            t0 = time.perf_counter()
            conn.execute("BEGIN")
            if n == 0:
                conn.execute("INSERT INTO inst (id, status) VALUES (?, 'running')", (i,))
            conn.execute("INSERT INTO step VALUES (?, ?, ?)", (i, name, '{"ok": true}'))
            if n == 2:
                conn.execute("UPDATE inst SET status='complete' WHERE id=?", (i,))
            conn.execute("COMMIT")
            commits.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    conn.close()
    return {
        "commit_us": summarize([c * 1e6 for c in commits]),
        "instances_per_s": instances / elapsed,
        "instances": instances,
    }


class Dispatcher:
    """The README dispatcher (engine + loader + dynamic entrypoint) around
    :data:`TENANT_SOURCE`, or the plain in-process engine when ``backend`` is ``"engine"``.

    ``runs`` records the host-side wall time of every execution (``run`` call) by instance
    id, so replays can be timed from outside the isolate.
    """

    def __init__(
        self,
        directory: Path,
        backend: str = "subprocess",
        *,
        durability: str = "fsync",
        max_isolates: int = 100,
        clock: Any = None,
        hibernate_after: float = 60.0,
    ) -> None:
        from dynamic_workflows.dispatch import dispatch_workflow, wrap_workflow_binding
        from dynamic_workflows.loader import WorkerCode, WorkerLoader
        from dynamic_workflows.runtime import Workflows
        from dynamic_workflows.sdk import WorkflowEntrypoint

        self.backend = backend
        self.runs: dict[str, list[float]] = {}
        self.engine = Workflows(
            store=f"sqlite:///{directory / 'state.db'}",
            durability=durability,  # type: ignore[arg-type]
            clock=clock,
            hibernate_after=hibernate_after,
        )
        runs = self.runs
        self.loader: Any = None
        if backend == "engine":
            base = tenant_class()

            class Timed(base):  # type: ignore[valid-type, misc]
                async def run(self, event: Any, step: Any) -> Any:
                    t0 = time.perf_counter()
                    try:
                        return await super().run(event, step)
                    finally:
                        runs.setdefault(event.instance_id, []).append(time.perf_counter() - t0)

            self.engine.register("WORKFLOWS", Timed)
            return

        def load_tenant(tenant: str) -> Any:
            return loader.get(
                tenant,
                lambda: WorkerCode(
                    main_module="index.py",
                    modules={"index.py": TENANT_SOURCE},
                    env={"WORKFLOWS": wrap_workflow_binding({"tenantId": tenant})},
                ),
            )

        def load_runner(context: Any) -> Any:
            return load_tenant(context.metadata["tenantId"]).get_entrypoint("TenantWorkflow")

        class TimedDispatch(WorkflowEntrypoint):
            async def run(self, event: Any, step: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return await dispatch_workflow(self.ctx, self.env, event, step, load_runner)
                finally:
                    runs.setdefault(event.instance_id, []).append(time.perf_counter() - t0)

        self.engine.register("WORKFLOWS", TimedDispatch)
        loader = WorkerLoader(
            backend=backend,  # type: ignore[arg-type]
            env={"WORKFLOWS": self.engine.binding("WORKFLOWS")},
            max_isolates=max_isolates,
            code_dir=directory / "code",
        )
        self.loader = loader
        self.load_tenant = load_tenant

    async def __aenter__(self) -> Dispatcher:
        await self.engine.__aenter__()
        if self.loader is not None:
            try:
                await self.loader.__aenter__()
            except BaseException:
                await self.engine.__aexit__(None, None, None)
                raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.engine.__aexit__(None, None, None)  # stop the engine before the loader
        finally:
            if self.loader is not None:
                await self.loader.__aexit__(None, None, None)

    def binding(self, tenant: str) -> Any:
        """The host-side view of ``tenant``'s instances (scoped like its wrapped binding)."""
        from dynamic_workflows.dispatch import scope_of

        wf = self.engine.binding("WORKFLOWS")
        if self.backend == "engine":
            return wf
        return wf.scoped(scope_of({"tenantId": tenant}))

    async def create(self, tenant: str, params: dict[str, Any]) -> Any:
        """Create an instance the way a tenant does: its ``fetch`` calls
        ``env.WORKFLOWS.create`` from inside its isolate (plain ``create`` for the engine)."""
        if self.backend == "engine":
            return await self.engine.binding("WORKFLOWS").create(params=params)
        from dynamic_workflows.sdk import Request

        request = Request(
            "POST", "/", {"content-type": "application/json"}, json.dumps(params).encode()
        )
        response = await self.load_tenant(tenant).get_entrypoint().fetch(request)
        if response.status != 200:
            raise RuntimeError(f"fetch answered {response.status}: {response.body_bytes()!r}")
        instance_id = json.loads(response.body_bytes())["id"]
        return await self.binding(tenant).get(instance_id)

    def isolate_pids(self) -> list[int]:
        """Process ids of the live isolates (subprocess backend), for memory figures."""
        if self.loader is None:
            return []
        pids = []
        for slot in list(self.loader._slots.values()):
            process = getattr(slot.isolate, "_process", None)
            pid = getattr(process, "pid", None)
            if isinstance(pid, int):
                pids.append(pid)
        return pids


def run_main(main: Callable[[bool], Coroutine[Any, Any, None]], description: str) -> None:
    """The plain-script entry of a benchmark: ``--quick`` and an asyncio loop."""
    import argparse
    import asyncio

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer samples, smaller points")
    args = parser.parse_args()
    asyncio.run(main(args.quick))
