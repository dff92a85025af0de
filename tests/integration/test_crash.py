"""kill -9 of the engine's process, once during a step and once during a sleep (S8, S19).

Each phase is a real ``python`` child running the engine on one SQLite file. The child
prints a line for every committed log record and every callback start, so the test kills it
at a known point (handshake, never sleep-then-assert). Callbacks append to a file: after the
last phase, no step that had completed before a kill ran its callback again, and the output
is right.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.chaos

CHILD = textwrap.dedent(
    """
    import asyncio, json, os, sys

    from dynamic_workflows.runtime import Workflows
    from dynamic_workflows.sdk import WorkflowEntrypoint

    DB, CALLS, PHASE = sys.argv[1], sys.argv[2], sys.argv[3]


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

            out = []
            for name in ("s0", "s1", "s2"):
                out.append(await step.do(name, make(name), retries={"limit": 3, "delay": 0}))
            await step.sleep("nap", "2 seconds")
            out.append(await step.do("s3", make("s3"), retries={"limit": 3, "delay": 0}))
            return out


    async def main():
        engine = Workflows(f"sqlite:///{DB}", durability="os")
        engine.register("W", Crashy)
        async with engine:
            async def tail():
                async for record in engine.watch():
                    say(f"LOG {record['kind']} {record['step']}")

            watcher = asyncio.ensure_future(tail())
            wf = engine.binding("W")
            if PHASE == "1":
                inst = await wf.create(id="crash-1", params={"x": 7})
            else:
                inst = await wf.get("crash-1")
            say("READY")
            st = await inst.wait_for_status("complete", "errored", "terminated")
            result = {"status": st.status, "output": st.output, "error": st.error}
            say("OUTPUT " + json.dumps(result))
            watcher.cancel()


    asyncio.run(main())
    """
)


def _start(script: Path, db: Path, calls: Path, phase: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, str(script), str(db), str(calls), phase],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _read_until(proc: subprocess.Popen[str], wanted: str) -> list[str]:
    """Lines up to and including the first that starts with ``wanted`` (the child's EOF
    before it fails the test; pytest's timeout is the hang guard)."""
    assert proc.stdout is not None
    seen: list[str] = []
    while True:
        line = proc.stdout.readline()
        assert line, f"child ended before {wanted!r}; saw {seen}"
        seen.append(line.rstrip("\n"))
        if line.startswith(wanted):
            return seen


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def _step_state(db: Path, key: str) -> str | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT state FROM steps WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def test_kill_during_step_and_during_sleep(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    db = tmp_path / "state" / "crash.db"
    calls = tmp_path / "calls.txt"
    children: list[subprocess.Popen[str]] = []
    try:
        _phases(script, db, calls, children)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()


def _phases(script: Path, db: Path, calls: Path, children: list[subprocess.Popen[str]]) -> None:
    # Phase 1: killed while s1's callback runs (s0 completed and is durable).
    proc = _start(script, db, calls, "1")
    children.append(proc)
    _read_until(proc, "BEGIN s1")
    _kill(proc)
    assert _step_state(db, "s0-1") == "complete"
    assert _step_state(db, "s1-1") == "running"

    # Phase 2: a fresh engine replays: s0 cached, s1's lost attempt retried, killed mid-sleep.
    proc = _start(script, db, calls, "2")
    children.append(proc)
    _read_until(proc, "LOG sleep_started nap-1")
    _kill(proc)
    assert _step_state(db, "nap-1") == "waiting"
    assert _step_state(db, "s2-1") == "complete"

    # Phase 3: a fresh engine finishes the instance after the rest of the sleep.
    proc = _start(script, db, calls, "3")
    children.append(proc)
    with proc:
        lines = _read_until(proc, "OUTPUT ")
        assert proc.wait() == 0
    result = json.loads(lines[-1].removeprefix("OUTPUT "))
    assert result == {
        "status": "complete",
        "output": ["s0:7", "s1:7", "s2:7", "s3:7"],
        "error": None,
    }

    ran = calls.read_text().splitlines()
    assert ran == [
        "s0 attempt=1 phase=1",
        "s1 attempt=1 phase=1",  # lost to the kill: counted as a failed attempt (S8)
        "s1 attempt=2 phase=2",
        "s2 attempt=1 phase=2",
        "s3 attempt=1 phase=3",
    ]
    with sqlite3.connect(db) as conn:
        kinds = [
            r[0] for r in conn.execute("SELECT kind FROM log WHERE step = 's1-1' ORDER BY seq")
        ]
        error = conn.execute(
            "SELECT data FROM log WHERE step = 's1-1' AND kind = 'attempt_failed'"
        ).fetchone()
    assert kinds == [
        "step_started",
        "attempt_started",
        "attempt_failed",
        "attempt_started",
        "step_succeeded",
    ]
    assert json.loads(error[0])["error"] == {
        "name": "WorkflowInternalError",
        "message": "Attempt failed due to internal workflows error",
    }
