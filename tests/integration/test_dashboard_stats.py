"""The overview's counts and charts on every backend: one grouped query per chart, with
each message in the bucket of the hour (or day) it was accepted in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.services import stats
from simgate.store.engine import make_sessionmaker
from simgate.store.models import App, Message

NOW = datetime(2026, 12, 3, 15, 30, tzinfo=UTC)


def _message(
    n: int, *, at: datetime, status: str, app_id: int | None, inbound: bool = False
) -> Message:
    return Message(
        id=f"m{n:030d}",
        direction="inbound" if inbound else "outbound",
        app_id=app_id,
        to_number="+4915112345678",
        from_number="+4917612345678" if inbound else "",
        body="hello",
        encoding="gsm7",
        segments=1,
        status=status,
        priority=0,
        next_attempt_at=at,
        attempts=0,
        created_at=at,
        updated_at=at,
        gateway="pi",
    )


async def test_series_tally_queue_and_gateways(engine: AsyncEngine) -> None:
    async with make_sessionmaker(engine).begin() as s:
        shop = App(name="shop", description="", created_at=NOW)
        other = App(name="other", description="", created_at=NOW)
        s.add_all([shop, other])
        await s.flush()
        hour = NOW.replace(minute=0)
        rows = [
            (hour + timedelta(minutes=5), "delivered", shop.id, False),
            (hour + timedelta(minutes=6), "sent", shop.id, False),
            (hour - timedelta(minutes=1), "failed", shop.id, False),  # the hour before
            (hour - timedelta(hours=3), "queued", other.id, False),
            (hour - timedelta(hours=3), "expired", other.id, False),
            (hour + timedelta(minutes=1), "received", None, True),
            (hour - timedelta(days=2), "delivered", shop.id, False),  # outside 24 h
        ]
        for n, (at, status, app_id, inbound) in enumerate(rows):
            s.add(_message(n, at=at, status=status, app_id=app_id, inbound=inbound))

    async with make_sessionmaker(engine)() as s:
        start = hour - timedelta(hours=23)
        every = await stats.series(s, start=start, step=timedelta(hours=1), count=24)
        last, before, three = every.buckets[-1], every.buckets[-2], every.buckets[-4]
        assert (last.accepted, last.sent, last.delivered, last.received) == (2, 2, 1, 1)
        assert (before.accepted, before.failed) == (1, 1)
        assert (three.accepted, three.waiting, three.failed) == (2, 1, 1)
        assert sum(b.accepted for b in every.buckets) == 5
        assert every.edges()[0] == start

        mine = await stats.series(
            s, start=start, step=timedelta(hours=1), count=24, app_ids=[shop.id]
        )
        assert sum(b.accepted for b in mine.buckets) == 3
        assert sum(b.received for b in mine.buckets) == 0  # inbound has no app here
        none = await stats.series(s, start=start, step=timedelta(hours=1), count=24, app_ids=[])
        assert sum(b.accepted + b.received for b in none.buckets) == 0

        days = await stats.series(
            s, start=hour - timedelta(days=13), step=timedelta(days=1), count=14
        )
        assert sum(b.accepted for b in days.buckets) == 6

        today = await stats.tally(s, since=hour)
        assert (today.accepted, today.delivered, today.received) == (2, 1, 1)
        assert await stats.queue_depth(s) == 1
        assert await stats.queue_depth(s, app_ids=[shop.id]) == 0
        by = await stats.per_gateway(s, since=hour)
        assert by["pi"].sent == 2
        assert by["pi"].received == 1
