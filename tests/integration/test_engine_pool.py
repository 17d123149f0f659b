"""Pooled connections to a server database: one the server closed while it sat idle is
replaced before use, without an error; one closed while in use fails once and the pool
recovers at once."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings
from simgate.store import engine as engine_module
from simgate.store.engine import make_engine


def _own_id(backend: str) -> str:
    return "SELECT pg_backend_pid()" if backend == "postgresql" else "SELECT CONNECTION_ID()"


def _kill(backend: str, conn_id: int) -> str:
    if backend == "postgresql":
        return f"SELECT pg_terminate_backend({conn_id})"
    return f"KILL {conn_id}"


async def _close_from_outside(settings: Settings, conn_id: int) -> None:
    other = make_engine(settings)
    try:
        async with other.connect() as conn:
            await conn.execute(text(_kill(settings.backend, conn_id)))
    finally:
        await other.dispose()


async def test_a_connection_closed_while_idle_is_replaced_unseen(
    engine: AsyncEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    if settings.backend == "sqlite":
        pytest.skip("SQLite has no server to close a connection")
    monkeypatch.setattr(engine_module, "IDLE_PING", 0.0)  # every checkout counts as idle
    async with engine.connect() as conn:
        first = (await conn.execute(text(_own_id(settings.backend)))).scalar_one()
    await _close_from_outside(settings, first)
    async with engine.connect() as conn:  # checked, found closed, replaced
        second = (await conn.execute(text(_own_id(settings.backend)))).scalar_one()
    assert second != first


async def test_a_connection_closed_in_use_fails_once_then_the_pool_recovers(
    engine: AsyncEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    if settings.backend == "sqlite":
        pytest.skip("SQLite has no server to close a connection")
    monkeypatch.setattr(engine_module, "IDLE_PING", 3600.0)  # used moments ago: not checked
    async with engine.connect() as conn:
        first = (await conn.execute(text(_own_id(settings.backend)))).scalar_one()
    await _close_from_outside(settings, first)
    with pytest.raises(DBAPIError) as caught:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    assert caught.value.connection_invalidated  # answered as an outage (503), not a bug
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
