"""Raw Linux confinement primitives through ctypes: Landlock, seccomp BPF, capabilities,
namespaces, close_range.

Why ctypes and a hand-written BPF program rather than libseccomp or pyseccomp: the zygote
builds each program once and a child only calls ``prctl`` (about 0.2 ms instead of 7-17 ms),
and nothing outside the standard library is needed. Only x86_64 has a syscall table here;
elsewhere ``seccomp_supported()`` is false and the probe reports it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from collections.abc import Iterable, Sequence

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_THREAD = 0x00010000
NS_FLAGS = (
    CLONE_NEWNS
    | CLONE_NEWCGROUP
    | CLONE_NEWUTS
    | CLONE_NEWIPC
    | CLONE_NEWUSER
    | CLONE_NEWPID
    | CLONE_NEWNET
)

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
M_ARENA_MAX = -8


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def prctl(option: int, arg2: int = 0, arg3: int = 0, what: str = "prctl") -> int:
    return _check(_libc.prctl(option, arg2, arg3, 0, 0), what)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1, what="prctl(NO_NEW_PRIVS)")


def single_malloc_arena() -> None:
    """Threads would each reserve a 64 MiB malloc arena, eating an RLIMIT_AS budget."""
    _libc.mallopt(M_ARENA_MAX, 1)


def close_range(first: int) -> None:
    """Close every fd >= ``first`` (close_range(2), syscall 436 on every architecture)."""
    if _libc.syscall(436, ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF), ctypes.c_uint(0)) != 0:
        os.closerange(first, 1 << 20)


# ---------------------------------------------------------------- capabilities
class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def cap_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def drop_bounding_set(last_cap: int) -> None:
    """Empty the bounding set (once, in the zygote: it only limits what an execve could
    gain, so the zygote keeps its own effective capabilities and children inherit the
    empty set for free)."""
    for cap in range(last_cap + 1):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
            _check(-1, "prctl(CAPBSET_DROP)")


def drop_capabilities() -> None:
    """Empty the ambient, effective, permitted and inheritable sets: uid 0 inside an
    isolate is then an ordinary owner of root's files and nothing more."""
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(_nr("capset"), ctypes.byref(header), ctypes.byref(data)), "capset")


def effective_capabilities() -> int:
    """This process's effective capability set (capget), as one bit mask."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(125, ctypes.byref(header), ctypes.byref(data)), "capget")
    return int(data[0].effective) | int(data[1].effective) << 32


# ---------------------------------------------------------------- Landlock
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REFER = 1 << 13
FS_TRUNCATE = 1 << 14
FS_IOCTL_DEV = 1 << 15
NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX = 1 << 0
SCOPE_SIGNAL = 1 << 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is absent or disabled."""
    ret = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, _LANDLOCK_CREATE_RULESET_VERSION)
    return int(ret) if ret > 0 else 0


def _fs_handled(abi: int) -> int:
    mask = (1 << 13) - 1
    if abi >= 2:
        mask |= FS_REFER
    if abi >= 3:
        mask |= FS_TRUNCATE
    if abi >= 5:
        mask |= FS_IOCTL_DEV
    return mask


def landlock_ruleset(abi: int, read_only: Iterable[str]) -> int:
    """Build (once, in the zygote) a ruleset fd that denies every handled access except
    reading (never executing) beneath ``read_only``; TCP bind/connect (ABI >= 4) are denied,
    signals and abstract unix sockets (ABI >= 6) are scoped to the isolate itself."""
    attr = _RulesetAttr(_fs_handled(abi), 0, 0)
    size = 8
    if abi >= 4:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
        size = 16
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL
        size = 24
    fd = _check(
        _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), size, 0),
        "landlock_create_ruleset",
    )
    try:
        for path in read_only:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                access = FS_READ_FILE if not os.path.isdir(path) else FS_READ_FILE | FS_READ_DIR
                rule = _PathBeneath(access, pfd)
                _check(
                    _libc.syscall(
                        _SYS_LANDLOCK_ADD_RULE,
                        fd,
                        _LANDLOCK_RULE_PATH_BENEATH,
                        ctypes.byref(rule),
                        0,
                    ),
                    f"landlock_add_rule({path})",
                )
            finally:
                os.close(pfd)
    except BaseException:
        os.close(fd)
        raise
    os.set_inheritable(fd, False)
    return int(fd)


def landlock_restrict_self(ruleset_fd: int) -> None:
    _check(_libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset_fd, 0), "landlock_restrict_self")


# ---------------------------------------------------------------- seccomp
_AUDIT_ARCH_X86_64 = 0xC000003E
_X86_64: dict[str, int] = {
    "socket": 41,
    "socketpair": 53,
    "connect": 42,
    "accept": 43,
    "bind": 49,
    "listen": 50,
    "accept4": 288,
    "fork": 57,
    "vfork": 58,
    "clone": 56,
    "clone3": 435,
    "execve": 59,
    "execveat": 322,
    "ptrace": 101,
    "mount": 165,
    "umount2": 166,
    "unshare": 272,
    "setns": 308,
    "bpf": 321,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "perf_event_open": 298,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "pivot_root": 155,
    "chroot": 161,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "userfaultfd": 323,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "open_by_handle_at": 304,
    "name_to_handle_at": 303,
    "kcmp": 312,
    "personality": 135,
    "acct": 163,
    "settimeofday": 164,
    "clock_settime": 227,
    "clock_adjtime": 305,
    "adjtimex": 159,
    "quotactl": 179,
    "quotactl_fd": 443,
    "syslog": 103,
    "vhangup": 153,
    "mknod": 133,
    "mknodat": 259,
    "fanotify_init": 300,
    "pidfd_getfd": 438,
    "mount_setattr": 442,
    "move_mount": 429,
    "open_tree": 428,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "lookup_dcookie": 212,
    "iopl": 172,
    "ioperm": 173,
    "modify_ldt": 154,
    "uselib": 134,
    "sethostname": 170,
    "setdomainname": 171,
    "sched_setscheduler": 144,
    "sched_setattr": 314,
    "sched_setparam": 142,
    "setpriority": 141,
    "mlock": 149,
    "mlock2": 325,
    "mlockall": 151,
    "move_pages": 279,
    "migrate_pages": 256,
    "ioprio_set": 251,
    "shmget": 29,
    "shmat": 30,
    "shmctl": 31,
    "semget": 64,
    "semop": 65,
    "semctl": 66,
    "semtimedop": 220,
    "msgget": 68,
    "msgsnd": 69,
    "msgrcv": 70,
    "msgctl": 71,
    "mq_open": 240,
    "memfd_secret": 447,
    "capset": 126,
}

