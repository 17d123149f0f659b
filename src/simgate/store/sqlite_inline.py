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

import sqlite3
from collections.abc import Callable, Generator
from typing import Any

import aiosqlite

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
