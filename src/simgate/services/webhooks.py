"""Webhooks: endpoints per app, the fan-out of recorded events into deliveries, and the
worker that POSTs them.

Events are written in the transaction that made them happen (``services.events``). The
worker turns each undispatched event into one delivery per endpoint that wants it, in one
transaction that also marks the event dispatched, so an event is fanned out exactly once.
Deliveries are claimed with an expiring lease (``FOR UPDATE SKIP LOCKED`` on database
servers), so several nodes share the work and each delivery has one node on it at a time.
A delivery waits while an older one with the same ``order_key`` (the message, the gateway)
for the same endpoint is still pending: ``message.delivered`` never overtakes
``message.sent``. A node that dies mid-attempt leaves a lease that runs out; the delivery
is tried again, with the same ``webhook-id``, so receivers can drop the duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import bindparam, delete, exists, func, insert, or_, select, true, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from simgate.config import Settings
from simgate.domain import webhooks as rules
from simgate.domain.keys import Scope
from simgate.errors import Conflict, Invalid, NotFound
from simgate.services import ssrf
from simgate.services.changes import Changes
from simgate.store.engine import describe_db_error
from simgate.store.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from simgate.store.types import UTCDateTime, utcnow
from simgate.web.metrics import Metrics

log = logging.getLogger(__name__)

MAX_ENDPOINTS = 20
MAX_DESCRIPTION = 255
MAX_OVERLAP = 7 * 86400
DEFAULT_OVERLAP = 86400
RESPONSE_CAP = 4096
EXCERPT_CHARS = 512
LEASE_MARGIN = 30.0
# Seconds to gather attempts that end together into one claim and one write.
COALESCE = 0.005
FAN_OUT_BATCH = 200
ATTEMPTS_SHOWN = 20
ENDPOINT_PREFIX = "wh_"
DELIVERY_PREFIX = "whd_"
USER_AGENT = "simgate-webhooks"
# Why an endpoint was switched off (shown to its owner).
GONE_REASON = "the receiver answered 410 Gone"
OWNER_REASON = "disabled by its owner"

Resolver = ssrf.Resolver


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat().replace("+00:00", "Z")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def endpoint_ref(id_: int) -> str:
    return f"{ENDPOINT_PREFIX}{id_}"


def delivery_ref(id_: int) -> str:
    return f"{DELIVERY_PREFIX}{id_}"


def _number(text: str, prefix: str) -> int | None:
    """The row id in ``wh_12`` / ``whd_34``; None if it is not one of ours."""
    digits = text[len(prefix) :] if text.startswith(prefix) else ""
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits)


def _parse_ref(text: str, prefix: str, what: str) -> int:
    number = _number(text, prefix)
    if number is None:
        raise NotFound(f"no {what} {text!r}")
    return number


def payload(event: Event) -> bytes:
    """The JSON body of every delivery of ``event`` (the same bytes on each attempt)."""
    body = {"type": event.type, "timestamp": _iso(event.created_at), "data": event.data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def message_id(event_id: int) -> str:
    """The ``webhook-id`` of an event: the same for every attempt, so receivers can dedupe."""
    return f"evt_{event_id}"


def secrets_of(ep: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign now: the current one, and the previous one during an overlap."""
    out = [ep.secret]
    if (
        ep.previous_secret
        and ep.previous_expires_at is not None
        and _aware(ep.previous_expires_at) > now
    ):
        out.append(ep.previous_secret)
    return out


# -- endpoints ---------------------------------------------------------------------------


def endpoint_view(ep: WebhookEndpoint, *, now: datetime | None = None) -> dict[str, Any]:
    rotating = len(secrets_of(ep, now or utcnow())) > 1
    return {
        "id": endpoint_ref(ep.id),
        "url": ep.url,
        "events": list(ep.events),
        "description": ep.description,
        "is_active": ep.is_active,
        "disabled_reason": ep.disabled_reason or None,
        "disabled_at": _iso(ep.disabled_at),
        "failing_since": _iso(ep.failing_since),
        "previous_secret_expires_at": _iso(ep.previous_expires_at) if rotating else None,
        "created_at": _iso(ep.created_at),
        "updated_at": _iso(ep.updated_at),
    }


def _events(values: Sequence[str], scopes: frozenset[Scope]) -> list[str]:
    try:
        events = rules.parse_events(values)
    except ValueError as exc:
        raise Invalid(f"events: {exc}", field="events") from None
    wants_inbox = rules.ALL_EVENTS in events or "message.received" in events
    if wants_inbox and Scope.INBOX not in scopes and Scope.ADMIN not in scopes:
        raise Invalid(
            "events: message.received needs an API key with the 'inbox' scope",
            field="events",
        )
    return events


