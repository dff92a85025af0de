"""Isolates: where tenant code runs. One ``Isolate`` protocol; backends in-process,
subprocess (``_subprocess``) and wasm (``_wasm``), each imported only when chosen.

Never imports ``runtime``, ``loader``, ``dispatch``, ``server`` or anything SQL.
"""

from ._isolate import BackendName, CodeBundle, Isolate, LogSink, RunResult
from ._limits import DEFAULT_LIMITS, IsolateLimits

__all__ = [
    "DEFAULT_LIMITS",
    "BackendName",
    "CodeBundle",
    "Isolate",
    "IsolateLimits",
    "LogSink",
    "RunResult",
]
