"""Recording events (the webhooks' outbox). Each is added to the caller's transaction, so
an event exists exactly when what it tells of was committed; the webhook worker delivers
it later, from any node."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.services import changes
from simgate.store.models import Event, Message, MessageEvent
from simgate.store.queue_rows import QueuedMessage
from simgate.store.types import utcnow

_EVENTS = cast(Table, Event.__table__)
_MESSAGE_EVENTS = cast(Table, MessageEvent.__table__)

# Outbound statuses that are webhook events, and the event each one is.
MESSAGE_EVENTS = {
    "sent": "message.sent",
    "delivered": "message.delivered",
    "failed": "message.failed",
    "expired": "message.failed",
}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


class Rows:
    """History rows (``message_events``) and outbox events gathered by a hot path (the
    dispatcher's claim and recorder) and written at its end with the messages' changes
    (``queue_rows.save_with``: one statement on PostgreSQL, one INSERT per table elsewhere).
    Added as ORM objects they would be inserted one at a time, to learn each new id, which
    nobody reads. Write them in the transaction that made the changes they tell of."""

    __slots__ = ("events", "history")

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def take(self) -> list[tuple[Table, list[dict[str, Any]]]]:
        """The rows to insert, by table; they are handed over and no longer held here."""
        parts = [(_MESSAGE_EVENTS, self.history), (_EVENTS, self.events)]
        self.history, self.events = [], []
        return parts


def record(
    session: AsyncSession,
    type_: str,
    subject: str,
    data: dict[str, Any],
    *,
    app_id: int | None = None,
    order_key: str | None = None,
    callback_url: str | None = None,
    at: datetime | None = None,
    rows: Rows | None = None,
) -> None:
    """Add the event to the session's transaction, or to ``rows`` to be written with it."""
    values = {
        "type": type_,
        "subject": subject[:64],
        "data": data,
        "created_at": at or utcnow(),
        "app_id": app_id,
        "order_key": order_key,
        "callback_url": callback_url,
        "dispatched": False,
    }
    if rows is not None:
        rows.events.append(values)
    else:
        session.add(Event(**values))
    changes.note_event(session)


def message_moved(
    session: AsyncSession,
    m: Message | QueuedMessage,
    status: str,
    at: datetime,
    rows: Rows | None = None,
) -> None:
    """An outbound message reached ``status``: its event, when that status is one."""
    type_ = MESSAGE_EVENTS.get(status)
    if type_ is None or m.direction != "outbound":
        return
    data: dict[str, Any] = {
        "id": m.id,
        "to": m.to_number,
        "status": status,
        "gateway": m.gateway or m.gateway_pinned,
        "segments": m.segments,
        "at": _iso(at),
    }
    if status in ("failed", "expired") and m.error_code:
        data["error"] = {
            "code": m.error_code,
            "message": m.error_message or "",
            "hint": m.error_hint or "",
        }
    if m.meta:
        data["metadata"] = m.meta
    record(
        session,
        type_,
        m.id,
        data,
        app_id=m.app_id,
        order_key=m.id,
        callback_url=m.status_callback,
        at=at,
        rows=rows,
    )


def message_received(session: AsyncSession, item: dict[str, Any]) -> None:
    """``item``: the inbound message as the API shows it."""
    record(session, "message.received", item["id"], item, order_key=item["id"])


def gateway_changed(session: AsyncSession, type_: str, name: str, **data: Any) -> None:
    """``gateway.online`` or ``gateway.offline``; in order per gateway."""
    at = utcnow()
    body = {
        "gateway": name,
        "status": type_.rpartition(".")[2],
        "at": _iso(at),
        **{k: v for k, v in data.items() if v is not None},
    }
    record(session, type_, name, body, order_key=f"gateway:{name}"[:64], at=at)


async def gateway_log(
    session: AsyncSession, *, limit: int = 100, gateway: str | None = None
) -> list[dict[str, Any]]:
    """What went wrong on gateways, newest first: failed outbound messages with their error
    and hint, and gateways going online or offline (from the event outbox)."""
    failed = (
        select(Message)
        .where(
            Message.direction == "outbound",
            Message.status.in_(("failed", "expired")),
            Message.error_code.is_not(None),
        )
        .order_by(Message.updated_at.desc())
        .limit(limit)
    )
    changes_ = (
        select(Event)
        .where(Event.type.in_(("gateway.online", "gateway.offline")))
        .order_by(Event.id.desc())
        .limit(limit)
    )
    if gateway:
        failed = failed.where(Message.gateway == gateway)
        changes_ = changes_.where(Event.subject == gateway)
    out: list[dict[str, Any]] = [
        {
            "at": m.updated_at,
            "kind": "message",
            "gateway": m.gateway or m.gateway_pinned or "",
            "message_id": m.id,
            "status": m.status,
            "code": m.error_code or "",
            "text": m.error_message or "",
            "hint": m.error_hint or "",
        }
        for m in await session.scalars(failed)
    ]
    for e in await session.scalars(changes_):
        data = e.data or {}
        out.append(
            {
                "at": e.created_at,
                "kind": "gateway",
                "gateway": e.subject,
                "message_id": "",
                "status": str(data.get("status") or e.type.rpartition(".")[2]),
                "code": "",
                "text": str(data.get("reason") or ""),
                "hint": "",
            }
        )
    out.sort(key=lambda row: row["at"], reverse=True)
    return out[:limit]
