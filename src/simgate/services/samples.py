"""Each gateway's signal, battery and status over time, for the history on its page.

A sample is written when the status changes or the last one is older than ``EVERY``, so a
gateway reporting every few seconds adds at most a dozen rows an hour; samples older than
``KEEP_DAYS`` are pruned with the other old rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.store.models import GatewaySample
from simgate.store.types import utcnow

EVERY = timedelta(minutes=5)
KEEP_DAYS = 7


async def record(
    session: AsyncSession,
    gateway: str,
    *,
    status: str,
    signal: int | None,
    battery: int | None = None,
    now: datetime | None = None,
) -> bool:
    """Add a sample unless the last one is recent and says the same; True when added."""
    now = now or utcnow()
    last = (
        await session.execute(
            select(GatewaySample.at, GatewaySample.status)
            .where(GatewaySample.gateway == gateway)
            .order_by(GatewaySample.at.desc())
            .limit(1)
        )
    ).first()
    if last is not None and last.status == status and now - last.at < EVERY:
        return False
    session.add(
        GatewaySample(
            gateway=gateway[:64], at=now, signal=signal, battery=battery, status=status[:16]
        )
    )
    return True


async def recent(session: AsyncSession, gateway: str, limit: int = 50) -> list[GatewaySample]:
    return list(
        await session.scalars(
            select(GatewaySample)
            .where(GatewaySample.gateway == gateway)
            .order_by(GatewaySample.at.desc())
            .limit(limit)
        )
    )


async def prune(session: AsyncSession, *, now: datetime | None = None) -> int:
    cutoff = (now or utcnow()) - timedelta(days=KEEP_DAYS)
    result = await session.execute(delete(GatewaySample).where(GatewaySample.at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
