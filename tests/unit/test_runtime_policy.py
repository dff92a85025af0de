"""Pure engine rules: config merge and pinning shape, retry delays, untrusted-input checks."""

from __future__ import annotations

import math

import pytest

from dynamic_workflows.runtime._policy import (
    Limits,
    backoff_delay,
    check_error_dict,
    check_event_type,
    check_instance_id,
    context_config,
    finite_seconds,
    merge_config,
    retry_after,
    size_text,
    valid_count,
    valid_step_name,
)
from dynamic_workflows.sdk import WorkflowError, WorkflowFatalError

LIMITS = Limits()
YEAR = 365 * 86400.0


def test_defaults_and_per_key_merge() -> None:
    assert merge_config("s", {}) == {
        "retries": {"limit": 5, "delay": 10.0, "backoff": "exponential"},
        "timeout": 600.0,
    }
    merged = merge_config("s", {"retries": {"limit": 2}, "timeout": 3, "sensitive": "output"})
    assert merged == {
        "retries": {"limit": 2, "delay": 10.0, "backoff": "exponential"},
        "timeout": 3.0,
        "sensitive": "output",
    }
    assert merge_config("s", {"retries": {"delay": "dynamic", "backoff": "linear"}})["retries"] == {
        "limit": 5,
        "delay": "dynamic",
        "backoff": "linear",
    }


@pytest.mark.parametrize(
    "config",
    [
        None,
        [],
        {"unknown": 1},
        {"retries": []},
        {"retries": {"limit": -1}},
        {"retries": {"limit": True}},
        {"retries": {"limit": 1.5}},
        {"retries": {"limit": 10**9}},
        {"retries": {"delay": -1}},
        {"retries": {"delay": math.nan}},
        {"retries": {"delay": "10 seconds"}},  # the wire carries seconds
        {"retries": {"backoff": "random"}},
        {"retries": {"extra": 1}},
        {"timeout": 0},
        {"timeout": math.inf},
        {"timeout": "1 minute"},
        {"sensitive": "input"},
    ],
)
def test_invalid_wire_configs_are_fatal(config: object) -> None:
    with pytest.raises(WorkflowFatalError, match='Step config for "s" is in an invalid format'):
        merge_config("s", config)


def test_context_config_hides_a_dynamic_delay() -> None:
    pinned = merge_config("s", {"retries": {"delay": "dynamic"}})
    shown = context_config(pinned)
    assert shown["retries"] == {"limit": 5, "backoff": "exponential"}
    assert pinned["retries"]["delay"] == "dynamic"  # the pinned copy is untouched


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        ("constant", [2, 2, 2, 2]),
        ("linear", [2, 4, 6, 8]),
        ("exponential", [2, 4, 8, 16]),
    ],
)
def test_backoff(backoff: str, delays: list[float]) -> None:
    assert [backoff_delay(2.0, backoff, a, YEAR) for a in (1, 2, 3, 4)] == delays


def test_backoff_is_capped_and_never_overflows() -> None:
    assert backoff_delay(10.0, "exponential", 100_000, YEAR) == YEAR
    assert backoff_delay(10.0, "linear", 10**12, YEAR) == YEAR


def test_retry_after() -> None:
    pinned = merge_config("s", {"retries": {"limit": 2, "delay": 1, "backoff": "linear"}})
    assert retry_after(pinned, 1, True, None, YEAR) == 1.0
    assert retry_after(pinned, 2, True, None, YEAR) == 2.0
    assert retry_after(pinned, 3, True, None, YEAR) is None  # limit + 1 attempts in all
    assert retry_after(pinned, 1, False, None, YEAR) is None  # NonRetryableError
    dynamic = merge_config("s", {"retries": {"limit": 3, "delay": "dynamic"}})
    assert retry_after(dynamic, 3, True, 5.0, YEAR) == 20.0  # the reported base, backed off
    assert retry_after(dynamic, 1, True, None, YEAR) == 10.0  # nothing reported: the default


def test_untrusted_error_dicts_are_bounded() -> None:
    assert check_error_dict({"name": "E", "message": "m"}) == {"name": "E", "message": "m"}
    big = check_error_dict({"name": "N" * 10_000, "message": "m" * 10**6})
    assert big is not None
    assert len(big["name"]) == 256
    assert len(big["message"]) == 64 * 1024
    for bad in (None, "x", {"name": 1, "message": "m"}, {"name": "", "message": "m"}, {}):
        assert check_error_dict(bad) is None


def test_names_counts_ids_and_types() -> None:
    assert valid_step_name("", LIMITS)
    assert valid_step_name("ünïcode ✓", LIMITS)
    assert valid_step_name("x" * 256, LIMITS)
    assert not valid_step_name("x" * 257, LIMITS)
    assert not valid_step_name("a\nb", LIMITS)
    assert not valid_step_name(7, LIMITS)
    assert valid_count(1)
    for bad_count in (0, -1, True, 1.0, "1", 10**12):
        assert not valid_count(bad_count)
    assert check_instance_id("order-1_A", LIMITS) == "order-1_A"
    for bad_id in ("", "-x", "a b", "x" * 101, None, 5):
        with pytest.raises(WorkflowError, match="Workflow instance has invalid id"):
            check_instance_id(bad_id, LIMITS)
    with pytest.raises(WorkflowError, match="Event type"):
        check_event_type("no spaces", LIMITS)


def test_seconds_and_sizes() -> None:
    assert finite_seconds(0) == 0.0
    assert finite_seconds(0, positive=True) is None
    for bad in (-1, math.nan, math.inf, True, "1", None):
        assert finite_seconds(bad) is None
    assert size_text(1 << 20) == "1MiB"
    assert size_text(64 * 1024) == "64KiB"
    assert size_text(1000) == "1000 bytes"
