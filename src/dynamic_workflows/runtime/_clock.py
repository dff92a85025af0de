"""Clocks: every durable time in the engine (sleeps, retries, deadlines) goes through one.

Timers are callbacks at an absolute time rather than ``await sleep(d)``, so that a
:class:`ManualClock` can fire them deterministically from ``advance()`` and so that a timer
whose time has already passed when it is registered fires at once (a test may advance the
clock before the engine gets round to registering the timer).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Wall time in epoch seconds, and callbacks at an absolute time on the running loop."""

    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle: ...


class SystemClock:
    """The real clock: ``time.time()`` and the event loop's timers."""

    def now(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, when - time.time()), callback)


class _ManualTimer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told: ``advance(3600)`` fires every timer due by then,
    in time order, so tests of hour-long sleeps take no time and no luck."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        timer = _ManualTimer(callback)
        if when <= self._now:
            asyncio.get_running_loop().call_soon(self._fire, timer)
        else:
            heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward and run the callbacks of every timer now due."""
        if seconds < 0:
            raise ValueError("a ManualClock only moves forward")
        self._now += seconds
        while self._timers and self._timers[0][0] <= self._now:
            _, _, timer = heapq.heappop(self._timers)
            self._fire(timer)

    def pending(self) -> int:
        """Timers registered and not yet fired or cancelled (for tests)."""
        return sum(1 for _, _, t in self._timers if not t.cancelled)

    @staticmethod
    def _fire(timer: _ManualTimer) -> None:
        if not timer.cancelled:
            timer.cancelled = True
            timer.callback()
