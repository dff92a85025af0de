"""What the guest may ask of the host, checked like a subprocess isolate's frames.

Every host call carries one JSON object, tagged by ``op``. It is decoded straight into a
typed message (msgspec: shape, types, bounds and unknown keys checked in one pass); free-form
values are then held to a maximum nesting depth. Anything else is a
:class:`GuestRequestError`: the call fails in the guest and nothing reaches the host's ops.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ...sdk import WorkflowError

MAX_REQUEST = 8 << 20
"""Bytes in one host call. Step results over 1 MiB are still the engine's to refuse (S10)."""
MAX_DEPTH = 130
"""Nesting of free-form values: the sdk allows 64 levels, each may add an ``$esc`` wrapper."""
MAX_SECONDS = 1e12

_Name = Annotated[str, msgspec.Meta(max_length=256, pattern=r"^[^\x00-\x1f]*$")]
_Count = Annotated[int, msgspec.Meta(ge=1, le=1 << 31)]
_Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]
_Short = Annotated[str, msgspec.Meta(max_length=256)]
_Message = Annotated[str, msgspec.Meta(max_length=64 * 1024)]
_Method = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
_Id = Annotated[int, msgspec.Meta(ge=0, le=1 << 53)]


class GuestRequestError(WorkflowError):
    """A host call from the guest was malformed, oversized, over-deep or not allowed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid host call from the wasm guest: {reason}")


class _Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class Retries(_Strict):
    limit: Annotated[int, msgspec.Meta(ge=0, le=1 << 31)]
    delay: _Seconds | Literal["dynamic"]
    backoff: Literal["constant", "linear", "exponential"] | msgspec.UnsetType = msgspec.UNSET


class StepConfig(_Strict):
    retries: Retries | msgspec.UnsetType = msgspec.UNSET
    timeout: Annotated[float, msgspec.Meta(gt=0, le=MAX_SECONDS)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    sensitive: Literal["output"] | msgspec.UnsetType = msgspec.UNSET


class Error(_Strict):
    name: _Short
    message: _Message


class Outcome(_Strict):
    value: Any = msgspec.UNSET
    error: Error | msgspec.UnsetType = msgspec.UNSET
    fatal: Error | msgspec.UnsetType = msgspec.UNSET
    retryable: bool | msgspec.UnsetType = msgspec.UNSET
    delay: _Seconds | msgspec.UnsetType = msgspec.UNSET


class DoBegin(_Strict, tag="do_begin", tag_field="op"):
    name: _Name
    count: _Count
    config: StepConfig


class DoEnd(_Strict, tag="do_end", tag_field="op"):
    name: _Name
    count: _Count
    attempt: _Count
    outcome: Outcome


class Sleep(_Strict, tag="sleep", tag_field="op"):
    name: _Name
    count: _Count
    seconds: _Seconds | None = None
    until: Annotated[float, msgspec.Meta(ge=-MAX_SECONDS, le=MAX_SECONDS)] | None = None


class WaitForEvent(_Strict, tag="wait_for_event", tag_field="op"):
    name: _Name
    count: _Count
    type: Annotated[str, msgspec.Meta(max_length=1024)]
    timeout: _Seconds | None = None


class CapCall(_Strict, tag="cap", tag_field="op"):
    cap: _Id
    method: _Method
    args: list[Any] = []
    kwargs: dict[str, Any] = {}


GuestRequest = DoBegin | DoEnd | Sleep | WaitForEvent | CapCall
_decoder = msgspec.json.Decoder(GuestRequest)


def parse_request(raw: str) -> GuestRequest:
    """Decode and check one host call; raises :class:`GuestRequestError`."""
    if len(raw) > MAX_REQUEST:
        raise GuestRequestError(f"{len(raw)} characters is over the {MAX_REQUEST} limit")
    try:
        request: GuestRequest = _decoder.decode(raw)
    except msgspec.ValidationError as error:
        raise GuestRequestError(str(error)) from None
    except msgspec.DecodeError as error:
        raise GuestRequestError(f"not JSON: {error}") from None
    except RecursionError:
        raise GuestRequestError(f"value nested deeper than {MAX_DEPTH} levels") from None
    if isinstance(request, DoEnd):
        outcome = request.outcome
        given = [outcome.value is not msgspec.UNSET, bool(outcome.error), bool(outcome.fatal)]
        if sum(given) != 1:
            raise GuestRequestError("an outcome has exactly one of value, error, fatal")
        check_depth(outcome.value)
    elif isinstance(request, Sleep):
        if (request.seconds is None) == (request.until is None):
            raise GuestRequestError("sleep takes exactly one of seconds, until")
    elif isinstance(request, CapCall):
        check_depth(request.args)
        check_depth(request.kwargs)
    return request


def config_dict(config: StepConfig) -> dict[str, Any]:
    """The config as the ``StepOps`` protocol wants it: only the keys the author gave."""
    return msgspec.to_builtins(config)  # type: ignore[no-any-return]


def outcome_dict(outcome: Outcome) -> dict[str, Any]:
    return msgspec.to_builtins(outcome)  # type: ignore[no-any-return]


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Nested lists/objects at most ``limit`` deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= limit:
            raise GuestRequestError(f"value nested deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in children)