async def _url(url: str, settings: Settings, resolver: Resolver) -> str:
    if not isinstance(url, str) or not url.strip():
        raise Invalid("url: give the http(s) URL to POST events to", field="url")
    try:
        target, _ = await ssrf.check_url(
            url.strip(), allow_private=settings.webhook_allow_private, resolver=resolver
        )
    except ssrf.UnsafeUrl as exc:
        raise Invalid(f"url: {exc}", field="url") from None
    return target.url


def _description(text: str | None) -> str:
    text = (text or "").strip()
    if len(text) > MAX_DESCRIPTION:
        raise Invalid(f"description: at most {MAX_DESCRIPTION} characters", field="description")
    return text


async def create_endpoint(
    session: AsyncSession,
    *,
    app_id: int,
    scopes: frozenset[Scope],
    url: str,
    events: Sequence[str],
    description: str | None,
    settings: Settings,
    resolver: Resolver = ssrf.resolve,
) -> tuple[dict[str, Any], str]:
    """A new endpoint and its secret (to show once)."""
    chosen = _events(events, scopes)
    description = _description(description)
    checked = await _url(url, settings, resolver)
    count = await session.scalar(
        select(func.count())
        .select_from(WebhookEndpoint)
        .where(WebhookEndpoint.app_id == app_id, WebhookEndpoint.is_callback.is_(False))
    )
    if (count or 0) >= MAX_ENDPOINTS:
        raise Conflict(
            f"an app has at most {MAX_ENDPOINTS} webhook endpoints; delete one first",
            field="url",
        )
    now = utcnow()
    secret = rules.new_secret()
    ep = WebhookEndpoint(
        app_id=app_id,
        url=checked,
        events=chosen,
        description=description,
        secret=secret,
        is_active=True,
        is_callback=False,
        disabled_reason="",
        created_at=now,
        updated_at=now,
    )
    session.add(ep)
    await session.flush()
    return endpoint_view(ep, now=now), secret


async def _endpoint(
    session: AsyncSession, app_id: int, ref: str, *, for_update: bool = False
) -> WebhookEndpoint:
    id_ = _parse_ref(ref, ENDPOINT_PREFIX, "webhook endpoint")
    stmt = select(WebhookEndpoint).where(
        WebhookEndpoint.id == id_,
        WebhookEndpoint.app_id == app_id,
        WebhookEndpoint.is_callback.is_(False),
    )
    if for_update and session.bind is not None and session.bind.dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    ep = await session.scalar(stmt)
    if ep is None:
        raise NotFound(f"no webhook endpoint {ref!r}")
    return ep


async def list_endpoints(session: AsyncSession, app_id: int) -> list[dict[str, Any]]:
    rows = await session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.app_id == app_id, WebhookEndpoint.is_callback.is_(False))
        .order_by(WebhookEndpoint.id)
    )
    now = utcnow()
    return [endpoint_view(ep, now=now) for ep in rows]


async def get_endpoint(session: AsyncSession, app_id: int, ref: str) -> dict[str, Any]:
    return endpoint_view(await _endpoint(session, app_id, ref))


def _cancel_pending(endpoint_id: int, now: datetime, reason: str) -> Any:
    return (
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending")
        .values(
            status="canceled",
            last_error=reason[:255],
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
    )


def _disable(ep: WebhookEndpoint, reason: str, now: datetime) -> Any:
    ep.is_active = False
    ep.disabled_reason = reason[:255]
    ep.disabled_at = now
    ep.updated_at = now
    return _cancel_pending(ep.id, now, f"endpoint disabled: {reason}")


async def update_endpoint(
    session: AsyncSession,
    *,
    app_id: int,
    scopes: frozenset[Scope],
    ref: str,
    changes: dict[str, Any],
    settings: Settings,
    resolver: Resolver = ssrf.resolve,
) -> dict[str, Any]:
    """Change url, events, description or is_active. Re-enabling an endpoint sends again
    what was canceled when it was switched off (and clears why it was)."""
    ep = await _endpoint(session, app_id, ref, for_update=True)
    now = utcnow()
    if "events" in changes:
        if changes["events"] is None:
            raise Invalid("events: give a list of events, or ['*']", field="events")
        ep.events = _events(changes["events"], scopes)
    if "description" in changes:
        ep.description = _description(changes["description"])
    if "url" in changes:
        ep.url = await _url(changes["url"], settings, resolver)
    if "is_active" in changes:
        active = changes["is_active"]
        if not isinstance(active, bool):
            raise Invalid("is_active: true or false", field="is_active")
        if active and not ep.is_active:
            ep.is_active = True
            ep.disabled_reason = ""
            ep.disabled_at = None
            ep.failing_since = None
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == ep.id, WebhookDelivery.status == "canceled")
                .values(status="pending", attempts=0, next_attempt_at=now, updated_at=now)
            )
        elif not active and ep.is_active:
            await session.execute(_disable(ep, OWNER_REASON, now))
    ep.updated_at = now
    await session.flush()
    return endpoint_view(ep, now=now)


