"""Waiting for a message to reach a status (seed 000's /api/sendsms, ``simgate send
--wait``). In-process changes resolve a waiter at once; changes made by another node are
seen by re-reading the database every half second."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simgate.store.models import Message


class StatusWaiters:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        self._events: dict[str, list[asyncio.Event]] = defaultdict(list)

    def notify(self, message_id: str, status: str) -> None:
        for event in self._events.get(message_id, ()):
            event.set()

    async def wait(self, message_id: str, statuses: set[str], timeout: float) -> str | None:
        """The message's status once it is one of ``statuses``; None after ``timeout``."""
        deadline = time.monotonic() + timeout
        event = asyncio.Event()
        self._events[message_id].append(event)
        try:
            while True:
                async with self._sessionmaker() as session:
                    status = await session.scalar(
                        select(Message.status).where(Message.id == message_id)
                    )
                if status is None or status in statuses:
                    return status
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(0.5, remaining))
        finally:
            self._events[message_id].remove(event)
            if not self._events[message_id]:
                del self._events[message_id]
