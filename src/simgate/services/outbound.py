"""Accepting messages: validation, idempotency, per-app limits, and the durable write that
happens before the API answers 202. Also reading, listing and cancelling them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simgate.config import Settings
from simgate.domain import encoding, phone
from simgate.domain.ids import MESSAGE_ID_RE, message_id
from simgate.domain.messages import (
    CANCELABLE,
    Direction,
    MessageError,
    MessageStatus,
    Priority,
    check_move,
)
from simgate.errors import Conflict, Forbidden, Invalid, NotFound, RateLimited
from simgate.store.models import App, AppUsage, Gateway, IdempotencyKey, Message, MessageEvent
from simgate.store.types import utcnow

S = MessageStatus
NOTIFY_CHANNEL = "simgate_outbound"


@dataclass(frozen=True, slots=True)
class SendRequest:
    to: Sequence[str]
    body: str
    many: bool  # the request gave a list of recipients
    gateway: str | None = None
    send_at: datetime | None = None
    ttl: int | None = None
    priority: Priority = Priority.NORMAL
    metadata: dict[str, Any] | None = None

    def fingerprint(self) -> str:
        """What an Idempotency-Key is bound to: the same key with another body is a 409."""
        data = {
            "to": list(self.to),
            "body": self.body,
            "many": self.many,
            "gateway": self.gateway,
            "send_at": self.send_at.isoformat() if self.send_at else None,
            "ttl": self.ttl,
            "priority": int(self.priority),
            "metadata": self.metadata,
        }
        raw = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sends: an app (API) or an operator at the command line (``app_id`` None)."""

    app_id: int | None
    name: str


@dataclass(frozen=True, slots=True)
class Accepted:
    status_code: int
    body: dict[str, Any]
    message_ids: list[str] = field(default_factory=list)
    replayed: bool = False


def _field(req: SendRequest, i: int) -> str:
    return f"to[{i}]" if req.many else "to"


def message_summary(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": m.id,
        "status": m.status,
        "to": m.to_number,
        "segments": m.segments,
        "encoding": m.encoding,
        "created_at": _iso(m.created_at),
    }
    if m.send_at is not None:
        out["send_at"] = _iso(m.send_at)
    if m.gateway_pinned:
        out["gateway"] = m.gateway_pinned
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


