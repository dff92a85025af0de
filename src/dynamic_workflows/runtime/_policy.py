"""Pure decisions: limits, validation of untrusted requests, step config, retry delays.

No I/O here, so every rule is unit-tested on its own (tests/unit/test_runtime_policy.py).
Everything a step op receives may come from an isolate: each check returns a typed error
instead of trusting shapes, and sizes are bounded before anything is written.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..sdk import WorkflowError, WorkflowFatalError

ID_PATTERN = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9\-_]*$")
MAX_ERROR_NAME = 256
MAX_ERROR_MESSAGE = 64 * 1024
MAX_RETRY_LIMIT = 1_000_000
MAX_COUNT = 10_000_000
DEFAULT_EVENT_TIMEOUT = 24 * 3600.0
DEFAULT_RETRIES: dict[str, Any] = {"limit": 5, "delay": 10.0, "backoff": "exponential"}
DEFAULT_TIMEOUT = 600.0
BACKOFFS = ("constant", "linear", "exponential")


@dataclass(frozen=True)
class Limits:
    """S35, as engine settings."""

    max_payload_bytes: int = 1 << 20
    max_step_name: int = 256
    max_id_length: int = 100
    max_batch: int = 100
    max_sleep_seconds: float = 365 * 86400.0
    step_limit: int = 10_000


def size_text(n: int) -> str:
    """``1MiB`` for the default limit, as S10's message spells it."""
    if n % (1 << 20) == 0:
        return f"{n >> 20}MiB"
    if n % 1024 == 0:
        return f"{n >> 10}KiB"
    return f"{n} bytes"


def valid_id(value: object, limits: Limits) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= limits.max_id_length
        and ID_PATTERN.match(value) is not None
    )


def check_instance_id(value: object, limits: Limits) -> str:
    if not valid_id(value, limits):
        raise WorkflowError("Workflow instance has invalid id")
    assert isinstance(value, str)
    return value


def check_event_type(value: object, limits: Limits) -> str:
    if not valid_id(value, limits):
        raise WorkflowError(
            f"Event type {value!r} is invalid: use 1-{limits.max_id_length} characters "
            "matching ^[a-zA-Z0-9_][a-zA-Z0-9-_]*$"
        )
    assert isinstance(value, str)
    return value


def valid_step_name(name: object, limits: Limits) -> bool:
    return (
        isinstance(name, str)
        and len(name) <= limits.max_step_name
        and not any(ord(c) < 0x20 for c in name)
    )


def invalid_step_name(name: object, limits: Limits) -> WorkflowFatalError:
    shown = name if isinstance(name, str) else repr(name)
    if isinstance(shown, str) and len(shown) > 1024:
        shown = shown[:1024] + "…"
    return WorkflowFatalError(
        f'Step name "{shown}" exceeds max length ({limits.max_step_name} chars) '
        "or invalid characters found"
    )


def valid_count(count: object) -> bool:
    return isinstance(count, int) and not isinstance(count, bool) and 1 <= count <= MAX_COUNT


def finite_seconds(value: object, *, positive: bool = False) -> float | None:
    """A non-negative (or positive) finite number of seconds, or None if not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        return None
    if positive and seconds <= 0:
        return None
    return seconds


def invalid_config(name: str) -> WorkflowFatalError:
    return WorkflowFatalError(f'Step config for "{name}" is in an invalid format')


def merge_config(name: str, config: object) -> dict[str, Any]:
    """S3/S4: check a wire config (keys the author gave) and merge it per key over the
    defaults. ``retries.delay`` is seconds or ``"dynamic"`` (a callable in the step)."""
    if not isinstance(config, dict) or set(config) - {"retries", "timeout", "sensitive"}:
        raise invalid_config(name)
    retries = dict(DEFAULT_RETRIES)
    given = config.get("retries")
    if given is not None:
        if not isinstance(given, dict) or set(given) - {"limit", "delay", "backoff"}:
            raise invalid_config(name)
        if "limit" in given:
            limit = given["limit"]
            if (
                isinstance(limit, bool)
                or not isinstance(limit, int)
                or not 0 <= limit <= MAX_RETRY_LIMIT
            ):
                raise invalid_config(name)
            retries["limit"] = limit
        if "delay" in given:
            delay = given["delay"]
            if delay != "dynamic":
                seconds = finite_seconds(delay)
                if seconds is None:
                    raise invalid_config(name)
                delay = seconds
            retries["delay"] = delay
        if "backoff" in given:
            if given["backoff"] not in BACKOFFS:
                raise invalid_config(name)
            retries["backoff"] = given["backoff"]
    merged: dict[str, Any] = {"retries": retries, "timeout": DEFAULT_TIMEOUT}
    if config.get("timeout") is not None:
        timeout = finite_seconds(config["timeout"], positive=True)
        if timeout is None:
            raise invalid_config(name)
        merged["timeout"] = timeout
    if config.get("sensitive") is not None:
        if config["sensitive"] != "output":
            raise invalid_config(name)
        merged["sensitive"] = "output"
    return merged


def context_config(pinned: dict[str, Any]) -> dict[str, Any]:
    """S18: what ``ctx.config`` shows: the merged config, ``retries.delay`` omitted when it
    is a callable."""
    retries = dict(pinned["retries"])
    if retries.get("delay") == "dynamic":
        del retries["delay"]
    shown = dict(pinned)
    shown["retries"] = retries
    return shown


def backoff_delay(base: float, backoff: str, attempt: int, cap: float) -> float:
    """S13: the wait after attempt ``attempt`` failed; no jitter; never more than ``cap``."""
    if backoff == "constant":
        delay = base
    elif backoff == "linear":
        delay = base * attempt
    else:
        delay = base * 2.0 ** min(attempt - 1, 1023)
    return min(delay, cap)


def retry_after(
    pinned: dict[str, Any], attempt: int, retryable: bool, dynamic: float | None, cap: float
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or None when the step has failed for
    good (S12–S16). ``dynamic`` is the delay the step's callable reported (S14)."""
    retries = pinned["retries"]
    if not retryable or attempt > retries["limit"]:
        return None
    base = retries["delay"]
    if base == "dynamic":
        base = dynamic if dynamic is not None else DEFAULT_RETRIES["delay"]
    return backoff_delay(float(base), retries["backoff"], attempt, cap)


def check_error_dict(value: object) -> dict[str, str] | None:
    """An error reported by a step, bounded: ``{"name", "message"}`` strings, or None."""
    if not isinstance(value, dict):
        return None
    name, message = value.get("name"), value.get("message")
    if not isinstance(name, str) or not isinstance(message, str) or not name:
        return None
    return {"name": name[:MAX_ERROR_NAME], "message": message[:MAX_ERROR_MESSAGE]}


def bounded_error(error: dict[str, str]) -> dict[str, str]:
    return {
        "name": str(error.get("name") or "Error")[:MAX_ERROR_NAME],
        "message": str(error.get("message") or "")[:MAX_ERROR_MESSAGE],
    }
