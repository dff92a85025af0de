"""``WorkflowStep``: the author's ``step``, driven by a host through :class:`StepOps`.

The same class runs in-process, inside a subprocess isolate and inside the wasm runner: only
the ``ops`` differ. It validates names and configs (S2, S3) on every call, counts occurrences
(S6) and calls (S5), answers journal hits locally (S7) and runs callbacks with their context,
timeout and dynamic delay (S1, S14, S17, S18). Everything durable is the host's decision.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import types
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from ._durations import InvalidDurationError, parse_duration
from ._errors import (
    NonRetryableError,
    WorkflowError,
    WorkflowFatalError,
    WorkflowTimeoutError,
    error_from_dict,
    error_to_dict,
)
from ._protocol import (
    Decision,
    ErrorDict,
    Journal,
    JournalEntry,
    Outcome,
    StepKind,
    StepOps,
    step_key,
)
from ._types import StepContext, StepInfo, WorkflowStepEvent, to_datetime
from ._values import NotJSONError, decode_value, encode_value

MAX_STEP_NAME = 256
DEFAULT_STEP_LIMIT = 10_000
DYNAMIC_DELAY_TIMEOUT = 5.0
_RETRY_KEYS = {"limit", "delay", "backoff"}
_BACKOFFS = {"constant", "linear", "exponential"}


_CALLER: ContextVar[WorkflowStep | None] = ContextVar("dynwf_step_caller", default=None)


def calling_step() -> WorkflowStep | None:
    """The step whose op call is in progress here, if any. A host uses it to tell ops called
    by a step in its own process from ops that arrive over a channel (an isolate)."""
    return _CALLER.get()


class StopExecution(BaseException):
    """Unwinds ``run`` when the host says so; workflow code must not swallow it."""


def valid_step_name(name: object) -> bool:
    """S2: at most 256 characters, none in U+0000–U+001F."""
    return (
        isinstance(name, str)
        and len(name) <= MAX_STEP_NAME
        and not any(ord(c) < 0x20 for c in name)
    )


def invalid_name_error(name: object) -> WorkflowFatalError:
    return WorkflowFatalError(
        f'Step name "{name}" exceeds max length ({MAX_STEP_NAME} chars) or invalid characters found'
    )


def output_not_serialisable(reason: object) -> WorkflowFatalError:
    """The error of a ``run`` whose return value is not JSON (S24), the same in every backend."""
    return WorkflowFatalError(
        f"Serialization failed: the workflow returned a value which is not serialisable ({reason})"
    )


def invalid_config_error(name: str) -> WorkflowFatalError:
    return WorkflowFatalError(f'Step config for "{name}" is in an invalid format')


def config_to_wire(
    name: str, retries: object, timeout: object, sensitive: object
) -> tuple[dict[str, Any], Callable[..., Any] | None]:
    """S3: validate a step's config; return its JSON form and the dynamic delay callable."""
    wire: dict[str, Any] = {}
    delay_fn: Callable[..., Any] | None = None
    try:
        if retries is not None:
            if not isinstance(retries, dict) or set(retries) - _RETRY_KEYS:
                raise ValueError
            if "limit" not in retries or "delay" not in retries:
                raise ValueError
            limit = retries["limit"]
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError
            delay = retries["delay"]
            wire_retries: dict[str, Any] = {"limit": limit}
            if callable(delay):
                delay_fn = delay
                wire_retries["delay"] = "dynamic"
            else:
                wire_retries["delay"] = parse_duration(delay)
            if "backoff" in retries:
                if retries["backoff"] not in _BACKOFFS:
                    raise ValueError
                wire_retries["backoff"] = retries["backoff"]
            wire["retries"] = wire_retries
        if timeout is not None:
            seconds = parse_duration(timeout)
            if seconds <= 0:
                raise ValueError
            wire["timeout"] = seconds
        if sensitive is not None:
            if sensitive != "output":
                raise ValueError
            wire["sensitive"] = "output"
    except (ValueError, InvalidDurationError):
        raise invalid_config_error(name) from None
    return wire, delay_fn


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def _takes_argument(fn: Callable[..., Any]) -> bool:
    """Whether a callback wants the ``StepContext``. A plain function (the usual lambda)
    answers from its code object; ``inspect.signature`` costs ~25 µs a step otherwise."""
    plain = type(fn) is types.FunctionType and not hasattr(fn, "__wrapped__")
    if plain and "__signature__" not in fn.__dict__:
        code = fn.__code__
        required = code.co_argcount - len(fn.__defaults__ or ())
        return required > 0 or bool(code.co_flags & inspect.CO_VARARGS)
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
            and p.default is p.empty
        ]
    except (TypeError, ValueError):
        return False
    return bool(params)


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class WorkflowStep:
    """The ``step`` argument of ``run(event, step)``."""

    def __init__(
        self,
        ops: StepOps,
        journal: Journal | None = None,
        *,
        step_limit: int = DEFAULT_STEP_LIMIT,
    ) -> None:
        self.ops = ops
        self.journal: Journal = journal or {}
        self.step_limit = step_limit
        self._counts: dict[str, int] = {}
        self._do_calls = 0
        self._hits: list[str] = []

    async def _ask(self, request: Awaitable[Decision]) -> Decision:
        """Await an op with this step marked as the caller (see :func:`calling_step`)."""
        token = _CALLER.set(self)
        try:
            return await request
        finally:
            _CALLER.reset(token)

    def hits(self) -> list[str]:
        """Journal keys answered locally in this execution (for divergence checks, S36)."""
        return list(self._hits)

    def absorb_hits(self, keys: list[str] | tuple[str, ...]) -> None:
        """Add hits made by a copy of this step in an isolate (it reports them when ``run``
        ends), so the host's divergence check sees every key the execution asked for."""
        self._hits.extend(k for k in keys if isinstance(k, str) and k in self.journal)

    def _next(self, name: str) -> int:
        count = self._counts.get(name, 0) + 1
        self._counts[name] = count
        return count

    def _hit(self, key: str, kind: StepKind) -> JournalEntry | None:
        entry = self.journal.get(key)
        if entry is None or entry.get("kind") != kind:
            return None  # a miss, or a kind mismatch the host will judge (S36)
        self._hits.append(key)
        return entry

    @staticmethod
    def _settle(decision: Decision) -> Any:
        action = decision.get("action")
        if action == "value":
            return decode_value(decision.get("value"))
        if action == "raise":
            raise error_from_dict(dict(decision.get("error") or {}))
        if action == "stop":
            raise StopExecution
        raise WorkflowError(f"unexpected step decision {action!r}")

    async def do(
        self,
        name: str,
        callback: Callable[..., Any],
        *,
        retries: dict[str, Any] | None = None,
        timeout: object = None,
        sensitive: str | None = None,
    ) -> Any:
        """Run ``callback`` once durably and return its (cached) result (S1–S18)."""
        if not valid_step_name(name):
            raise invalid_name_error(name)
        wire_config, delay_fn = config_to_wire(name, retries, timeout, sensitive)
        if not callable(callback):
            raise invalid_config_error(name)
        count = self._next(name)
        self._do_calls += 1
        if self._do_calls > self.step_limit:
            raise WorkflowFatalError(
                f"The limit of {self.step_limit} steps has been reached. "
                "Split the work across more instances or raise the engine's step_limit."
            )
        entry = self._hit(step_key(name, count), "do")
        if entry is not None:
            if "error" in entry:
                raise error_from_dict(dict(entry["error"]))
            return decode_value(entry.get("value"))
        decision = await self._ask(self.ops.do_begin(name, count, wire_config))
        with_ctx = _takes_argument(callback)
        while decision.get("action") == "attempt":
            attempt = int(decision.get("attempt", 1))
            config = dict(decision.get("config") or {})
            ctx = StepContext(StepInfo(name, count), attempt, copy.deepcopy(config))
            outcome = await self._attempt(callback, with_ctx, ctx, decision, delay_fn)
            decision = await self._ask(self.ops.do_end(name, count, attempt, outcome))
        return self._settle(decision)

    async def _attempt(
        self,
        callback: Callable[..., Any],
        with_ctx: bool,
        ctx: StepContext,
        decision: Decision,
        delay_fn: Callable[..., Any] | None,
    ) -> Outcome:
        timeout = decision.get("timeout")
        try:
            awaitable = _call(callback, ctx) if with_ctx else _call(callback)
            if timeout is not None and _in_event_loop():
                try:
                    result = await asyncio.wait_for(awaitable, timeout)
                except TimeoutError:
                    raise WorkflowTimeoutError(
                        f"Execution timed out after {round(timeout * 1000)}ms"
                    ) from None
            else:
                result = await awaitable
        except NonRetryableError as error:
            return {"error": _error_dict(error), "retryable": False}
        except Exception as error:
            return await self._failed(error, ctx, delay_fn, _retry_limit(decision))
        try:
            return {"value": encode_value(result, path=f'the step "{ctx.step.name}"')}
        except NotJSONError:
            return {
                "fatal": {
                    "name": "WorkflowFatalError",
                    "message": f'Serialization failed: the step "{ctx.step.name}" returned a '
                    "value which is not serialisable",
                }
            }

    async def _failed(
        self,
        error: Exception,
        ctx: StepContext,
        delay_fn: Callable[..., Any] | None,
        limit: int,
    ) -> Outcome:
        outcome: Outcome = {"error": _error_dict(error), "retryable": True}
        if delay_fn is None or ctx.attempt > limit:
            return outcome
        key = step_key(ctx.step.name, ctx.step.count)
        prefix = f'The delay function for step "{key}"'
        try:
            pending = _call(delay_fn, ctx, error)
            value = (
                await asyncio.wait_for(pending, DYNAMIC_DELAY_TIMEOUT)
                if _in_event_loop()
                else await pending
            )
        except TimeoutError:
            message = f"{prefix} did not return within {int(DYNAMIC_DELAY_TIMEOUT)} seconds"
            return {
                "error": {"name": "NonRetryableDelayError", "message": message},
                "retryable": False,
            }
        except Exception as delay_error:
            message = f"{prefix} threw an error: {delay_error}"
            return {
                "error": {"name": "NonRetryableDelayError", "message": message},
                "retryable": False,
            }
        try:
            outcome["delay"] = parse_duration(value)
        except InvalidDurationError:
            message = f"{prefix} returned an invalid delay value: {value!r}"
            return {
                "error": {"name": "NonRetryableDelayError", "message": message},
                "retryable": False,
            }
        return outcome

    async def sleep(self, name: str, duration: object) -> None:
        """A durable timer of at most 365 days (S19)."""
        if not valid_step_name(name):
            raise invalid_name_error(name)
        try:
            seconds = parse_duration(duration)
        except InvalidDurationError:
            raise WorkflowError(f'Invalid duration for sleep "{name}": {duration!r}') from None
        count = self._next(name)
        if self._hit(step_key(name, count), "sleep") is not None:
            return
        self._settle(await self._ask(self.ops.sleep(name, count, seconds, None)))

    async def sleep_until(self, name: str, when: datetime | float | int) -> None:
        """Sleep until an aware ``datetime`` or epoch seconds (S19)."""
        if not valid_step_name(name):
            raise invalid_name_error(name)
        if isinstance(when, datetime):
            if when.tzinfo is None:
                raise WorkflowError(f'sleep_until "{name}" needs an aware datetime')
            until = when.timestamp()
        elif isinstance(when, int | float) and not isinstance(when, bool):
            until = float(when)
        else:
            raise WorkflowError(f'sleep_until "{name}" takes a datetime or epoch seconds')
        count = self._next(name)
        if self._hit(step_key(name, count), "sleep") is not None:
            return
        self._settle(await self._ask(self.ops.sleep(name, count, None, until)))

    async def wait_for_event(
        self, name: str, *, type: str, timeout: object = "24 hours"
    ) -> WorkflowStepEvent:
        """Wait for an event of ``type`` sent to this instance (S21, S22)."""
        if not valid_step_name(name):
            raise invalid_name_error(name)
        try:
            seconds = parse_duration(timeout) if timeout is not None else None
        except InvalidDurationError:
            raise WorkflowError(
                f'Invalid timeout for wait_for_event "{name}": {timeout!r}'
            ) from None
        count = self._next(name)
        entry = self._hit(step_key(name, count), "event")
        if entry is not None:
            if "error" in entry:
                raise error_from_dict(dict(entry["error"]))
            return _step_event(decode_value(entry.get("value")))
        decision = await self._ask(self.ops.wait_for_event(name, count, type, seconds))
        return _step_event(self._settle(decision))


