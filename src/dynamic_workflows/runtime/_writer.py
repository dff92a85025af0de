"""The machinery both stores share: one connection on one thread, jobs in submission order,
consecutive writes applied as one transaction (group commit).

The engine's event loop never blocks on the database: a job is queued with a future, the
thread runs it and hands the result back with ``call_soon_threadsafe``. A store subclass
says how to open its connection and how to apply a group of writes; everything else (the
queue, batching, reads between writes, start and stop) is here.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..sdk import WorkflowInternalError
from ._rows import settle

C = TypeVar("C")
T = TypeVar("T")
Job = tuple[bool, Callable[[Any], Any], "asyncio.Future[Any]"]
Results = list[tuple["asyncio.Future[Any]", bool, Any]]
MAX_GROUP = 512


class WriterThread(Generic[C]):
    """Runs a store's jobs on its own thread, over one connection of type ``C``."""

    thread_name = "dynwf-store"

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0  # transactions committed (group commit shows as commits < writes)
        self.writes = 0

    # -- what a store provides -------------------------------------------------------------

    def _open_connection(self) -> C:
        """Connect and migrate; an exception fails ``open()``."""
        raise NotImplementedError

    def _write_group(self, conn: C, writes: list[Job]) -> Results:
        """Apply ``writes`` in one transaction; one result per write, in order."""
        raise NotImplementedError

    def _fresh(self, conn: C) -> C:
        """The connection to use for the next batch (a store may reconnect here)."""
        return conn

    def _failed(self, conn: C, error: Exception) -> Exception:
        """What a job's caller sees when it raised ``error`` (a store may also note that
        the connection is gone)."""
        return error if isinstance(error, WorkflowInternalError) else _internal(error)

    def _close_connection(self, conn: C) -> None:
        close = getattr(conn, "close", None)
        if callable(close):
            close()

    # -- lifecycle -------------------------------------------------------------------------

    async def _start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._main, args=(ready,), name=self.thread_name, daemon=True
        )
        self._thread.start()
        try:
            await ready
        except BaseException:
            thread, self._thread = self._thread, None
            await asyncio.to_thread(thread.join)
            raise

    async def _stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(thread.join)
        self._thread = None

    # -- the thread ------------------------------------------------------------------------

    def _main(self, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._open_connection()
        except BaseException as error:
            self._post([(ready, False, error)])
            return
        self._post([(ready, True, None)])
        try:
            while True:
                jobs: list[Job | None] = [self._queue.get()]
                while len(jobs) < MAX_GROUP:
                    try:
                        jobs.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                conn = self._fresh(conn)
                if not self._run(conn, jobs):
                    return
        finally:
            self._close_connection(conn)

    def _run(self, conn: C, jobs: list[Job | None]) -> bool:
        """Run jobs in order, grouping consecutive writes; False once told to stop."""
        writes: list[Job] = []
        for job in jobs:
            if job is None:
                self._flush(conn, writes)
                return False
            if job[0]:
                writes.append(job)
                continue
            self._flush(conn, writes)
            writes = []
            _, fn, future = job
            try:
                self._post([(future, True, fn(conn))])
            except Exception as error:
                self._post([(future, False, self._failed(conn, error))])
        self._flush(conn, writes)
        return True

    def _flush(self, conn: C, writes: list[Job]) -> None:
        if writes:
            self._post(self._write_group(conn, writes))

    def _post(self, results: Results) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us
            loop.call_soon_threadsafe(settle, results)

    def _enqueue(self, write: bool, fn: Callable[[C], Any]) -> asyncio.Future[Any]:
        if self._thread is None or self._loop is None:
            raise WorkflowInternalError("the store is not open")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put((write, fn, future))
        return future


def _internal(error: Exception) -> WorkflowInternalError:
    return WorkflowInternalError(f"store failure: {error}")
