"""``dynwf``: serve the dispatcher, run a tenant locally, inspect a running server, audit.

Commands that inspect (status, instances, tenants, logs, send-event, deploy) talk to a
server's admin API (``--url``, ``$DYNWF_URL``; token ``$DYNWF_ADMIN_TOKEN``). ``serve`` and
``run`` host the engine themselves. Errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    name="dynwf",
    help="Durable, per-tenant, isolated workflows: the dispatcher and its tools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
wasm_app = typer.Typer(help="The WebAssembly runner component.", no_args_is_help=True)
app.add_typer(wasm_app, name="wasm")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

URL_ENV = "DYNWF_URL"
TOKEN_ENV = "DYNWF_ADMIN_TOKEN"  # noqa: S105 (a variable name)
TERMINAL = frozenset({"complete", "errored", "terminated"})
STATE_STYLE = {
    "complete": "green",
    "errored": "red",
    "terminated": "red",
    "running": "blue",
    "queued": "blue",
    "waiting": "yellow",
    "paused": "magenta",
    "waitingForPause": "magenta",
}

UrlOpt = Annotated[str, typer.Option("--url", envvar=URL_ENV, help="The server's base URL.")]
TokenOpt = Annotated[
    str | None, typer.Option("--token", envvar=TOKEN_ENV, help="Admin bearer token.")
]
DEFAULT_URL = "http://127.0.0.1:8787"


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text("utf-8")
        except OSError as error:
            fail(f"cannot read {what} file: {error.strerror}")
    try:
        return json.loads(text)
    except ValueError as error:
        fail(f"{what} is not valid JSON: {error}")


# -- talking to a server ------------------------------------------------------------------
class Admin:
    """A small admin API client (httpx): one clear error line for every failure."""

    def __init__(self, url: str, token: str | None) -> None:
        import httpx

        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.client = httpx.Client(base_url=self.url + "/admin/api", headers=headers, timeout=30)

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        try:
            kwargs: dict[str, Any] = {} if body is None else {"json": body}
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            fail(f"cannot reach {self.url}: {error}")
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            message = (data or {}).get("error", {}).get("message") if data else None
            fail(f"{response.status_code}: {message or response.text[:200]}")
        return data

    def sse(self, path: str) -> Iterator[tuple[str, Any]]:
        """(event, data) pairs; ("live", None) marks the end of the replayed lines."""
        import httpx

        try:
            with self.client.stream("GET", path, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    data = response.json()
                    fail(f"{response.status_code}: {data['error']['message']}")
                event, data_lines = "message", []
                for line in response.iter_lines():
                    if line == ": live":
                        yield "live", None
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data_lines.append(line[6:])
                    elif not line and data_lines:
                        yield event, json.loads("".join(data_lines))
                        event, data_lines = "message", []
        except httpx.HTTPError as error:
            fail(f"cannot reach {self.url}: {error}")


def _ts(ts: float | None) -> str:
    if ts is None:
        return ""
    import datetime as dt

    return dt.datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def _duration(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return ""
    s = end - start
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.1f} s"


def _status_text(status: str) -> str:
    return f"[{STATE_STYLE.get(status, 'white')}]{status}[/]"


def steps_table(steps: list[dict[str, Any]], title: str | None = None) -> Table:
    table = Table(title=title, show_edge=False, pad_edge=False, title_justify="left")
    for col in ("", "step", "kind", "state", "attempts", "time", "result"):
        table.add_column(col, overflow="fold", max_width=60 if col == "result" else None)
    icons = {"complete": "[green]✓[/]", "errored": "[red]✗[/]", "running": "[blue]…[/]"}
    for s in steps:
        result = ""
        if s.get("error"):
            result = f"[red]{s['error'].get('name')}: {s['error'].get('message')}[/]"
        elif s.get("state") == "complete" and s.get("kind") != "sleep":
            result = json.dumps(s.get("output"))
            result = result if len(result) <= 120 else result[:119] + "…"
        table.add_row(
            icons.get(s.get("state", ""), "[yellow]◷[/]"),
            str(s.get("name")),
            str(s.get("kind")),
            _status_text(str(s.get("state"))),
            str(s.get("attempts", "")),
            _duration(s.get("start"), s.get("end")),
            result,
        )
    return table


# -- serve --------------------------------------------------------------------------------
@app.command()
def serve(  # noqa: PLR0917 (typer options)
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8787,
    store: Annotated[str, typer.Option(help="Store URL.")] = "sqlite:///.dynwf/state.db",
    tenants: Annotated[
        Path, typer.Option("--tenants", "--tenants-dir", help="Folder of tenant folders.")
    ] = Path("tenants"),
    backend: Annotated[
        str, typer.Option(help="Isolate backend: subprocess | wasm | inprocess.")
    ] = "subprocess",
    admin_token: TokenOpt = None,
    poll: Annotated[float, typer.Option(help="Seconds between tenant folder scans.")] = 1.0,
) -> None:
    """Serve every tenant under --tenants on one dispatcher, with the dashboard at /admin/."""
    import logging

    from .server import ServerConfig
    from .server import serve as run_server

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if backend not in {"subprocess", "wasm", "inprocess"}:
        fail(f"unknown backend {backend!r}: choose subprocess, wasm or inprocess")
    if not tenants.is_dir():
        err.print(f"[yellow]note:[/] no tenants folder at {tenants}; deploy with the admin API")
    config = ServerConfig(
        host=host,
        port=port,
        store=store,
        tenants_dir=tenants if tenants.is_dir() else None,
        backend=backend,
        admin_token=admin_token,
        poll_interval=poll,
    )
    bind, _ = config.safe_host()
    out.print(
        f"[bold]dynwf[/] serving {tenants}/ on [cyan]http://{bind}:{port}[/] "
        f"(dashboard [cyan]http://{bind}:{port}/admin/[/], store {store}, backend {backend})"
    )
    run_server(config)


# -- run ----------------------------------------------------------------------------------
@app.command()
def run(
    tenant_dir: Annotated[Path, typer.Argument(help="A tenant folder with index.py.")],
    params: Annotated[
        str | None, typer.Option("--params", "-p", help="JSON params, or @file.json.")
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="Store URL (default: a throwaway SQLite file).")
    ] = None,
    backend: Annotated[str, typer.Option(help="subprocess | wasm | inprocess.")] = "subprocess",
    event: Annotated[
        list[str] | None,
        typer.Option(help="TYPE=JSON: send this event when the run waits for it."),
    ] = None,
) -> None:
    """Load a tenant folder, create one instance and follow its steps until it ends."""
    import anyio

    if not (tenant_dir / "index.py").is_file():
        fail(f"{tenant_dir} has no index.py")
    events: dict[str, Any] = {}
    for item in event or []:
        kind, sep, payload = item.partition("=")
        if not sep:
            fail(f"--event {item!r}: expected TYPE=JSON")
        events[kind] = _json_arg(payload, f"--event {kind}")
    payload = _json_arg(params, "--params")
    from .server import InvalidTenantError, check_tenant_id
    from .server._tenants import read_tenant_dir

    tenant = tenant_dir.resolve().name.lower().replace(".", "-")
    try:
        check_tenant_id(tenant)
    except InvalidTenantError as error:
        fail(str(error))
    modules = read_tenant_dir(tenant_dir)
    with tempfile.TemporaryDirectory(prefix="dynwf-run-") as tmp:
        options = {
            "store": store or f"sqlite:///{tmp}/state.db",
            "backend": backend,
            "events": events,
            "tmp": Path(tmp),
        }
        status = anyio.run(_run_instance, tenant, modules, payload, options)
    raise typer.Exit(0 if status == "complete" else 1)


async def _run_instance(
    tenant: str, modules: dict[str, str], params: Any, options: dict[str, Any]
) -> str:
    import anyio
    from rich.live import Live

    from .server import Platform, ServerConfig

    events: dict[str, Any] = options["events"]
    config = ServerConfig(
        store=options["store"],
        tenants_dir=None,
        backend=options["backend"],
        data_dir=options["tmp"] / "data",
        poll_interval=0,
    )
    async with Platform(config) as platform:
        version, _ = platform.deploy(tenant, modules, source="dir")
        handle = await platform.create_instance(tenant, params)
        out.print(f"[bold]{tenant}[/] version {version[:12]} · instance [cyan]{handle.id}[/]")
        sent: set[str] = set()
        async with platform.logs.subscribe(tenant) as sub, anyio.create_task_group() as tg:
            with Live(steps_table([]), console=out, refresh_per_second=8) as live:

                async def print_logs() -> None:
                    while True:
                        rec = await sub.queue.get()
                        live.console.print(f"[dim]{_ts(rec['ts'])}[/] {rec['line']}")

                tg.start_soon(print_logs)
                while True:
                    st = await handle.status()
                    live.update(steps_table(list(st.steps), title=_status_text(st.status)))
                    for s in st.steps:
                        if s.get("kind") == "event" and s.get("state") == "waiting":
                            for kind, payload in events.items():
                                if kind not in sent:
                                    sent.add(kind)
                                    await handle.send_event(type=kind, payload=payload)
                    if st.status in TERMINAL:
                        break
                    await anyio.sleep(0.2)
                tg.cancel_scope.cancel()
        out.print()
        if st.status == "complete":
            out.print(f"[green]complete[/]: {json.dumps(st.output)}")
        else:
            error = st.error or {}
            out.print(f"[red]{st.status}[/]: {error.get('name', '')}: {error.get('message', '')}")
        return str(st.status)


# -- inspecting a server ------------------------------------------------------------------
@app.command()
def tenants(url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """List the server's tenants and their current versions."""
    with Admin(url, token) as admin:
        data = admin.request("GET", "/tenants")
    table = Table("tenant", "version", "source", "versions", "instances", show_edge=False)
    for t in data["items"]:
        table.add_row(
            t["id"], t["version"][:12], t["source"], str(t["versions"]), str(t["instances"])
        )
    out.print(table)