async def delete_endpoint(session: AsyncSession, app_id: int, ref: str) -> None:
    ep = await _endpoint(session, app_id, ref, for_update=True)
    ids = select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == ep.id)
    await session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids)))
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == ep.id))
    await session.delete(ep)


def _overlap(seconds: int | None) -> int:
    value = DEFAULT_OVERLAP if seconds is None else seconds
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_OVERLAP:
        raise Invalid(
            f"overlap_seconds: 0 to {MAX_OVERLAP} (how long the old secret keeps signing)",
            field="overlap_seconds",
        )
    return value


def _rotate(ep: WebhookEndpoint, overlap: int, now: datetime) -> str:
    secret = rules.new_secret()
    if overlap > 0:
        ep.previous_secret = ep.secret
        ep.previous_expires_at = now + timedelta(seconds=overlap)
    else:
        ep.previous_secret = None
        ep.previous_expires_at = None
    ep.secret = secret
    ep.updated_at = now
    return secret


async def rotate_secret(
    session: AsyncSession, app_id: int, ref: str, overlap_seconds: int | None
) -> dict[str, Any]:
    """A new secret (shown once); the old one keeps signing for ``overlap_seconds``."""
    overlap = _overlap(overlap_seconds)
    ep = await _endpoint(session, app_id, ref, for_update=True)
    now = utcnow()
    secret = _rotate(ep, overlap, now)
    await session.flush()
    return {**endpoint_view(ep, now=now), "secret": secret}


async def _callback_endpoint(session: AsyncSession, app_id: int) -> WebhookEndpoint:
    """The app's hidden endpoint whose secret signs per-message status callbacks."""
    ep = await session.scalar(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.app_id == app_id, WebhookEndpoint.is_callback.is_(True))
        .order_by(WebhookEndpoint.id)
        .limit(1)
    )
    if ep is None:
        now = utcnow()
        ep = WebhookEndpoint(
            app_id=app_id,
            url="",
            events=[],
            description="status callbacks",
            secret=rules.new_secret(),
            is_active=True,
            is_callback=True,
            disabled_reason="",
            created_at=now,
            updated_at=now,
        )
        session.add(ep)
        await session.flush()
    return ep


async def rotate_callback_secret(
    session: AsyncSession, app_id: int, overlap_seconds: int | None
) -> dict[str, Any]:
    """The secret that signs this app's status callbacks, new (shown once)."""
    overlap = _overlap(overlap_seconds)
    ep = await _callback_endpoint(session, app_id)
    now = utcnow()
    secret = _rotate(ep, overlap, now)
    return {
        "secret": secret,
        "previous_secret_expires_at": _iso(ep.previous_expires_at),
    }


# -- the delivery log --------------------------------------------------------------------


def _attempt_view(a: WebhookAttempt) -> dict[str, Any]:
    return {
        "at": _iso(a.at),
        "status_code": a.status_code,
        "latency_ms": round(a.latency_ms, 1),
        "error": a.error or None,
        "response": a.response_excerpt,
        "manual": a.manual,
    }


def _delivery_view(
    d: WebhookDelivery, event: Event | None, attempts: list[WebhookAttempt]
) -> dict[str, Any]:
    return {
        "id": delivery_ref(d.id),
        "event_id": message_id(d.event_id),
        "type": event.type if event is not None else None,
        "url": d.url,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": _iso(d.next_attempt_at) if d.status == "pending" else None,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error or None,
        "created_at": _iso(d.created_at),
        "delivered_at": _iso(d.delivered_at),
        "log": [_attempt_view(a) for a in attempts],
    }


DELIVERY_STATUSES = ("pending", "delivered", "failed", "canceled")


async def _views(session: AsyncSession, rows: Sequence[WebhookDelivery]) -> list[dict[str, Any]]:
    if not rows:
        return []
    ids = [d.id for d in rows]
    events = {
        e.id: e
        for e in await session.scalars(
            select(Event).where(Event.id.in_({d.event_id for d in rows}))
        )
    }
    attempts: dict[int, list[WebhookAttempt]] = {i: [] for i in ids}
    for a in await session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(ids))
        .order_by(WebhookAttempt.id)
    ):
        attempts[a.delivery_id].append(a)
    return [
        _delivery_view(d, events.get(d.event_id), attempts[d.id][-ATTEMPTS_SHOWN:]) for d in rows
    ]


