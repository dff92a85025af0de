"""Per-call state inside the guest: who is running (for log attribution) and its budgets.

Everything is looked up through context variables, so concurrent runs in one isolate (and,
in the in-process backend, the host's own code on other threads) each see their own.

- Output: ``sys.stdout``/``sys.stderr`` are wrapped once; a write from guest code becomes
  ``log`` frames attributed to the call's instance, capped per call by ``max_log_bytes``;
  any other write goes to the original stream.
- CPU: ``ITIMER_PROF`` ticks every ``TICK`` seconds of process CPU time; the handler charges
  the tick to the budget of whatever code is running and raises
  ``IsolateLimitError("cpu")`` inside it once the budget is spent. A budget is per call, and
  a fresh one per step attempt (set by the step proxy), so a spinning callback fails its own
  step. Signals reach only the main thread, so the in-process backend (a thread) has no CPU
  budget; the host's wall and step-timeout limits still apply there.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TextIO

from ...rpc import Connection
from ...sdk import IsolateLimitError

TICK = 0.02
MAX_LINE = 16 * 1024


@dataclass
class Budget:
    limit: float
    used: float = 0.0


@dataclass
class CallState:
    conn: Connection
    instance_id: str | None
    log_left: int
    dropped: int = 0
    partial: dict[str, str] = field(default_factory=dict)

    def write(self, stream: str, text: str) -> None:
        buffered = self.partial.get(stream, "") + text
        *lines, rest = buffered.split("\n")
        self.partial[stream] = rest[-MAX_LINE:]
        for line in lines:
            self.emit(stream, line)

    def emit(self, stream: str, line: str) -> None:
        line = line[:MAX_LINE]
        size = len(line.encode("utf-8", errors="replace")) + 1
        if size > self.log_left:
            self.dropped += size
            return
        self.log_left -= size
        self.conn.send_log(stream, line, self.instance_id, time.time())

    def finish(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self.emit(stream, rest)
        self.partial.clear()
        if self.dropped:
            note = f"[{self.dropped} bytes of output dropped: over max_log_bytes]"
            self.dropped = 0
            self.conn.send_log("stderr", note, self.instance_id, time.time())


current_call: contextvars.ContextVar[CallState | None] = contextvars.ContextVar(
    "dynwf_guest_call", default=None
)
current_budget: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "dynwf_guest_budget", default=None
)


@contextlib.contextmanager
def calling(state: CallState, budget: Budget | None) -> Iterator[None]:
    _wrap_streams()  # again: someone (a test runner, in-process) may have swapped them
    call_token = current_call.set(state)
    budget_token = current_budget.set(budget)
    try:
        yield
    finally:
        current_budget.reset(budget_token)
        current_call.reset(call_token)
        state.finish()


class _RoutedStream:
    """Stands in for ``sys.stdout``/``sys.stderr``: guest writes become log frames."""

    def __init__(self, original: TextIO, name: str) -> None:
        self._original = original
        self._name = name

    def write(self, text: str) -> int:
        state = current_call.get()
        if state is None:
            return self._original.write(text)
        state.write(self._name, str(text))
        return len(text)

    def flush(self) -> None:
        if current_call.get() is None:
            self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class _LogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        state = current_call.get()
        if state is None:
            return
        try:
            line = f"{record.levelname}:{record.name}:{record.getMessage()}"
        except Exception:
            line = f"{record.levelname}:{record.name}:{record.msg!r}"
        state.emit("log", line)


_install_lock = threading.Lock()


def _wrap_streams() -> None:
    if not isinstance(sys.stdout, _RoutedStream):
        sys.stdout = _RoutedStream(sys.stdout, "stdout")
    if not isinstance(sys.stderr, _RoutedStream):
        sys.stderr = _RoutedStream(sys.stderr, "stderr")


def install_capture(*, owns_process: bool) -> None:
    """Wrap stdout/stderr and add the logging handler (once per process)."""
    with _install_lock:
        _wrap_streams()
        root = logging.getLogger()
        if not any(isinstance(handler, _LogHandler) for handler in root.handlers):
            root.addHandler(_LogHandler())
        if owns_process:
            root.setLevel(logging.INFO)


def _on_tick(signum: int, frame: FrameType | None) -> None:
    budget = current_budget.get()
    if budget is None:
        return
    budget.used += TICK
    if budget.used > budget.limit:
        # A little slack before the next raise, so the step machinery can report this one.
        budget.limit = budget.used + 5 * TICK
        raise IsolateLimitError("cpu")


def install_cpu_budget() -> bool:
    """Start the CPU sampler; False when not on the main thread (no budget then)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGPROF, _on_tick)
    signal.setitimer(signal.ITIMER_PROF, TICK, TICK)
    return True
