"""The guest runtime: what runs inside an isolate, at the other end of the channel.

Standard library, msgspec, orjson, ``sdk`` and ``rpc`` only (cloudpickle lazily), so the
zygote can pre-import it cheaply. :func:`serve` is the whole interface: the host drives
everything else through the guest's root capability (``_runtime.Guest``).
"""

from __future__ import annotations

import asyncio
import socket

from ...rpc import MAX_DEPTH, MAX_FRAME, Connection
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
        max_frame=max_frame,
        max_depth=max_depth,
    )
    guest.conn = conn
    await conn.wait_closed()


def serve(sock_fd: int) -> None:
    """Run the guest on connected socket ``sock_fd`` until the host closes the channel.

    Blocking; call it on the main thread of the isolate's process (the CPU budget needs
    SIGPROF there).
    """
    sock = socket.socket(fileno=sock_fd)
    install_cpu_budget()
    asyncio.run(serve_socket(sock, owns_process=True))


__all__ = ["serve", "serve_socket"]
