"""PostgreSQL: a batch of sends is written by one statement that commits by itself
(store/bulk.py). Every column reads back as the transactional path wrote it, a failing
part leaves nothing behind, the NOTIFY reaches listeners, and the send path still answers
an Idempotency-Key clash within a batch with 409 for that request only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings, load_settings
from simgate.services.outbound import NOTIFY_CHANNEL, Outbound, Sender, SendRequest
from simgate.store import bulk, migrate
from simgate.store.engine import make_engine, make_sessionmaker
from simgate.store.models import App, Event, IdempotencyKey, Message, MessageEvent
from simgate.store.types import utcnow
from simgate.web.app import create_app
from tests.conftest import fresh_database

TO = "+4915112345678"
MESSAGES = Message.__table__
EVENTS = MessageEvent.__table__


@pytest.fixture
async def pg(tmp_path: Path, clean_env: None) -> AsyncIterator[tuple[Settings, AsyncEngine]]:
    async for url in fresh_database("postgresql", tmp_path):
        data = tmp_path / "data"
        data.mkdir()
        settings = load_settings(data_dir=data, database_url=url, log_format="console")
        engine = make_engine(settings)
        await migrate.upgrade(engine)
        try:
            yield settings, engine
        finally:
            await engine.dispose()


def _message(mid: str, **extra: object) -> dict[str, object]:
    now = utcnow()
    row: dict[str, object] = {
        "id": mid,
        "direction": "outbound",
        "app_id": None,
        "to_number": "+4915112345678",
        "from_number": "",
        "body": "Grüße 👋",
        "encoding": "ucs2",
        "segments": 1,
        "status": "queued",
        "priority": 0,
        "gateway_pinned": None,
        "sim_slot": None,
        "send_at": None,
        "expires_at": now + timedelta(hours=1),
        "next_attempt_at": now,
        "attempts": 0,
        "metadata": {"order": [1, "two"], "none": None},
        "status_callback": None,
        "body_redacted": None,
        "created_at": now,
        "updated_at": now,
    }
    row.update(extra)
    return row


def _event(mid: str) -> dict[str, object]:
    return {"message_id": mid, "status": "queued", "at": utcnow(), "detail": {"by": "test"}}


async def test_one_statement_writes_every_part_and_reads_back_alike(
    pg: tuple[Settings, AsyncEngine],
) -> None:
    _, engine = pg
    rows = [_message(uuid.uuid4().hex), _message(uuid.uuid4().hex, metadata=None, sim_slot=2)]
    stmt, params = bulk.statement(
        inserts=[(MESSAGES, rows), (EVENTS, [_event(str(r["id"])) for r in rows])]
    )
    async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        await conn.execute(stmt, params)
    async with make_sessionmaker(engine)() as session:
        stored = {m.id: m for m in (await session.scalars(select(Message))).all()}
        events = (await session.scalars(select(MessageEvent))).all()
    assert set(stored) == {r["id"] for r in rows}
    for row in rows:
        m = stored[str(row["id"])]
        assert m.body == "Grüße 👋"
        assert m.meta == row["metadata"]
        assert m.expires_at == row["expires_at"]
        assert m.expires_at is not None
        assert m.expires_at.tzinfo is not None
        assert m.sim_slot == row["sim_slot"]
    assert sorted(e.message_id for e in events) == sorted(str(r["id"]) for r in rows)
    assert all(e.detail == {"by": "test"} for e in events)


async def test_columns_left_out_get_the_models_defaults(
    pg: tuple[Settings, AsyncEngine],
) -> None:
    """As an INSERT through SQLAlchemy would: a webhook event without ``dispatched`` must
    not be stored with NULL there, where the outbox would never find it."""
    _, engine = pg
    mid = uuid.uuid4().hex
    row = _message(mid)
    for column in ("from_number", "priority", "attempts"):
        del row[column]
    event = {"type": "message.sent", "subject": mid, "created_at": utcnow()}
    stmt, params = bulk.statement(inserts=[(MESSAGES, [row]), (Event.__table__, [event])])
    async with engine.begin() as conn:
        await conn.execute(stmt, params)
        m = (await conn.execute(select(MESSAGES).where(MESSAGES.c.id == mid))).one()
        e = (await conn.execute(select(Event.__table__))).one()
    assert (m.from_number, m.priority, m.attempts) == ("", 0, 0)
    assert (e.dispatched, e.data) == (False, {})


async def test_a_failing_part_leaves_nothing_behind(pg: tuple[Settings, AsyncEngine]) -> None:
    _, engine = pg
    mid = uuid.uuid4().hex
    stmt, params = bulk.statement(
        inserts=[(MESSAGES, [_message(mid)]), (EVENTS, [_event(mid), _event("0" * 32)])]
    )
    with pytest.raises(IntegrityError):  # the second event names no message
        async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            await conn.execute(stmt, params)
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(MESSAGES))).scalar() == 0
        assert (await conn.execute(select(func.count()).select_from(EVENTS))).scalar() == 0


def test_rows_of_one_table_must_name_the_same_columns() -> None:
    with pytest.raises(ValueError, match="messages"):
        bulk.statement(inserts=[(MESSAGES, [{"id": "a"}, {"id": "b", "body": "x"}])])
    with pytest.raises(ValueError, match="nothing"):
        bulk.statement(inserts=[(MESSAGES, [])], updates=[(MESSAGES, [])])
    with pytest.raises(ValueError, match="must name id"):
        bulk.statement(updates=[(MESSAGES, [{"status": "sent"}])])
    first, _ = bulk.statement(inserts=[(EVENTS, [_event("a")])], notify=(NOTIFY_CHANNEL, "x"))
    again, _ = bulk.statement(
        inserts=[(EVENTS, [_event("b"), _event("c")])], notify=(NOTIFY_CHANNEL, "y")
    )
    assert first is again  # the text is built once per shape; the driver prepares it once


async def test_updates_and_inserts_in_one_statement_inside_a_transaction(
    pg: tuple[Settings, AsyncEngine],
) -> None:
    """As the dispatcher writes a claim: two sets of changed columns and the history."""
    _, engine = pg
    ids = [uuid.uuid4().hex for _ in range(3)]
    stmt, params = bulk.statement(inserts=[(MESSAGES, [_message(i) for i in ids])])
    async with engine.begin() as conn:
        await conn.execute(stmt, params)
    later = utcnow() + timedelta(minutes=5)
    stmt, params = bulk.statement(
        updates=[
            (MESSAGES, [{"id": ids[0], "status": "sending", "lease_expires_at": later}]),
            (
                MESSAGES,
                [
                    {"id": ids[1], "status": "failed", "error_code": "x", "metadata": None},
                    {"id": ids[2], "status": "failed", "error_code": "y", "metadata": {"k": 1}},
                ],
            ),
        ],
        inserts=[(EVENTS, [_event(i) for i in ids])],
    )
    async with make_sessionmaker(engine).begin() as session:
        await session.execute(stmt, params)
    async with make_sessionmaker(engine)() as session:
        got = {m.id: m for m in (await session.scalars(select(Message))).all()}
        history = (await session.scalars(select(MessageEvent))).all()
    assert (got[ids[0]].status, got[ids[0]].lease_expires_at) == ("sending", later)
    assert got[ids[0]].error_code is None
    assert got[ids[0]].meta == {"order": [1, "two"], "none": None}  # not named: kept
    assert (got[ids[1]].status, got[ids[1]].error_code, got[ids[1]].meta) == ("failed", "x", None)
    assert (got[ids[2]].error_code, got[ids[2]].meta) == ("y", {"k": 1})
    assert len(history) == 3


async def _listen(
    settings: Settings, channel: str
) -> tuple[asyncpg.Connection, asyncio.Queue[str]]:
    url = settings.effective_database_url.replace("postgresql+asyncpg", "postgresql")
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(url)
    await listener.add_listener(channel, lambda *args: heard.put_nowait(args[3]))
    return listener, heard


async def test_the_queueing_statement_notifies_other_processes(
    pg: tuple[Settings, AsyncEngine],
) -> None:
    settings, engine = pg
    listener, heard = await _listen(settings, NOTIFY_CHANNEL)
    outbound = Outbound(make_sessionmaker(engine), settings)
    try:
        await outbound.submit(
            sender=Sender(None, "test"), req=SendRequest(to=[TO], body="hi", many=False)
        )
        # the payload names this process, whose own listener leaves it alone
        assert await asyncio.wait_for(heard.get(), 5) == outbound.token
    finally:
        await outbound.close()
        await listener.close()


async def test_a_server_wakes_its_dispatcher_for_other_processes_notifies_only(
    pg: tuple[Settings, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its own sends woke the dispatcher when they committed; their NOTIFY coming back
    would only make it claim once more for nothing."""
    settings, engine = pg
    await engine.dispose()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        woken: list[str] = []
        monkeypatch.setattr(runtime.dispatcher, "wake", lambda: woken.append("woken"))

        async def notify_and_settle(payload: str) -> list[str]:
            woken.clear()
            async with make_sessionmaker(runtime.engine).begin() as session:
                await session.execute(
                    text("SELECT pg_notify(:c, :p)"), {"c": NOTIFY_CHANNEL, "p": payload}
                )
            await asyncio.sleep(0.5)  # the listener hears a NOTIFY within milliseconds
            return list(woken)

        await asyncio.sleep(1.0)  # start-up's own wake-ups (listener connected, gateways)
        assert "woken" in await notify_and_settle("someone-else")
        assert await notify_and_settle(runtime.outbound.token) == []
        assert "woken" in await notify_and_settle("")  # the command line, or a reconnect


