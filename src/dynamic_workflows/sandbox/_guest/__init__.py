"""The guest runtime: what runs inside an isolate, at the other end of the channel.

Standard library, msgspec, orjson, ``sdk`` and ``rpc`` only (cloudpickle lazily), so the
zygote can pre-import it cheaply. :func:`serve` is the whole interface: the host drives
everything else through the guest's root capability (``_runtime.Guest``).
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

from ...rpc import MAX_DEPTH, MAX_FRAME, MAX_TRUSTED_FRAME, Connection
from ._context import install_capture, install_cpu_budget
from ._runtime import Guest


async def serve_socket(
    sock: socket.socket,
    *,
    owns_process: bool,
    max_frame: int = MAX_FRAME,
    max_depth: int = MAX_DEPTH,
) -> None:
    """Serve the host over ``sock`` on the running loop until the channel closes."""
    install_capture(owns_process=owns_process)
    guest = Guest()
    conn = await Connection.open(
        sock,
        root=guest,
        accept_caps=True,
        share_errors=True,
        max_frame=MAX_TRUSTED_FRAME,  # from the host: trusted, and journals can be large
        max_send=max_frame,  # to the host: its limit (told again with ``load``)
        max_depth=max_depth,
    )
    guest.conn = conn
    await conn.wait_closed()


_WARM_SOURCE = """
from dynamic_workflows.sdk import WorkflowEntrypoint

class Warm(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("warm", lambda: event.payload)
"""


class _WarmOps:
    __rpc_methods__ = frozenset({"do_begin", "do_end"})

    async def do_begin(self, name: str, count: int, config: dict[str, Any]) -> dict[str, Any]:
        return {"action": "attempt", "attempt": 1, "config": config}

    async def do_end(self, name: str, count: int, attempt: int, outcome: Any) -> dict[str, Any]:
        return {"action": "value", "value": outcome.get("value")}


async def _warm_round_trip() -> None:
    host_end, guest_end = socket.socketpair()
    host = await Connection.open(host_end)
    runtime = Guest()
    guest = await Connection.open(guest_end, root=runtime, accept_caps=True, share_errors=True)
    runtime.conn = guest
    try:
        await host.call(0, "hello")
        await host.call(0, "load", [{"main_module": "w.py", "modules": {"w.py": _WARM_SOURCE}}])
        event = {"payload": 1, "timestamp": 0.0, "instance_id": "warm", "workflow_name": "w"}
        await host.call(0, "run_workflow", ["Warm", event, _WarmOps(), {}, 10])
    finally:
        host.close()
        guest.close()


def prepare() -> None:
    """Run the first call's code path once (codec, connection, message types, the step
    proxy, an asyncio loop) so a zygote shares those pages with every child. Leaves no
    thread, fd or loop behind. CONFINE's zygote calls it before ``gc.freeze()``."""
    streams = sys.stdout, sys.stderr
    try:
        asyncio.run(_warm_round_trip())
    finally:
        sys.stdout, sys.stderr = streams


def serve(sock_fd: int) -> None:
    """Run the guest on connected socket ``sock_fd`` until the host closes the channel.

    Blocking; call it on the main thread of the isolate's process (the CPU budget needs
    SIGPROF there).
    """
    sock = socket.socket(fileno=sock_fd)
    install_cpu_budget()
    asyncio.run(serve_socket(sock, owns_process=True))


__all__ = ["prepare", "serve", "serve_socket"]