DENIED_SYSCALLS: tuple[str, ...] = (
    # network: a new socket of any family; an isolate only has its inherited channel
    "connect",
    "accept",
    "accept4",
    "bind",
    "listen",
    # reaching other processes, the kernel, the machine
    "execve",
    "execveat",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "mount",
    "umount2",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "perf_event_open",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "userfaultfd",
    "swapon",
    "swapoff",
    "reboot",
    "open_by_handle_at",
    "name_to_handle_at",
    "personality",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "quotactl",
    "quotactl_fd",
    "syslog",
    "vhangup",
    "mknod",
    "mknodat",
    "fanotify_init",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "modify_ldt",
    "uselib",
    "sethostname",
    "setdomainname",
    "memfd_secret",
    "capset",
    # starving the other tenants of the 2 shared cores or of memory
    "sched_setscheduler",
    "sched_setattr",
    "sched_setparam",
    "setpriority",
    "ioprio_set",
    "mlock",
    "mlock2",
    "mlockall",
    "move_pages",
    "migrate_pages",
    # System V IPC: a channel between isolates that no file rule covers
    "shmget",
    "shmat",
    "shmctl",
    "semget",
    "semop",
    "semctl",
    "semtimedop",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "mq_open",
)

_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_JSET_K = 0x45
_BPF_RET_K = 0x06
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
_AF_UNIX = 1

Insn = tuple[int, int, int, int]


def seccomp_supported() -> bool:
    return platform.machine() == "x86_64"


def _nr(name: str) -> int:
    return _X86_64[name]


def seccomp_program(*, deny_processes: bool) -> list[Insn]:
    """A classic BPF seccomp program (code, jt, jf, k), default allow:

    - another architecture or the x32 ABI: kill the process;
    - ``socket()``: EPERM for every family (the isolate keeps only its inherited channel;
      an AF_UNIX ``socket()`` could still reach a host socket by path, which Landlock ABI 7
      does not govern); ``socketpair(AF_UNIX)`` stays allowed (asyncio's self-pipe);
    - with ``deny_processes``: ``fork``/``vfork`` and any ``clone`` that is not a thread or
      that asks for a namespace get EPERM; ``clone3`` gets ENOSYS so glibc falls back to
      ``clone`` (its flags live behind a pointer a filter cannot read);
    - every name in :data:`DENIED_SYSCALLS`: EPERM.
    """
    eperm = _RET_ERRNO | errno.EPERM
    prog: list[Insn] = [
        (_BPF_LD_W_ABS, 0, 0, 4),
        (_BPF_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64),
        (_BPF_RET_K, 0, 0, _RET_KILL_PROCESS),
        (_BPF_LD_W_ABS, 0, 0, 0),
        (_BPF_JGE_K, 0, 1, 0x40000000),
        (_BPF_RET_K, 0, 0, _RET_KILL_PROCESS),
        (_BPF_JEQ_K, 0, 1, _nr("socket")),
        (_BPF_RET_K, 0, 0, eperm),
        (_BPF_JEQ_K, 0, 4, _nr("socketpair")),
        (_BPF_LD_W_ABS, 0, 0, 16),
        (_BPF_JEQ_K, 0, 1, _AF_UNIX),
        (_BPF_RET_K, 0, 0, _RET_ALLOW),
        (_BPF_RET_K, 0, 0, eperm),
    ]
    if deny_processes:
        prog += [
            (_BPF_JEQ_K, 0, 1, _nr("clone3")),
            (_BPF_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS),
            (_BPF_JEQ_K, 0, 5, _nr("clone")),
            (_BPF_LD_W_ABS, 0, 0, 16),
            (_BPF_JSET_K, 0, 2, CLONE_THREAD),
            (_BPF_JSET_K, 1, 0, NS_FLAGS),
            (_BPF_RET_K, 0, 0, _RET_ALLOW),
            (_BPF_RET_K, 0, 0, eperm),
        ]
        denied: Sequence[str] = ("fork", "vfork", *DENIED_SYSCALLS)
    else:
        denied = DENIED_SYSCALLS
    numbers = [_nr(name) for name in denied]
    for i, nr in enumerate(numbers):
        prog.append((_BPF_JEQ_K, len(numbers) - i, 0, nr))
    prog.append((_BPF_RET_K, 0, 0, _RET_ALLOW))
    prog.append((_BPF_RET_K, 0, 0, eperm))
    return prog


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


class SeccompFilter:
    """A BPF program laid out in memory once (in the zygote); ``install`` is one prctl."""

    def __init__(self, program: Sequence[Insn]) -> None:
        self.length = len(program)
        self._array = (_SockFilter * len(program))(*(_SockFilter(*insn) for insn in program))
        self._fprog = _SockFprog(len(program), self._array)

    def install(self) -> None:
        _check(
            _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(self._fprog), 0, 0),
            "prctl(PR_SET_SECCOMP)",
        )