async def list_deliveries(
    session: AsyncSession,
    app_id: int,
    ref: str,
    *,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """An endpoint's deliveries, newest first, each with its attempts."""
    ep = await _endpoint(session, app_id, ref)
    if status is not None and status not in DELIVERY_STATUSES:
        raise Invalid(f"status: one of {', '.join(DELIVERY_STATUSES)}", field="status")
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == ep.id)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    if cursor is not None:
        stmt = stmt.where(WebhookDelivery.id < _parse_cursor(cursor))
    rows = list(await session.scalars(stmt.order_by(WebhookDelivery.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "data": await _views(session, rows),
        "next_cursor": delivery_ref(rows[-1].id) if more and rows else None,
    }


def _parse_cursor(cursor: str) -> int:
    number = _number(cursor, DELIVERY_PREFIX)
    if number is None:
        raise Invalid("cursor: pass the next_cursor of the previous page", field="cursor")
    return number


async def _delivery(session: AsyncSession, app_id: int, ref: str, did: str) -> WebhookDelivery:
    ep = await _endpoint(session, app_id, ref)
    id_ = _parse_ref(did, DELIVERY_PREFIX, "delivery")
    d = await session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.id == id_, WebhookDelivery.endpoint_id == ep.id
        )
    )
    if d is None:
        raise NotFound(f"no delivery {did!r} for webhook endpoint {ref!r}")
    return d


# -- fan-out -----------------------------------------------------------------------------


def _wants(ep: WebhookEndpoint, event: Any) -> bool:
    """``event``: anything with the event's ``type`` and ``app_id``."""
    if not ep.is_active or ep.is_callback:
        return False
    if event.app_id is not None and ep.app_id != event.app_id:
        return False
    return rules.matches(ep.events, event.type)


async def fan_out(session: AsyncSession, *, lock: bool, limit: int = FAN_OUT_BATCH) -> int:
    """Turn up to ``limit`` undispatched events into deliveries; how many events it took.

    ``lock`` (database servers): lock the events, waiting for another node's
    fan-out of them rather than skipping them. Skipping would let this node fan out a later
    event of the same ``order_key`` (``message.delivered``) while the earlier one
    (``message.sent``) has no committed delivery yet, and deliver it first.

    Every SMS sent or delivered is an event, so this runs for each of them: it reads only the
    columns it routes by (not the payload), and writes the deliveries and the dispatched
    flags with one statement each."""
    stmt = (
        select(Event.id, Event.type, Event.app_id, Event.order_key, Event.callback_url)
        .where(Event.dispatched.is_(False))
        .order_by(Event.id)
        .limit(limit)
    )
    if lock:
        stmt = stmt.with_for_update()
    events = (await session.execute(stmt)).all()
    if not events:
        return 0
    endpoints = list(
        await session.scalars(
            select(WebhookEndpoint).where(
                WebhookEndpoint.is_active.is_(True), WebhookEndpoint.is_callback.is_(False)
            )
        )
    )
    callbacks: dict[int, WebhookEndpoint] = {}
    now = utcnow()
    deliveries: list[dict[str, Any]] = []
    for event in events:
        targets: list[tuple[WebhookEndpoint, str]] = [
            (ep, ep.url) for ep in endpoints if _wants(ep, event)
        ]
        if event.callback_url and event.app_id is not None:
            cb = callbacks.get(event.app_id)
            if cb is None:
                cb = callbacks[event.app_id] = await _callback_endpoint(session, event.app_id)
            targets.append((cb, event.callback_url))
        deliveries += [
            {
                "event_id": event.id,
                "endpoint_id": ep.id,
                "app_id": ep.app_id,
                "url": url,
                "order_key": event.order_key,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": "",
                "created_at": now,
                "updated_at": now,
            }
            for ep, url in targets
        ]
    if deliveries:
        await session.execute(insert(WebhookDelivery), deliveries)
    await session.execute(
        update(Event)
        .where(Event.id.in_([event.id for event in events]))
        .values(dispatched=True)
        .execution_options(synchronize_session=False)
    )
    return len(events)


# -- delivering --------------------------------------------------------------------------


@dataclass
class Answer:
    status: int | None
    error: str
    body: bytes
    latency_ms: float
    retry_after: str | None = None


_NOW = bindparam("now", type_=UTCDateTime)


