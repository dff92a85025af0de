"""The hostile-tenant battery: one tenant per attack (``tenants/hostile/<attack>/index.py``),
each run in its own real isolate against real targets the host sets up (listeners, secret
files, a victim process, another tenant's isolate), with the outcome checked on both sides:
what the tenant reports, and what the host can see (a connection accepted, a file written,
a victim killed). Used by ``tests/isolation`` and by ``dynwf audit``.

A row is ``escaped`` when the attack worked by either account. Running the same battery
with every mechanism disabled (``confined=False``) shows the attacks are real: there they
must escape.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from ..sdk import IsolateLimitError, Request, WorkflowError
from ._limits import IsolateLimits
from ._subprocess import (
    DEFAULT_GUEST,
    MECHANISMS,
    PLAIN_GUEST,
    ChildProcess,
    ExitInfo,
    SubprocessBackend,
)

BATTERY_LIMITS = IsolateLimits(
    memory_mb=256, cpu_seconds=1.0, cpu_seconds_total=1.0, wall_seconds=60.0
)
"""Small limits so the memory and CPU attacks end quickly (RLIMIT_CPU soft 1 s, hard 2 s).
The wall limit leaves room for 2 s of CPU on a 2-core machine shared by a dozen processes."""

ATTACK_DEADLINE = 120.0
"""The host's own limits (wall time) must have ended an attack well before this."""

_EPERM = "PermissionError EPERM"
_EACCES = "PermissionError EACCES"
_ESRCH = "ProcessLookupError ESRCH"


@dataclass(frozen=True)
class Attack:
    """One row of the battery. ``expected`` is what blocking looks like: an error name (with
    errno), ``IsolateLimitError(<limit>)``, or the tenant's own result text."""

    name: str
    expected: tuple[str, ...]
    what: str
    sanity: bool = False
    """Not an attack: a capability tenants must keep (the row fails if it is missing)."""
    silent_death_escapes: bool = False
    """The isolate ending without a reply means the attack worked (execve of a shell)."""


ATTACKS: tuple[Attack, ...] = (
    Attack("net_tcp_outbound", (_EPERM,), "TCP connection to the host's own address"),
    Attack("net_udp", (_EPERM,), "UDP datagram out"),
    Attack("net_dns", ("gaierror", _EPERM), "name resolution"),
    Attack("dispatcher_tcp", (_EPERM,), "connect to the dispatcher's 127.0.0.1 listener"),
    Attack("dispatcher_unix", (_EPERM,), "connect to the dispatcher's unix socket path"),
    Attack("dispatcher_abstract", (_EPERM,), "connect to an abstract unix socket"),
    Attack("read_shadow", (_EACCES,), "read /etc/shadow"),
    Attack("read_store", (_EACCES,), "read the store's database file"),
    Attack("read_other_tenant", (_EACCES,), "read another tenant's code"),
    Attack("read_proc_environ", (_EACCES,), "read /proc/1/environ"),
    Attack("write_anywhere", (_EACCES,), "create files (temp dir, /tmp, Python, our package)"),
    Attack("disk_fill", (_EACCES, "OSError EFBIG"), "fill the disk"),
    Attack("signal_host", (_ESRCH, _EPERM), "signal the host process"),
    Attack("signal_other_isolate", (_ESRCH, _EPERM), "SIGKILL another tenant's isolate"),
    Attack("signal_everyone", (_EPERM, _ESRCH), "signal every pid it can find"),
    Attack("ptrace_host", (_EPERM, _ESRCH), "ptrace the host"),
    Attack("exec_shell", (_EPERM, _EACCES), "execve /bin/sh", silent_death_escapes=True),
    Attack("spawn_shell", (_EPERM,), "run /bin/sh in a child process"),
    Attack("fork_bomb", (_EPERM, "BlockingIOError EAGAIN"), "fork repeatedly"),
    Attack("memory_bomb", ("IsolateLimitError(memory)",), "allocate 4x the memory limit"),
    Attack("cpu_spin", ("IsolateLimitError(cpu)",), "spin on the CPU"),
    Attack(
        "cpu_spin_stubborn",
        ("IsolateLimitError(cpu)",),
        "spin after ignoring SIGXCPU and raising the soft limit",
    ),
    Attack("env_secret", ("absent",), "read the host's secret environment variable"),
    Attack("inherited_fds", ("only fds 0-3 open",), "use fds inherited from host or zygote"),
    Attack("raw_unshare", (_EPERM,), "ctypes unshare(CLONE_NEWUSER)"),
    Attack("raw_mount", (_EPERM,), "ctypes mount(2)"),
    Attack("raw_ptrace", (_EPERM, _ESRCH), "raw ptrace syscall"),
    Attack("raw_io_uring", (_EPERM,), "io_uring_setup(2)"),
    Attack("raw_bpf", (_EPERM,), "bpf(BPF_MAP_CREATE)"),
    Attack("unix_socketpair", ("socketpair works",), "asyncio's socketpair", sanity=True),
)

