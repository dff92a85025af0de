"""status().steps is folded from the event log; a restart starts a new timeline."""

from __future__ import annotations

from typing import Any

from dynamic_workflows.runtime._timeline import REDACTED, timeline

E = {"name": "E", "message": "x"}


def rec(kind: str, step: str | None = None, ts: float = 0.0, **data: Any) -> dict[str, Any]:
    return {"kind": kind, "step": step, "ts": ts, "data": data}


def test_fold() -> None:
    records = [
        rec("queued"),
        rec("step_started", "a-1", 1.0, name="a", count=1),
        rec("attempt_started", "a-1", 1.0, attempt=1),
        rec(
            "attempt_failed",
            "a-1",
            2.0,
            attempt=1,
            error={"name": "E", "message": "x"},
            retry_at=5.0,
        ),
        rec("attempt_started", "a-1", 5.0, attempt=2),
        rec("step_succeeded", "a-1", 6.0, output={"$bytes": "aGk="}),
        rec("sleep_started", "nap-1", 6.0, name="nap", count=1, until=100.0),
        rec("wait_started", "w-1", 6.0, name="w", count=1, type="t"),
        rec("sleep_ended", "nap-1", 100.0),
        rec("wait_timed_out", "w-1", 200.0, error={"name": "WorkflowTimeoutError", "message": "m"}),
        rec("step_started", "s-1", 201.0, name="s", count=1),
        rec("attempt_started", "s-1", 201.0, attempt=1),
        rec("step_succeeded", "s-1", 202.0, output=REDACTED),
    ]
    a, nap, w, s = timeline(records)
    assert a == {
        "name": "a",
        "count": 1,
        "kind": "do",
        "state": "complete",
        "attempts": 2,
        "start": 1.0,
        "end": 6.0,
        "output": b"hi",
        "error": None,
    }
    assert (nap["kind"], nap["state"], nap["end"]) == ("sleep", "complete", 100.0)
    assert (w["kind"], w["state"], w["error"]["name"]) == (
        "event",
        "errored",
        "WorkflowTimeoutError",
    )
    assert s["output"] == REDACTED


def test_retry_wait_shows_waiting_and_restart_resets() -> None:
    records = [
        rec("step_started", "a-1", 1.0, name="a", count=1),
        rec("attempt_started", "a-1", 1.0, attempt=1),
        rec(
            "attempt_failed",
            "a-1",
            2.0,
            attempt=1,
            error={"name": "E", "message": "x"},
            retry_at=9.0,
        ),
    ]
    (a,) = timeline(records)
    assert (a["state"], a["attempts"], a["error"]) == ("waiting", 1, E)
    assert timeline([*records, rec("restarted", None, 3.0)]) == []