def _claimable() -> list[Any]:
    """Pending, not leased (or the lease ran out), and no older pending delivery with the
    same order key to the same endpoint. Compared with the bind parameter ``now``."""
    older = aliased(WebhookDelivery)
    return [
        WebhookDelivery.status == "pending",
        or_(WebhookDelivery.lease_expires_at.is_(None), WebhookDelivery.lease_expires_at < _NOW),
        ~exists().where(
            older.endpoint_id == WebhookDelivery.endpoint_id,
            older.order_key == WebhookDelivery.order_key,
            older.status == "pending",
            older.id < WebhookDelivery.id,
        ),
    ]


# Built once: the statements the worker runs on every turn.
_DUE = (
    select(WebhookDelivery)
    .where(WebhookDelivery.next_attempt_at <= _NOW, *_claimable())
    .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
    .limit(bindparam("n"))
)
_DUE_LOCKED = _DUE.with_for_update(skip_locked=True)
_NEXT_DUE = select(func.min(WebhookDelivery.next_attempt_at)).where(*_claimable())


@dataclass
class _Job:
    id: int
    app_id: int
    endpoint: WebhookEndpoint | None = None
    event: Event | None = None
    url: str = ""


@dataclass
class _Outcome:
    delivery_id: int
    url: str
    answer: Answer
    manual: bool
    done: asyncio.Future[dict[str, Any] | None]


