"""Every hostile tenant in a real, fully confined isolate: each attack is blocked with the
expected error, nothing reaches the host's targets, and another tenant is served between
attacks. The same battery with every mechanism disabled shows each attack is real."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from dynamic_workflows.sandbox import _audit

pytestmark = pytest.mark.timeout(900)  # a hang guard: each module fixture runs a battery

ATTACKS = {a.name: a for a in _audit.ATTACKS}
CHANNEL = {a.name: a for a in _audit.CHANNEL_ATTACKS}


def _by_attack(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["attack"]: row for row in report["results"]}


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real SQLite database standing in for the dispatcher's store."""
    import sqlite3

    path = tmp_path_factory.mktemp("store") / "state.db"
    with sqlite3.connect(path) as db:
        db.execute("create table secrets (v text)")
        db.execute("insert into secrets values ('host only')")
    db.close()
    return path


@pytest.fixture(scope="module")
def confined(store_file: Path) -> dict[str, Any]:
    """The product path: RPC's ChannelIsolate over the guest runtime, channel attacks too."""
    return asyncio.run(_audit.run_battery(confined=True, store_path=store_file))


@pytest.fixture(scope="module")
def confined_plain(store_file: Path) -> dict[str, Any]:
    """The bare isolate with the minimal plain guest: confinement owes nothing to RPC."""
    return asyncio.run(_audit.run_battery(confined=True, store_path=store_file, guest="plain"))


@pytest.fixture(scope="module")
def unconfined(store_file: Path) -> dict[str, Any]:
    return asyncio.run(_audit.run_battery(confined=False, store_path=store_file))


def test_every_tenant_has_a_row() -> None:
    tenants = {p.name for p in _audit.default_tenants_dir().iterdir() if p.is_dir()}
    assert tenants - {"echo", "__pycache__"} == set(ATTACKS) | set(CHANNEL)


def _assert_blocked(row: dict[str, Any]) -> None:
    assert not row["escaped"], row
    assert row["as_expected"], row
    assert row["evidence"] == [], row
    assert row["other_tenant_ok"], "the other tenant stopped being served"


@pytest.mark.parametrize("name", sorted(ATTACKS) + sorted(CHANNEL))
def test_attack_blocked_when_confined(confined: dict[str, Any], name: str) -> None:
    _assert_blocked(_by_attack(confined)[name])


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_blocked_with_the_plain_guest(confined_plain: dict[str, Any], name: str) -> None:
    _assert_blocked(_by_attack(confined_plain)[name])


def test_the_pickle_would_act_if_loaded(tmp_path: Path) -> None:
    """Precondition of channel_pickle: unpickling its payload really creates the marker
    file (here, in the test). The battery's evidence check looks for that file."""
    import pickle
    import runpy

    module = runpy.run_path(str(_audit.default_tenants_dir() / "channel_pickle" / "index.py"))
    marker = tmp_path / "host-unpickled-me"
    pickle.loads(pickle.dumps(module["_Payload"](str(marker)))).close()
    assert marker.exists()


@pytest.mark.parametrize("name", sorted(n for n, a in ATTACKS.items() if not a.sanity))
def test_attack_works_when_unconfined(unconfined: dict[str, Any], name: str) -> None:
    """The precondition: without confinement the same tenant gets through."""
    row = _by_attack(unconfined)[name]
    assert row["escaped"], row


def test_host_side_evidence_is_real(unconfined: dict[str, Any]) -> None:
    """The host's own targets saw the unconfined attacks (not only the tenant's word)."""
    rows = _by_attack(unconfined)
    assert rows["dispatcher_tcp"]["evidence"] == ["dispatcher TCP accepted a connection"]
    assert rows["dispatcher_unix"]["evidence"] == ["unix socket accepted a connection"]
    assert rows["dispatcher_abstract"]["evidence"] == ["abstract socket accepted a connection"]
    assert rows["net_udp"]["evidence"] == ["UDP datagram received"]
    assert rows["signal_other_isolate"]["evidence"] == ["the victim process was killed"]
    assert any("written" in e for e in rows["disk_fill"]["evidence"])


def test_confined_report(confined: dict[str, Any]) -> None:
    conf = confined["confinement"]
    assert confined["escapes"] == 0
    assert confined["other_tenant_ok"]
    for mechanism in ("netns", "pidns", "seccomp", "no_new_privs", "caps", "close_fds", "env"):
        assert conf[mechanism] is True, mechanism
    assert conf["landlock_abi"] >= 6
    assert conf["processes"] == "denied"
    assert conf["rlimits"]["as"] == [256 << 20, 256 << 20]


def test_secret_really_is_in_the_host_environment() -> None:
    """Precondition of env_secret: the host process itself does see the variable."""
    with _audit.targets() as target:
        assert os.environ[target.secret_name] == target.secret_value
    assert target.secret_name not in os.environ
