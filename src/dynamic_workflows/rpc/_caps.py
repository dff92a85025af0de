"""Capabilities: host objects the peer may call, by explicit allow-list only.

An object becomes callable from the other side only when its class lists
``__rpc_methods__`` (subclass :class:`Capability`, or just set the attribute: layers that
may not import ``rpc`` do that), was wrapped with :func:`expose`, or its type is registered in
the connection's ``exposures``. It is then put in the connection's export table and sent
as ``{"$cap": n, "props": {...}}``; the peer can name it by ``n`` and nothing else.
``props`` are static JSON attributes (an instance handle's ``id``) read without a round trip.
Ids are never reused, so a revoked or guessed id is an error on that call, not another object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ._errors import CapabilityError


class Capability:
    """Base class for objects handed to the peer: only ``__rpc_methods__`` can be called,
    and the attributes named in ``__rpc_props__`` are sent along with the reference."""

    __rpc_methods__: ClassVar[frozenset[str]] = frozenset()
    __rpc_props__: ClassVar[tuple[str, ...]] = ()


@dataclass(frozen=True)
class Exposure:
    """What of an object the peer may use: methods to call, attributes to read once."""

    methods: frozenset[str]
    props: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Exposed:
    """An object wrapped by :func:`expose`; the wrapper, not the object, is the capability."""

    target: Any
    exposure: Exposure = field(default_factory=lambda: Exposure(frozenset()))


def expose(obj: Any, methods: Iterable[str], props: Iterable[str] = ()) -> Exposed:
    """Hand ``obj`` to the peer with only ``methods`` callable and ``props`` readable."""
    names = frozenset(methods)
    for name in names:
        if name.startswith("_"):
            raise ValueError(f"cannot expose private method {name!r}")
    return Exposed(obj, Exposure(names, tuple(props)))


Exposures = Mapping[type, Exposure]


def exposure_of(obj: Any, exposures: Exposures) -> tuple[Any, Exposure] | None:
    """``(target, exposure)`` when ``obj`` may be handed over, else None."""
    if isinstance(obj, Exposed):
        return obj.target, obj.exposure
    methods = getattr(type(obj), "__rpc_methods__", None)
    if isinstance(methods, frozenset | set):
        props = tuple(getattr(type(obj), "__rpc_props__", ()))
        return obj, Exposure(frozenset(m for m in methods if not m.startswith("_")), props)
    for cls in type(obj).__mro__:
        exposure = exposures.get(cls)
        if exposure is not None:
            return obj, exposure
    return None


def props_of(target: Any, exposure: Exposure) -> dict[str, Any]:
    return {name: getattr(target, name) for name in exposure.props}


@dataclass
class _Entry:
    obj: Any
    target: Any
    methods: frozenset[str]
    refs: int
    pinned: bool


class ExportTable:
    """One connection's objects handed to the peer, by id."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._by_obj: dict[int, int] = {}
        self._next = 1

    def pin(self, cap_id: int, obj: Any, exposure: Exposure, target: Any) -> None:
        """A well-known capability (the root, id 0) that references never release."""
        self._entries[cap_id] = _Entry(obj, target, exposure.methods, 0, True)

    def export(self, obj: Any, target: Any, exposure: Exposure) -> int:
        """The id of ``obj``, adding a reference (taken back by the peer's ``release``)."""
        cap_id = self._by_obj.get(id(obj))
        if cap_id is not None:
            self._entries[cap_id].refs += 1
            return cap_id
        cap_id = self._next
        self._next += 1
        self._entries[cap_id] = _Entry(obj, target, exposure.methods, 1, False)
        self._by_obj[id(obj)] = cap_id
        return cap_id

    def resolve(self, cap_id: int, method: str) -> Callable[..., Any]:
        entry = self._entries.get(cap_id)
        if entry is None:
            state = "revoked" if 0 < cap_id < self._next else "unknown"
            raise CapabilityError(f"{state} capability id {cap_id}")
        if method not in entry.methods:
            raise CapabilityError(f"capability {cap_id} has no method {method!r}")
        fn = getattr(entry.target, method, None)
        if not callable(fn):
            raise CapabilityError(f"capability {cap_id} has no method {method!r}")
        return fn  # type: ignore[no-any-return]

    def release(self, cap_id: int, count: int) -> None:
        entry = self._entries.get(cap_id)
        if entry is None or entry.pinned:
            return
        entry.refs -= count
        if entry.refs <= 0:
            self._drop(cap_id, entry)

    def revoke(self, obj: Any) -> None:
        """Withdraw ``obj`` now: later calls on its id fail with :class:`CapabilityError`."""
        cap_id = self._by_obj.get(id(obj))
        if cap_id is not None:
            entry = self._entries[cap_id]
            if entry.obj is obj:
                self._drop(cap_id, entry)

    def _drop(self, cap_id: int, entry: _Entry) -> None:
        del self._entries[cap_id]
        if self._by_obj.get(id(entry.obj)) == cap_id:
            del self._by_obj[id(entry.obj)]

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._by_obj.clear()
