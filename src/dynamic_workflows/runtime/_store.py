"""The store interface: what the engine persists, in engine terms, with no SQL.

A :class:`Tx` is the whole durable effect of one transition of one instance (step records,
instance columns, event buffer, log lines); a store applies it atomically. ``commit``
enqueues at once and returns a future: awaiting it means "durable", and a caller may choose
not to wait (an attempt's start) because a store applies transactions in submission order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Durability = Literal["fsync", "os"]
StepState = Literal["running", "retrying", "waiting", "complete", "errored"]


@dataclass
class InstanceRow:
    uid: str
    workflow: str
    scope: str
    id: str
    params: Any  # encoded JSON value
    envelope: Any  # JSON object or None; never shown by status()
    status: str
    output: Any = None  # encoded JSON value
    error: dict[str, str] | None = None
    created: float = 0.0
    updated: float = 0.0
    paused_at: float | None = None
    wake_at: float | None = None


@dataclass
class StepRow:
    """One step record. ``value`` is the encoded result (kind ``do``/``event``) once
    ``state`` is ``complete``; ``wake_at`` is the sleep end, retry time or event deadline."""

    key: str
    name: str
    count: int
    kind: Literal["do", "sleep", "event"]
    state: StepState
    attempts: int = 0
    config: dict[str, Any] | None = None
    start: float | None = None
    end: float | None = None
    wake_at: float | None = None
    value: Any = None
    error: dict[str, str] | None = None
    event_type: str | None = None


@dataclass
class EventRow:
    seq: int
    type: str
    payload: Any  # encoded JSON value
    ts: float


@dataclass
class LogEntry:
    kind: str
    ts: float
    step: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Ident:
    """Who a log line is about (kept on each line so the log outlives the instance row)."""

    uid: str
    instance_id: str
    workflow: str
    scope: str


@dataclass
class NewEvent:
    type: str
    payload: Any
    ts: float
    consumed_by: str | None = None


@dataclass
class Tx:
    """One atomic transition of one instance."""

    ident: Ident
    instance: dict[str, Any] = field(default_factory=dict)  # columns of InstanceRow to set
    steps: list[StepRow] = field(default_factory=list)  # upserted
    log: list[LogEntry] = field(default_factory=list)
    add_event: NewEvent | None = None
    consume_event: tuple[int, str] | None = None  # (event seq, consuming step key)
    shift_timers: float | None = None  # added to wake_at of every pending step
    reset: bool = False  # restart: drop every step and event record
    delete: bool = False  # drop the instance and all its records


LogRecord = dict[
    str, Any
]  # {"seq","uid","instance_id","workflow","scope","ts","kind","step","data"}


class Store(Protocol):
    """Durable state of every instance. Implementations keep their dialect to themselves."""

    durability: Durability

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def commit(self, tx: Tx) -> asyncio.Future[list[LogRecord]]:
        """Enqueue ``tx``; the future resolves with its log records once it is durable."""
        ...

    async def create(
        self, rows: list[InstanceRow], logs: list[LogEntry], *, skip_existing: bool
    ) -> tuple[list[bool], list[LogRecord]]:
        """Insert instances atomically; an id in use is skipped or fails the whole call."""
        ...

    async def get(self, uid: str) -> InstanceRow | None: ...

    async def find(self, workflow: str, scope: str, id: str) -> InstanceRow | None: ...

    async def load(self, uid: str) -> tuple[InstanceRow, list[StepRow]] | None: ...

    async def oldest_event(self, uid: str, type: str) -> EventRow | None: ...

    async def oldest_waiter(self, uid: str, type: str, now: float) -> StepRow | None: ...

    async def unfinished(self) -> list[InstanceRow]: ...

    async def list_instances(
        self,
        workflow: str | None,
        scope: str | None,
        status: str | None,
        limit: int,
        offset: int,
    ) -> list[InstanceRow]: ...

    async def count_instances(
        self, workflow: str | None, scope: str | None, status: str | None
    ) -> int: ...

    async def history(self, uid: str, after_seq: int = 0) -> list[LogRecord]: ...


class DuplicateInstanceError(Exception):
    """``create`` met an id already in use (and was not told to skip it)."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(instance_id)
        self.instance_id = instance_id


def open_store(url: str, *, durability: Durability = "fsync") -> Store:
    """A store for ``url``: ``sqlite:///path`` or ``postgresql://user:pw@host:port/db``."""
    if url.startswith("sqlite:///"):
        from ._sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"), durability=durability)
    if url.startswith(("postgresql://", "postgres://")):
        from ._postgres import PostgresStore

        return PostgresStore(url, durability=durability)
    raise ValueError(
        f"unsupported store URL {url!r}: expected sqlite:///path/state.db or postgresql://..."
    )