class WebhookWorker:
    """Fans events out and delivers them, at most ``webhook_concurrency`` at once on this
    node and ``webhook_per_app`` at once per app."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        resolver: Resolver = ssrf.resolve,
        rand: Callable[[], float] = random.random,
        poll: float | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self.node = settings.node
        self._metrics = metrics
        self.resolver = resolver
        self._rand = rand
        self._skip_locked = settings.backend != "sqlite"
        # Another node's events reach us by NOTIFY on PostgreSQL; elsewhere we look.
        self._poll = (
            poll if poll is not None else (5.0 if settings.backend == "postgresql" else 1.0)
        )
        self._wake = asyncio.Event()
        self._stopping = False
        self._in_flight: dict[int, asyncio.Task[Any]] = {}
        self._per_app: dict[int, int] = {}
        self._client: httpx.AsyncClient | None = None
        # Outcomes wait here and are written many to a transaction (one commit, not one per
        # delivery: on SQLite the commit is what costs).
        self._outcomes: list[_Outcome] = []
        self._outcome_added = asyncio.Event()
        self._recorder: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def wake(self) -> None:
        self._wake.set()

    def changed(self, changes: Changes) -> None:
        if changes.events or changes.rescan:
            self._wake.set()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            limit = self._settings.webhook_concurrency
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,
                timeout=httpx.Timeout(self._settings.webhook_timeout),
                limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
            )
        return self._client

    async def run(self) -> None:
        try:
            await self._take_back_own()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("webhooks: database unavailable", extra={"error": describe_db_error(exc)})
        while not self._stopping:
            self._wake.clear()
            wait = self._poll
            try:
                await self._fan_out_all()
                wait = min(wait, await self._claim())
            except (SQLAlchemyError, OSError) as exc:
                log.warning(
                    "webhooks: database unavailable", extra={"error": describe_db_error(exc)}
                )
                wait = 2.0
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.01)):
                    await self._wake.wait()
            if self._in_flight:
                # Woken by an attempt that ended: let the others ending about now end too,
                # so one claim refills several slots.
                await asyncio.sleep(COALESCE)

    async def stop(self, drain: float = 5.0) -> None:
        """Stop claiming; let attempts in flight finish for ``drain`` seconds, then cancel
        them (their leases are handed back so they are tried again at once)."""
        self._stopping = True
        self._wake.set()
        tasks = list(self._in_flight.values())
        if tasks:
            await asyncio.wait(tasks, timeout=drain)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if tasks:
            with contextlib.suppress(SQLAlchemyError, OSError):
                await self._take_back_own()
        if self._recorder is not None:
            self._recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._recorder
            self._recorder = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _take_back_own(self) -> None:
        """Leases this node holds are from a run that ended: release them."""
        async with self._sessionmaker.begin() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.lease_owner == self.node,
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.id.not_in(list(self._in_flight)) if self._in_flight else true(),
                )
                .values(lease_owner=None, lease_expires_at=None)
            )

    async def _fan_out_all(self) -> None:
        while not self._stopping:
            async with self._sessionmaker.begin() as session:
                n = await fan_out(session, lock=self._skip_locked)
            if n < FAN_OUT_BATCH:
                return

    async def _claim(self) -> float:
        """Start what is due; the seconds until something else will be."""
        free = self._settings.webhook_concurrency - len(self._in_flight)
        now = utcnow()
        jobs: list[_Job] = []
        if free > 0:
            per_app = self._settings.webhook_per_app
            async with self._sessionmaker.begin() as session:
                # Rows in flight here hold a lease, so the query passes them over.
                stmt = _DUE_LOCKED if self._skip_locked else _DUE
                lease = now + timedelta(seconds=self._settings.webhook_timeout + LEASE_MARGIN)
                taken: dict[int, int] = {}
                picked: list[WebhookDelivery] = []
                for d in await session.scalars(stmt, {"now": now, "n": free * 2}):
                    if len(picked) >= free:
                        break
                    if self._per_app.get(d.app_id, 0) + taken.get(d.app_id, 0) >= per_app:
                        continue
                    taken[d.app_id] = taken.get(d.app_id, 0) + 1
                    d.lease_owner = self.node
                    d.lease_expires_at = lease
                    picked.append(d)
                if picked:
                    # What the attempts need, read now in two queries rather than per delivery.
                    eps = await session.scalars(
                        select(WebhookEndpoint).where(
                            WebhookEndpoint.id.in_({d.endpoint_id for d in picked})
                        )
                    )
                    by_ep = {ep.id: ep for ep in eps}
                    evs = await session.scalars(
                        select(Event).where(Event.id.in_({d.event_id for d in picked}))
                    )
                    by_ev = {ev.id: ev for ev in evs}
                    jobs = [
                        _Job(d.id, d.app_id, by_ep.get(d.endpoint_id), by_ev.get(d.event_id), d.url)
                        for d in picked
                    ]
            for job in jobs:
                self._start(job)
        if len(self._in_flight) >= self._settings.webhook_concurrency:
            return self._poll  # woken when one finishes
        async with self._sessionmaker() as session:
            nxt = await session.scalar(_NEXT_DUE, {"now": now})
        if nxt is None:
            return self._poll
        left = (_aware(nxt) - utcnow()).total_seconds()
        if left <= 0:
            # Due but not taken: over the app's limit, or another node is taking it. A
            # finishing delivery wakes the loop.
            return 0.05 if jobs else self._poll
        return left

    def _start(self, job: _Job) -> None:
        self._per_app[job.app_id] = self._per_app.get(job.app_id, 0) + 1
        task = asyncio.get_running_loop().create_task(
            self._deliver(job.id, endpoint=job.endpoint, event=job.event, url=job.url)
        )
        self._in_flight[job.id] = task

        def done(_: asyncio.Task[Any]) -> None:
            self._in_flight.pop(job.id, None)
            left = self._per_app.get(job.app_id, 1) - 1
            if left > 0:
                self._per_app[job.app_id] = left
            else:
                self._per_app.pop(job.app_id, None)
            self._wake.set()

        task.add_done_callback(done)

    async def _deliver(
        self,
        delivery_id: int,
        *,
        manual: bool = False,
        endpoint: WebhookEndpoint | None = None,
        event: Event | None = None,
        url: str = "",
    ) -> dict[str, Any] | None:
        try:
            ep, ev = endpoint, event
            if ep is None or ev is None:
                async with self._sessionmaker() as session:
                    d = await session.get(WebhookDelivery, delivery_id)
                    if d is None:
                        return None
                    ep = await session.get(WebhookEndpoint, d.endpoint_id)
                    ev = await session.get(Event, d.event_id)
                    url = d.url
            if ep is None or ev is None:
                return None
            if not ep.is_callback:
                url = ep.url
            if not ep.is_active and not manual:
                # Switched off after this was claimed: leave it with the others it canceled.
                async with self._sessionmaker.begin() as session:
                    await session.execute(
                        update(WebhookDelivery)
                        .where(WebhookDelivery.id == delivery_id)
                        .values(status="canceled", lease_owner=None, lease_expires_at=None)
                    )
                return None
            answer = await self.attempt(url, ep, ev)
            done: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
            self._outcomes.append(_Outcome(delivery_id, url, answer, manual, done))
            self._outcome_added.set()
            if self._recorder is None or self._recorder.done():
                self._recorder = asyncio.get_running_loop().create_task(self._record_forever())
            return await done
        except (SQLAlchemyError, OSError) as exc:
            # The lease runs out and the delivery is tried again.
            log.warning(
                "webhooks: could not record a delivery",
                extra={"delivery": delivery_id, "error": describe_db_error(exc)},
            )
            return None
        except Exception:
            log.exception("webhooks: delivery failed unexpectedly", extra={"delivery": delivery_id})
            return None

    async def _record_forever(self) -> None:
        while True:
            await self._outcome_added.wait()
            if len(self._outcomes) < len(self._in_flight):
                await asyncio.sleep(COALESCE)  # more are about to end: one commit for all
            self._outcome_added.clear()
            batch, self._outcomes = self._outcomes, []
            if not batch:
                continue
            try:
                async with self._sessionmaker.begin() as session:
                    views = [await self._record(session, o) for o in batch]
            except (SQLAlchemyError, OSError) as exc:
                for o in batch:
                    if not o.done.done():
                        o.done.set_exception(exc)
                continue
            except BaseException as exc:
                for o in batch:
                    if not o.done.done():
                        o.done.set_exception(exc)
                raise
            for o, (view, label) in zip(batch, views, strict=True):
                if not o.done.done():
                    o.done.set_result(view)
                if self._metrics is not None and label:
                    self._metrics.webhook_deliveries.labels(label).inc()
                    if o.answer.status is not None:
                        self._metrics.webhook_latency.observe(o.answer.latency_ms / 1000)

    async def attempt(self, url: str, ep: WebhookEndpoint, event: Event) -> Answer:
        """One POST, bounded in time and in what is read back."""
        started = time.perf_counter()
        timeout = self._settings.webhook_timeout

        def took() -> float:
            return (time.perf_counter() - started) * 1000

        try:
            target, addresses = await ssrf.check_url(
                url, allow_private=self._settings.webhook_allow_private, resolver=self.resolver
            )
        except ssrf.UnsafeUrl as exc:
            return Answer(None, f"refused: {exc}", b"", took())
        body = payload(event)
        now = utcnow()
        headers = rules.headers(
            secrets_of(ep, now), message_id(event.id), int(now.timestamp()), body
        )
        headers["host"] = target.host_header
        headers["user-agent"] = USER_AGENT
        headers["accept-encoding"] = "identity"
        extensions: dict[str, Any] = {}
        if target.scheme == "https" and not target.is_ip_literal:
            extensions["sni_hostname"] = target.host
        client = self._http()
        error = ""
        try:
            async with asyncio.timeout(timeout):
                for i, ip in enumerate(addresses):
                    try:
                        async with client.stream(
                            "POST",
                            target.url_for(ip),
                            content=body,
                            headers=headers,
                            extensions=extensions,
                        ) as resp:
                            got = bytearray()
                            async for chunk in resp.aiter_raw():
                                got += chunk
                                if len(got) >= RESPONSE_CAP:
                                    break
                            status = resp.status_code
                            if 300 <= status <= 399:
                                where = resp.headers.get("location", "")[:200]
                                error = f"redirects are not followed (to {where or '?'})"
                            return Answer(
                                status,
                                error,
                                bytes(got[:RESPONSE_CAP]),
                                took(),
                                resp.headers.get("retry-after"),
                            )
                    except httpx.ConnectError as exc:
                        if i + 1 < len(addresses):
                            continue
                        return Answer(None, f"cannot connect: {_why(exc)}", b"", took())
        except (TimeoutError, httpx.TimeoutException):
            return Answer(None, f"no answer within {timeout:g} s", b"", took())
        except httpx.RemoteProtocolError as exc:
            return Answer(None, f"the answer is not valid HTTP: {_why(exc)}", b"", took())
        except httpx.HTTPError as exc:
            return Answer(None, f"request failed: {_why(exc)}", b"", took())
        return Answer(None, "no address to connect to", b"", took())

    async def _record(
        self, session: AsyncSession, o: _Outcome
    ) -> tuple[dict[str, Any] | None, str]:
        """Write one attempt's outcome into ``session``: its view (for redeliveries) and
        the metrics label."""
        answer, url, manual = o.answer, o.url, o.manual
        outcome = rules.classify(answer.status)  # a redirect is retried, not followed
        now = utcnow()
        label = outcome.value
        stmt = select(WebhookDelivery).where(WebhookDelivery.id == o.delivery_id)
        if self._skip_locked:
            stmt = stmt.with_for_update()
        d = await session.scalar(stmt)
        if d is None:
            return None, ""
        ep = await session.get(WebhookEndpoint, d.endpoint_id)
        session.add(
            WebhookAttempt(
                delivery_id=d.id,
                at=now,
                status_code=answer.status,
                latency_ms=answer.latency_ms,
                error=answer.error[:255],
                response_excerpt=rules.excerpt(answer.body, EXCERPT_CHARS),
                manual=manual,
            )
        )
        d.attempts += 1
        d.url = url
        d.last_status_code = answer.status
        d.last_error = (answer.error or (f"HTTP {answer.status}" if label != "delivered" else ""))[
            :255
        ]
        d.updated_at = now
        if d.lease_owner == self.node:
            d.lease_owner = None
            d.lease_expires_at = None
        if outcome is rules.Outcome.DELIVERED:
            d.status = "delivered"
            d.delivered_at = now
            if ep is not None:
                ep.failing_since = None
        elif d.status == "pending":
            if outcome is rules.Outcome.GONE and ep is not None and not ep.is_callback:
                d.status = "failed"
                await session.flush()
                await session.execute(_disable(ep, GONE_REASON, now))
            elif outcome is rules.Outcome.GONE:
                d.status = "failed"  # a status callback URL that is gone
            else:
                retry_after = rules.parse_retry_after(answer.retry_after, now=now)
                delay = rules.next_delay(d.attempts, rand=self._rand(), retry_after=retry_after)
                if delay is None:
                    d.status = "failed"
                    label = "failed"
                else:
                    d.next_attempt_at = now + timedelta(seconds=delay)
                reason = self._too_long(ep, d, now)
                if reason is not None and ep is not None:
                    label = "failed"
                    d.status = "failed"
                    await session.flush()
                    await session.execute(_disable(ep, reason, now))
        elif ep is not None and not ep.is_callback and outcome is rules.Outcome.RETRY:
            ep.failing_since = ep.failing_since or now
        if not manual:
            return None, label  # the batch's commit writes it
        await session.flush()
        return (await _views(session, [d]))[0], label

    def _too_long(
        self, ep: WebhookEndpoint | None, d: WebhookDelivery, now: datetime
    ) -> str | None:
        """Note that ``ep`` is failing; why to disable it, once it has failed for too long."""
        if ep is None or ep.is_callback:
            return None
        if ep.failing_since is None:
            ep.failing_since = now
            return None
        days = self._settings.webhook_disable_after_days
        if now - _aware(ep.failing_since) < timedelta(days=days):
            return None
        return f"every delivery failed for {days:g} days (last: {d.last_error or 'no answer'})"

    async def redeliver(self, app_id: int, ref: str, did: str) -> dict[str, Any]:
        """Try a delivery again now, whatever its status; answers it with the new attempt."""
        now = utcnow()
        async with self._sessionmaker.begin() as session:
            d = await _delivery(session, app_id, ref, did)
            ep = await session.get(WebhookEndpoint, d.endpoint_id)
            if ep is None or not ep.is_active:
                raise Conflict(
                    "this endpoint is disabled; enable it (PATCH is_active=true) first",
                    field="is_active",
                )
            if (
                d.lease_owner is not None
                and d.lease_expires_at is not None
                and _aware(d.lease_expires_at) > now
            ):
                raise Conflict("an attempt of this delivery is in progress; try again shortly")
            d.lease_owner = self.node
            d.lease_expires_at = now + timedelta(
                seconds=self._settings.webhook_timeout + LEASE_MARGIN
            )
            delivery_id = d.id
        view = await self._deliver(delivery_id, manual=True)
        if view is None:
            raise Conflict("the attempt could not be recorded; try again")
        return view


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text or type(exc).__name__)[:200]


async def prune(session: AsyncSession, *, older_than_days: int, limit: int) -> int:
    """Delete up to ``limit`` finished deliveries (and their attempts) and dispatched events
    older than the retention; how many rows went."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    ids = list(
        await session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status != "pending",
                WebhookDelivery.created_at < cutoff,
            )
            .order_by(WebhookDelivery.id)
            .limit(limit)
        )
    )
    n = 0
    if ids:
        await session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids)))
        result = await session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
        n += int(getattr(result, "rowcount", 0) or 0)
    pending = exists().where(WebhookDelivery.event_id == Event.id)
    event_ids = list(
        await session.scalars(
            select(Event.id)
            .where(Event.dispatched.is_(True), Event.created_at < cutoff, ~pending)
            .order_by(Event.id)
            .limit(limit)
        )
    )
    if event_ids:
        result = await session.execute(delete(Event).where(Event.id.in_(event_ids)))
        n += int(getattr(result, "rowcount", 0) or 0)
    return n


__all__ = [
    "MAX_ENDPOINTS",
    "WebhookWorker",
    "create_endpoint",
    "delete_endpoint",
    "fan_out",
    "get_endpoint",
    "list_deliveries",
    "list_endpoints",
    "payload",
    "prune",
    "rotate_callback_secret",
    "rotate_secret",
    "update_endpoint",
]


async def endpoint_app(session: AsyncSession, ref: str) -> int:
    """The id of the app an endpoint (``wh_12``) belongs to; NotFound for callbacks' and
    unknown ones."""
    id_ = _parse_ref(ref, ENDPOINT_PREFIX, "webhook endpoint")
    app_id = await session.scalar(
        select(WebhookEndpoint.app_id).where(
            WebhookEndpoint.id == id_, WebhookEndpoint.is_callback.is_(False)
        )
    )
    if app_id is None:
        raise NotFound(f"no webhook endpoint {ref!r}")
    return int(app_id)
