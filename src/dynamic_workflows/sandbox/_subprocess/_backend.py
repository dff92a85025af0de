"""Host side of the subprocess backend: start the zygote, ask it for confined children,
learn how they ended.

asyncio only (the host runs on asyncio): the control socket is read by a loop reader
callback, so the backend needs no task group of its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import site
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ...sdk import WorkflowInternalError
from .._limits import DEFAULT_LIMITS, IsolateLimits
from . import _child, _confine

DEFAULT_GUEST = "dynamic_workflows.sandbox._guest"
PLAIN_GUEST = "dynamic_workflows.sandbox._subprocess._plainguest"
LimitName = Literal["memory", "cpu", "wall"]
_BOOT = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[2])['sys_path']; "
    "from dynamic_workflows.sandbox._subprocess._zygote import main; main()"
)
_CLK_TCK = os.sysconf("SC_CLK_TCK")
MIN_MEMORY_MB = 64
"""RLIMIT_AS floor: a zygote child starts with ~32 MiB mapped (interpreter, guest, libs)."""


class ConfinementError(WorkflowInternalError):
    """A confinement mechanism this host lacks (or a child failed to apply) was required.

    Pass its name in ``allow_missing`` to accept the weaker confinement explicitly."""

    def __init__(self, missing: Iterable[str], reasons: dict[str, str] | None = None) -> None:
        self.missing = tuple(sorted(missing))
        why = "; ".join(f"{m}: {(reasons or {}).get(m, 'unavailable')}" for m in self.missing)
        super().__init__(
            f"Refusing to start an isolate without {', '.join(self.missing)} ({why}); "
            f"pass allow_missing={set(self.missing)!r} to accept weaker confinement"
        )


@dataclass(frozen=True)
class ExitInfo:
    """How a child ended. ``limit`` names the limit it hit, if any (``IsolateLimitError``)."""

    limit: LimitName | None
    exit_code: int | None
    signal: int | None
    detail: str
    cpu_seconds: float


def classify(
    status: int | None, cpu: float, *, killed: str | None, cpu_soft: float | None
) -> ExitInfo:
    """Map a wait status to the limit it means: exit code 112 (an escaped MemoryError under
    RLIMIT_AS) -> memory; 113 (SIGXCPU handler), SIGXCPU, or a SIGKILL the host did not send
    once past the RLIMIT_CPU soft limit ``cpu_soft`` -> cpu; a kill by the host carries the
    host's reason."""
    if status is None:
        return ExitInfo(None, None, signal.SIGKILL, "the zygote exited", cpu)
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        if code == _child.EXIT_MEMORY:
            return ExitInfo("memory", code, None, "out of memory (MemoryError)", cpu)
        if code == _child.EXIT_CPU:
            return ExitInfo("cpu", code, None, f"CPU limit reached after {cpu:.2f} s", cpu)
        if code == _child.EXIT_CONFINE:
            return ExitInfo(None, code, None, "confinement failed in the child", cpu)
        return ExitInfo(None, code, None, f"exited with code {code}", cpu)
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    name = signal.Signals(sig).name if sig else "?"
    if killed is not None:
        limit: LimitName | None = killed if killed in ("memory", "cpu", "wall") else None  # type: ignore[assignment]
        return ExitInfo(limit, None, sig, f"killed by the host ({killed})", cpu)
    # A SIGKILL nobody here sent, past the soft limit: the child ignored SIGXCPU and met the
    # hard limit. The margin: RLIMIT_CPU is checked against tick-sampled time, which runs
    # ahead of the precise time wait4 reports on a busy VM (a kill at "2 s" showed 1.73 s).
    past_soft = cpu_soft is not None and cpu >= cpu_soft * 0.8
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and past_soft):
        return ExitInfo("cpu", None, sig, f"CPU limit reached after {cpu:.2f} s", cpu)
    return ExitInfo(None, None, sig, f"killed by {name} after {cpu:.2f} s CPU", cpu)


