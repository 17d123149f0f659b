"""The API request log: batched writes, pruning by age, no loss on a database hiccup."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings
from simgate.services import request_log
from simgate.services.request_log import RequestEntry, RequestLog
from simgate.store.engine import make_engine, make_sessionmaker
from simgate.store.models import ApiKey, ApiRequest
from simgate.store.types import utcnow
from tests.integration.helpers import make_key


def _entry(prefix: str, *, age: timedelta = timedelta(0), status: int = 200) -> RequestEntry:
    return RequestEntry(
        created_at=utcnow() - age,
        app_id=1,
        key_prefix=prefix,
        method="GET",
        endpoint="/api/v1/me",
        status=status,
        latency_ms=1.5,
        client_ip="203.0.113.9",
        request_id="r",
    )


async def _rows(engine: AsyncEngine) -> int:
    async with make_sessionmaker(engine)() as s:
        return int(await s.scalar(select(func.count()).select_from(ApiRequest)) or 0)


async def test_batches_are_written_and_keys_marked_used(engine: AsyncEngine) -> None:
    key = await make_key(engine)
    log = RequestLog(make_sessionmaker(engine), batch_size=7)
    for i in range(20):
        log.record(_entry(key[:13], status=200 + i))
    assert await log.flush() == 20
    assert await _rows(engine) == 20
    async with make_sessionmaker(engine)() as s:
        used = await s.scalar(select(ApiKey.last_used_at))
        newest = await request_log.recent(s, app_id=1, limit=1)
    assert used is not None
    assert newest[0].status == 219


async def test_overflow_is_counted_not_blocking(engine: AsyncEngine) -> None:
    dropped: list[int] = []
    log = RequestLog(make_sessionmaker(engine), max_pending=5, on_drop=lambda: dropped.append(1))
    for _ in range(8):
        log.record(_entry("sg_aaaaaaaaaa"))
    assert log.dropped == 3
    assert len(dropped) == 3
    await make_key(engine)  # app 1 exists so the foreign key holds
    assert await log.flush() == 5


async def test_prune_removes_only_old_rows(engine: AsyncEngine) -> None:
    await make_key(engine)
    log = RequestLog(make_sessionmaker(engine))
    log.record(_entry("sg_aaaaaaaaaa", age=timedelta(days=40)))
    log.record(_entry("sg_aaaaaaaaaa", age=timedelta(days=29)))
    log.record(_entry("sg_aaaaaaaaaa"))
    await log.flush()
    async with make_sessionmaker(engine).begin() as s:
        assert await request_log.prune(s, older_than_days=30) == 1
    assert await _rows(engine) == 2


async def test_entries_survive_an_unreachable_database(settings: Settings) -> None:
    broken = make_engine(settings, url="postgresql+asyncpg://nobody@127.0.0.1:1/none")
    log = RequestLog(make_sessionmaker(broken))
    log.record(_entry("sg_aaaaaaaaaa"))
    try:
        assert await log.flush() == 0
    finally:
        await broken.dispose()
    engine = make_engine(settings)
    try:
        from simgate.store import migrate

        await migrate.upgrade(engine)
        await make_key(engine)
        log._sessionmaker = make_sessionmaker(engine)  # the database is back
        assert await log.flush() == 1
        assert await _rows(engine) == 1
    finally:
        await engine.dispose()


async def test_concurrent_flushes_write_each_entry_once(engine: AsyncEngine) -> None:
    import asyncio

    await make_key(engine)
    log = RequestLog(make_sessionmaker(engine), batch_size=3)
    for _ in range(10):
        log.record(_entry("sg_aaaaaaaaaa"))
    await asyncio.gather(log.flush(), log.flush(), log.flush())
    assert await _rows(engine) == 10


async def test_prune_in_chunks(engine: AsyncEngine) -> None:
    await make_key(engine)
    log = RequestLog(make_sessionmaker(engine))
    for _ in range(7):
        log.record(_entry("sg_aaaaaaaaaa", age=timedelta(days=40)))
    log.record(_entry("sg_aaaaaaaaaa"))
    await log.flush()
    removed = []
    while True:
        async with make_sessionmaker(engine).begin() as s:
            removed.append(await request_log.prune(s, older_than_days=30, limit=3))
        if removed[-1] < 3:
            break
    assert removed == [3, 3, 1]
    assert await _rows(engine) == 1
