"""Counts for the dashboard: messages per status today, per hour and per day, the queue.

One query per chart: each row's time bucket is a CASE over the bucket edges, which every
backend (SQLite, PostgreSQL, MariaDB) evaluates the same way, over the created_at index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from simgate.domain.messages import Direction, MessageStatus
from simgate.store.models import Message

SENT = (MessageStatus.SENT.value, MessageStatus.DELIVERED.value)
FAILED = (MessageStatus.FAILED.value, MessageStatus.EXPIRED.value)
WAITING = (MessageStatus.QUEUED.value, MessageStatus.SCHEDULED.value, MessageStatus.SENDING.value)


@dataclass
class Tally:
    """Messages in one span of time: outbound by what became of them, and inbound."""

    accepted: int = 0
    sent: int = 0  # sent or delivered
    delivered: int = 0
    failed: int = 0  # failed or expired
    waiting: int = 0
    received: int = 0

    def add(self, direction: str, status: str, n: int) -> None:
        if direction == Direction.INBOUND.value:
            self.received += n
            return
        self.accepted += n
        if status in SENT:
            self.sent += n
        if status == MessageStatus.DELIVERED.value:
            self.delivered += n
        elif status in FAILED:
            self.failed += n
        elif status in WAITING:
            self.waiting += n


@dataclass
class Series:
    """Tallies for consecutive buckets starting at ``start``, each ``step`` long."""

    start: datetime
    step: timedelta
    buckets: list[Tally] = field(default_factory=list)

    def edges(self) -> list[datetime]:
        return [self.start + self.step * i for i in range(len(self.buckets))]


def _scope(app_ids: Sequence[int] | None) -> list[ColumnElement[bool]]:
    return [] if app_ids is None else [Message.app_id.in_(list(app_ids) or [-1])]


async def tally(
    session: AsyncSession, *, since: datetime, app_ids: Sequence[int] | None = None
) -> Tally:
    """Messages created since ``since`` (``app_ids`` None: every app's and inbound)."""
    rows = await session.execute(
        select(Message.direction, Message.status, func.count())
        .where(Message.created_at >= since, *_scope(app_ids))
        .group_by(Message.direction, Message.status)
    )
    out = Tally()
    for direction, status, n in rows:
        out.add(direction, status, int(n))
    return out


async def series(
    session: AsyncSession,
    *,
    start: datetime,
    step: timedelta,
    count: int,
    app_ids: Sequence[int] | None = None,
) -> Series:
    """``count`` buckets of ``step`` from ``start`` in one grouped query."""
    edges = [start + step * i for i in range(count + 1)]
    bucket = case(
        *(
            (and_(Message.created_at >= edges[i], Message.created_at < edges[i + 1]), i)
            for i in range(count)
        ),
        else_=-1,
    ).label("bucket")
    # Bucketed in a subquery and grouped outside it: PostgreSQL cannot match a GROUP BY
    # on an expression whose bound parameters differ from the SELECT's copies.
    rows_of = (
        select(bucket, Message.direction.label("direction"), Message.status.label("status"))
        .where(Message.created_at >= edges[0], Message.created_at < edges[-1], *_scope(app_ids))
        .subquery()
    )
    rows = await session.execute(
        select(rows_of.c.bucket, rows_of.c.direction, rows_of.c.status, func.count()).group_by(
            rows_of.c.bucket, rows_of.c.direction, rows_of.c.status
        )
    )
    out = Series(start, step, [Tally() for _ in range(count)])
    for i, direction, status, n in rows:
        if 0 <= int(i) < count:
            out.buckets[int(i)].add(direction, status, int(n))
    return out


async def queue_depth(session: AsyncSession, *, app_ids: Sequence[int] | None = None) -> int:
    """Outbound messages waiting for a gateway (queued, scheduled or being handed over)."""
    n = await session.scalar(
        select(func.count())
        .select_from(Message)
        .where(
            Message.direction == Direction.OUTBOUND.value,
            Message.status.in_(WAITING),
            *_scope(app_ids),
        )
    )
    return int(n or 0)


async def per_gateway(session: AsyncSession, *, since: datetime) -> dict[str, Tally]:
    """Each gateway's messages since ``since`` (sent through it, or received on it)."""
    rows = await session.execute(
        select(Message.gateway, Message.direction, Message.status, func.count())
        .where(Message.created_at >= since, Message.gateway.is_not(None))
        .group_by(Message.gateway, Message.direction, Message.status)
    )
    out: dict[str, Tally] = {}
    for gateway, direction, status, n in rows:
        out.setdefault(str(gateway), Tally()).add(direction, status, int(n))
    return out
