"""Small row helpers shared by services."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def ensure(
    sessionmaker: async_sessionmaker[AsyncSession], model: type[Any], **key: Any
) -> None:
    """Make sure the row of ``model`` with primary key ``key`` exists (created with the
    model's defaults and ``count`` 0, for the counters that are then counted with one
    conditional UPDATE); another request creating it first is fine."""
    try:
        async with sessionmaker.begin() as session:
            if await session.get(model, key) is None:
                session.add(model(**key, count=0))
    except IntegrityError:
        pass
