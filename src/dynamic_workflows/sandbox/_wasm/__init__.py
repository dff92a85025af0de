"""The ``wasm`` isolate backend: tenant Python inside a WebAssembly component in wasmtime.

What it owns: the runner component (``guest/``: our guest module and WIT, built with
componentize-py, CPython inside), its build and on-disk cache (``_build``), the backend and
its isolates (``_backend``) and the validation of every host call from the guest
(``_requests``). It imports ``sdk``, ``rpc`` (capabilities) and the sandbox protocol; never
``runtime``, ``loader`` or anything SQL. ``wasmtime`` is imported only when this package is.

How it works: one generic runner component is built once per runner version (tenant code
is not compiled in). Each ``run_workflow`` / ``fetch`` / ``call`` gets a fresh wasmtime
store and instance from the pre-initialised snapshot (~1–2 ms), receives the tenant's
modules, the event and the journal of cached steps, and drives ``run(event, step)`` without
an event loop; ``step`` is the sdk's own ``WorkflowStep``, whose ops make one JSON host call
per op (``do_begin``, ``do_end``, ``sleep``, ``wait_for_event``), so semantics match the
in-process backend by construction. A ``stop`` decision unwinds; resuming is a replay.

What tenants get (the stdlib allowlist, :data:`ALLOWLIST`): abc, asyncio (imports only:
there is no event loop), base64, binascii, bisect, calendar, collections, contextlib, copy,
csv, dataclasses, datetime, decimal, difflib, enum, fractions, functools, graphlib, hashlib,
heapq, hmac, html, inspect, io, ipaddress, itertools, json, logging, math, numbers, operator,
pprint, random, re, secrets, statistics, string, struct, textwrap, time, traceback, types,
typing, unicodedata, urllib.parse, uuid, weakref, zlib, zoneinfo (UTC only: no tz database);
plus their own modules (which may import each other) and ``dynamic_workflows`` (the sdk).
Importing anything else raises ``ModuleNotFoundError`` naming the module.

How it differs from the subprocess backend:

- Only the allowlisted, pure-Python stdlib; no third-party packages, no C extensions, no
  ``sqlite3``/``ssl``/``ctypes``; tenant code is CPython 3.14 (the runner's), not the host's.
- No files, network, environment, argv or stdin at all (WASI with nothing granted); these
  fail with ordinary Python errors (``FileNotFoundError``, ``PermissionError``), not kills.
- No event loop: await step operations, plain coroutines and ``sdk.gather(...)``;
  ``asyncio.gather``/``asyncio.sleep(n)`` fail. ``gather`` runs its steps in call order.
- A step's ``timeout`` stops the whole call at the next 10 ms epoch tick, as the subprocess
  backend kills its process (``IsolateLost(WorkflowTimeoutError)``), not the callback alone.
- Memory is the store's linear-memory limit (``limits.memory_mb``, at least 15 MiB): going
  over is a ``MemoryError`` in the guest: inside a step it fails the attempt with
  ``IsolateLimitError("memory")`` (retried per the step's config); escaping ``run`` it is
  ``IsolateLost(IsolateLimitError("memory"))``. CPU is time spent executing wasm (an epoch
  deadline; host calls do not count); over it, or over wall time, the call dies with
  ``IsolateLost(IsolateLimitError("cpu" | "wall"))``, and deep recursion past Python's own
  limit traps as ``IsolateLimitError("stack")``, like the subprocess backend's kills.
- Nothing survives between calls: every call is a fresh instance (the subprocess backend
  keeps a warm process with its imported modules). Module-level state resets each run.
- Pickled entrypoints are refused: the wasm backend runs sources only.
- ``print``/logging output is captured per call, capped at ``limits.max_log_bytes`` per
  stream, and delivered to the log sink when the call returns, tagged with the instance id.
- ``random`` is reseeded from WASI randomness at every run; ``hash()`` of ``str`` uses the
  seed fixed when the runner was built.
"""

from ._allowlist import ALLOWLIST
from ._backend import WasmBackend, WasmIsolate, open_wasm_backend
from ._build import RunnerBuildError, build_runner, cache_dir
from ._requests import GuestRequestError

__all__ = [
    "ALLOWLIST",
    "GuestRequestError",
    "RunnerBuildError",
    "WasmBackend",
    "WasmIsolate",
    "build_runner",
    "cache_dir",
    "open_wasm_backend",
]