class Outbound:
    """The send path. ``wake`` is called after a commit that queued work for now."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._wake = wake
        self._notify = settings.backend == "postgresql"

    # --- validation ---------------------------------------------------------------------

    def _check_body(self, body: str) -> encoding.SegmentInfo:
        if not body.strip():
            raise Invalid("body: must not be empty", field="body")
        info = encoding.segment_info(body)
        if info.segments > self._settings.max_segments:
            raise Invalid(
                f"body: {len(body)} characters need {info.segments} {info.encoding.value} "
                f"segments; at most {self._settings.max_segments} are allowed",
                field="body",
            )
        return info

    def _numbers(self, req: SendRequest, allowed: set[str]) -> list[str]:
        if not req.to:
            raise Invalid("to: give at least one recipient", field="to")
        if len(req.to) > self._settings.max_recipients:
            raise Invalid(
                f"to: at most {self._settings.max_recipients} recipients per request",
                field="to",
            )
        out = []
        for i, raw in enumerate(req.to):
            name = _field(req, i)
            try:
                number = phone.normalise(raw, self._settings.default_region or None)
            except phone.InvalidNumber as exc:
                raise Invalid(f"{name}: {raw!r} {exc}", field=name) from None
            if allowed and number.region not in allowed:
                raise Forbidden(
                    f"{name}: {number.e164} is in {number.region}, which this app may not "
                    f"send to (allowed: {', '.join(sorted(allowed))})",
                    field=name,
                )
            out.append(number.e164)
        return out

    def _times(self, req: SendRequest, now: datetime) -> tuple[datetime | None, datetime | None]:
        send_at = req.send_at
        if send_at is not None:
            if send_at < now - timedelta(seconds=60):
                raise Invalid("send_at: is in the past", field="send_at")
            if send_at > now + timedelta(days=self._settings.max_schedule_days):
                raise Invalid(
                    f"send_at: is more than {self._settings.max_schedule_days} days ahead",
                    field="send_at",
                )
            if send_at <= now:
                send_at = None
        expires_at = None
        if req.ttl is not None:
            if req.ttl <= 0:
                raise Invalid("ttl: must be a positive number of seconds", field="ttl")
            if req.ttl > self._settings.max_ttl:
                raise Invalid(f"ttl: at most {self._settings.max_ttl} seconds", field="ttl")
            expires_at = (send_at or now) + timedelta(seconds=req.ttl)
        return send_at, expires_at

    async def _check_gateway(self, session: AsyncSession, name: str | None) -> None:
        if name is None:
            return
        found = await session.scalar(select(Gateway.is_active).where(Gateway.name == name))
        if found is None:
            names = list(await session.scalars(select(Gateway.name).order_by(Gateway.name)))
            known = ", ".join(repr(n) for n in names) or "none yet"
            raise Invalid(f"gateway: no gateway named {name!r} (known: {known})", field="gateway")
        if not found:
            raise Invalid(f"gateway: {name!r} is deactivated", field="gateway")

    # --- limits -------------------------------------------------------------------------

    async def _take_quota(self, session: AsyncSession, app: App, n: int, now: datetime) -> None:
        windows = []
        if app.rate_per_minute:
            windows.append(
                (
                    "minute",
                    now.replace(second=0, microsecond=0),
                    app.rate_per_minute,
                    timedelta(minutes=1),
                )
            )
        if app.rate_per_day:
            windows.append(
                (
                    "day",
                    now.replace(hour=0, minute=0, second=0, microsecond=0),
                    app.rate_per_day,
                    timedelta(days=1),
                )
            )
        for window, start, limit, length in windows:
            if not await self._add_usage(session, app.id, window, start, n, limit):
                retry = max(1, int((start + length - now).total_seconds()) + 1)
                raise RateLimited(
                    f"app {app.name!r} may send {limit} messages per {window}; try again in "
                    f"{retry} s",
                    retry_after=retry,
                )

    async def _add_usage(
        self,
        session: AsyncSession,
        app_id: int,
        window: str,
        start: datetime,
        n: int,
        limit: int,
    ) -> bool:
        """Count ``n`` more messages in the window unless that would pass ``limit``.
        One conditional UPDATE, so concurrent requests on any node cannot overshoot."""
        key = and_(
            AppUsage.app_id == app_id, AppUsage.window == window, AppUsage.window_start == start
        )
        for _ in range(3):
            result = await session.execute(
                update(AppUsage)
                .where(key, AppUsage.count + n <= limit)
                .values(count=AppUsage.count + n)
            )
            if getattr(result, "rowcount", 0):
                return True
            if await session.scalar(select(AppUsage.count).where(key)) is not None:
                return False
            if n > limit:
                return False
            try:
                async with session.begin_nested():
                    session.add(AppUsage(app_id=app_id, window=window, window_start=start, count=n))
                return True
            except IntegrityError:
                continue  # another request created the row first; count on it
        return False

    # --- the write ----------------------------------------------------------------------

    async def submit(
        self, *, sender: Sender, req: SendRequest, idempotency_key: str | None = None
    ) -> Accepted:
        """Validate and store; the returned answer is durable once this returns."""
        if idempotency_key is not None and not (0 < len(idempotency_key) <= 255):
            raise Invalid("Idempotency-Key: must be 1-255 characters", field="idempotency-key")
        fingerprint = req.fingerprint()
        if idempotency_key is not None and sender.app_id is not None:
            replay = await self._replay(sender.app_id, idempotency_key, fingerprint)
            if replay is not None:
                return replay
        try:
            accepted = await self._store(sender, req, idempotency_key, fingerprint)
        except IntegrityError:
            # A concurrent request with the same Idempotency-Key committed first.
            if idempotency_key is None or sender.app_id is None:
                raise
            replay = await self._replay(sender.app_id, idempotency_key, fingerprint)
            if replay is None:
                raise
            return replay
        if any(s == S.QUEUED for s in _statuses(accepted)):
            self._wake()
        return accepted

    async def _replay(self, app_id: int, key: str, fingerprint: str) -> Accepted | None:
        async with self._sessionmaker() as session:
            row = await session.scalar(
                select(IdempotencyKey).where(
                    IdempotencyKey.app_id == app_id, IdempotencyKey.key == key
                )
            )
        if row is None:
            return None
        if row.request_hash != fingerprint:
            raise Conflict(
                "Idempotency-Key: this key was used with a different request; use a new key "
                "for a new message",
                field="idempotency-key",
            )
        return Accepted(row.status_code, row.response, replayed=True)

    async def _store(
        self, sender: Sender, req: SendRequest, idempotency_key: str | None, fingerprint: str
    ) -> Accepted:
        now = utcnow()
        info = self._check_body(req.body)
        send_at, expires_at = self._times(req, now)
        async with self._sessionmaker.begin() as session:
            app = await session.get(App, sender.app_id) if sender.app_id is not None else None
            allowed = {
                c.strip().upper()
                for c in (app.allowed_countries if app else "").split(",")
                if c.strip()
            }
            numbers = self._numbers(req, allowed)
            await self._check_gateway(session, req.gateway)
            if app is not None:
                await self._take_quota(session, app, len(numbers), now)
            status = S.SCHEDULED if send_at else S.QUEUED
            rows = []
            for number in numbers:
                m = Message(
                    id=message_id(),
                    direction=Direction.OUTBOUND.value,
                    app_id=sender.app_id,
                    to_number=number,
                    from_number="",
                    body=req.body,
                    encoding=info.encoding.value,
                    segments=info.segments,
                    status=status.value,
                    priority=int(req.priority),
                    gateway_pinned=req.gateway,
                    send_at=send_at,
                    expires_at=expires_at,
                    next_attempt_at=send_at or now,
                    attempts=0,
                    meta=req.metadata,
                    created_at=now,
                    updated_at=now,
                )
                rows.append(m)
            session.add_all(rows)
            session.add_all(
                MessageEvent(
                    message_id=m.id, status=status.value, at=now, detail={"by": sender.name}
                )
                for m in rows
            )
            summaries = [message_summary(m) for m in rows]
            body: dict[str, Any] = {"messages": summaries} if req.many else summaries[0]
            if idempotency_key is not None and sender.app_id is not None:
                session.add(
                    IdempotencyKey(
                        app_id=sender.app_id,
                        key=idempotency_key,
                        request_hash=fingerprint,
                        status_code=202,
                        response=body,
                        created_at=now,
                    )
                )
            if self._notify and status == S.QUEUED:
                await session.execute(text("SELECT pg_notify(:c, '')"), {"c": NOTIFY_CHANNEL})
        return Accepted(202, body, [m.id for m in rows])


def _statuses(accepted: Accepted) -> list[str]:
    body = accepted.body
    items = body.get("messages", [body])
    return [str(item.get("status")) for item in items]


# --- reading ---------------------------------------------------------------------------


def error_of(m: Message) -> dict[str, Any] | None:
    if not m.error_code:
        return None
    return {"code": m.error_code, "message": m.error_message or "", "hint": m.error_hint or ""}


async def get_message(session: AsyncSession, id_: str, *, app_id: int | None) -> dict[str, Any]:
    """The message with its events; NotFound for other apps' messages (``app_id`` None: any)."""
    if not MESSAGE_ID_RE.match(id_):
        raise NotFound(f"no message {id_[:40]!r}", field="id")
    m = await session.get(Message, id_)
    if m is None or (
        app_id is not None and m.direction == Direction.OUTBOUND.value and m.app_id != app_id
    ):
        raise NotFound(f"no message {id_!r}", field="id")
    events = await session.scalars(
        select(MessageEvent).where(MessageEvent.message_id == id_).order_by(MessageEvent.id)
    )
    out = message_item(m)
    out.update(
        {
            "gateway": m.gateway or m.gateway_pinned,
            "error": error_of(m),
            "attempts": m.attempts,
            "priority": Priority(m.priority).name.lower(),
            "send_at": _iso(m.send_at),
            "expires_at": _iso(m.expires_at),
            "sent_at": _iso(m.sent_at),
            "delivered_at": _iso(m.delivered_at),
            "metadata": m.meta,
            "events": [
                {"status": e.status, "at": _iso(e.at), **({"detail": e.detail} if e.detail else {})}
                for e in events
            ],
        }
    )
    return out