async def test_an_idempotency_clash_in_a_batch_fails_only_its_request(
    pg: tuple[Settings, AsyncEngine],
) -> None:
    """A key another node committed after this one looked: the batch's statement fails as a
    whole, the writer retries each request alone, and only that request fails (submit
    then answers it from the stored key, as before)."""
    settings, engine = pg
    async with make_sessionmaker(engine).begin() as session:
        app = App(name="shop")
        session.add(app)
        await session.flush()
        app_id = app.id
        # committed by another node a moment ago, with a different body
        session.add(
            IdempotencyKey(
                app_id=app_id,
                key="order-7",
                request_hash="0" * 64,
                status_code=202,
                response={},
                created_at=utcnow(),
            )
        )
    outbound = Outbound(make_sessionmaker(engine), settings)
    sender = Sender(app_id, "shop")
    keys = [None, "order-7", None]
    req = [SendRequest(to=[f"+49151123456{i:02d}"], body="hi", many=False) for i in (1, 2, 3)]
    try:
        items = [
            await outbound._prepare(sender, r, k, r.fingerprint())
            for r, k in zip(req, keys, strict=True)
        ]
        await outbound._write(items)  # one group commit, as under load
    finally:
        await outbound.close()
    assert items[0].future.result().status_code == 202
    assert isinstance(items[1].future.exception(), IntegrityError)
    assert items[2].future.result().status_code == 202
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT to_number FROM messages ORDER BY 1"))).all()
    assert [r[0] for r in stored] == ["+4915112345601", "+4915112345603"]
