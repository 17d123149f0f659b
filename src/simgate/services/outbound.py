"""Accepting messages: validation, idempotency, per-app limits, and the durable write that
happens before the API answers 202. Also reading, listing and cancelling them."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Table, and_, delete, false, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

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
from simgate.services import changes, inbound, ssrf
from simgate.services.events import Rows, message_moved
from simgate.services.notify import notify as send_notify
from simgate.store import bulk, rows
from simgate.store.models import App, AppUsage, Gateway, IdempotencyKey, Message, MessageEvent
from simgate.store.queue_rows import QueuedMessage
from simgate.store.types import utcnow

S = MessageStatus
NOTIFY_CHANNEL = "simgate_outbound"
MAX_BATCH = 256
# Core inserts on the tables (rows keyed by column name): the ORM's bulk path costs several
# microseconds more per row, which adds up at thousands of messages a second.
_MESSAGES = cast(Table, Message.__table__)
_EVENTS = cast(Table, MessageEvent.__table__)
_IDEMPOTENCY = cast(Table, IdempotencyKey.__table__)
CACHE_TTL = 5.0


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
    sim: int | None = None  # the SIM slot to send from, on gateways with two
    status_callback: str | None = None  # a URL told of every status change

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
            **({"sim": self.sim} if self.sim is not None else {}),
            **({"status_callback": self.status_callback} if self.status_callback else {}),
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


@dataclass(frozen=True, slots=True)
class _AppPolicy:
    name: str
    allowed: frozenset[str]
    per_minute: int | None
    per_day: int | None


@dataclass(slots=True)
class _Pending:
    """One accepted request on its way to the group commit."""

    rows: list[dict[str, Any]]
    events: list[dict[str, Any]]
    body: dict[str, Any]
    queued_now: bool
    idem: dict[str, Any] | None
    quota: tuple[int, int, _AppPolicy, list[Any], datetime] | None
    future: asyncio.Future[Accepted]


K = TypeVar("K")
V = TypeVar("V")


class _TTLCache(Generic[K, V]):
    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._items: dict[K | None, tuple[float, V]] = {}

    def get(self, key: K | None = None) -> V | None:
        hit = self._items.get(key)
        if hit is None or time.monotonic() - hit[0] > self._ttl:
            return None
        return hit[1]

    def put(self, value: V, key: K | None = None) -> None:
        self._items[key] = (time.monotonic(), value)

    def drop(self, key: K | None = None) -> None:
        self._items.pop(key, None)


def _reused_key() -> Conflict:
    return Conflict(
        "Idempotency-Key: this key was used with a different request; use a new key for a "
        "new message",
        field="idempotency-key",
    )


def _field(req: SendRequest, i: int) -> str:
    return f"to[{i}]" if req.many else "to"


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
        # The payload of this process's NOTIFY: its own wake-listener skips them, since
        # ``wake`` has already woken its dispatcher; another process's wakes its own.
        self.token = uuid.uuid4().hex
        # On PostgreSQL a batch without quotas to count is written by one statement that
        # commits by itself (see _write_batch).
        engine = sessionmaker.kw.get("bind")
        self._one_statement: AsyncEngine | None = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if self._notify and isinstance(engine, AsyncEngine)
            else None
        )
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._in_progress: dict[tuple[int, str], tuple[asyncio.Future[Accepted], str]] = {}
        # Read-mostly facts cached briefly so a send costs no extra queries: limits changed
        # with 'simgate app limits' apply within CACHE_TTL seconds (at once via the API).
        self._apps: _TTLCache[int, _AppPolicy] = _TTLCache(CACHE_TTL)
        self._gateways: _TTLCache[None, dict[str, bool]] = _TTLCache(CACHE_TTL)

    # --- validation ---------------------------------------------------------------------

    def _check_body(self, body: str) -> encoding.SegmentInfo:
        if not body.strip():
            raise Invalid("body: must not be empty", field="body")
        if "\x00" in body:
            raise Invalid("body: must not contain NUL characters", field="body")
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

    async def _check_gateway(self, name: str | None) -> None:
        if name is None:
            return
        known = self._gateways.get()
        if known is None or name not in known:
            known = await self._load_gateways()
        if name not in known:
            listed = ", ".join(repr(n) for n in sorted(known)) or "none yet"
            raise Invalid(f"gateway: no gateway named {name!r} (known: {listed})", field="gateway")
        if not known[name]:
            raise Invalid(f"gateway: {name!r} is deactivated", field="gateway")

    async def _load_gateways(self) -> dict[str, bool]:
        async with self._sessionmaker() as session:
            rows = await session.execute(select(Gateway.name, Gateway.is_active))
            known = {name: bool(active) for name, active in rows}
        self._gateways.put(known)
        return known

    async def _policy(self, app_id: int) -> _AppPolicy | None:
        cached = self._apps.get(app_id)
        if cached is not None:
            return cached
        async with self._sessionmaker() as session:
            app = await session.get(App, app_id)
        if app is None:
            return None
        policy = _AppPolicy(
            name=app.name,
            allowed=frozenset(
                c.strip().upper() for c in app.allowed_countries.split(",") if c.strip()
            ),
            per_minute=app.rate_per_minute,
            per_day=app.rate_per_day,
        )
        self._apps.put(policy, app_id)
        return policy

    async def app_policy(self, app_id: int) -> _AppPolicy | None:
        """The app's name and limits (cached for CACHE_TTL seconds)."""
        return await self._policy(app_id)

    def forget_app(self, app_id: int) -> None:
        """Limits changed: read them again on the next send."""
        self._apps.drop(app_id)

    # --- limits -------------------------------------------------------------------------

    def _windows(
        self, policy: _AppPolicy, now: datetime
    ) -> list[tuple[str, datetime, int, timedelta]]:
        windows = []
        if policy.per_minute:
            windows.append(
                (
                    "minute",
                    now.replace(second=0, microsecond=0),
                    policy.per_minute,
                    timedelta(minutes=1),
                )
            )
        if policy.per_day:
            windows.append(
                (
                    "day",
                    now.replace(hour=0, minute=0, second=0, microsecond=0),
                    policy.per_day,
                    timedelta(days=1),
                )
            )
        return windows

    async def _open_windows(self, app_id: int, windows: list[Any]) -> None:
        """Make sure the usage rows exist, so counting is one conditional UPDATE."""
        for window, start, _, _ in windows:
            await rows.ensure(
                self._sessionmaker, AppUsage, app_id=app_id, window=window, window_start=start
            )

    async def _count(self, session: AsyncSession, item: _Pending) -> RateLimited | None:
        """Count the item's messages in its app's windows, or say which limit it passes.
        A conditional UPDATE, so concurrent requests on any node cannot overshoot."""
        assert item.quota is not None
        app_id, n, policy, windows, now = item.quota
        counted: list[tuple[str, datetime]] = []
        for window, start, limit, length in windows:
            result = await session.execute(
                update(AppUsage)
                .where(
                    AppUsage.app_id == app_id,
                    AppUsage.window == window,
                    AppUsage.window_start == start,
                    AppUsage.count + n <= limit,
                )
                .values(count=AppUsage.count + n)
            )
            if not getattr(result, "rowcount", 0):
                # A refused request uses no quota: give back what the earlier windows took.
                for done_window, done_start in counted:
                    await session.execute(
                        update(AppUsage)
                        .where(
                            AppUsage.app_id == app_id,
                            AppUsage.window == done_window,
                            AppUsage.window_start == done_start,
                        )
                        .values(count=AppUsage.count - n)
                    )
                retry = max(1, int((start + length - now).total_seconds()) + 1)
                return RateLimited(
                    f"app {policy.name!r} may send {limit} messages per {window}; this request "
                    f"has {n}; try again in {retry} s",
                    retry_after=retry,
                )
            counted.append((window, start))
        return None

    # --- the write ----------------------------------------------------------------------

    async def submit(
        self, *, sender: Sender, req: SendRequest, idempotency_key: str | None = None
    ) -> Accepted:
        """Validate and store; the returned answer is durable once this returns."""
        if idempotency_key is not None and not (0 < len(idempotency_key) <= 255):
            raise Invalid("Idempotency-Key: must be 1-255 characters", field="idempotency-key")
        slot = None
        if idempotency_key is not None and sender.app_id is not None:
            slot = (sender.app_id, idempotency_key)
        fingerprint = req.fingerprint() if slot else ""
        shared: asyncio.Future[Accepted] | None = None
        if slot is not None:
            replay = await self._replay(slot, fingerprint)
            if replay is not None:
                return replay
            running = self._in_progress.get(slot)
            if running is not None:  # a concurrent duplicate in this process: share it
                first, first_hash = running
                accepted = await asyncio.shield(first)
                if fingerprint != first_hash:
                    raise _reused_key()
                return Accepted(accepted.status_code, accepted.body, accepted.message_ids, True)
            # Registered before the next await, so a duplicate arriving meanwhile waits.
            shared = asyncio.get_running_loop().create_future()
            self._in_progress[slot] = (shared, fingerprint)
        try:
            accepted = await self._submit(sender, req, idempotency_key, fingerprint, slot)
        except BaseException as exc:
            if shared is not None:
                shared.set_exception(exc)
                shared.exception()  # retrieved: waiters (if any) get it too
            raise
        else:
            if shared is not None:
                shared.set_result(accepted)
        finally:
            if slot is not None:
                self._in_progress.pop(slot, None)
        return accepted

    async def _submit(
        self,
        sender: Sender,
        req: SendRequest,
        idempotency_key: str | None,
        fingerprint: str,
        slot: tuple[int, str] | None,
    ) -> Accepted:
        item = await self._prepare(sender, req, idempotency_key, fingerprint)
        self._ensure_writer()
        await self._queue.put(item)
        try:
            accepted = await asyncio.shield(item.future)
        except IntegrityError:
            # Another process committed the same Idempotency-Key first.
            replay = await self._replay(slot, fingerprint) if slot else None
            if replay is None:
                raise
            return replay
        if item.queued_now:
            self._wake()
        return accepted

    async def _replay(self, slot: tuple[int, str], fingerprint: str) -> Accepted | None:
        app_id, key = slot
        async with self._sessionmaker() as session:
            row = await session.scalar(
                select(IdempotencyKey).where(
                    IdempotencyKey.app_id == app_id, IdempotencyKey.key == key
                )
            )
        if row is None:
            return None
        if row.request_hash != fingerprint:
            raise _reused_key()
        return Accepted(row.status_code, row.response, replayed=True)

    async def prepare(self, sender: Sender, req: SendRequest, *, redacted: str | None) -> _Pending:
        """Validate and build one request's rows for a caller that writes them in its own
        transaction (``write_in``), together with rows of its own. ``redacted``: the text
        shown instead of the body, which is overwritten with it once the message is out."""
        return await self._prepare(sender, req, None, "", redacted=redacted)

    async def write_in(self, session: AsyncSession, item: _Pending) -> None:
        """Write a prepared request in the caller's transaction; RateLimited when it passes
        the app's limits. Call ``queued`` after the commit."""
        (outcome,) = await self._write_items(session, [item])
        if outcome is not None:
            raise outcome

    def queued(self, item: _Pending) -> None:
        """``item`` was committed: wake the dispatcher if it is due now."""
        if item.queued_now:
            self._wake()

    async def _prepare(
        self,
        sender: Sender,
        req: SendRequest,
        idempotency_key: str | None,
        fingerprint: str,
        *,
        redacted: str | None = None,
    ) -> _Pending:
        """Everything short of the write: validated, normalised, rows built."""
        now = utcnow()
        info = self._check_body(req.body)
        send_at, expires_at = self._times(req, now)
        policy = await self._policy(sender.app_id) if sender.app_id is not None else None
        numbers = self._numbers(req, set(policy.allowed) if policy else set())
        await self._check_gateway(req.gateway)
        if req.status_callback:
            try:
                await ssrf.check_url(
                    req.status_callback, allow_private=self._settings.webhook_allow_private
                )
            except ssrf.UnsafeUrl as exc:
                raise Invalid(f"status_callback: {exc}", field="status_callback") from None
        quota = None
        if policy is not None and sender.app_id is not None:
            windows = self._windows(policy, now)
            if windows:
                await self._open_windows(sender.app_id, windows)
                quota = (sender.app_id, len(numbers), policy, windows, now)
        status = S.SCHEDULED if send_at else S.QUEUED
        rows, events, summaries = [], [], []
        for number in numbers:
            mid = message_id()
            rows.append(
                {
                    "id": mid,
                    "direction": Direction.OUTBOUND.value,
                    "app_id": sender.app_id,
                    "to_number": number,
                    "from_number": "",
                    "body": req.body,
                    "encoding": info.encoding.value,
                    "segments": info.segments,
                    "status": status.value,
                    "priority": int(req.priority),
                    "gateway_pinned": req.gateway,
                    "sim_slot": req.sim,
                    "send_at": send_at,
                    "expires_at": expires_at,
                    "next_attempt_at": send_at or now,
                    "attempts": 0,
                    "metadata": req.metadata,
                    "status_callback": req.status_callback,
                    "body_redacted": redacted,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            events.append(
                {
                    "message_id": mid,
                    "status": status.value,
                    "at": now,
                    "detail": {"by": sender.name},
                }
            )
            summary: dict[str, Any] = {
                "id": mid,
                "status": status.value,
                "to": number,
                "segments": info.segments,
                "encoding": info.encoding.value,
                "created_at": _iso(now),
            }
            if send_at is not None:
                summary["send_at"] = _iso(send_at)
            if req.gateway:
                summary["gateway"] = req.gateway
            if req.sim is not None:
                summary["sim"] = req.sim
            summaries.append(summary)
        body: dict[str, Any] = {"messages": summaries} if req.many else summaries[0]
        idem = None
        if idempotency_key is not None and sender.app_id is not None:
            idem = {
                "app_id": sender.app_id,
                "key": idempotency_key,
                "request_hash": fingerprint,
                "status_code": 202,
                "response": body,
                "created_at": now,
            }
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        return _Pending(rows, events, body, status == S.QUEUED, idem, quota, future)

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_forever(), name="outbound-writer")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _write_forever(self) -> None:
        """Group commit: every request waiting while a transaction runs joins the next
        one, so under load many messages share one commit."""
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < MAX_BATCH:
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except Exception as exc:  # never leave a request waiting on a dead writer
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            outcomes = await self._write_batch(batch)
        except IntegrityError as exc:
            if len(batch) > 1:
                # One request clashed (an Idempotency-Key another node committed first):
                # write the others one by one so only that one is answered with it.
                for item in batch:
                    await self._write([item])
                return
            outcomes = [exc]
        except Exception as exc:  # an outage: every request in the batch gets the error
            outcomes = [exc] * len(batch)
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.future.done():
                continue
            if outcome is not None:
                item.future.set_exception(outcome)
            else:
                item.future.set_result(Accepted(202, item.body, [r["id"] for r in item.rows]))

    async def _write_batch(self, batch: list[_Pending]) -> list[Exception | None]:
        if self._one_statement is not None and all(item.quota is None for item in batch):
            # No per-app counters to check: one statement, one round trip (store/bulk.py).
            keys = [item.idem for item in batch if item.idem is not None]
            stmt, params = bulk.statement(
                inserts=[
                    (_IDEMPOTENCY, keys),
                    (_MESSAGES, [r for item in batch for r in item.rows]),
                    (_EVENTS, [e for item in batch for e in item.events]),
                ],
                notify=(NOTIFY_CHANNEL, self.token) if self._wakes_others(batch) else None,
            )
            async with self._one_statement.connect() as conn:
                await conn.execute(stmt, params)
            return [None] * len(batch)
        async with self._sessionmaker.begin() as session:
            outcomes: list[Exception | None] = list(await self._write_items(session, batch))
        return outcomes

    def _wakes_others(self, batch: list[_Pending]) -> bool:
        """Whether committing ``batch`` must NOTIFY other processes (PostgreSQL)."""
        return self._notify and any(item.queued_now for item in batch)

    async def _write_items(
        self, session: AsyncSession, batch: list[_Pending]
    ) -> list[RateLimited | None]:
        outcomes: list[RateLimited | None] = [None] * len(batch)
        rows: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        keys: list[dict[str, Any]] = []
        for i, item in enumerate(batch):
            if item.quota is not None:
                outcomes[i] = await self._count(session, item)
                if outcomes[i] is not None:
                    continue
            rows += item.rows
            events += item.events
            if item.idem is not None:
                keys.append(item.idem)
        await bulk.insert_many(session, _IDEMPOTENCY, keys)
        await bulk.insert_many(session, _MESSAGES, rows)
        await bulk.insert_many(session, _EVENTS, events)
        if self._wakes_others(batch):
            await send_notify(session, NOTIFY_CHANNEL, self.token)
        return outcomes


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
            "pinned": m.gateway_pinned is not None,
            "error": error_of(m),
            "attempts": m.attempts,
            "priority": Priority(m.priority).name.lower(),
            "send_at": _iso(m.send_at),
            "next_attempt_at": _iso(m.next_attempt_at) if m.status in CANCELABLE else None,
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
        return inbound.inbox_item(m)
    return {
        "id": m.id,
        "direction": "outbound",
        "to": m.to_number,
        "body": m.body if m.body_redacted is None else m.body_redacted,
        "status": m.status,
        "segments": m.segments,
        "encoding": m.encoding,
        "gateway": m.gateway or m.gateway_pinned,
        "sim": m.sim_slot,
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
    app_ids: Collection[int] | None = None,
    gateway: str | None = None,
    search: str | None = None,
    until: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first. ``app_id`` limits outbound messages to that app's own, ``app_ids`` to
    those apps' (the dashboard's users); ``search`` matches the shown body, any case."""
    conds = []
    visible = []
    if Direction.OUTBOUND in directions:
        only = []
        if app_id is not None:
            only.append(Message.app_id == app_id)
        if app_ids is not None:
            only.append(Message.app_id.in_(list(app_ids)) if app_ids else false())
        visible.append(and_(Message.direction == "outbound", *only))
    if Direction.INBOUND in directions:
        visible.append(Message.direction == "inbound")
    conds.append(or_(*visible))
    if status:
        conds.append(Message.status == status)
    if phone_number:
        conds.append(or_(Message.to_number == phone_number, Message.from_number == phone_number))
    if since is not None:
        conds.append(Message.created_at >= since)
    if until is not None:
        conds.append(Message.created_at < until)
    if gateway:
        conds.append(or_(Message.gateway == gateway, Message.gateway_pinned == gateway))
    if search:
        # What the viewer sees: a one-time code's message matches on its redacted text only.
        shown = func.lower(func.coalesce(Message.body_redacted, Message.body))
        conds.append(shown.contains(search.lower(), autoescape=True))
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
    m: Message | QueuedMessage,
    new: MessageStatus,
    detail: dict[str, Any] | None = None,
    *,
    error: MessageError | None = None,
    now: datetime | None = None,
    rows: Rows | None = None,
) -> None:
    """Change a message's status, checked against the one transition table, and record it
    (in the session, or in ``rows`` for the caller to write before its commit)."""
    check_move(MessageStatus(m.status), new)
    when = now or utcnow()
    m.status = new.value
    m.updated_at = when
    if new == S.SENT:
        m.sent_at = when
    elif new == S.DELIVERED:
        m.delivered_at = when
        m.sent_at = m.sent_at or when
    if m.body_redacted is not None and new not in (S.QUEUED, S.SCHEDULED, S.SENDING):
        # A secret text (a one-time code) is kept only while it may still be sent.
        m.body = m.body_redacted
    if new in (S.SENT, S.DELIVERED):
        # It got through: an error from an earlier attempt stays in the events only.
        m.error_code = m.error_message = m.error_hint = None
    if error is not None:
        m.error_code, m.error_message, m.error_hint = (
            error.code[:64],
            error.message[:255],
            error.hint[:255],
        )
    if new not in (S.SENDING, S.QUEUED):
        m.lease_owner = None
        m.lease_expires_at = None
    if rows is not None:
        rows.history.append({"message_id": m.id, "status": new.value, "at": when, "detail": detail})
    else:
        session.add(MessageEvent(message_id=m.id, status=new.value, at=when, detail=detail))
    changes.note_status(session, m.id, new.value)
    message_moved(session, m, new.value, when, rows)


async def prune(session: AsyncSession, *, idempotency_hours: int) -> int:
    """Forget Idempotency-Keys older than ``idempotency_hours`` and usage counters of
    windows that have closed (the longest window is a day)."""
    now = utcnow()
    keys = await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.created_at < now - timedelta(hours=idempotency_hours)
        )
    )
    usage = await session.execute(
        delete(AppUsage).where(AppUsage.window_start < now - timedelta(days=2))
    )
    return int(getattr(keys, "rowcount", 0) or 0) + int(getattr(usage, "rowcount", 0) or 0)
