"""The subprocess backend's confinement: the start-up probe and its report, refusing to
spawn without a mechanism unless that is accepted, the order in which the remaining
mechanisms take over when one is missing, limits, exits, the warm pool."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from dynamic_workflows.sandbox import IsolateLimits, _audit
from dynamic_workflows.sandbox._subprocess import (
    MECHANISMS,
    PLAIN_GUEST,
    ConfinementError,
    SubprocessBackend,
    _child,
    _linux,
    classify,
    probe,
)
from dynamic_workflows.sdk import WorkflowInternalError

ATTACKS = {a.name: a for a in _audit.ATTACKS}


@pytest.fixture
async def backend() -> AsyncIterator[SubprocessBackend]:
    async with SubprocessBackend(guest=PLAIN_GUEST, pool_size=1) as b:
        yield b


async def _results(disable: tuple[str, ...], *names: str) -> dict[str, dict[str, Any]]:
    report = await _audit.run_battery(disable=disable, attacks=[ATTACKS[n] for n in names])
    return {row["attack"]: row for row in report["results"]}


# -- the probe and its report --------------------------------------------------------------
async def test_report_matches_an_independent_probe(backend: SubprocessBackend) -> None:
    report = backend.confinement_report()
    assert set(report["mechanisms"]) == set(MECHANISMS)
    assert report["landlock_abi"] == (
        _linux.landlock_abi() if report["mechanisms"]["landlock"] else 0
    )
    # Whatever the host lacks is named with a reason, and spawning would refuse it.
    missing = {m for m, on in report["mechanisms"].items() if not on}
    assert set(report["missing"]) == missing
    assert set(report["refuses"]) == missing
    # Every mechanism the probe child could check took effect there.
    assert all(v is True for v in report["verified"].values()), report["verified"]


async def test_every_mechanism_applies_on_this_machine(backend: SubprocessBackend) -> None:
    """The team machine is root with Landlock ABI 7, seccomp and all namespaces (TEAM.md)."""
    report = backend.confinement_report()
    assert report["missing"] == {}, report["missing"]
    child = await backend.spawn(IsolateLimits(memory_mb=300))
    assert all(child.confinement[m] is True for m in MECHANISMS if m != "rlimits")
    assert child.confinement["rlimits"]["as"] == [300 << 20, 300 << 20]
    assert child.confinement["processes"] == "denied"
    await child.aclose()


async def test_probe_names_what_is_missing() -> None:
    report = await probe(disable={"seccomp"})
    assert report["mechanisms"]["seccomp"] is False
    assert report["missing"]["seccomp"] == "disabled by configuration"
    assert report["refuses"] == ["seccomp"]
    assert report["mechanisms"]["landlock"] is True


# -- refusing, and accepting weaker confinement explicitly ----------------------------------
@pytest.mark.parametrize("mechanism", ["landlock", "seccomp", "pidns"])
async def test_missing_mechanism_refuses_to_spawn(mechanism: str) -> None:
    async with SubprocessBackend(guest=PLAIN_GUEST, pool_size=0, disable={mechanism}) as b:
        assert b.confinement_report()["refuses"] == [mechanism]
        with pytest.raises(ConfinementError, match=mechanism) as caught:
            await b.spawn()
        assert caught.value.missing == (mechanism,)


async def test_missing_mechanism_accepted_explicitly() -> None:
    async with SubprocessBackend(
        guest=PLAIN_GUEST, pool_size=0, disable={"landlock"}, allow_missing={"landlock"}
    ) as b:
        child = await b.spawn()
        assert child.confinement["landlock"] is False
        assert child.confinement["landlock_abi"] == 0
        assert child.confinement["seccomp"] is True
        await child.aclose()


def test_unknown_mechanism_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="landlok"):
        SubprocessBackend(allow_missing={"landlok"})


# -- fallback order: what takes over when a mechanism is missing ----------------------------
async def test_without_seccomp_landlock_and_netns_still_block_the_network() -> None:
    rows = await _results(
        ("seccomp",), "dispatcher_tcp", "net_udp", "exec_shell", "raw_mount", "dispatcher_unix"
    )
    assert rows["dispatcher_tcp"]["result"] == "PermissionError EACCES"  # Landlock TCP rule
    assert rows["net_udp"]["result"] == "OSError ENETUNREACH"  # the empty netns
    assert rows["exec_shell"]["result"] == "PermissionError EACCES"  # Landlock: no execute
    assert rows["raw_mount"]["result"] == "PermissionError EPERM"  # no capabilities
    # Landlock ABI 7 does not govern connecting to a unix socket by path: only seccomp's
    # socket() denial stops it. This is why seccomp is required unless allowed missing.
    assert rows["dispatcher_unix"]["escaped"]


async def test_without_seccomp_and_landlock_the_netns_is_the_last_network_wall() -> None:
    rows = await _results(("seccomp", "landlock"), "dispatcher_tcp", "read_shadow")
    assert rows["dispatcher_tcp"]["result"] == "OSError ENETUNREACH"
    assert rows["read_shadow"]["escaped"]  # files have no second wall: Landlock is required


async def test_without_pidns_landlock_scoping_blocks_signals() -> None:
    rows = await _results(("pidns",), "signal_host", "signal_everyone", "ptrace_host")
    assert rows["signal_host"]["result"] == "PermissionError EPERM"
    assert rows["signal_everyone"]["result"] == "PermissionError EPERM"
    assert rows["ptrace_host"]["result"] == "PermissionError EPERM"
    rows = await _results(("pidns", "landlock"), "signal_host", "signal_everyone")
    assert rows["signal_host"]["escaped"] and rows["signal_everyone"]["escaped"]


async def test_without_rlimits_or_close_fds_their_attacks_get_through() -> None:
    rows = await _results(("rlimits", "close_fds"), "memory_bomb", "inherited_fds")
    assert rows["memory_bomb"]["escaped"]
    assert rows["inherited_fds"]["escaped"]


# -- limits and exits -----------------------------------------------------------------------
def _status_exit(code: int) -> int:
    return code << 8


def test_classify_exit_statuses() -> None:
    assert classify(_status_exit(_child.EXIT_MEMORY), 0.1, killed=None, cpu_soft=1).limit == (
        "memory"
    )
    assert classify(_status_exit(_child.EXIT_CPU), 1.0, killed=None, cpu_soft=1).limit == "cpu"
    assert classify(signal.SIGXCPU, 1.0, killed=None, cpu_soft=1).limit == "cpu"
    assert classify(signal.SIGKILL, 2.0, killed=None, cpu_soft=1).limit == "cpu"
    assert classify(signal.SIGKILL, 0.9, killed=None, cpu_soft=1).limit == "cpu"
    killed = classify(signal.SIGKILL, 0.1, killed=None, cpu_soft=1)
    assert killed.limit is None and killed.detail == "killed by SIGKILL after 0.10 s CPU"
    assert classify(signal.SIGKILL, 0.1, killed="wall", cpu_soft=1).limit == "wall"
    assert classify(_status_exit(0), 0.0, killed=None, cpu_soft=1).detail == "exited with code 0"


async def test_kill_for_wall_time(backend: SubprocessBackend) -> None:
    child = await backend.spawn()
    assert child.alive
    await child.kill("wall")
    with anyio.fail_after(30):
        info = await child.wait_exit()
    assert info.limit == "wall" and info.signal == signal.SIGKILL
    assert not child.alive
    child.sock.close()


async def test_warm_child_gets_the_requested_limits(backend: SubprocessBackend) -> None:
    """A warm child was confined before the request; its rlimits arrive by prlimit."""
    with anyio.fail_after(30):
        await backend.wait_pool()
    child = await backend.spawn(IsolateLimits(memory_mb=200, max_open_files=32))
    assert child.confinement["warm"] is True
    import resource

    assert resource.prlimit(child.pid, resource.RLIMIT_AS) == (200 << 20, 200 << 20)
    assert resource.prlimit(child.pid, resource.RLIMIT_NOFILE) == (32, 32)
    await child.aclose()


async def test_processes_allowed_only_when_asked(backend: SubprocessBackend) -> None:
    child = await backend.spawn(IsolateLimits().with_max_processes(4))
    assert child.confinement["warm"] is False
    assert child.confinement["processes"] == "allowed"
    await child.aclose()


async def test_fresh_fork_skips_the_pool(backend: SubprocessBackend) -> None:
    child = await backend.spawn(warm=False)
    assert child.confinement["warm"] is False
    assert child.cpu_seconds() >= 0.0
    await child.aclose()


async def test_closing_the_backend_ends_its_children() -> None:
    b = SubprocessBackend(guest=PLAIN_GUEST, pool_size=1)
    await b.start()
    child = await b.spawn()
    zygote = b.zygote_pid
    assert zygote is not None
    await b.aclose()
    with anyio.fail_after(30):
        info = await child.wait_exit()
    assert info.signal == signal.SIGKILL
    assert child.sock.fileno() == -1
    with pytest.raises(ProcessLookupError):
        os.kill(zygote, 0)


async def test_a_dead_zygote_is_replaced() -> None:
    """Killing the zygote ends its children (reported as exits) and the next spawn starts
    a new zygote; the host process never notices more than that."""
    async with SubprocessBackend(guest=PLAIN_GUEST, pool_size=1) as b:
        child = await b.spawn()
        first = b.zygote_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        with anyio.fail_after(30):
            info = await child.wait_exit()
        assert info.detail == "the zygote exited"
        child.sock.close()
        with anyio.fail_after(30):
            again = await b.spawn()
        assert b.restarts == 1
        assert b.zygote_pid not in (None, first)
        assert again.alive and again.confinement["seccomp"] is True
        await again.aclose()


async def test_spawn_after_close_is_an_error() -> None:
    b = SubprocessBackend(guest=PLAIN_GUEST, pool_size=0)
    await b.start()
    await b.aclose()
    with pytest.raises(WorkflowInternalError, match="closed"):
        await b.spawn()


async def test_limits_are_checked(backend: SubprocessBackend) -> None:
    with pytest.raises(ValueError, match="memory_mb"):
        IsolateLimits(memory_mb=0)
    with pytest.raises(ValueError, match="max_processes"):
        IsolateLimits(max_processes=-1)
    with pytest.raises(ValueError, match="below what a Python isolate needs"):
        await backend.spawn(IsolateLimits(memory_mb=16))


async def test_the_pool_refills_after_claims() -> None:
    async with SubprocessBackend(guest=PLAIN_GUEST, pool_size=2) as b:
        for _ in range(3):
            with anyio.fail_after(60):
                await b.wait_pool()
            claimed = [await b.spawn(), await b.spawn()]
            assert [c.confinement["warm"] for c in claimed] == [True, True]
            assert b.pool_ready == 0
            for child in claimed:
                await child.aclose()
        with anyio.fail_after(60):
            await b.wait_pool()
        assert b.pool_ready == 2
