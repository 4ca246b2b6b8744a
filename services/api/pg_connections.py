"""A few autocommit PostgreSQL connections shared by the event loop's requests, taken and given back cheaply.

The work endpoints' one statement holds a connection for one round trip. `psycopg_pool` serves that with
two lock sections, a context manager, a commit on a connection in autocommit and a task per waiter
(`wait_for`): a large share of a request's CPU. Here a free connection is taken at once (no await), a
waiter waits on a plain future, and a broken connection is dropped when given back, its place opened
again by the next caller: a restarted database is reconnected to without a restart of the API.
"""

from __future__ import annotations

import asyncio
from collections import deque

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

_OPEN = object()  # given to a waiter instead of a connection: a place came free, open one


class Connections:
    """At most `size` connections to `conninfo`; a caller waits at most `wait_seconds` for one (TimeoutError)."""

    def __init__(self, conninfo: str, *, size: int, wait_seconds: float) -> None:
        self.conninfo = conninfo
        self.size = size
        self.wait_seconds = wait_seconds
        self._free: deque[AsyncConnection] = deque()
        self._waiters: deque[asyncio.Future[object]] = deque()
        self._count = 0  # open or opening
        self._closed = False
        self._closing: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

    async def take(self) -> AsyncConnection:
        """A connection to use and then `give` back."""
        if self._free:
            return self._free.pop()
        if self._count < self.size:
            self._count += 1
            return await self._open()
        got: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._waiters.append(got)
        try:
            async with asyncio.timeout(self.wait_seconds):
                given = await got
        except BaseException:
            if got.done() and not got.cancelled():  # given just as the wait ended: pass it on
                self._pass_on(got.result())
            raise
        if given is _OPEN:
            return await self._open()
        assert isinstance(given, AsyncConnection)
        return given

    def give(self, conn: AsyncConnection) -> None:
        """Give `conn` back; one that is broken, closed or inside a transaction is closed and its place freed."""
        if self._closed or conn.broken or conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
            if not conn.closed:
                task = asyncio.get_running_loop().create_task(conn.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            self._pass_on(_OPEN)
            return
        self._pass_on(conn)

    async def close(self) -> None:
        self._closed = True
        free, self._free = list(self._free), deque()
        for conn in free:
            await conn.close()

    def _pass_on(self, what: object) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(what)
                return
        if what is _OPEN:
            self._count -= 1
        else:
            assert isinstance(what, AsyncConnection)
            self._free.append(what)

    async def _open(self) -> AsyncConnection:
        try:
            return await AsyncConnection.connect(
                self.conninfo, autocommit=True, connect_timeout=max(1, round(self.wait_seconds))
            )
        except BaseException:
            self._pass_on(_OPEN)
            raise