class ChildProcess:
    """One confined child: the host end of its channel, its pid, how it ended."""

    def __init__(
        self,
        pid: int,
        sock: socket.socket,
        pidfd: int,
        confinement: dict[str, Any],
        cpu_soft: float | None,
    ) -> None:
        self.pid = pid
        self.sock = sock
        self.confinement = confinement
        self._pidfd = pidfd
        self._cpu_soft = cpu_soft
        self._killed: str | None = None
        self._exit: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()

    @property
    def alive(self) -> bool:
        return not self._exit.done()

    def cpu_seconds(self) -> float:
        """CPU time used so far (user + system), from /proc; the final figure on exit."""
        if self._exit.done():
            return self._exit.result().cpu_seconds
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / _CLK_TCK
        except (OSError, IndexError, ValueError):
            return 0.0

    async def kill(self, reason: str | None = None) -> None:
        """SIGKILL (through the pidfd: no pid-reuse race); ``reason`` becomes ``.limit``."""
        if self._exit.done():
            return
        if self._killed is None:
            self._killed = reason or "closed"
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    async def wait_exit(self) -> ExitInfo:
        return await asyncio.shield(self._exit)

    async def aclose(self) -> ExitInfo:
        """Kill, close the host end of the channel, and wait for the exit."""
        await self.kill()
        self.sock.close()
        return await self.wait_exit()

    def _exited(self, status: int | None, cpu: float) -> None:
        if self._exit.done():
            return
        self._exit.set_result(classify(status, cpu, killed=self._killed, cpu_soft=self._cpu_soft))
        with contextlib.suppress(OSError):
            os.close(self._pidfd)
        self._pidfd = -1