_SURVIVED = ("channel closed", "host still talking")
CHANNEL_ATTACKS: tuple[Attack, ...] = (
    Attack("channel_forged_cap", _SURVIVED, "call a capability id never handed out"),
    Attack("channel_oversized_frame", ("channel closed",), "a 4 GiB frame header"),
    Attack("channel_deep_nesting", ("channel closed",), "arguments nested 200,000 deep"),
    Attack("channel_garbage", ("channel closed",), "a frame that is not JSON"),
    Attack("channel_pickle", ("channel closed",), "a pickle the host must never load"),
)
"""Attacks on the RPC channel itself (need the RPC guest): the isolate writes raw frames
to its own channel; the host closes that channel at worst and never decodes more than
JSON."""


@dataclass
class Row:
    attack: str
    tenant: str
    expected: str
    result: str
    escaped: bool
    as_expected: bool
    evidence: list[str] = field(default_factory=list)
    other_tenant_ok: bool = True
    detail: str = ""


def default_tenants_dir() -> Path:
    """``tenants/hostile`` of the source checkout (beside ``src/``), or of the cwd."""
    here = Path(__file__).resolve()
    for base in (here.parents[3], Path.cwd()):
        candidate = base / "tenants" / "hostile"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("tenants/hostile not found (run from the project checkout)")


