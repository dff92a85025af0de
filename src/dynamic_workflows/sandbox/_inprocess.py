"""The in-process backend: the guest runtime on a thread, over a real socketpair.

Same channel, same guest, same host-side checks as the subprocess backend, with no
confinement at all: for trusted code and tests. Limits the host enforces by killing work
(wall time, a step past its timeout) close the channel and fail the calls, but a thread
cannot be killed: a synchronous callback stuck in a loop keeps its thread until it returns.
There is no CPU budget (SIGPROF reaches only the main thread) and no memory limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import weakref
from typing import Any

from ..rpc import MAX_DEPTH, MAX_FRAME, Exposures
from ._channel import STEP_GRACE, ChannelIsolate
from ._guest import serve_socket
from ._limits import DEFAULT_LIMITS, IsolateLimits

CONFINEMENT = {"confined": False, "backend": "inprocess"}


def _guest_thread(sock: socket.socket) -> None:
    try:
        asyncio.run(serve_socket(sock, owns_process=False))
    except BaseException:  # the thread ends either way; the host sees the channel close
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.close()


class InProcessBackend:
    """Isolates that are threads of this process (no confinement)."""

    name = "inprocess"

    def __init__(
        self,
        *,
        exposures: Exposures | None = None,
        step_grace: float = STEP_GRACE,
        max_frame: int = MAX_FRAME,
        max_depth: int = MAX_DEPTH,
    ) -> None:
        self.exposures = dict(exposures or {})
        self.step_grace = step_grace
        self.max_frame = max_frame
        self.max_depth = max_depth
        self._isolates: weakref.WeakSet[ChannelIsolate] = weakref.WeakSet()

    async def new_isolate(self, limits: IsolateLimits = DEFAULT_LIMITS) -> ChannelIsolate:
        host, guest = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        thread = threading.Thread(
            target=_guest_thread, args=(guest,), name="dynwf-inprocess-guest", daemon=True
        )
        thread.start()
        isolate = await ChannelIsolate.connect(
            host,
            limits,
            backend="inprocess",
            confinement=CONFINEMENT,
            exposures=self.exposures,
            step_grace=self.step_grace,
            max_frame=self.max_frame,
            max_depth=self.max_depth,
        )
        self._isolates.add(isolate)
        return isolate

    def confinement_report(self) -> dict[str, Any]:
        return dict(CONFINEMENT)

    async def aclose(self) -> None:
        for isolate in list(self._isolates):
            await isolate.close()
