"""A deterministic stand-in for a language model: turns a goal into a plan of tool calls.

A real tenant would call a model here (from inside a step, so the plan is recorded once and
replayed, never re-planned after a restart).
"""

from __future__ import annotations

import re
from typing import Any

TOOLS = ("search", "read", "calculate", "summarize")


def plan(goal: str, max_steps: int = 6) -> list[dict[str, Any]]:
    words = [w for w in re.findall(r"[a-zA-Z0-9]+", goal.lower()) if len(w) > 2]
    steps: list[dict[str, Any]] = [{"tool": "search", "input": " ".join(words[:4]) or goal}]
    for word in words[: max(0, max_steps - 3)]:
        steps.append({"tool": "read", "input": word})
    numbers = [int(n) for n in re.findall(r"\d+", goal)]
    if numbers:
        steps.append({"tool": "calculate", "input": numbers})
    steps.append({"tool": "summarize", "input": goal})
    return steps[:max_steps]


def run_tool(tool: str, arg: Any, notes: list[str]) -> Any:
    if tool == "search":
        return [f"https://docs.example/{w}" for w in str(arg).split()[:3]]
    if tool == "read":
        return f"{arg}: {len(str(arg)) * 7} words of notes"
    if tool == "calculate":
        return {"sum": sum(arg), "max": max(arg)}
    if tool == "summarize":
        return f"{arg!s} - based on {len(notes)} findings"
    raise ValueError(f"unknown tool {tool!r}")
