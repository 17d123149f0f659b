"""SQLite for asyncio without a thread hop per statement.

aiosqlite runs every statement on a worker thread and hands the result back through the
event loop: about 0.2 ms a round trip, several per transaction, and a contest for the GIL
under load. SQLite in WAL mode answers most statements in microseconds, so simgate runs them
on the event loop thread itself, behind aiosqlite's interface (which SQLAlchemy's aiosqlite
dialect speaks). What that costs: a statement that has to wait for another process's write
lock blocks the loop for up to ``BUSY_TIMEOUT_MS``; other processes (the CLI) hold it for
milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Generator
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 2000


class InlineConnection(aiosqlite.Connection):
    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    def __await__(self) -> Generator[Any, None, InlineConnection]:
        return self._connect().__await__()

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


def inline_connector(path: str) -> Callable[[], InlineConnection]:
    def connect() -> InlineConnection:
        return InlineConnection(
            lambda: sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        )

    return connect


CHECKPOINT_INTERVAL = 0.5  # seconds between background checkpoints
AUTO_CHECKPOINT = 1000  # SQLite's default, in pages: what a connection does on its own


def _checkpoint(path: str) -> None:
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        db.close()


class Checkpointer:
    """Copies the write-ahead log into the database file on a thread of its own.

    By default the connection that commits past 1,000 pages of log does that copy itself,
    with an fsync, inside its commit: with statements run on the event loop (see above) a
    commit every second or so stalled every request for 5-15 ms, which was most of the
    99th-percentile latency of a send. While this runs, the server's connection leaves
    checkpoints to it (``wal_autocheckpoint=0``): a PASSIVE checkpoint every
    CHECKPOINT_INTERVAL seconds copies what no reader still needs and never blocks a
    writer. The sqlite3 module releases the GIL while SQLite works, so the loop goes on.
    When it stops, the connection checkpoints by itself again."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._path = engine.url.database or ""
        self._listener = self._on_connect  # one object, to remove what was added
        self.checkpoints = 0

    def _on_connect(self, dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()

    async def _set(self, pages: int) -> None:
        async with self._engine.connect() as conn:
            await conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={pages}")

    async def run(self) -> None:
        event.listen(self._engine.sync_engine, "connect", self._listener)
        try:
            await self._set(0)
            while True:
                await asyncio.sleep(CHECKPOINT_INTERVAL)
                try:
                    await asyncio.to_thread(_checkpoint, self._path)
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # busy or gone for a moment: next time
                    log.debug("background checkpoint skipped", extra={"error": str(exc)})
        finally:
            event.remove(self._engine.sync_engine, "connect", self._listener)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._set(AUTO_CHECKPOINT))
