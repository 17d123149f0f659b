"""The dispatcher's plain message rows: read, changed by the pipeline's own rules, written
back with only what changed, on every backend."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings
from simgate.domain.messages import MessageError, MessageStatus
from simgate.drivers.base import SendOutcome
from simgate.services.dispatcher import Claimed, Dispatcher, _Outcome, _Report
from simgate.services.outbound import Outbound, Sender, SendRequest, move
from simgate.store import queue_rows
from simgate.store.engine import make_sessionmaker
from simgate.store.models import Event, Message, MessageEvent
from simgate.store.types import utcnow


async def _queue(engine: AsyncEngine, settings: Settings, n: int, **extra: object) -> list[str]:
    outbound = Outbound(make_sessionmaker(engine), settings)
    try:
        accepted = await outbound.submit(
            sender=Sender(None, "test"),
            req=SendRequest(
                to=[f"+49151123456{i:02d}" for i in range(n)],
                body="hello",
                many=True,
                **extra,  # type: ignore[arg-type]
            ),
        )
    finally:
        await outbound.close()
    return accepted.message_ids


async def _sending(
    engine: AsyncEngine, settings: Settings, *, gateway_ref: str | None = None
) -> tuple[Dispatcher, Claimed]:
    """One message handed to gateway ``g`` by this node, and its dispatcher."""
    [mid] = await _queue(engine, settings, 1)
    sessionmaker = make_sessionmaker(engine)
    dispatcher = Dispatcher(sessionmaker, settings)
    async with sessionmaker.begin() as session:
        m = await session.get_one(Message, mid)
        m.attempts, m.gateway, m.lease_owner = 1, "g", dispatcher.node
        m.gateway_ref = gateway_ref
        move(session, m, MessageStatus.SENDING, {"gateway": "g"})
    return dispatcher, Claimed(mid, m.to_number, "hello", "gsm7", 1, 0, 1, "g")


async def _outcome(engine: AsyncEngine, mid: str) -> tuple[Message, list[str]]:
    """The message as stored, and its status history in order."""
    async with make_sessionmaker(engine)() as session:
        m = await session.get_one(Message, mid)
        statuses = (
            await session.scalars(
                select(MessageEvent.status)
                .where(MessageEvent.message_id == mid)
                .order_by(MessageEvent.id)
            )
        ).all()
    return m, list(statuses)


async def test_only_changed_columns_are_written(engine: AsyncEngine, settings: Settings) -> None:
    ids = await _queue(engine, settings, 3, metadata={"order": 7})
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    sessionmaker = make_sessionmaker(engine)
    async with sessionmaker.begin() as session:
        rows = await queue_rows.load(
            session, queue_rows.query().where(Message.id.in_(ids)).order_by(Message.id)
        )
        assert [r.id for r in rows] == sorted(ids)
        assert rows[0].meta == {"order": 7}
        assert rows[0].status == "queued"
        assert all(r.changes() == {} for r in rows)
        now = utcnow()
        rows[0].attempts += 1
        move(session, rows[0], MessageStatus.SENDING, {"gateway": "g"}, now=now)
        rows[0].gateway, rows[0].lease_owner = "g", "node-a"
        rows[0].lease_expires_at = now + timedelta(seconds=60)
        rows[1].avoid_gateway = "h"
        assert set(rows[0].changes()) == {
            "status", "updated_at", "attempts", "gateway", "lease_owner", "lease_expires_at"
        }  # fmt: skip
        event.listen(engine.sync_engine, "before_cursor_execute", seen)
        try:
            changed = await queue_rows.save(session, rows)
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", seen)
    assert changed == 2
    updates = [s for s in statements if s.lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 2  # one per set of changed columns; the untouched row: none
    assert all("metadata" not in s and "body" not in s for s in updates)
    async with sessionmaker() as session:
        got = {m.id: m for m in (await session.scalars(select(Message))).all()}
        history = (
            await session.scalars(
                select(MessageEvent.status).where(MessageEvent.message_id == rows[0].id)
            )
        ).all()
    first = got[rows[0].id]
    assert (first.status, first.attempts, first.gateway, first.lease_owner) == (
        "sending", 1, "g", "node-a"
    )  # fmt: skip
    assert first.lease_expires_at is not None
    assert first.meta == {"order": 7}
    assert got[rows[1].id].avoid_gateway == "h"
    assert got[rows[1].id].status == "queued"
    assert got[rows[2].id].status == "queued"
    assert got[rows[2].id].updated_at == first.created_at
    assert list(history) == ["queued", "sending"]


async def test_an_outcome_and_a_report_by_reference_in_one_batch(
    engine: AsyncEngine, settings: Settings
) -> None:
    """The report finds its message by the gateway's reference, which the outcome in the same
    batch sets: both act on one object, so the message ends delivered, written once."""
    # An earlier report of the same send told us the reference.
    dispatcher, item = await _sending(engine, settings, gateway_ref="ref-1")
    mid = item.id
    batch = [
        _Outcome(item, SendOutcome(ok=True, gateway_ref="ref-1")),
        _Report("g", None, "ref-1", False, MessageError("undelivered", "no such subscriber")),
    ]
    await dispatcher._record_batch(batch)  # type: ignore[arg-type]
    m, statuses = await _outcome(engine, mid)
    async with make_sessionmaker(engine)() as session:
        outbox = (await session.scalars(select(Event.type).order_by(Event.id))).all()
    assert m.status == "failed"
    assert m.error_code == "undelivered"
    assert m.sent_at is not None
    assert m.lease_owner is None
    assert list(statuses) == ["queued", "sending", "sent", "failed"]
    assert list(outbox) == ["message.sent", "message.failed"]


async def test_a_report_naming_the_reference_its_send_got_in_the_same_batch(
    engine: AsyncEngine, settings: Settings
) -> None:
    """The send's outcome gives the message its reference and the report names only that
    reference, both in one batch: the database does not hold the reference yet, the batch
    does, and the report is not lost."""
    dispatcher, item = await _sending(engine, settings)
    mid = item.id
    batch = [
        _Outcome(item, SendOutcome(ok=True, gateway_ref="mr-7")),
        _Report("g", None, "mr-7", True, None),
    ]
    await dispatcher._record_batch(batch)  # type: ignore[arg-type]
    m, statuses = await _outcome(engine, mid)
    assert m.status == "delivered"
    assert m.gateway_ref == "mr-7"
    assert list(statuses) == ["queued", "sending", "sent", "delivered"]
