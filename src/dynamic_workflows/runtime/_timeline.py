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


class Timeline:
    """An incrementally folded timeline: ``status()`` reads only the records after ``seq``."""

    def __init__(self) -> None:
        self.seq = 0
        self._steps: dict[str, dict[str, Any]] = {}

    def fold(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self._apply(record)
            self.seq = max(self.seq, int(record.get("seq") or 0))

    def steps(self) -> list[dict[str, Any]]:
        return [dict(step) for step in self._steps.values()]

    def _apply(self, record: dict[str, Any]) -> None:
        kind = record["kind"]
        key = record.get("step")
        data = record.get("data") or {}
        ts = record["ts"]
        steps = self._steps
        if kind == "restarted":
            steps.clear()
            return
        if key is None:
            return
        if kind == "step_started":
            steps[key] = _entry(data, "do", ts)
            return
        if kind == "sleep_started":
            steps[key] = _entry(data, "sleep", ts)
            steps[key]["state"] = "waiting"
            return
        if kind == "wait_started":
            steps[key] = _entry(data, "event", ts)
            steps[key]["state"] = "waiting"
            return
        step = steps.get(key)
        if step is None:
            return
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


def timeline(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold a whole log (see :class:`Timeline` for the incremental form)."""
    folded = Timeline()
    folded.fold(records)
    return folded.steps()