# -- targets the host sets up -------------------------------------------------------------
class Targets:
    """Real things for the tenants to attack; each records what reached it."""

    def __init__(self, root: Path, *, store_path: Path | None = None) -> None:
        self.root = root
        self.secret_name = "DYNWF_AUDIT_SECRET"  # noqa: S105 (a name, not a secret)
        self.secret_value = secrets.token_hex(16)
        self.dispatcher = _listener(socket.AF_INET, ("127.0.0.1", 0))
        self.outbound = _listener(socket.AF_INET, ("0.0.0.0", 0))  # noqa: S104
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("0.0.0.0", 0))  # noqa: S104
        self.udp.setblocking(False)
        self.unix_path = str(root / "dispatcher.sock")
        self.unix = _listener(socket.AF_UNIX, self.unix_path)
        self.abstract_name = f"dynwf-audit-{secrets.token_hex(6)}"
        self.abstract = _listener(socket.AF_UNIX, "\0" + self.abstract_name)
        self.store_path = store_path or root / "state.db"
        if not self.store_path.exists():
            self.store_path.write_bytes(b"SQLite format 3\0 host secrets")
        other = root / "tenants" / "other" / "index.py"
        other.parent.mkdir(parents=True)
        other.write_text("SECRET_API_KEY = 'other tenant only'\n")
        self.other_tenant_path = other
        self.write_dir = root / "writable"
        self.write_dir.mkdir()
        self.mount_dir = root / "mnt"
        self.mount_dir.mkdir()
        self.sleeper = subprocess.Popen(
            ["sleep", "600"], stdin=subprocess.DEVNULL, start_new_session=True
        )

    def params(self, *, confined: bool, victim_pid: int) -> dict[str, Any]:
        """Attack parameters; with any mechanism off, the killing, tracing and writing
        attacks aim at sacrificial targets only."""
        write_dirs = [str(self.write_dir)]
        if confined:
            package = str(Path(__file__).resolve().parents[1])  # dynamic_workflows/
            write_dirs += [tempfile.gettempdir(), sys.prefix, package]
        return {
            "outbound_host": _own_address(),
            "outbound_port": self.outbound.getsockname()[1],
            "udp_host": _own_address(),
            "udp_port": self.udp.getsockname()[1],
            "dispatcher_port": self.dispatcher.getsockname()[1],
            "unix_path": self.unix_path,
            "abstract_name": self.abstract_name,
            "store_path": str(self.store_path),
            "other_tenant_path": str(self.other_tenant_path),
            "write_dirs": write_dirs,
            "fill_dir": str(self.write_dir),
            "fill_mib": 8,
            "mount_dir": str(self.mount_dir),
            "host_pid": os.getpid(),
            # unconfined, the killing and tracing attacks go at a sacrificial process
            "victim_pid": victim_pid if confined else self.sleeper.pid,
            "ptrace_pid": os.getpid() if confined else self.sleeper.pid,
            "forks": 8,
            "pid_max": _pid_max(),
            "bomb_bytes": BATTERY_LIMITS.memory_mb << 22,
            "spin_seconds": 2.5,
            "secret_name": self.secret_name,
        }

    def evidence(self, attack: str) -> list[str]:
        """What reached the host's side of each target (drained, so rows stay separate)."""
        seen: list[str] = []
        for name, sock in (
            ("dispatcher TCP", self.dispatcher),
            ("outbound TCP", self.outbound),
            ("unix socket", self.unix),
            ("abstract socket", self.abstract),
        ):
            while True:
                try:
                    conn, _ = sock.accept()
                except (BlockingIOError, OSError):
                    break
                conn.close()
                seen.append(f"{name} accepted a connection")
        while True:
            try:
                self.udp.recvfrom(2048)
            except (BlockingIOError, OSError):
                break
            seen.append("UDP datagram received")
        for path in self.write_dir.iterdir():
            seen.append(f"{path.name} written")
            path.unlink()
        if self.sleeper.poll() is not None:
            seen.append("the victim process was killed")
            self.sleeper = subprocess.Popen(
                ["sleep", "600"], stdin=subprocess.DEVNULL, start_new_session=True
            )
        return seen

    def close(self) -> None:
        for sock in (self.dispatcher, self.outbound, self.udp, self.unix, self.abstract):
            sock.close()
        self.sleeper.kill()
        self.sleeper.wait()


def _listener(family: int, address: Any) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind(address)
    sock.listen(16)
    sock.setblocking(False)
    return sock


def _pid_max() -> int:
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return min(int(f.read()), 1 << 22)
    except OSError:
        return 32768


def _own_address() -> str:
    """This machine's primary address (not loopback), for the "outbound" targets."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


@contextlib.contextmanager
def targets(store_path: Path | None = None) -> Iterator[Targets]:
    root = Path(tempfile.mkdtemp(prefix="dynwf-audit-"))
    t = Targets(root, store_path=store_path)
    previous = os.environ.get(t.secret_name)
    os.environ[t.secret_name] = t.secret_value
    try:
        yield t
    finally:
        if previous is None:
            os.environ.pop(t.secret_name, None)
        else:
            os.environ[t.secret_name] = previous
        t.close()
        shutil.rmtree(root, ignore_errors=True)


# -- talking to a tenant --------------------------------------------------------------------
class TenantClient(Protocol):
    pid: int

    async def load(self, source: str) -> None: ...

    async def fetch(self, params: dict[str, Any]) -> dict[str, Any]:
        """The tenant's JSON answer; raises ``IsolateLimitError`` or ``IsolateGone``."""

    async def close(self) -> None: ...


class IsolateGone(Exception):
    def __init__(self, info: ExitInfo) -> None:
        super().__init__(info.detail)
        self.info = info


