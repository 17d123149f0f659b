"""``bulk.insert_many`` stores exactly what SQLAlchemy's INSERT stores, on every database:
the same bytes in every column (datetimes in SQLite's text form, JSON, None, Unicode), the
models' defaults for columns the rows leave out, and nothing when a row fails."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, func, insert, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from simgate.services.request_log import RequestEntry
from simgate.store import bulk
from simgate.store.engine import make_sessionmaker
from simgate.store.models import ApiRequest, App, Event, IdempotencyKey, Message, MessageEvent
from simgate.store.types import utcnow

Rows = Callable[[int], list[dict[str, Any]]]


def _messages(app_id: int) -> list[dict[str, Any]]:
    now = utcnow()
    full = {
        "id": uuid.uuid4().hex,
        "direction": "outbound",
        "app_id": app_id,
        "to_number": "+4915112345678",
        "from_number": "",
        "body": "Grüße 👋 ½",
        "encoding": "ucs2",
        "segments": 1,
        "status": "queued",
        "priority": 1,
        "gateway_pinned": None,
        "sim_slot": 2,
        "send_at": now + timedelta(minutes=5),
        "expires_at": now + timedelta(hours=1),
        "next_attempt_at": now,
        "attempts": 0,
        "metadata": {"order": [1, "two", 3.5], "none": None, "ü": True},
        "status_callback": "https://example.com/cb?a=1&b=2",
        "body_redacted": None,
        "created_at": now,
        "updated_at": now,
    }
    return [full, {**full, "id": uuid.uuid4().hex, "metadata": None, "sim_slot": None}]


def _messages_with_defaults(app_id: int) -> list[dict[str, Any]]:
    rows = _messages(app_id)
    for row in rows:
        for column in ("from_number", "priority", "attempts"):  # the model's defaults
            del row[column]
    return rows


def _history(app_id: int) -> list[dict[str, Any]]:
    return [
        {"message_id": "m1", "status": "queued", "at": utcnow(), "detail": {"by": "ü"}},
        {"message_id": "m1", "status": "sent", "at": utcnow(), "detail": None},
    ]


def _outbox(app_id: int) -> list[dict[str, Any]]:
    # without "dispatched": the default must be stored, or the outbox never finds the event
    return [{"type": "message.sent", "subject": "m1", "created_at": utcnow()}]


def _requests(app_id: int) -> list[dict[str, Any]]:
    entry = RequestEntry(
        utcnow(), app_id, "sg_abc", "GET", "/api/v1/me", 200, 1.25, "127.0.0.1", "r" * 32
    )
    return [entry.row(), {**entry.row(), "app_id": None, "latency_ms": 0.0}]


def _idempotency(app_id: int) -> list[dict[str, Any]]:
    return [
        {
            "app_id": app_id,
            "key": f"Key {n} ü",
            "request_hash": "h" * 64,
            "status_code": 202,
            "response": {"id": "m1", "to": ["+49"], "n": n},
            "created_at": utcnow(),
        }
        for n in range(2)
    ]


CASES: list[tuple[Any, Rows]] = [
    (Message, _messages),
    (Message, _messages_with_defaults),
    (MessageEvent, _history),
    (Event, _outbox),
    (ApiRequest, _requests),
    (IdempotencyKey, _idempotency),
]


async def _app(engine: AsyncEngine) -> int:
    """An app, and the message ``m1`` the history rows belong to."""
    async with make_sessionmaker(engine).begin() as session:
        app = App(name=f"bulk-{uuid.uuid4().hex[:8]}")
        session.add(app)
        await session.flush()
        await session.execute(insert(Message.__table__), {**_messages(app.id)[0], "id": "m1"})
        return app.id


async def _stored(session: AsyncSession, table: Table, leave_out: str) -> list[tuple[Any, ...]]:
    """The rows as the driver reads them back, without the generated key column."""
    names = [c.name for c in table.c if c.name != leave_out]
    quoted = ", ".join(session.get_bind().dialect.identifier_preparer.quote(n) for n in names)
    result = await session.execute(
        text(f"SELECT {quoted} FROM {table.name} ORDER BY {names[0]}")  # noqa: S608
    )
    return sorted((tuple(r) for r in result), key=repr)


async def _round_trip(
    engine: AsyncEngine, table: Table, rows: Sequence[dict[str, Any]], write: Any
) -> list[tuple[Any, ...]]:
    sessionmaker = make_sessionmaker(engine)
    async with sessionmaker.begin() as session:
        await session.execute(text(f"DELETE FROM {table.name}"))  # noqa: S608
    async with sessionmaker.begin() as session:
        await write(session, table, rows)
    async with sessionmaker() as session:
        leave_out = "id" if table.name != "messages" else ""
        return await _stored(session, table, leave_out)


async def _sqlalchemy(session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    await session.execute(insert(table), list(rows))


@pytest.mark.parametrize(("model", "make"), CASES, ids=[c[1].__name__.strip("_") for c in CASES])
async def test_the_same_bytes_as_sqlalchemys_insert(
    engine: AsyncEngine, model: Any, make: Rows
) -> None:
    table = model.__table__
    app_id = await _app(engine)
    rows = make(app_id)
    want = await _round_trip(engine, table, rows, _sqlalchemy)
    # new ids where they are given, so the second write is not a clash with the first
    rows = [{**r, "id": uuid.uuid4().hex} if "id" in r else r for r in rows]
    got = await _round_trip(engine, table, rows, bulk.insert_many)
    if table.name == "messages":  # the given ids differ; the rest must not
        assert len(got) == len(want) == len(rows)
        got = sorted((g[1:] for g in got), key=repr)
        want = sorted((w[1:] for w in want), key=repr)
    assert got == want
    assert len(got) == len(rows)


async def test_a_failing_row_leaves_nothing(engine: AsyncEngine) -> None:
    table = IdempotencyKey.__table__
    rows = _idempotency(await _app(engine))
    rows[1]["key"] = rows[0]["key"]  # the unique (app_id, key) is broken by the second
    sessionmaker = make_sessionmaker(engine)
    with pytest.raises(IntegrityError):
        async with sessionmaker.begin() as session:
            await bulk.insert_many(session, table, rows)
    async with sessionmaker() as session:
        assert await _stored(session, table, "id") == []


async def test_rows_naming_different_columns_are_an_error(engine: AsyncEngine) -> None:
    rows = [*_outbox(0), {"type": "message.sent", "subject": "m2"}]
    async with make_sessionmaker(engine).begin() as session:
        with pytest.raises(ValueError, match="different columns"):
            await bulk.insert_many(session, Event.__table__, rows)
        await bulk.insert_many(session, Event.__table__, [])  # nothing to do is fine


async def test_a_value_that_cannot_be_stored_is_a_statement_error(engine: AsyncEngine) -> None:
    """As SQLAlchemy reports it, so callers that handle database errors handle it too."""
    rows = _history(0)
    rows[1]["at"] = rows[1]["at"].replace(tzinfo=None)  # simgate stores aware times only
    async with make_sessionmaker(engine).begin() as session:
        with pytest.raises(StatementError, match="naive datetime"):
            await bulk.insert_many(session, MessageEvent.__table__, rows)


async def test_a_column_with_an_sql_default_must_be_named(sqlite_engine: AsyncEngine) -> None:
    """Its default cannot be filled in from Python: an error, not a NULL stored instead."""
    table = Table(
        "with_sql_default",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("note", String(10)),
        Column("at", DateTime, default=func.current_timestamp()),
    )
    async with sqlite_engine.begin() as conn:
        await conn.run_sync(table.metadata.create_all)
    async with make_sessionmaker(sqlite_engine).begin() as session:
        with pytest.raises(ValueError, match=r"with_sql_default\.at"):
            await bulk.insert_many(session, table, [{"note": "x"}])
        await bulk.insert_many(session, table, [{"note": "x", "at": None}])
