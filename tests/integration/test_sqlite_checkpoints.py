"""On SQLite the running server leaves checkpoints to a background thread: its own
connection never copies the log into the database inside a commit (which stalled every
request), the log is still copied within moments, and the connection checkpoints by itself
again once the server stops."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings
from simgate.store import sqlite_inline
from simgate.web.app import create_app
from tests.integration.helpers import bearer, make_key


async def test_the_server_checkpoints_in_the_background(
    sqlite_settings: Settings, sqlite_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "CHECKPOINT_INTERVAL", 0.1)
    key = await make_key(sqlite_engine)
    app = create_app(sqlite_settings, engine=sqlite_engine)
    db_file = Path(sqlite_engine.url.database or "")
    wal = db_file.with_name(db_file.name + "-wal")
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.3)  # the checkpointer has taken over
        async with sqlite_engine.connect() as conn:
            pages = (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar_one()
        assert pages == 0
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(60):  # some 6,000 rows: far past 1,000 pages of log
                resp = await client.post(
                    "/api/v1/messages",
                    json={"to": [f"+49151123456{i:02d}" for i in range(100)], "body": "x" * 300},
                    headers=bearer(key),
                )
                assert resp.status_code == 202, resp.text
        checkpointer = next(t for t in asyncio.all_tasks() if t.get_name() == "sqlite-checkpoints")
        assert not checkpointer.done()
        # What was committed reaches the database file within moments, and only a
        # checkpoint puts it there: the file itself grows from its first few pages.
        deadline = time.monotonic() + 10
        while db_file.stat().st_size < 1_000_000:
            assert time.monotonic() < deadline, (db_file.stat().st_size, wal.stat().st_size)
            await asyncio.sleep(0.1)
        assert wal.exists()
    async with sqlite_engine.connect() as conn:  # stopped: the connection's own default
        pages = (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar_one()
    assert pages == sqlite_inline.AUTO_CHECKPOINT
