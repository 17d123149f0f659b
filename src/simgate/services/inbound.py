"""Storing received SMS. Every gateway hands what it received here; the inbox API, the
long-poll and webhooks read from the same store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.domain import encoding
from simgate.domain.ids import message_id
from simgate.domain.messages import Direction, MessageStatus, Received
from simgate.services import changes, events
from simgate.store.models import Gateway, Message, MessageEvent
from simgate.store.types import utcnow


async def store(session: AsyncSession, item: Received, *, inbound_key: str | None = None) -> str:
    """Add the message to the caller's transaction; its id. ``inbound_key``: what makes a
    gateway's retry of the same SMS a duplicate (unique; the insert fails on a repeat)."""
    now = utcnow()
    mid = message_id()
    info = encoding.segment_info(item.body) if item.body else None
    meta = dict(item.extra or {})
    if item.incomplete:
        meta["incomplete"] = True
    row = Message(
        id=mid,
        direction=Direction.INBOUND.value,
        app_id=None,
        to_number=item.to[:32],
        from_number=item.sender[:64],
        body=item.body,
        encoding=info.encoding.value if info else "gsm7",
        segments=item.parts,
        status=MessageStatus.RECEIVED.value,
        priority=0,
        gateway=item.gateway,
        next_attempt_at=now,
        attempts=0,
        meta=meta or None,
        sim_slot=item.sim_slot,
        inbound_key=inbound_key,
        created_at=item.received_at,
        updated_at=now,
    )
    session.add(row)
    session.add(
        MessageEvent(
            message_id=mid,
            status=MessageStatus.RECEIVED.value,
            at=now,
            detail={
                "gateway": item.gateway,
                "parts": item.parts,
                **({"incomplete": True} if item.incomplete else {}),
            },
        )
    )
    await session.execute(
        update(Gateway)
        .where(Gateway.name == item.gateway)
        .values(received_count=Gateway.received_count + 1)
    )
    events.message_received(session, inbox_item(row))
    changes.note_inbound(session, mid)
    return mid


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def inbox_item(m: Message) -> dict[str, Any]:
    """A received SMS as the API shows it."""
    meta = m.meta or {}
    return {
        "id": m.id,
        "direction": "inbound",
        "from": m.from_number,
        "to": m.to_number or None,
        "body": m.body,
        "received_at": _iso(m.created_at),
        "gateway": m.gateway,
        "sim_slot": m.sim_slot,
        "segments": m.segments,
        "read_at": _iso(m.read_at),
        **({"incomplete": True} if meta.get("incomplete") else {}),
    }
