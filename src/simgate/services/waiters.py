"""Waiting for a message to reach a status (seed 000's /api/sendsms, ``simgate send
--wait``). Woken by push: the dispatcher's own outcomes at once, and changes committed by
any node through the change feed (PostgreSQL NOTIFY). The status is re-read only when woken,
plus a slow safety re-read (``recheck`` seconds) in case a notice was lost."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simgate.services.changes import Changes
from simgate.store.models import Message


class StatusWaiters:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, recheck: float = 5.0
    ) -> None:
        self._sessionmaker = sessionmaker
        self._recheck = recheck
        self._events: dict[str, list[asyncio.Event]] = defaultdict(list)

    def notify(self, message_id: str, status: str) -> None:
        for event in self._events.get(message_id, ()):
            event.set()

    def changed(self, changes: Changes) -> None:
        """A change-feed listener."""
        if not self._events:
            return
        if changes.rescan:
            for events in self._events.values():
                for event in events:
                    event.set()
            return
        for message_id, status in changes.statuses:
            self.notify(message_id, status)

    @property
    def waiting(self) -> int:
        return sum(len(v) for v in self._events.values())

    async def wait(self, message_id: str, statuses: set[str], timeout: float) -> str | None:
        """The message's status once it is one of ``statuses``; None after ``timeout``."""
        deadline = time.monotonic() + timeout
        event = asyncio.Event()
        self._events[message_id].append(event)
        try:
            while True:
                event.clear()
                async with self._sessionmaker() as session:
                    status = await session.scalar(
                        select(Message.status).where(Message.id == message_id)
                    )
                if status is None or status in statuses:
                    return status
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(self._recheck, remaining))
        finally:
            self._events[message_id].remove(event)
            if not self._events[message_id]:
                del self._events[message_id]
