"""Isolates: where tenant code runs. One ``Isolate`` protocol; backends in-process
(``_inprocess``), subprocess (``_subprocess``) and wasm (``_wasm``), each imported only
when chosen by :func:`open_backend`. ``_guest`` is the runtime inside an isolate, at the
other end of the RPC channel; ``_channel`` is the host end.

Never imports ``runtime``, ``loader``, ``dispatch``, ``server`` or anything SQL.
"""

from ._backends import IsolateBackend, open_backend
from ._channel import ChannelIsolate
from ._isolate import (
    BackendName,
    CodeBundle,
    Isolate,
    IsolateLost,
    LimitName,
    LogSink,
    RunResult,
)
from ._limits import DEFAULT_LIMITS, IsolateLimits

__all__ = [
    "DEFAULT_LIMITS",
    "BackendName",
    "ChannelIsolate",
    "CodeBundle",
    "Isolate",
    "IsolateBackend",
    "IsolateLimits",
    "IsolateLost",
    "LimitName",
    "LogSink",
    "RunResult",
    "open_backend",
]