class PlainClient:
    """Speaks the plain guest's frames (``_subprocess._plainguest``)."""

    def __init__(self, child: ChildProcess) -> None:
        self.child = child
        self.pid = child.pid

    async def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        data = json.dumps(message).encode()
        try:
            await loop.sock_sendall(self.child.sock, struct.pack("!I", len(data)) + data)
            (size,) = struct.unpack("!I", await self._exact(4))
            if size > 1 << 20:
                raise ValueError("oversized reply")
            reply: dict[str, Any] = json.loads(await self._exact(size))
        except (ConnectionError, EOFError):
            info = await self.child.wait_exit()
            if info.limit is not None:
                raise IsolateLimitError(info.limit) from None
            raise IsolateGone(info) from None
        if not reply.get("ok"):
            raise WorkflowError(str(reply.get("error")))
        return reply

    async def _exact(self, size: int) -> bytes:
        loop = asyncio.get_running_loop()
        buf = b""
        while len(buf) < size:
            chunk = await loop.sock_recv(self.child.sock, size - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    async def load(self, source: str) -> None:
        await self._call({"op": "load", "source": source})

    async def fetch(self, params: dict[str, Any]) -> dict[str, Any]:
        request = Request("POST", "/", {}, json.dumps(params).encode()).to_wire()
        reply = await self._call({"op": "fetch", "request": request})
        body = Request.from_wire(reply["response"]).body
        result: dict[str, Any] = json.loads(body)
        return result

    async def close(self) -> None:
        self.child.sock.close()
        await self.child.kill()
        await self.child.wait_exit()


class ChannelClient:
    """The product path: RPC's ``ChannelIsolate`` over the guest runtime, the tenant loaded
    as a one-module ``CodeBundle`` and called through ``fetch``."""

    def __init__(self, child: ChildProcess, isolate: Any) -> None:
        self.child = child
        self.isolate = isolate
        self.pid = child.pid

    @classmethod
    async def open(cls, backend: SubprocessBackend) -> ChannelClient:
        from ._channel import ChannelIsolate

        child = await backend.spawn(BATTERY_LIMITS)
        isolate = await ChannelIsolate.connect(
            child.sock,
            BATTERY_LIMITS,
            backend="subprocess",
            process=child,
            confinement=child.confinement,
        )
        return cls(child, isolate)

    async def load(self, source: str) -> None:
        from ._isolate import CodeBundle

        version = hashlib.sha256(source.encode()).hexdigest()[:16]
        bundle = CodeBundle(main_module="index.py", modules={"index.py": source}, version=version)
        await self._guard(self.isolate.load(bundle))

    async def fetch(self, params: dict[str, Any]) -> dict[str, Any]:
        request = Request("POST", "/", {"content-type": "application/json"})
        request.body = json.dumps(params).encode()
        response = await self._guard(self.isolate.fetch(None, request))
        if response.status != 200:
            raise WorkflowError(f"HTTP {response.status}: {response.body_bytes()[:200]!r}")
        result: dict[str, Any] = json.loads(response.body_bytes())
        return result

    async def _guard(self, call: Awaitable[Any]) -> Any:
        from ._isolate import IsolateLost

        try:
            return await call
        except IsolateLost as lost:
            if isinstance(lost.error, IsolateLimitError):
                raise lost.error from None
            ended = "still running"
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    ended = (await self.child.wait_exit()).detail
            detail = f"channel closed: {lost.error.message} (isolate {ended})"
            info = ExitInfo(None, None, None, detail, self.child.cpu_seconds())
            raise IsolateGone(info) from None

    async def close(self) -> None:
        await self.isolate.close()
        await self.child.aclose()


Guest = Literal["rpc", "plain"]


@contextlib.asynccontextmanager
async def open_backend(
    *, disable: Iterable[str] = (), pool_size: int = 2, guest: Guest = "rpc"
) -> AsyncIterator[SubprocessBackend]:
    """The subprocess backend the battery attacks, with ``disable``d mechanisms accepted as
    missing (all of them: to show each attack works when nothing stops it)."""
    off = tuple(disable)
    backend = SubprocessBackend(
        guest=DEFAULT_GUEST if guest == "rpc" else PLAIN_GUEST,
        pool_size=pool_size,
        pool_limits=BATTERY_LIMITS,
        disable=off,
        allow_missing=off,
    )
    async with backend:
        yield backend


async def new_client(backend: SubprocessBackend, source: str) -> TenantClient:
    client: TenantClient
    if backend.guest == PLAIN_GUEST:
        client = PlainClient(await backend.spawn(BATTERY_LIMITS))
    else:
        client = await ChannelClient.open(backend)
    await client.load(source)
    return client


# -- the runner ------------------------------------------------------------------------------
async def run_attack(
    backend: SubprocessBackend,
    attack: Attack,
    target: Targets,
    *,
    tenants_dir: Path,
    confined: bool,
    other: TenantClient,
) -> Row:
    source = (tenants_dir / attack.name / "index.py").read_text()
    client = await new_client(backend, source)
    params = target.params(confined=confined, victim_pid=other.pid)
    escaped = False
    detail = ""
    try:
        reply = await asyncio.wait_for(client.fetch(params), ATTACK_DEADLINE)
        result = str(reply.get("result"))
        detail = str(reply.get("detail") or "")
        escaped = bool(reply.get("escaped"))
    except TimeoutError:
        result = f"no answer within {ATTACK_DEADLINE:.0f} s"
        escaped = True
    except IsolateLimitError as exc:
        result = f"IsolateLimitError({exc.limit})"
    except IsolateGone as exc:
        closed = exc.info.detail.startswith("channel closed") or exc.info.detail.startswith(
            "killed by the host"
        )
        result = "channel closed" if closed else f"isolate ended: {exc.info.detail}"
        detail = exc.info.detail
        escaped = attack.silent_death_escapes
    except WorkflowError as exc:
        result = f"error: {exc.message}"
    finally:
        await client.close()
    evidence = target.evidence(attack.name)
    other_ok = await _still_serving(other)
    return Row(
        attack=attack.name,
        tenant=f"hostile/{attack.name}",
        expected=" | ".join(attack.expected),
        result=result,
        escaped=escaped or bool(evidence),
        as_expected=result.startswith(attack.expected) and not evidence,
        evidence=evidence,
        other_tenant_ok=other_ok,
        detail=detail,
    )


async def _still_serving(other: TenantClient) -> bool:
    try:
        reply = await asyncio.wait_for(other.fetch({"n": 1}), 30)
    except Exception:
        return False
    return reply.get("result") == "pong 1"


async def run_battery(
    *,
    confined: bool = True,
    disable: Iterable[str] | None = None,
    attacks: Iterable[Attack] | None = None,
    guest: Guest = "rpc",
    tenants_dir: Path | None = None,
    store_path: Path | None = None,
) -> dict[str, Any]:
    """Every attack in its own isolate; another tenant ("echo") is served between attacks.
    ``confined=False`` disables every mechanism; ``disable`` names some (fallback tests).
    With the RPC guest the channel attacks run too (``attacks=None``: all that apply).
    Returns ``{"confinement", "results": [rows], "escapes", "other_tenant_ok"}``."""
    tenants = tenants_dir or default_tenants_dir()
    if attacks is None:
        attacks = ATTACKS + (CHANNEL_ATTACKS if guest == "rpc" else ())
    off = tuple(disable) if disable is not None else (() if confined else MECHANISMS)
    confined = not off
    with targets(store_path) as target:
        async with open_backend(disable=off, guest=guest) as backend:
            other = await new_client(backend, (tenants / "echo" / "index.py").read_text())
            rows: list[Row] = []
            try:
                for attack in attacks:
                    rows.append(
                        await run_attack(
                            backend,
                            attack,
                            target,
                            tenants_dir=tenants,
                            confined=confined,
                            other=other,
                        )
                    )
                confinement = dict(other_confinement(other))
            finally:
                await other.close()
            report = backend.confinement_report()
    return {
        "confined": confined,
        "guest": guest,
        "confinement": confinement,
        "host": report,
        "results": [asdict(r) for r in rows],
        "escapes": sum(1 for r in rows if r.escaped),
        "other_tenant_ok": all(r.other_tenant_ok for r in rows),
    }


def other_confinement(client: TenantClient) -> dict[str, Any]:
    child = getattr(client, "child", None)
    return dict(child.confinement) if child is not None else {}


async def run_audit(backend: str = "subprocess") -> dict[str, Any]:
    """``dynwf audit``: the battery, confined, on this machine."""
    if backend != "subprocess":
        raise ValueError(f"the audit battery runs on the subprocess backend, not {backend!r}")
    return await run_battery(confined=True)
