"""Recording events (the webhooks' outbox). Each is added to the caller's transaction, so
an event exists exactly when what it tells of was committed; the webhook worker delivers
it later, from any node."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from simgate.services import changes
from simgate.store.models import Event, Message
from simgate.store.types import utcnow

# Outbound statuses that are webhook events, and the event each one is.
MESSAGE_EVENTS = {
    "sent": "message.sent",
    "delivered": "message.delivered",
    "failed": "message.failed",
    "expired": "message.failed",
}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


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
) -> None:
    session.add(
        Event(
            type=type_,
            subject=subject[:64],
            data=data,
            created_at=at or utcnow(),
            app_id=app_id,
            order_key=order_key,
            callback_url=callback_url,
            dispatched=False,
        )
    )
    changes.note_event(session)


def message_moved(session: AsyncSession, m: Message, status: str, at: datetime) -> None:
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
