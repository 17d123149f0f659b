"""The API request log (seed 000): every authenticated call, written in batches.

Requests only append to an in-memory queue; a background task writes batches, so logging
never adds a database round trip to an API call. When the database cannot keep up the queue
is bounded and the overflow is counted (``simgate_request_log_dropped_total``), never
allowed to slow the API down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simgate.store import bulk
from simgate.store.engine import describe_db_error
from simgate.store.models import ApiKey, ApiRequest
from simgate.store.types import utcnow

log = logging.getLogger(__name__)
# Written as plain rows (store/bulk.py): the ORM bulk path costs microseconds more per row.
_TABLE = cast(Table, ApiRequest.__table__)


@dataclass(frozen=True, slots=True)
class RequestEntry:
    created_at: datetime
    app_id: int | None
    key_prefix: str
    method: str
    endpoint: str
    status: int
    latency_ms: float
    client_ip: str
    request_id: str

    def row(self) -> dict[str, object]:
        # Not dataclasses.asdict: that deep-copies every value, a real cost per API call.
        return {f: getattr(self, f) for f in self.__slots__}


class RequestLog:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        max_pending: int = 20_000,
        batch_size: int = 200,
        interval: float = 0.5,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._pending: list[RequestEntry] = []
        self._max_pending = max_pending
        self._batch_size = batch_size
        self._interval = interval
        self._on_drop = on_drop
        self._wake = asyncio.Event()
        # One writer at a time: the background task and a reader asking for a fresh view
        # (GET /api/v1/requests) must not both insert the same batch.
        self._lock = asyncio.Lock()
        self._last_used: dict[str, datetime] = {}
        self.dropped = 0

    def record(self, entry: RequestEntry) -> None:
        if len(self._pending) >= self._max_pending:
            self.dropped += 1
            if self._on_drop:
                self._on_drop()
            return
        self._pending.append(entry)
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    async def flush(self) -> int:
        """Write everything pending; on a database error keep it for the next try."""
        async with self._lock:
            return await self._flush()

    async def _flush(self) -> int:
        written = 0
        while self._pending:
            batch = self._pending[: self._batch_size]
            try:
                async with self._sessionmaker.begin() as session:
                    await bulk.insert_many(session, _TABLE, [e.row() for e in batch])
                    await self._touch_keys(session, batch)
            except (SQLAlchemyError, OSError) as exc:
                log.warning(
                    "request log write failed; will retry",
                    extra={"error": describe_db_error(exc), "pending": len(self._pending)},
                )
                return written
            del self._pending[: len(batch)]
            written += len(batch)
        return written

    async def _touch_keys(self, session: AsyncSession, batch: list[RequestEntry]) -> None:
        # last_used_at is informative; update it at most once a minute per key.
        latest: dict[str, datetime] = {}
        for e in batch:
            latest[e.key_prefix] = max(e.created_at, latest.get(e.key_prefix, e.created_at))
        for prefix, when in latest.items():
            seen = self._last_used.get(prefix)
            if seen is not None and when - seen < timedelta(minutes=1):
                continue
            self._last_used[prefix] = when
            await session.execute(
                update(ApiKey).where(ApiKey.prefix == prefix).values(last_used_at=when)
            )

    async def run(self) -> None:
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
                self._wake.clear()
                await self.flush()
        finally:
            # Cancelled at shutdown: write what is left.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush())


async def prune(session: AsyncSession, *, older_than_days: int, limit: int | None = None) -> int:
    """Delete entries older than ``older_than_days``; at most ``limit`` of them, so a large
    backlog goes in short transactions that let requests through in between."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    if limit is None:
        result = await session.execute(delete(ApiRequest).where(ApiRequest.created_at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)
    ids = list(
        await session.scalars(
            select(ApiRequest.id)
            .where(ApiRequest.created_at < cutoff)
            .order_by(ApiRequest.id)
            .limit(limit)
        )
    )
    if ids:
        await session.execute(delete(ApiRequest).where(ApiRequest.id.in_(ids)))
    return len(ids)


async def recent(
    session: AsyncSession, *, app_id: int | None = None, limit: int = 100
) -> list[ApiRequest]:
    stmt = select(ApiRequest).order_by(ApiRequest.id.desc()).limit(limit)
    if app_id is not None:
        stmt = stmt.where(ApiRequest.app_id == app_id)
    return list(await session.scalars(stmt))


STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")


async def search(
    session: AsyncSession,
    *,
    app_ids: list[int] | None = None,
    status_class: str | None = None,
    path: str | None = None,
    limit: int = 100,
) -> list[ApiRequest]:
    """Newest first, filtered: ``app_ids`` (None: every app), a status class such as
    ``4xx``, and text the endpoint contains."""
    stmt = select(ApiRequest).order_by(ApiRequest.id.desc()).limit(limit)
    if app_ids is not None:
        stmt = stmt.where(ApiRequest.app_id.in_(app_ids or [-1]))
    if status_class in STATUS_CLASSES:
        low = int(status_class[0]) * 100
        stmt = stmt.where(ApiRequest.status >= low, ApiRequest.status < low + 100)
    if path:
        stmt = stmt.where(ApiRequest.endpoint.contains(path, autoescape=True))
    return list(await session.scalars(stmt))
