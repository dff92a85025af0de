"""Live log fan-out: recent lines per tenant and per instance, and subscribers for SSE.

Records come from the loader's log sink (tenant ``print``/logging) and from the dispatcher
itself (a tenant's unhandled exception). A late subscriber first gets the recent lines
(``replay``), then the live ones. A slow subscriber never blocks the producer: its queue is
bounded and overflowing drops lines for that subscriber only, counted in ``dropped``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypedDict

MAX_LINE_CHARS = 8192


class LogRecord(TypedDict):
    seq: int
    ts: float
    tenant: str
    instance_id: str | None
    stream: str
    line: str


@dataclass(eq=False)
class Subscription:
    queue: asyncio.Queue[LogRecord]
    replay: list[LogRecord]
    dropped: int = 0


@dataclass
class _Topic:
    recent: deque[LogRecord]
    subscribers: set[Subscription] = field(default_factory=set)


def _key(tenant: str, instance_id: str | None) -> tuple[str, str | None]:
    return (tenant, instance_id)


class LogHub:
    """Keeps ``keep`` recent lines per tenant and per (tenant, instance)."""

    def __init__(self, keep: int = 500, queue_size: int = 1000, max_topics: int = 10_000) -> None:
        self._keep = keep
        self._queue_size = queue_size
        self._max_topics = max_topics
        self._topics: dict[tuple[str, str | None], _Topic] = {}
        self._seq = itertools.count(1)

    def _topic(self, key: tuple[str, str | None]) -> _Topic:
        topic = self._topics.get(key)
        if topic is None:
            if len(self._topics) >= self._max_topics:
                self._evict()
            topic = self._topics[key] = _Topic(deque(maxlen=self._keep))
        return topic

    def _evict(self) -> None:
        for key in list(self._topics):
            if not self._topics[key].subscribers and key[1] is not None:
                del self._topics[key]
                if len(self._topics) < self._max_topics // 2:
                    return

    def publish(self, record: Mapping[str, Any]) -> None:
        """Accept one record from the loader sink (tolerant of missing fields)."""
        tenant = str(record.get("tenant") or "")
        instance = record.get("instance_id")
        line = str(record.get("line", ""))
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + "…"
        ts = record.get("ts")
        rec = LogRecord(
            seq=next(self._seq),
            ts=float(ts) if isinstance(ts, int | float) else time.time(),
            tenant=tenant,
            instance_id=str(instance) if instance else None,
            stream=str(record.get("stream", "log")),
            line=line,
        )
        keys = [_key(tenant, None)]
        if rec["instance_id"]:
            keys.append(_key(tenant, rec["instance_id"]))
        for key in keys:
            topic = self._topic(key)
            topic.recent.append(rec)
            for sub in topic.subscribers:
                try:
                    sub.queue.put_nowait(rec)
                except asyncio.QueueFull:
                    sub.dropped += 1

    def recent(self, tenant: str, instance_id: str | None = None) -> list[LogRecord]:
        topic = self._topics.get(_key(tenant, instance_id))
        return list(topic.recent) if topic else []

    @asynccontextmanager
    async def subscribe(
        self, tenant: str, instance_id: str | None = None
    ) -> AsyncIterator[Subscription]:
        topic = self._topic(_key(tenant, instance_id))
        sub = Subscription(asyncio.Queue(self._queue_size), list(topic.recent))
        topic.subscribers.add(sub)
        try:
            yield sub
        finally:
            topic.subscribers.discard(sub)