def _error_dict(error: BaseException) -> ErrorDict:
    data = error_to_dict(error)
    return {"name": data["name"], "message": data["message"]}


def _retry_limit(decision: Decision) -> int:
    """From the host's decision, not ``ctx.config``: the callback may have mutated its copy."""
    retries = (decision.get("config") or {}).get("retries")
    limit = retries.get("limit", 0) if isinstance(retries, dict) else 0
    return limit if isinstance(limit, int) else 0


def _delay_failed(message: str) -> Outcome:
    return {"error": {"name": "NonRetryableDelayError", "message": message}, "retryable": False}


def _step_event(data: Any) -> WorkflowStepEvent:
    if isinstance(data, WorkflowStepEvent):
        return data
    record = data if isinstance(data, dict) else {}
    return WorkflowStepEvent(
        payload=record.get("payload"),
        timestamp=to_datetime(float(record.get("timestamp", 0.0))),
        type=str(record.get("type", "")),
    )


async def gather(*awaitables: Awaitable[Any]) -> list[Any]:
    """``asyncio.gather`` where an event loop exists; in order otherwise (the wasm runner).

    Step occurrences are taken in call order either way (S6).
    """
    if _in_event_loop():
        return list(await asyncio.gather(*awaitables))
    return [await a for a in awaitables]
