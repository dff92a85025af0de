"""A real dispatcher served by uvicorn on 127.0.0.1 (a random port) in a background thread.

Used by the HTTP tests and the browser tests. The server owns its own event loop; the tests
talk to it over real sockets.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from dynamic_workflows.sandbox import IsolateLimits
from dynamic_workflows.server import Platform, ServerConfig, create_app

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).resolve().parent / "probe"
TOKEN = "test-token-0123456789"
TERMINAL = ("complete", "errored", "terminated")


@dataclass
class Running:
    url: str
    config: ServerConfig
    platform: Platform
    tenants_dir: Path

    def client(self, token: str | None = None) -> httpx.Client:
        token = token if token is not None else self.config.token()
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def make_tenants(root: Path, examples: tuple[str, ...] = ("onboarding", "etl", "agent")) -> Path:
    tenants = root / "tenants"
    if tenants.exists():  # a restarted server on the same root keeps its tenants
        return tenants
    tenants.mkdir()
    for name in examples:
        shutil.copytree(REPO / "tenants" / name, tenants / name)
    shutil.copytree(PROBE, tenants / "probe")
    return tenants


@contextmanager
def serve(root: Path, **overrides: Any) -> Iterator[Running]:
    tenants = make_tenants(root)
    settings: dict[str, Any] = {
        "store": f"sqlite:///{root}/state.db",
        "tenants_dir": tenants,
        "data_dir": root / "data",
        "backend": "subprocess",
        "poll_interval": 0,
        "heartbeat_seconds": 0.5,
        "limits": IsolateLimits(cpu_seconds=2.0),
    }
    settings.update(overrides)
    config = ServerConfig(**settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    holder: dict[str, Any] = {}
    ready = threading.Event()

    def main() -> None:
        async def amain() -> None:
            platform = Platform(config)
            holder["platform"] = platform
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(platform, config),
                    log_level="warning",
                    lifespan="on",
                    timeout_graceful_shutdown=3,
                )
            )
            holder["server"] = server
            holder["loop"] = asyncio.get_running_loop()
            ready.set()
            await server.serve(sockets=[sock])

        try:
            asyncio.run(amain())
        except BaseException as error:  # reported to the test below
            holder["error"] = error
            ready.set()

    thread = threading.Thread(target=main, name="dynwf-test-server", daemon=True)
    thread.start()
    ready.wait(60)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # hang guard only
    while "error" not in holder:
        server = holder.get("server")
        if server is not None and server.started:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    if "error" in holder:
        raise RuntimeError(f"the test server failed: {holder['error']!r}")
    try:
        yield Running(url, config, holder["platform"], tenants)
    finally:
        holder["loop"].call_soon_threadsafe(holder["platform"].closing.set)
        holder["server"].should_exit = True
        thread.join(60)
        sock.close()


def wait_for(
    check: Callable[[], Any], *, what: str, timeout: float = 60.0, interval: float = 0.05
) -> Any:
    """Poll until ``check()`` is truthy; ``timeout`` is a hang guard, not an assertion."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def wait_status(client: httpx.Client, uid: str, *statuses: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        data: dict[str, Any] = client.get(f"/admin/api/instances/{uid}").json()
        return data if data.get("status") in statuses else None

    result: dict[str, Any] = wait_for(check, what=f"instance {uid} to be {statuses}")
    return result


def wait_step(client: httpx.Client, uid: str, name: str, state: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        data: dict[str, Any] = client.get(f"/admin/api/instances/{uid}").json()
        for s in data.get("steps") or []:
            if s["name"] == name and s["state"] == state:
                return data
        return None

    result: dict[str, Any] = wait_for(check, what=f"step {name!r} of {uid} to be {state}")
    return result


@contextmanager
def module_server(root: Path) -> Iterator[Running]:
    """The server the HTTP tests share: the example tenants, the probe, a token."""
    with serve(root, admin_token=TOKEN) as running:
        yield running


def in_background(server: Running, method: str, path: str, **kwargs: Any) -> threading.Thread:
    """Send one request from another thread (while this one reads a stream)."""

    def send() -> None:
        with server.client() as c:
            c.request(method, path, **kwargs)

    thread = threading.Thread(target=send)
    thread.start()
    return thread
