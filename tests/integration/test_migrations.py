"""Migrations run on every backend, leave no drift from the models, and reverse cleanly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings
from simgate.store import migrate
from simgate.store.engine import make_engine
from simgate.store.models import Base

TABLES = {
    "users",
    "sessions",
    "apps",
    "api_keys",
    "api_requests",
    "audit_events",
    "counters",
    "messages",
    "message_events",
    "idempotency_keys",
    "app_usage",
    "gateways",
}


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _drift(conn: Connection) -> list[object]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(ctx, Base.metadata))


async def test_upgrade_creates_schema_and_matches_models(settings: Settings) -> None:
    engine = make_engine(settings)
    try:
        assert await migrate.current_revision(engine) is None
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) >= TABLES
            assert await conn.run_sync(_drift) == []
    finally:
        await engine.dispose()


async def test_upgrade_is_idempotent(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)
    assert await migrate.current_revision(engine) == migrate.head_revision()


async def test_downgrade_to_base_and_back(engine: AsyncEngine) -> None:
    await migrate.downgrade(engine, "base")
    async with engine.connect() as conn:
        assert not TABLES & await conn.run_sync(_tables)
    await migrate.upgrade(engine)
    async with engine.connect() as conn:
        assert await conn.run_sync(_tables) >= TABLES
