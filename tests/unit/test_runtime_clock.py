"""ManualClock fires due timers in time order, at once when already due, never when
cancelled; SystemClock timers run on the event loop."""

from __future__ import annotations

import asyncio

import pytest

from dynamic_workflows.runtime import ManualClock, SystemClock


async def test_manual_clock_fires_in_time_order() -> None:
    clock = ManualClock(100.0)
    fired: list[str] = []
    clock.call_at(130.0, lambda: fired.append("c"))
    clock.call_at(110.0, lambda: fired.append("a"))
    clock.call_at(120.0, lambda: fired.append("b"))
    cancelled = clock.call_at(115.0, lambda: fired.append("never"))
    cancelled.cancel()
    assert clock.pending() == 3
    clock.advance(20)
    assert fired == ["a", "b"]
    assert clock.now() == 120.0
    clock.advance(100)
    assert fired == ["a", "b", "c"]
    assert clock.pending() == 0


async def test_a_timer_already_due_fires_on_the_next_loop_turn() -> None:
    clock = ManualClock(100.0)
    done = asyncio.Event()
    clock.call_at(50.0, done.set)
    assert not done.is_set()  # never re-entrantly inside call_at
    await asyncio.wait_for(done.wait(), 5)  # hang guard only


def test_manual_clock_only_moves_forward() -> None:
    with pytest.raises(ValueError):
        ManualClock(0.0).advance(-1)


async def test_system_clock_timer() -> None:
    clock = SystemClock()
    done = asyncio.Event()
    clock.call_at(clock.now() - 1, done.set)
    await asyncio.wait_for(done.wait(), 5)  # hang guard only
