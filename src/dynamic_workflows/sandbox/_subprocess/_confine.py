"""What a confined child applies to itself, prepared once in the zygote.

Order matters: namespaces and rlimits need capabilities, so they come first; then
no_new_privs, dropping every capability, Landlock, seccomp (which denies the syscalls the
earlier steps used) and last ``close_range``. Any failure is fatal to the child: it never
runs with less than its report says (fail closed).
"""

from __future__ import annotations

import math
import os
import resource
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _linux

MECHANISMS: tuple[str, ...] = (
    "netns",
    "utsns",
    "ipcns",
    "pidns",
    "landlock",
    "seccomp",
    "no_new_privs",
    "caps",
    "rlimits",
    "env",
    "close_fds",
)
"""Every mechanism, by the name ``allow_missing`` / ``disable`` and the reports use."""

CHANNEL_FD = 3
READY = b"\x01"
FAILED = b"\x00"


def rlimits_for(limits: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """Kernel limits from ``IsolateLimits.to_wire()``. RLIMIT_CPU is the isolate's lifetime
    backstop with soft < hard so SIGXCPU (a clean "cpu" exit) comes before SIGKILL; the
    per-call CPU budget is the guest's (ITIMER_PROF) and the host's wall clock."""
    cpu = max(1, math.ceil(float(limits["cpu_seconds_total"])))
    files = int(limits["max_open_files"])
    return {
        "as": (int(limits["memory_mb"]) << 20,) * 2,
        "cpu": (cpu, cpu + 1),
        "nofile": (files, files),
        "fsize": (int(limits["max_file_bytes"]),) * 2,
        "nproc": (int(limits["max_processes"]),) * 2,
        "core": (0, 0),
    }


_RESOURCES = {
    "as": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "nofile": resource.RLIMIT_NOFILE,
    "fsize": resource.RLIMIT_FSIZE,
    "nproc": resource.RLIMIT_NPROC,
    "core": resource.RLIMIT_CORE,
}


def apply_rlimits(values: Mapping[str, tuple[int, int]], pid: int = 0) -> None:
    """setrlimit on ourselves (``pid=0``) or prlimit on a warm child at hand-out."""
    for name, value in values.items():
        if pid:
            resource.prlimit(pid, _RESOURCES[name], value)
        else:
            resource.setrlimit(_RESOURCES[name], value)


def read_only_roots(paths: Iterable[str]) -> list[str]:
    """The paths Landlock lets an isolate read: as given, plus the system library
    directories C extensions load from, the loader cache and the time-zone database."""
    extra = [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/etc/ld.so.cache",
        "/usr/share/zoneinfo",
    ]
    out: list[str] = []
    for p in [*paths, *extra]:
        real = os.path.realpath(p)
        if os.path.exists(real) and real not in out:
            out.append(real)
    return out


@dataclass
class Prepared:
    """Everything the zygote builds once so that a child only issues a few syscalls."""

    enabled: frozenset[str]
    landlock_abi: int = 0
    ruleset_fd: int = -1
    seccomp_no_processes: _linux.SeccompFilter | None = None
    seccomp_processes: _linux.SeccompFilter | None = None
    devnull: int = -1
    own_pidns: int = -1
    failures: dict[str, str] = field(default_factory=dict)

    def report(self, limits: Mapping[str, Any] | None, *, warm: bool) -> dict[str, Any]:
        """What a child spawned with ``limits`` has applied (the child fails closed)."""
        on = self.enabled
        processes = limits is None or int(limits["max_processes"]) <= 1
        report: dict[str, Any] = {name: name in on for name in MECHANISMS}
        report["landlock_abi"] = self.landlock_abi if "landlock" in on else 0
        report["processes"] = "denied" if ("seccomp" in on and processes) else "allowed"
        report["uid"] = os.getuid()
        report["warm"] = warm
        report["rlimits"] = rlimits_report(limits) if "rlimits" in on else {}
        return report


def rlimits_report(limits: Mapping[str, Any] | None) -> dict[str, Any]:
    if limits is None:
        return {"core": [0, 0]}
    out: dict[str, Any] = {k: list(v) for k, v in rlimits_for(limits).items()}
    out["nproc_enforced"] = os.getuid() != 0  # RLIMIT_NPROC does not bind uid 0
    return out


def prepare(enabled: Iterable[str], read_only: Iterable[str]) -> Prepared:
    """Build the Landlock ruleset fd and the seccomp programs; mechanisms that cannot be
    prepared here are removed from ``enabled`` with the reason in ``failures``."""
    prep = Prepared(enabled=frozenset(enabled))
    on = set(prep.enabled)
    prep.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    if "landlock" in on:
        prep.landlock_abi = _linux.landlock_abi()
        if prep.landlock_abi < 6:
            on.discard("landlock")
            prep.failures["landlock"] = f"Landlock ABI {prep.landlock_abi} < 6 (need scoping)"
        else:
            try:
                prep.ruleset_fd = _linux.landlock_ruleset(
                    prep.landlock_abi, read_only_roots(read_only)
                )
            except OSError as exc:
                on.discard("landlock")
                prep.failures["landlock"] = str(exc)
    if "seccomp" in on:
        if _linux.seccomp_supported():
            prep.seccomp_no_processes = _linux.SeccompFilter(
                _linux.seccomp_program(deny_processes=True)
            )
            prep.seccomp_processes = _linux.SeccompFilter(
                _linux.seccomp_program(deny_processes=False)
            )
        else:
            on.discard("seccomp")
            prep.failures["seccomp"] = "no syscall table for this architecture"
    if "caps" in on:
        try:
            _linux.drop_bounding_set(_linux.cap_last_cap())
        except OSError as exc:
            on.discard("caps")
            prep.failures["caps"] = str(exc)
    if "pidns" in on:
        prep.own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    prep.enabled = frozenset(on)
    return prep


class ConfineStepError(Exception):
    """One mechanism failed in the child; ``mechanism`` names it for the probe."""

    def __init__(self, mechanism: str, error: BaseException) -> None:
        super().__init__(f"{mechanism}: {error}")
        self.mechanism = mechanism


def confine_self(
    prep: Prepared, channel: int, rlimits: Mapping[str, tuple[int, int]] | None
) -> None:
    """Run in the freshly forked child, before any tenant byte arrives. ``channel`` ends up
    as fd 3; 0-2 become /dev/null. ``rlimits=None``: a warm child, limited at hand-out."""
    on = prep.enabled
    _linux.prctl(_linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    os.dup2(channel, CHANNEL_FD, inheritable=False)
    for fd in (0, 1, 2):
        os.dup2(prep.devnull, fd)
    processes = rlimits is None or rlimits.get("nproc", (1, 1))[0] <= 1
    filt = prep.seccomp_no_processes if processes else prep.seccomp_processes
    steps: list[tuple[str, Any]] = [
        ("ipcns", lambda: _linux.unshare(_linux.CLONE_NEWIPC)),
        ("rlimits", lambda: apply_rlimits(rlimits if rlimits is not None else {"core": (0, 0)})),
        ("env", os.environ.clear),
        ("no_new_privs", _linux.no_new_privs),
        ("caps", _linux.drop_capabilities),
        ("caps", lambda: _linux.prctl(_linux.PR_SET_DUMPABLE, 0)),
        ("landlock", lambda: _linux.landlock_restrict_self(prep.ruleset_fd)),
        ("seccomp", lambda: filt.install() if filt is not None else None),
        ("close_fds", lambda: _linux.close_range(CHANNEL_FD + 1)),
    ]
    for mechanism, step in steps:
        if mechanism in on:
            try:
                step()
            except Exception as exc:
                raise ConfineStepError(mechanism, exc) from exc


def verify(enabled: frozenset[str]) -> dict[str, Any]:
    """In the probe child, after ``confine_self``: does each mechanism block what it should?
    ``True`` or a short description of what got through."""
    import ctypes
    import socket

    out: dict[str, Any] = {}
    if "seccomp" in enabled:
        try:
            socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
            out["seccomp"] = "socket(AF_INET) allowed"
        except PermissionError:
            out["seccomp"] = True
    if "landlock" in enabled:
        try:
            with open("/etc/passwd", "rb"):
                out["landlock"] = "/etc/passwd readable"
        except PermissionError:
            out["landlock"] = True
    if "pidns" in enabled:
        out["pidns"] = True if os.getpid() == 1 else f"pid {os.getpid()}"
    if "no_new_privs" in enabled:
        libc = ctypes.CDLL(None)
        got = libc.prctl(_linux.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
        out["no_new_privs"] = True if got == 1 else f"prctl says {got}"
    if "caps" in enabled:
        caps = _linux.effective_capabilities()
        out["caps"] = True if caps == 0 else f"effective capabilities {caps:#x}"
    if "env" in enabled:
        out["env"] = True if not os.environ else f"{len(os.environ)} variables"
    return out
