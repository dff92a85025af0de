"""The engine through its public API on PostgreSQL, for what the behaviour suite does not
cover there: 200 instances at once, scoped bindings with hidden envelopes, fsync durability,
two engines in turn on one database, and a kill -9 of the engine's process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dynamic_workflows.runtime import ManualClock, WorkflowContext, Workflows
from dynamic_workflows.runtime._postgres import PostgresStore
from dynamic_workflows.sdk import (
    InstanceNotFoundError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from integration.test_concurrency import HOUR, Mixed, drive_mixed

T0 = 1_700_000_000.0


async def test_200_instances_in_flight(pg_url: str) -> None:
    """tests/integration/test_concurrency.py's scenario on PostgreSQL, with group commit."""
    clock = ManualClock(T0)
    engine = Workflows(pg_url, clock=clock, durability="os", hibernate_after=60)
    engine.register("MIXED", Mixed)
    async with engine:
        store = engine.store
        assert isinstance(store, PostgresStore)
        await drive_mixed(engine, clock)
        assert store.commits < store.writes  # transitions of many instances shared commits


class Tells(WorkflowEntrypoint):
    """Returns what it was told through its context (the hidden envelope and scope)."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        ctx: WorkflowContext = self.ctx
        seen = await step.do("see", lambda: {"scope": ctx.scope, "envelope": ctx.envelope})
        return {"params": event.payload, "seen": seen}


async def test_scoped_bindings_keep_envelopes_hidden_and_tenants_apart(pg_url: str) -> None:
    envelope = {"tenant": "acme", "version": "v3", "key order": {"z": 1, "a": 2}}
    engine = Workflows(pg_url, clock=ManualClock(T0), durability="os")
    engine.register("WF", Tells)
    async with engine:
        acme = engine.binding("WF").scoped("t:acme", envelope)
        other = engine.binding("WF").scoped("t:other", {"tenant": "other"})
        a = await acme.create(id="same", params={"n": 1})
        b = await other.create(id="same", params={"n": 2})  # ids are per scope
        st = await a.wait_for_status("complete", "errored")
        assert st.output == {"params": {"n": 1}, "seen": {"scope": "t:acme", "envelope": envelope}}
        assert st.scope == "t:acme"
        assert "acme" not in json.dumps([st.output["params"], st.steps[0]["name"]])
        assert (await b.wait_for_status("complete")).output["seen"]["envelope"] == {
            "tenant": "other"
        }
        with pytest.raises(InstanceNotFoundError):
            await engine.binding("WF").scoped("t:nobody").get("same")
        with pytest.raises(InstanceNotFoundError):
            await engine.binding("WF").get("same")  # the plain binding is scope ""
        assert (await acme.get("same")).uid == a.uid
        admin = await engine.instance(a.uid)
        assert await admin.envelope() == envelope
        assert list((await admin.envelope())["key order"]) == ["z", "a"]
        assert await engine.count_instances(scope="t:acme") == 1
    with psycopg.connect(pg_url) as conn:  # stored beside the instance, never in params
        found = conn.execute(
            "SELECT params, envelope FROM instances WHERE uid = %s", (a.uid,)
        ).fetchone()
    assert found is not None
    params, stored = found
    assert json.loads(params) == {"n": 1}
    assert json.loads(stored) == envelope


class Chain(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        total = 0
        for i in range(20):
            total += await step.do(f"s{i}", lambda i=i: i)
        await step.sleep("nap", "1 hour")
        return total + await step.do("after", lambda: 1000)


async def test_fsync_durability_and_a_second_engine_resumes_on_the_same_database(
    pg_url: str,
) -> None:
    clock = ManualClock(T0)
    first = Workflows(pg_url, clock=clock, durability="fsync")
    first.register("C", Chain)
    async with first:
        inst = await first.binding("C").create(id="c")
        await inst.wait_for_status("waiting")
    second = Workflows(pg_url, clock=clock, durability="fsync", hibernate_after=1)
    second.register("C", Chain)
    async with second:
        inst = await second.binding("C").get("c")
        clock.advance(HOUR)
        st = await inst.wait_for_status("complete", "errored")
        assert st.output == sum(range(20)) + 1000
        kinds = [r["kind"] for r in await second.history(inst.uid)]
    assert kinds.count("step_succeeded") == 21  # nothing ran twice
    assert kinds[0] == "queued" and kinds[-1] == "complete"


CHILD = textwrap.dedent(
    """
    import asyncio, sys

    from dynamic_workflows.runtime import Workflows
    from dynamic_workflows.sdk import WorkflowEntrypoint

    URL, CALLS, PHASE = sys.argv[1], sys.argv[2], sys.argv[3]


    def say(line):
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()


    class Crashy(WorkflowEntrypoint):
        async def run(self, event, step):
            def make(name):
                async def callback(ctx):
                    with open(CALLS, "a") as f:
                        f.write(f"{name} attempt={ctx.attempt} phase={PHASE}\\n")
                    say(f"BEGIN {name}")
                    if name == "s1" and PHASE == "1":
                        await asyncio.Event().wait()  # killed here
                    return f"{name}:{event.payload['x']}"
                return callback

            return [
                await step.do(name, make(name), retries={"limit": 3, "delay": 0})
                for name in ("s0", "s1", "s2")
            ]


    async def main():
        engine = Workflows(URL, durability="fsync")
        engine.register("W", Crashy)
        async with engine:
            wf = engine.binding("W")
            inst = await (wf.create(id="k", params={"x": 7}) if PHASE == "1" else wf.get("k"))
            st = await inst.wait_for_status("complete", "errored", "terminated")
            say("OUTPUT " + repr((st.status, st.output)))


    asyncio.run(main())
    """
)


def _read_until(proc: subprocess.Popen[str], wanted: str) -> str:
    assert proc.stdout is not None
    seen: list[str] = []
    while True:
        line = proc.stdout.readline()
        assert line, f"child ended before {wanted!r}; saw {seen}"
        seen.append(line)
        if line.startswith(wanted):
            return line


def _wait_for_row(url: str, key: str) -> None:
    deadline = time.monotonic() + 20  # hang guard only
    with psycopg.connect(url, autocommit=True) as conn:
        while not conn.execute("SELECT 1 FROM steps WHERE key = %s", (key,)).fetchone():
            assert time.monotonic() < deadline, f"step {key} never recorded"
            time.sleep(0.01)


@pytest.mark.chaos
def test_kill_9_during_a_step_loses_no_completed_step(pg_url: str, tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    calls = tmp_path / "calls.txt"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")

    def start(phase: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(script), pg_url, str(calls), phase],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    proc = start("1")
    try:
        _read_until(proc, "BEGIN s1")
        # The attempt's start is committed without the callback waiting for it (the store
        # applies it before anything later): wait until it is durable, then kill.
        _wait_for_row(pg_url, "s1-1")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    with psycopg.connect(pg_url) as conn:
        states: dict[str, str] = dict(conn.execute("SELECT key, state FROM steps").fetchall())
    assert states == {"s0-1": "complete", "s1-1": "running"}
    proc = start("2")
    with proc:
        line = _read_until(proc, "OUTPUT ")
        assert proc.wait() == 0
    assert line.strip() == "OUTPUT ('complete', ['s0:7', 's1:7', 's2:7'])"
    assert calls.read_text().splitlines() == [
        "s0 attempt=1 phase=1",
        "s1 attempt=1 phase=1",  # lost to the kill: a failed attempt (S8), retried
        "s1 attempt=2 phase=2",
        "s2 attempt=1 phase=2",
    ]