def python_paths() -> tuple[list[str], list[str]]:
    """(sys.path for the zygote, read-only roots for Landlock): the standard library, the
    environment's site-packages and our own package, never the working directory."""
    stdlib = [sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")]
    dynload = [os.path.join(p, "lib-dynload") for p in stdlib]
    packages = [p for p in site.getsitepackages() if os.path.isdir(p)]
    # dynamic_workflows/ itself, found without importing the package root (which would pull
    # in the engine and SQL: sandbox must not, see the import contracts)
    package_dir = str(Path(__file__).resolve().parents[2])
    package_parent = os.path.dirname(package_dir)
    allowed = {*stdlib, *dynload, *packages}
    sys_path = [package_parent]
    sys_path += [p for p in sys.path if p in allowed and p not in sys_path]
    sys_path += [p for p in [*stdlib, *dynload, *packages] if p not in sys_path]
    roots = list(dict.fromkeys([*stdlib, *packages, package_dir]))
    return sys_path, roots


class SubprocessBackend:
    """Confined subprocess isolates forked by one zygote, with a warm pool.

    ``disable`` pretends mechanisms are missing (tests, fallback order); ``allow_missing``
    accepts running without them. A mechanism that is missing and not allowed makes
    :meth:`spawn` raise :class:`ConfinementError`.
    """

    def __init__(
        self,
        *,
        pool_size: int = 2,
        allow_missing: Iterable[str] = (),
        disable: Iterable[str] = (),
        guest: str = DEFAULT_GUEST,
        pool_limits: IsolateLimits = DEFAULT_LIMITS,
        python: str | None = None,
    ) -> None:
        unknown = (set(allow_missing) | set(disable)) - set(_confine.MECHANISMS)
        if unknown:
            raise ValueError(f"unknown confinement mechanisms: {sorted(unknown)}")
        self.pool_size = pool_size
        self.allow_missing = frozenset(allow_missing)
        self.disable = frozenset(disable)
        self.guest = guest
        self.pool_limits = pool_limits
        self.python = python or sys.executable
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctl: socket.socket | None = None
        self._hello: asyncio.Future[dict[str, Any]] | None = None
        self._pending: dict[int, asyncio.Future[tuple[dict[str, Any], list[int]]]] = {}
        self._children: dict[int, ChildProcess] = {}
        self._early_exits: dict[int, tuple[int, float]] = {}
        self._next_id = 0
        self._start_lock = asyncio.Lock()
        self._closed = False
        self._old_procs: list[subprocess.Popen[bytes]] = []
        self.restarts = 0
        """How many times a dead zygote was replaced."""
        self.warm_failures: list[str] = []
        self._warm: collections.deque[ChildProcess] = collections.deque()
        self._pool_changed = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        if self._closed:
            raise WorkflowInternalError("subprocess backend is closed")
        async with self._start_lock:
            if self._hello is not None:
                await self._hello
                return
            loop = asyncio.get_running_loop()
            self._hello = loop.create_future()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            sys_path, roots = python_paths()
            enabled = [m for m in _confine.MECHANISMS if m not in self.disable]
            config = {
                "sys_path": sys_path,
                "read_only": roots,
                "enabled": enabled,
                "guest": self.guest,
                "pool_size": self.pool_size,
                "pool_limits": self.pool_limits.to_wire(),
            }
            env = {} if "env" in enabled else dict(os.environ)
            # Popen on the loop's own thread: the zygote's PR_SET_PDEATHSIG fires when the
            # thread that forked it ends, so a worker thread would kill it early.
            self._proc = subprocess.Popen(  # noqa: ASYNC220
                [self.python, "-I", "-S", "-c", _BOOT, str(theirs.fileno()), json.dumps(config)],
                pass_fds=[theirs.fileno()],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
            theirs.close()
            ours.setblocking(False)
            self._ctl = ours
            loop.add_reader(ours.fileno(), self._on_ctl)
            await self._hello

    async def aclose(self) -> None:
        """Stop the zygote; its children die with it (PR_SET_PDEATHSIG)."""
        self._closed = True
        ctl, proc = self._ctl, self._proc
        self._ctl = None
        while self._warm:
            self._warm.popleft().sock.close()
        if ctl is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(ctl.fileno())
            ctl.close()
        for child in list(self._children.values()):
            await child.kill()
            child.sock.close()
            child._exited(None, child.cpu_seconds())
        self._children.clear()
        for zygote in [*self._old_procs, *([proc] if proc is not None else [])]:
            try:
                await asyncio.to_thread(zygote.wait, 5)
            except subprocess.TimeoutExpired:
                zygote.kill()
                await asyncio.to_thread(zygote.wait)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(WorkflowInternalError("subprocess backend closed"))

    async def __aenter__(self) -> SubprocessBackend:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- reports ---------------------------------------------------------------------------
    def confinement_report(self) -> dict[str, Any]:
        """What this host offers: each mechanism's availability, why one is missing, what
        the start-up probe verified, and what spawning requires."""
        hello = self._hello.result() if self._hello is not None and self._hello.done() else {}
        enabled = set(hello.get("enabled", ()))
        failures = dict(hello.get("failures", {}))
        for name in self.disable:
            failures[name] = "disabled by configuration"
        return {
            "mechanisms": {m: m in enabled for m in _confine.MECHANISMS},
            "landlock_abi": hello.get("landlock_abi", 0) if "landlock" in enabled else 0,
            "missing": failures,
            "verified": hello.get("verified", {}),
            "allow_missing": sorted(self.allow_missing),
            "refuses": sorted(set(_confine.MECHANISMS) - enabled - self.allow_missing),
            "zygote_pid": hello.get("pid"),
            "pool_size": self.pool_size,
        }

    @property
    def pool_ready(self) -> int:
        """Warm children parked here, confined and waiting for a tenant."""
        return sum(1 for child in self._warm if child.alive)

    async def wait_pool(self, ready: int | None = None) -> None:
        """Wait until ``ready`` (default: ``pool_size``) warm children are waiting."""
        await self.start()
        want = self.pool_size if ready is None else ready
        while self.pool_ready < want:
            self._pool_changed.clear()
            await self._pool_changed.wait()

    @property
    def zygote_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- spawning --------------------------------------------------------------------------
    async def spawn(
        self, limits: IsolateLimits = DEFAULT_LIMITS, *, warm: bool = True
    ) -> ChildProcess:
        """A confined child waiting in ``guest.serve(3)``: a warm one when the pool has one
        (no round trip: its limits are lowered here with ``prlimit``), else a fresh fork.
        ``warm=False`` skips the pool."""
        if limits.memory_mb < MIN_MEMORY_MB:
            raise ValueError(
                f"memory_mb={limits.memory_mb} is below what a Python isolate needs "
                f"({MIN_MEMORY_MB} MiB of address space: the interpreter alone maps ~32 MiB)"
            )
        await self.start()
        report = self.confinement_report()
        if report["refuses"]:
            raise ConfinementError(report["refuses"], report["missing"])
        if warm and limits.max_processes <= 1:
            child = self._claim_warm(limits, rlimits=report["mechanisms"]["rlimits"])
            if child is not None:
                return child
        return await self._fork(limits)

    def _claim_warm(self, limits: IsolateLimits, *, rlimits: bool) -> ChildProcess | None:
        wire = limits.to_wire()
        while self._warm:
            child = self._warm.popleft()
            if not child.alive:
                continue
            try:
                if rlimits:
                    _confine.apply_rlimits(_confine.rlimits_for(wire), child.pid)
            except OSError:
                continue
            child.confinement["rlimits"] = _confine.rlimits_report(wire) if rlimits else {}
            child._cpu_soft = float(_confine.rlimits_for(wire)["cpu"][0])
            self._send({"op": "claimed", "pid": child.pid})
            return child
        return None

    async def _fork(self, limits: IsolateLimits) -> ChildProcess:
        self._next_id += 1
        rid = self._next_id
        fut: asyncio.Future[tuple[dict[str, Any], list[int]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[rid] = fut
        self._send({"op": "spawn", "id": rid, "limits": limits.to_wire()})
        try:
            message, fds = await fut
        finally:
            self._pending.pop(rid, None)
        cpu_soft = float(_confine.rlimits_for(limits.to_wire())["cpu"][0])
        child = self._adopt(message, fds, cpu_soft)
        await self._await_ready(child)
        return child

    def _adopt(
        self, message: dict[str, Any], fds: list[int], cpu_soft: float | None
    ) -> ChildProcess:
        sock = socket.socket(fileno=fds[0])
        sock.setblocking(False)
        pid = int(message["pid"])
        child = ChildProcess(pid, sock, fds[1], dict(message["confinement"]), cpu_soft)
        self._children[pid] = child
        if pid in self._early_exits:
            child._exited(*self._early_exits.pop(pid))
        return child

    def _send(self, message: dict[str, Any]) -> None:
        if self._ctl is None:
            raise WorkflowInternalError("subprocess backend is closed")
        self._ctl.send(json.dumps(message).encode())

    async def _await_ready(self, child: ChildProcess) -> None:
        loop = asyncio.get_running_loop()
        try:
            first = await loop.sock_recv(child.sock, 1)
        except OSError:
            first = b""
        if first == _confine.READY:
            return
        rest = b""
        with contextlib.suppress(OSError):
            rest = await asyncio.wait_for(loop.sock_recv(child.sock, 2000), 5)
        child.sock.close()
        await child.kill()
        reason = rest.decode(errors="replace")
        mechanism = reason.partition(": ")[0]
        raise ConfinementError([mechanism or "unknown"], {mechanism or "unknown": reason})

    # -- control socket --------------------------------------------------------------------
    def _on_ctl(self) -> None:
        ctl = self._ctl
        if ctl is None:
            return
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(ctl, 1 << 16, 4)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self._zygote_gone()
                return
            self._dispatch(json.loads(data), fds)

    def _dispatch(self, message: dict[str, Any], fds: list[int]) -> None:
        op = message.get("op")
        if op == "hello" and self._hello is not None and not self._hello.done():
            self._hello.set_result(message)
        elif op == "spawned" and len(fds) == 2:
            fut = self._pending.get(int(message["id"]))
            if fut is not None and not fut.done():
                fut.set_result((message, fds))
                return
        elif op == "error":
            fut = self._pending.get(int(message.get("id") or 0))
            if fut is not None and not fut.done():
                fut.set_exception(WorkflowInternalError(f"zygote: {message.get('message')}"))
        elif op == "exit":
            pid, status, cpu = int(message["pid"]), int(message["status"]), float(message["cpu"])
            child = self._children.pop(pid, None)
            if child is None:
                self._early_exits[pid] = (status, cpu)
            else:
                child._exited(status, cpu)
                if child in self._warm:
                    self._warm.remove(child)
                    child.sock.close()
        elif op == "warm" and len(fds) == 2:
            self._warm.append(self._adopt(message, fds, None))
            self._pool_changed.set()
            return
        elif op == "warm_failed":
            self.warm_failures.append(str(message.get("message")))
        for fd in fds:
            os.close(fd)

    def _zygote_gone(self) -> None:
        """The zygote died (its children with it, by PR_SET_PDEATHSIG): report their exits;
        the next ``spawn`` starts a new zygote, unless this one never came up."""
        ctl, self._ctl = self._ctl, None
        if ctl is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(ctl.fileno())
            ctl.close()
        for child in self._children.values():
            child._exited(None, 0.0)
        self._children.clear()
        while self._warm:
            self._warm.popleft().sock.close()
        error = WorkflowInternalError("the zygote exited")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(error)
        if self._proc is not None:
            self._proc.poll()
            self._old_procs.append(self._proc)
            self._proc = None
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(error)
        elif not self._closed:
            self.restarts += 1
            self._hello = None


async def probe(*, disable: Iterable[str] = ()) -> dict[str, Any]:
    """What confinement this host offers, probed end to end by a throwaway zygote (each
    mechanism applied in a real child and checked): ``confinement_report()`` of a backend
    that would accept anything missing."""
    async with SubprocessBackend(
        guest=PLAIN_GUEST, pool_size=0, disable=disable, allow_missing=_confine.MECHANISMS
    ) as backend:
        report = backend.confinement_report()
    report["allow_missing"] = []
    report["refuses"] = sorted(m for m, on in report["mechanisms"].items() if not on)
    return report