def message_item(m: Message) -> dict[str, Any]:
    if m.direction == Direction.INBOUND.value:
        return {
            "id": m.id,
            "direction": "inbound",
            "from": m.from_number,
            "to": m.to_number,
            "body": m.body,
            "received_at": _iso(m.created_at),
            "gateway": m.gateway,
            "segments": m.segments,
        }
    return {
        "id": m.id,
        "direction": "outbound",
        "to": m.to_number,
        "body": m.body,
        "status": m.status,
        "segments": m.segments,
        "encoding": m.encoding,
        "gateway": m.gateway or m.gateway_pinned,
        "created_at": _iso(m.created_at),
    }


async def list_messages(
    session: AsyncSession,
    *,
    app_id: int | None,
    directions: set[Direction],
    status: str | None = None,
    phone_number: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first. ``app_id`` limits outbound messages to that app's own."""
    conds = []
    visible = []
    if Direction.OUTBOUND in directions:
        visible.append(
            and_(
                Message.direction == "outbound",
                *([Message.app_id == app_id] if app_id is not None else []),
            )
        )
    if Direction.INBOUND in directions:
        visible.append(Message.direction == "inbound")
    conds.append(or_(*visible))
    if status:
        conds.append(Message.status == status)
    if phone_number:
        conds.append(or_(Message.to_number == phone_number, Message.from_number == phone_number))
    if since is not None:
        conds.append(Message.created_at >= since)
    if cursor:
        conds.append(Message.id < cursor)
    rows = list(
        await session.scalars(
            select(Message).where(*conds).order_by(Message.id.desc()).limit(limit + 1)
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return [message_item(m) for m in rows], (rows[-1].id if more and rows else None)


async def cancel(session: AsyncSession, id_: str, *, app_id: int | None, by: str) -> dict[str, Any]:
    if not MESSAGE_ID_RE.match(id_):
        raise NotFound(f"no message {id_[:40]!r}", field="id")
    m = await session.get(Message, id_, with_for_update=True)
    if m is None or m.direction != "outbound" or (app_id is not None and m.app_id != app_id):
        raise NotFound(f"no message {id_!r}", field="id")
    if m.status not in CANCELABLE:
        raise Conflict(
            f"message {id_} has left the queue (status {m.status}); it cannot be canceled any more"
        )
    move(session, m, S.CANCELED, {"by": by})
    return message_item(m)


def move(
    session: AsyncSession,
    m: Message,
    new: MessageStatus,
    detail: dict[str, Any] | None = None,
    *,
    error: MessageError | None = None,
    now: datetime | None = None,
) -> None:
    """Change a message's status, checked against the one transition table, and record it."""
    check_move(MessageStatus(m.status), new)
    when = now or utcnow()
    m.status = new.value
    m.updated_at = when
    if new == S.SENT:
        m.sent_at = when
    elif new == S.DELIVERED:
        m.delivered_at = when
        m.sent_at = m.sent_at or when
    if error is not None:
        m.error_code, m.error_message, m.error_hint = (
            error.code,
            error.message[:255],
            error.hint[:255],
        )
    if new not in (S.SENDING, S.QUEUED):
        m.lease_owner = None
        m.lease_expires_at = None
    session.add(MessageEvent(message_id=m.id, status=new.value, at=when, detail=detail))
