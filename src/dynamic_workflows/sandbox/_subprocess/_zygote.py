"""The zygote: a small, pre-imported, ``gc.freeze()``d process that forks confined children.

Started once by the host (``python -I -S``, empty environment, sys.path passed explicitly).
It enters a fresh network and UTS namespace itself, so every child shares one empty netns at
no per-child cost. It prepares the Landlock ruleset and seccomp programs once, probes every
mechanism end to end in a throwaway child, then serves the control socket (SOCK_SEQPACKET,
one JSON message per packet; fds by SCM_RIGHTS):

- host -> zygote ``{"op": "spawn", "id", "limits"}``, ``{"op": "claimed", "pid"}``
- zygote -> host ``{"op": "spawned", "id", "pid", "confinement"}`` + [channel, pidfd],
  ``{"op": "error", "id", "message"}``, ``{"op": "exit", "pid", "status", "cpu"}``,
  ``{"op": "warm", ...}`` (above), ``{"op": "warm_failed", "message"}``
  and once at start ``{"op": "hello", "pid", "enabled", "failures"}``.

Warm children are forked ahead, fully confined except for their rlimits, and wait in
``guest.serve(3)``. Once ready they are parked at the host (``{"op": "warm", "pid",
"confinement"}`` + [channel, pidfd]), which claims one without a round trip here: it lowers
its limits with ``prlimit`` (lowering needs no privilege) and tells the zygote
``{"op": "claimed", "pid"}`` so that a replacement is forked, a few ms later, when no
request is waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from . import _child, _confine, _linux

_MAX_PACKET = 1 << 16
REFILL_DELAY = 0.005


@dataclass
class _Warm:
    pid: int
    pidfd: int
    host_end: socket.socket


class Zygote:
    def __init__(self, ctl: socket.socket, config: dict[str, Any]) -> None:
        self.ctl = ctl
        self.pid = os.getpid()
        self.guest = str(config["guest"])
        self.pool_size = int(config["pool_size"])
        self.pool_limits: dict[str, Any] = dict(config["pool_limits"])
        enabled = set(config["enabled"])
        self.failures: dict[str, str] = {}
        for name, flag in (("netns", _linux.CLONE_NEWNET), ("utsns", _linux.CLONE_NEWUTS)):
            if name in enabled:
                try:
                    _linux.unshare(flag)
                except OSError as exc:
                    enabled.discard(name)
                    self.failures[name] = str(exc)
        if "netns" in enabled and (interfaces := _interfaces()) != ["lo"]:
            enabled.discard("netns")
            self.failures["netns"] = f"the new network namespace has {interfaces}"
        if "pidns" in enabled:
            own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _linux.unshare(_linux.CLONE_NEWPID)
                _linux.setns(own, _linux.CLONE_NEWPID)
            except OSError as exc:
                enabled.discard("pidns")
                self.failures["pidns"] = str(exc)
            finally:
                os.close(own)
        self.prep = _confine.prepare(enabled, config["read_only"])
        self.failures.update(self.prep.failures)
        self.verified: dict[str, Any] = {}
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.handed: set[int] = set()
        self.warm: dict[int, _Warm] = {}
        self.parked: set[int] = set()
        self.refill_failures = 0
        self.backoff_until = 0.0
        self.last_request = 0.0

    # -- forking ---------------------------------------------------------------------------
    def fork_child(
        self, limits: dict[str, Any] | None, *, probe: bool = False
    ) -> tuple[int, int, socket.socket]:
        """Fork one confined child; returns (pid, pidfd, host end of its channel)."""
        host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        rlimits = _confine.rlimits_for(limits) if limits is not None else None
        pidns = "pidns" in self.prep.enabled
        gc.freeze()
        if pidns:
            _linux.unshare(_linux.CLONE_NEWPID)
        try:
            pid = os.fork()
        finally:
            if pidns and os.getpid() == self.pid:  # back to our own pid ns for what follows
                _linux.setns(self.prep.own_pidns, _linux.CLONE_NEWPID)
        if pid == 0:  # the child: never returns
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _confine.confine_self(self.prep, child_end.fileno(), rlimits)
                if probe:
                    verdict = json.dumps(_confine.verify(self.prep.enabled)).encode()
                    os.write(_confine.CHANNEL_FD, _confine.READY + verdict)
                    os._exit(0)
                os.write(_confine.CHANNEL_FD, _confine.READY)
            except BaseException as exc:
                try:
                    reason = _confine.FAILED + str(exc).encode()[:1000]
                    os.write(child_end.fileno(), reason)
                finally:
                    os._exit(_child.EXIT_CONFINE)
            _child.run_guest(self.guest, _confine.CHANNEL_FD)
        child_end.close()
        pidfd = os.pidfd_open(pid)
        host_end.setblocking(False)
        return pid, pidfd, host_end

    def probe(self) -> None:
        """Confine a throwaway child with everything enabled and check each mechanism took
        effect; a mechanism that failed there is dropped (and reported) before any isolate
        relies on it."""
        for _ in range(len(_confine.MECHANISMS)):
            pid, pidfd, host_end = self.fork_child(self.pool_limits, probe=True)
            host_end.setblocking(True)
            host_end.settimeout(10)
            try:
                data = b""
                while chunk := host_end.recv(65536):
                    data += chunk
            finally:
                host_end.close()
                os.close(pidfd)
                os.waitpid(pid, 0)
            if data[:1] == _confine.READY:
                self.verified = json.loads(data[1:])
                for name, ok in self.verified.items():
                    if ok is not True:
                        self.failures[name] = f"applied but not effective: {ok}"
                        self.prep.enabled -= {name}
                return
            mechanism, _, reason = data[1:].decode(errors="replace").partition(": ")
            if mechanism not in self.prep.enabled:
                raise RuntimeError(f"confined child failed: {data[1:]!r}")
            self.failures[mechanism] = reason
            self.prep.enabled -= {mechanism}

    def pool_count(self) -> int:
        """Warm children starting here plus those parked at the host, not yet claimed."""
        return len(self.warm) + len(self.parked)

    def refill_timeout(self) -> float | None:
        """How long to wait for events before refilling: forever when the pool is full;
        else until REFILL_DELAY after the last request (so a fork does not compete with the
        child just handed out) and past any back-off after failed warm children."""
        if self.pool_count() >= self.pool_size:
            return None
        due = max(self.last_request + REFILL_DELAY, self.backoff_until)
        return max(0.0, due - time.monotonic())

    def failed_warm(self) -> None:
        self.refill_failures += 1
        self.backoff_until = time.monotonic() + min(5.0, 0.05 * 2**self.refill_failures)

    def refill(self) -> None:
        while self.pool_count() < self.pool_size:
            try:
                pid, pidfd, host_end = self.fork_child(None)
            except OSError as exc:
                self.failed_warm()
                self.send({"op": "warm_failed", "message": str(exc)})
                return
            w = _Warm(pid, pidfd, host_end)
            self.warm[pid] = w
            self.sel.register(host_end, selectors.EVENT_READ, ("warm", pid))

    def _warm_event(self, pid: int) -> None:
        w = self.warm.get(pid)
        if w is None:
            return
        try:
            data = w.host_end.recv(1024)
        except BlockingIOError:
            return
        if data == _confine.READY:
            # Park it at the host: claiming it there costs no round trip to the zygote.
            self.refill_failures = 0
            self.sel.unregister(w.host_end)
            del self.warm[pid]
            self.parked.add(pid)
            self.handed.add(pid)
            report = self.prep.report(None, warm=True)
            try:
                message = {"op": "warm", "pid": pid, "confinement": report}
                self.send(message, [w.host_end.fileno(), w.pidfd])
            finally:
                w.host_end.close()
                os.close(w.pidfd)
            return
        self._drop_warm(w)
        self.failed_warm()
        self.send({"op": "warm_failed", "message": data[1:].decode(errors="replace")})

    def _drop_warm(self, w: _Warm) -> None:
        self.warm.pop(w.pid, None)
        self.sel.unregister(w.host_end)
        w.host_end.close()
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(w.pidfd, signal.SIGKILL)
        os.close(w.pidfd)

    # -- control ---------------------------------------------------------------------------
    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        data = json.dumps(message).encode()
        if fds:
            socket.send_fds(self.ctl, [data], fds)
        else:
            self.ctl.send(data)

    def spawn(self, request: dict[str, Any]) -> None:
        limits = dict(request["limits"])
        pid, pidfd, host_end = self.fork_child(limits)
        self.handed.add(pid)
        report = self.prep.report(limits, warm=False)
        message = {"op": "spawned", "id": request["id"], "pid": pid, "confinement": report}
        try:
            self.send(message, [host_end.fileno(), pidfd])
        finally:
            host_end.close()
            os.close(pidfd)

    def reap(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.handed:
                self.handed.discard(pid)
                self.parked.discard(pid)
                cpu = usage.ru_utime + usage.ru_stime
                self.send({"op": "exit", "pid": pid, "status": status, "cpu": cpu})
            elif pid in self.warm:
                self._drop_warm(self.warm[pid])
                self.failed_warm()

    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self.sel.register(self.ctl, selectors.EVENT_READ, ("ctl", 0))
        self.sel.register(self.wake_r, selectors.EVENT_READ, ("chld", 0))
        self.send(
            {
                "op": "hello",
                "pid": os.getpid(),
                "enabled": sorted(self.prep.enabled),
                "failures": self.failures,
                "verified": self.verified,
                "landlock_abi": self.prep.landlock_abi,
            }
        )
        while True:
            timeout = self.refill_timeout()
            if timeout == 0.0:
                self.refill()
                continue
            for key, _ in self.sel.select(timeout):
                kind, pid = key.data
                if kind == "ctl":
                    try:
                        data = self.ctl.recv(_MAX_PACKET)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        return
                    request = json.loads(data)
                    self.last_request = time.monotonic()
                    if request.get("op") == "claimed":
                        self.parked.discard(int(request["pid"]))
                        continue
                    try:
                        self.spawn(request)
                    except Exception as exc:
                        self.send({"op": "error", "id": request.get("id"), "message": str(exc)})
                elif kind == "chld":
                    self.reap()
                else:
                    self._warm_event(pid)


def _interfaces() -> list[str]:
    """Network interfaces of our network namespace (an empty one has only ``lo``)."""
    with open("/proc/self/net/dev") as f:
        return sorted(line.split(":")[0].strip() for line in f if ":" in line)


def warm_up(guest: Any) -> None:
    """Materialize what the first call in every child would build lazily (an event loop's
    internals, the guest's own caches) here, once, so children share those pages."""
    asyncio.run(asyncio.sleep(0))
    prepare = getattr(guest, "prepare", None)
    if prepare is not None:
        prepare()


def main() -> None:
    """Entry point: ``argv[1]`` is the control fd, ``argv[2]`` the JSON configuration."""
    _linux.prctl(_linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    _linux.single_malloc_arena()
    ctl = socket.socket(fileno=int(sys.argv[1]))
    ctl.setblocking(False)
    config = json.loads(sys.argv[2])
    guest = importlib.import_module(str(config["guest"]))
    warm_up(guest)
    zygote = Zygote(ctl, config)
    zygote.probe()
    gc.collect()
    gc.freeze()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        zygote.serve()  # returns (or the pipe breaks) when the host closes the control socket
    os._exit(0)


if __name__ == "__main__":
    main()
