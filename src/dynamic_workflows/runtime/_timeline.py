"""``status().steps``: the step timeline, folded from the instance's append-only log.

Building it from the log (rather than from the step table) keeps one source for the status
timeline, the dashboard and ``watch()``: whatever the log says happened is what is shown.
A ``restarted`` line starts a new timeline (S33).
"""

from __future__ import annotations

from typing import Any

from ..sdk import decode_value

REDACTED = "[REDACTED]"


def _entry(data: dict[str, Any], kind: str, ts: float) -> dict[str, Any]:
    return {
        "name": data.get("name", ""),
        "count": data.get("count", 0),
        "kind": kind,
        "state": "running",
        "attempts": 0,
        "start": ts,
        "end": None,
        "output": None,
        "error": None,
    }


def _output(value: Any) -> Any:
    return value if value == REDACTED else decode_value(value)


def timeline(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    steps: dict[str, dict[str, Any]] = {}
    for record in records:
        kind = record["kind"]
        key = record.get("step")
        data = record.get("data") or {}
        ts = record["ts"]
        if kind == "restarted":
            steps = {}
            continue
        if key is None:
            continue
        if kind == "step_started":
            steps[key] = _entry(data, "do", ts)
            continue
        if kind == "sleep_started":
            steps[key] = _entry(data, "sleep", ts)
            steps[key]["state"] = "waiting"
            continue
        if kind == "wait_started":
            steps[key] = _entry(data, "event", ts)
            steps[key]["state"] = "waiting"
            continue
        step = steps.get(key)
        if step is None:
            continue
        if kind == "attempt_started":
            step["attempts"] = data.get("attempt", step["attempts"] + 1)
            step["state"] = "running"
            step["error"] = None
        elif kind == "attempt_failed":
            step["error"] = data.get("error")
            step["state"] = "waiting" if data.get("retry_at") is not None else "running"
        elif kind in ("step_succeeded", "event_received"):
            step["state"] = "complete"
            step["end"] = ts
            step["output"] = _output(data.get("output"))
            step["error"] = None
        elif kind == "sleep_ended":
            step["state"] = "complete"
            step["end"] = ts
        elif kind in ("step_failed", "wait_timed_out"):
            step["state"] = "errored"
            step["end"] = ts
            step["error"] = data.get("error")
    return list(steps.values())
