"""Migrations run on every backend, leave no drift from the models, and reverse cleanly."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings
from simgate.store import migrate
from simgate.store.engine import make_engine
from simgate.store.models import Base
from simgate.store.types import UTCDateTime, utcnow

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
    "nodes",
    "enrollment_tokens",
    "events",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_attempts",
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


_OLD_GATEWAYS = sa.table(
    "gateways",
    sa.column("name", sa.String),
    sa.column("kind", sa.String),
    sa.column("is_active", sa.Boolean),
    sa.column("config", sa.JSON),
    sa.column("rate_per_minute", sa.Integer),
    sa.column("max_in_flight", sa.Integer),
    sa.column("status", sa.String),
    sa.column("status_detail", sa.String),
    sa.column("sent_count", sa.Integer),
    sa.column("failed_count", sa.Integer),
    sa.column("received_count", sa.Integer),
    sa.column("created_at", UTCDateTime),
)


async def test_host_port_pins_become_host_placements(settings: Settings) -> None:
    """Installations made before placements existed: 'modem add' stored the node as
    '<hostname>:<port>', which pinned the modem to one port's server."""
    engine = make_engine(settings)
    old = {
        "pi": ("modem", {"port": "/dev/ttyUSB0", "baud": 115200, "node": "vm:8000"}),
        "garden": ("modem", {"port": "/dev/ttyS0", "node": "garden-node"}),
        "loose": ("modem", {"port": "/dev/ttyUSB1"}),
        "fake-b": ("fake", {"mode": "deliver", "node": "node-b"}),
        "fake-any": ("fake", {"mode": "deliver"}),
    }
    try:
        await migrate.upgrade(engine, "0002")
        async with engine.begin() as conn:
            for name, (kind, config) in old.items():
                await conn.execute(
                    sa.insert(_OLD_GATEWAYS).values(
                        name=name,
                        kind=kind,
                        is_active=True,
                        config=config,
                        rate_per_minute=0,
                        max_in_flight=1,
                        status="offline",
                        status_detail="",
                        sent_count=0,
                        failed_count=0,
                        received_count=0,
                        created_at=utcnow(),
                    )
                )
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.text(
                        "SELECT name, place_kind, place_host_id, place_host_name, place_node "
                        "FROM gateways ORDER BY name"
                    )
                )
            ).all()
            configs = {
                r.name: r.config
                for r in (
                    await conn.execute(sa.select(_OLD_GATEWAYS.c.name, _OLD_GATEWAYS.c.config))
                )
            }
        assert {r[0]: tuple(r[1:]) for r in rows} == {
            "fake-any": ("any", None, "", None),
            "fake-b": ("node", None, "", "node-b"),
            "garden": ("node", None, "", "garden-node"),
            "loose": ("any", None, "", None),
            "pi": ("host", None, "vm", None),
        }
        assert all("node" not in c for c in configs.values()), configs
        assert configs["pi"] == {"port": "/dev/ttyUSB0", "baud": 115200}

        await migrate.downgrade(engine, "0002")
        async with engine.connect() as conn:
            configs = {
                r.name: r.config
                for r in (
                    await conn.execute(sa.select(_OLD_GATEWAYS.c.name, _OLD_GATEWAYS.c.config))
                )
            }
        assert configs["pi"]["node"] == "vm:8000"
        assert configs["fake-b"]["node"] == "node-b"
        assert "node" not in configs["fake-any"]
    finally:
        await engine.dispose()


_PARTIAL = {
    "ix_messages_expiry": "expires_at",
    "ix_messages_lease": "lease_expires_at",
    "ix_messages_gateway_ref": "gateway_ref",
}

# What the dispatcher asks of each partial index, with its parameters bound as the
# driver binds them: a plan made without their values must still use the index.
_USES = {
    "ix_messages_gateway_ref": (
        "SELECT id FROM messages WHERE gateway = :gateway AND gateway_ref = :ref",
        {"gateway": "modem1", "ref": "17"},
    ),
    "ix_messages_lease": (
        "SELECT id FROM messages WHERE status = :status AND lease_expires_at < :now",
        {"status": "sending"},
    ),
    "ix_messages_expiry": (
        "SELECT id FROM messages WHERE status = :status"
        " AND expires_at IS NOT NULL AND expires_at <= :now",
        {"status": "queued"},
    ),
}


async def _index_sql(conn: sa.ext.asyncio.AsyncConnection, name: str) -> str:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        q = "SELECT indexdef FROM pg_indexes WHERE indexname = :n"
    elif dialect == "sqlite":
        q = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"
    else:
        q = (
            "SELECT GROUP_CONCAT(column_name ORDER BY seq_in_index) FROM information_schema"
            ".statistics WHERE table_schema = DATABASE() AND index_name = :n"
        )
    return str((await conn.execute(sa.text(q), {"n": name})).scalar_one())


async def test_queue_indexes_leave_out_unset_columns_where_the_database_can(
    engine: AsyncEngine,
) -> None:
    """0008: on PostgreSQL and SQLite the three indexes searched only for a set column
    hold only rows with it set, the queries still use them, and downgrading restores
    the full indexes. MariaDB has no partial indexes and keeps the full ones."""
    dialect = engine.dialect.name
    async with engine.connect() as conn:
        for name, column in _PARTIAL.items():
            sql = (await _index_sql(conn, name)).lower()
            if dialect == "mysql":
                assert column in sql, sql
                assert "not null" not in sql, sql
            else:
                assert f"where {column} is not null" in sql.replace("(", "").replace(")", ""), sql
        if dialect == "postgresql":
            await conn.execute(sa.text("SET plan_cache_mode = force_generic_plan"))
            options = (
                await conn.execute(
                    sa.text("SELECT reloptions FROM pg_class WHERE relname = 'messages'")
                )
            ).scalar_one()
            assert "autovacuum_vacuum_scale_factor=0.01" in options
        if dialect != "mysql":
            prefix = "EXPLAIN " if dialect == "postgresql" else "EXPLAIN QUERY PLAN "
            for name, (query, params) in _USES.items():
                stmt = sa.text(prefix + query)
                if ":now" in query:
                    stmt = stmt.bindparams(sa.bindparam("now", type_=UTCDateTime()))
                    params = {**params, "now": utcnow()}
                plan = " ".join(str(row[-1]) for row in await conn.execute(stmt, params))
                assert name in plan, (name, plan)

    await migrate.downgrade(engine, "0007")
    try:
        async with engine.connect() as conn:
            for name, column in _PARTIAL.items():
                sql = (await _index_sql(conn, name)).lower()
                assert column in sql, sql
                assert "not null" not in sql, sql
            if dialect == "postgresql":
                options = (
                    await conn.execute(
                        sa.text("SELECT reloptions FROM pg_class WHERE relname = 'messages'")
                    )
                ).scalar_one()
                assert options is None
    finally:
        await migrate.upgrade(engine)