@app.command()
def instances(  # noqa: PLR0917 (typer options)
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's instances.")] = None,
    status: Annotated[str | None, typer.Option(help="Only instances in this status.")] = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many.")] = 0,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """List instances, newest first."""
    query = {"limit": limit, "offset": offset, "tenant": tenant, "status": status}
    path = "/instances?" + "&".join(f"{k}={v}" for k, v in query.items() if v is not None)
    with Admin(url, token) as admin:
        data = admin.request("GET", path)
    table = Table("uid", "id", "tenant", "status", "created", show_edge=False)
    for i in data["items"]:
        table.add_row(
            i["uid"], i["id"], i["tenant"] or "", _status_text(i["status"]), _ts(i["created"])
        )
    out.print(table)
    out.print(f"[dim]{len(data['items'])} of {data['total']}[/]")


@app.command("status")
def status_cmd(
    uid: Annotated[str, typer.Argument(help="Instance uid (see `dynwf instances`).")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """An instance's status and step timeline."""
    with Admin(url, token) as admin:
        st = admin.request("GET", f"/instances/{uid}")
    out.print(f"[bold]{st['id']}[/] ({st['tenant']}) {_status_text(st['status'])}")
    out.print(steps_table(st.get("steps") or []))
    if st["status"] == "complete":
        out.print(f"output: {json.dumps(st['output'])}")
    if st.get("error"):
        out.print(f"[red]{st['error']['name']}[/]: {st['error']['message']}")


@app.command("send-event")
def send_event(
    uid: Annotated[str, typer.Argument(help="Instance uid.")],
    type: Annotated[str, typer.Argument(help="Event type.")],
    payload: Annotated[str | None, typer.Option(help="JSON payload, or @file.json.")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Send an event to an instance (wakes its wait_for_event)."""
    body = {"type": type, "payload": _json_arg(payload, "--payload")}
    with Admin(url, token) as admin:
        admin.request("POST", f"/instances/{uid}/events", body)
    out.print(f"sent [bold]{type}[/] to {uid}")


@app.command()
def action(
    name: Annotated[str, typer.Argument(help="pause | resume | terminate | restart | delete")],
    uid: Annotated[str, typer.Argument(help="Instance uid.")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Pause, resume, terminate, restart or delete an instance."""
    if name not in {"pause", "resume", "terminate", "restart", "delete"}:
        fail(f"unknown action {name!r}")
    with Admin(url, token) as admin:
        if name == "delete":
            admin.request("DELETE", f"/instances/{uid}")
            out.print(f"deleted {uid}")
            return
        st = admin.request("POST", f"/instances/{uid}/{name}")
    out.print(f"{name}: {st['id']} is {_status_text(st['status'])}")


@app.command()
def deploy(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    folder: Annotated[Path, typer.Argument(help="Folder with index.py (+ modules).")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Deploy a folder as a tenant's new version on a running server."""
    from .server._tenants import read_tenant_dir

    if not (folder / "index.py").is_file():
        fail(f"{folder} has no index.py")
    with Admin(url, token) as admin:
        data = admin.request("PUT", f"/tenants/{tenant}", {"files": read_tenant_dir(folder)})
    state = "new version" if data["created"] else "unchanged"
    out.print(f"{tenant}: {state} {data['version'][:12]}")


@app.command()
def logs(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    instance: Annotated[str | None, typer.Option(help="Only this instance (uid).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming.")] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """A tenant's (or one instance's) recent log lines; -f keeps streaming."""
    path = f"/instances/{instance}/logs" if instance else f"/tenants/{tenant}/logs"
    try:
        with Admin(url, token) as admin:
            _print_logs(admin.sse(path), follow)
    except KeyboardInterrupt:
        return


def _print_logs(events: Iterator[tuple[str, Any]], follow: bool) -> None:
    """Print log records; without ``follow`` stop after the replayed ones."""
    for event, data in events:
        if event == "live":
            if not follow:
                return
            continue
        style = "red" if data.get("stream") == "stderr" else ""
        who = f"[dim]{_ts(data['ts'])} {data.get('instance_id') or '-'}[/]"
        line = escape(str(data["line"]))
        out.print(f"{who} [{style}]{line}[/]" if style else f"{who} {line}")


# -- audit, wasm, bench -------------------------------------------------------------------
@app.command()
def audit(
    backend: Annotated[str, typer.Option(help="The isolate backend to attack.")] = "subprocess",
) -> None:
    """Run the hostile-tenant battery on this machine; exit non-zero on any escape."""
    import anyio

    try:
        from .sandbox._audit import run_audit
    except ImportError as error:
        fail(f"the audit battery is not available in this build: {error}")
    try:
        report = anyio.run(run_audit, backend)
    except (ValueError, FileNotFoundError) as error:
        fail(str(error))
    _print_audit(report)
    escapes = int(report.get("escapes", 0))
    if escapes or not report.get("other_tenant_ok", True):
        fail(f"{escapes} attack(s) escaped confinement on this host")
    out.print(f"[green]no escapes[/]: {len(report.get('results', []))} attacks blocked")


def _print_audit(report: dict[str, Any]) -> None:
    confinement = report.get("confinement") or {}
    if confinement:
        conf = Table("mechanism", "applied", title="confinement report", show_edge=False)
        for key, value in confinement.items():
            conf.add_row(str(key), str(value))
        out.print(conf)
    table = Table(show_edge=False, title="hostile tenants", title_justify="left")
    table.add_column("attack", no_wrap=True)
    table.add_column("expected (blocked looks like)", overflow="fold")
    table.add_column("result", overflow="fold")
    table.add_column("", no_wrap=True)
    for row in report.get("results", []):
        if row.get("escaped"):
            verdict = "[red bold]ESCAPED[/]"
        elif row.get("as_expected", True):
            verdict = "[green]blocked[/]"
        else:
            verdict = "[yellow]blocked, unexpected error[/]"
        table.add_row(
            str(row.get("attack")), str(row.get("expected")), str(row.get("result")), verdict
        )
    out.print(table)


@wasm_app.command("build")
def wasm_build() -> None:
    """Build and compile the wasm runner component into the cache (idempotent)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    try:
        from .sandbox._wasm._build import build_runner
    except ImportError as error:
        fail(f"the wasm backend is not installed ({error}); pip install '.[wasm]'")
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=out
    ) as progress:
        task = progress.add_task("building the runner component", total=None)

        def say(line: str) -> None:
            progress.update(task, description=line)
            progress.console.print(f"[dim]{line}[/]")

        path = build_runner(say)
        progress.update(task, description="done")
    out.print(f"runner ready: {path}", soft_wrap=True)


@app.command()
def bench(
    names: Annotated[
        list[str] | None, typer.Argument(help="Benchmarks to run (default: all).")
    ] = None,
    quick: Annotated[bool, typer.Option(help="Fewer samples.")] = False,
) -> None:
    """Run the benchmarks in ./benchmarks (results in benchmarks/results/<name>.json)."""
    import subprocess

    root = Path.cwd() / "benchmarks"
    if not root.is_dir():
        fail("benchmarks/ not found: run `dynwf bench` from the repository root")
    extra = ["--quick"] if quick else []
    if (root / "__main__.py").is_file():
        args = [sys.executable, "-m", "benchmarks", *(names or []), *extra]
        raise typer.Exit(subprocess.call(args, cwd=root.parent))
    available = sorted(p.stem for p in root.glob("*.py") if not p.stem.startswith("_"))
    unknown = sorted(set(names or []) - set(available))
    if unknown:
        fail(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}")
    status = 0
    for name in names or available:
        out.print(f"[bold]benchmark {name}[/]")
        script = str(root / f"{name}.py")
        status = max(status, subprocess.call([sys.executable, script, *extra], cwd=root.parent))
    raise typer.Exit(status)


def main() -> None:
    """Console-script entry: one clear line and exit status 1 on any error."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
