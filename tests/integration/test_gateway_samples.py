"""A gateway's history: a sample on every status change and at most one per five minutes
while nothing changes; old ones pruned. On every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.services import samples
from simgate.store.engine import make_sessionmaker

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


async def test_samples_thin_out_and_age(engine: AsyncEngine) -> None:
    sm = make_sessionmaker(engine)
    steps = [
        (0, "online", 3, True),
        (60, "online", 4, False),  # same status, within five minutes
        (120, "offline", None, True),  # a change is always kept
        (180, "online", 2, True),
        (180 + 299, "online", 2, False),
        (180 + 300, "online", 5, True),  # five minutes on
    ]
    for seconds, status, signal, kept in steps:
        async with sm.begin() as s:
            added = await samples.record(
                s,
                "pi",
                status=status,
                signal=signal,
                battery=80,
                now=T0 + timedelta(seconds=seconds),
            )
        assert added is kept, (seconds, status)
    async with sm.begin() as s:
        await samples.record(s, "other", status="online", signal=1, now=T0)
    async with sm() as s:
        history = await samples.recent(s, "pi")
        assert [h.status for h in history] == ["online", "online", "offline", "online"]
        assert history[0].signal == 5
        assert history[0].battery == 80
    async with sm.begin() as s:
        assert await samples.prune(s, now=T0 + timedelta(days=7, seconds=200)) == 4
    async with sm() as s:
        assert len(await samples.recent(s, "pi")) == 1
