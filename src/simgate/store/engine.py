"""Engine factory and start-up connection checks, for all three supported backends."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from simgate.config import Settings, redact_url
from simgate.store.sqlite_inline import BUSY_TIMEOUT_MS, inline_connector

log = logging.getLogger(__name__)
IDLE_PING = 2.0  # seconds a pooled connection may sit idle before it is checked on checkout


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached; the message is fit for a user."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; NORMAL sync is durable across process
    # crashes (only a power cut can drop the last transactions); foreign keys are off by
    # default in SQLite and we rely on them.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.close()


def _ensure_sqlite_dir(path: str) -> None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseUnavailable(
            f"cannot create the directory for the SQLite file {path!r}: {exc.strerror}"
        ) from None


def make_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    url = url or settings.effective_database_url
    backend = make_url(url).get_backend_name()  # "sqlite", "postgresql", "mysql", "mariadb"
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        _ensure_sqlite_dir(make_url(url).database or "")
        # One connection per process: SQLite has one writer at a time, and several
        # connections in one process would fight over its lock with sleep-and-retry
        # (the busy handler), costing tens of milliseconds per conflict. Queueing on one
        # connection in asyncio is far cheaper; WAL still lets other processes read.
        kwargs.update(pool_size=1, max_overflow=0, pool_timeout=60)
        kwargs["async_creator"] = inline_connector(make_url(url).database or "")
    else:
        kwargs.update(
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_pool_size,
            pool_recycle=1800,
        )
        if backend in ("mysql", "mariadb"):
            kwargs["connect_args"] = {"charset": "utf8mb4", "connect_timeout": 10}
            # READ COMMITTED: under MariaDB's default REPEATABLE READ, the claim's locking
            # read takes gap locks that make two nodes deadlock and take turns.
            kwargs["isolation_level"] = "READ COMMITTED"
        else:
            # A statement that hangs (a dead connection) fails after 30 s instead of
            # stalling every send behind it.
            kwargs["connect_args"] = {"timeout": 10, "command_timeout": 30}
    engine = create_async_engine(url, **kwargs)
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Check a pooled connection before use when it has been idle for IDLE_PING seconds:
    a database restart or an idle timeout closes those unseen. One in use moments ago needs
    no check, and under load that saves a round trip on every transaction (SQLAlchemy's
    pre-ping checks every checkout). A connection that breaks in use anyway fails its
    statement with a disconnect error, which makes the pool replace every older one."""
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < IDLE_PING:
            return
        try:
            alive = dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            if not dialect.is_disconnect(exc, dbapi_conn, None):
                raise
            alive = False
        if not alive:
            raise DisconnectionError("connection closed while idle")  # the pool reconnects


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def describe_db_error(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text_ = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return text_


async def wait_for_database(engine: AsyncEngine, timeout: float) -> None:
    """Connect, retrying with backoff for up to ``timeout`` s; DatabaseUnavailable after."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return
        except (TimeoutError, OSError, DBAPIError, OperationalError) as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DatabaseUnavailable(
                    f"cannot reach the database at {redact_url(engine.url)}: "
                    f"{describe_db_error(exc)}"
                ) from None
            log.warning(
                "database not reachable yet, retrying",
                extra={"error": describe_db_error(exc), "retry_in": round(delay, 1)},
            )
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 5.0)
