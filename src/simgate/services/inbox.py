"""The inbox: every SMS any gateway received, to list, read, mark and wait for.

Waiting is push, not polling: a stored SMS is noted on its transaction
(``changes.note_inbound``) and, once committed, wakes every waiter here at once; SMS stored
by another node arrive as PostgreSQL NOTIFYs through the same change feed. A woken waiter
reads only what is new since it last looked. On backends without NOTIFY (MariaDB, SQLite
written by other processes) waiters also look once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import re2
from sqlalchemy import ColumnElement, and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simgate.domain import phone
from simgate.domain.ids import MESSAGE_ID_RE, floor_id
from simgate.errors import Invalid, NotFound, RateLimited
from simgate.services.changes import Changes
from simgate.services.inbound import inbox_item
from simgate.store.models import Message
from simgate.store.types import utcnow

MAX_PATTERN = 256
MAX_CONTAINS = 160
MAX_WAIT = 120.0
_SCAN = 200
_LIST_SCAN = 5000
_RE2_MEMORY = 8 << 20  # bytes RE2 may use for one compiled pattern


def compile_pattern(pattern: str) -> Any:
    """A regular expression, compiled by RE2: linear time in the text, whatever the pattern,
    so no pattern can backtrack catastrophically. Invalid (naming ``pattern``) if it is too
    long, uses what RE2 lacks (backreferences, lookaround) or is not a regex."""
    if len(pattern) > MAX_PATTERN:
        raise Invalid(
            f"pattern is {len(pattern)} characters long; at most {MAX_PATTERN} are allowed",
            field="pattern",
        )
    options = re2.Options()
    options.log_errors = False
    options.max_mem = _RE2_MEMORY
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "not a regular expression"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise Invalid(
            f"pattern is not a usable regular expression: {reason} "
            "(RE2 syntax: no backreferences or lookaround)",
            field="pattern",
        ) from None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _numbers(raw: str, field_: str) -> list[str]:
    """What a sender or receiving number may be stored as: the text given and, when it is a
    phone number, its E.164 form (alphanumeric senders such as "Google" stay as given)."""
    raw = raw.strip()
    if not raw:
        raise Invalid(f"{field_} is empty", field=field_)
    if len(raw) > 64:
        raise Invalid(f"{field_} is longer than 64 characters", field=field_)
    out = [raw]
    with contextlib.suppress(phone.InvalidNumber):
        e164 = phone.normalise(raw).e164
        if e164 not in out:
            out.append(e164)
    return out


@dataclass(frozen=True)
class InboxQuery:
    """Filters of the inbox list and of waits. Text filters are case-insensitive."""

    senders: tuple[str, ...] = ()
    receivers: tuple[str, ...] = ()
    gateway: str | None = None
    sim_slot: int | None = None
    contains: str | None = None
    pattern: Any = None  # a compiled RE2 pattern
    since: datetime | None = None
    until: datetime | None = None
    unread: bool | None = None

    @classmethod
    def parse(
        cls,
        *,
        sender: str | None = None,
        to: str | None = None,
        gateway: str | None = None,
        sim_slot: int | None = None,
        contains: str | None = None,
        pattern: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        unread: bool | None = None,
    ) -> InboxQuery:
        if contains is not None and len(contains) > MAX_CONTAINS:
            raise Invalid(f"contains is longer than {MAX_CONTAINS} characters", field="contains")
        if sim_slot is not None and sim_slot not in (1, 2):
            raise Invalid(f"sim_slot must be 1 or 2, not {sim_slot}", field="sim_slot")
        if since is not None and until is not None and _aware(until) < _aware(since):
            raise Invalid("until is before since", field="until")
        return cls(
            senders=tuple(_numbers(sender, "from")) if sender is not None else (),
            receivers=tuple(_numbers(to, "to")) if to is not None else (),
            gateway=gateway.strip() or None if gateway is not None else None,
            sim_slot=sim_slot,
            contains=contains or None,
            pattern=compile_pattern(pattern) if pattern else None,
            since=_aware(since) if since is not None else None,
            until=_aware(until) if until is not None else None,
            unread=unread,
        )

    def conditions(self) -> list[ColumnElement[bool]]:
        """What the database can filter on; ``contains``/``pattern`` are checked in
        ``matches`` too (LIKE differs between backends in case and collation)."""
        conds: list[ColumnElement[bool]] = [
            Message.direction == "inbound",
            Message.deleted_at.is_(None),
        ]
        if self.senders:
            conds.append(Message.from_number.in_(self.senders))
        if self.receivers:
            conds.append(Message.to_number.in_(self.receivers))
        if self.gateway:
            conds.append(Message.gateway == self.gateway)
        if self.sim_slot is not None:
            conds.append(Message.sim_slot == self.sim_slot)
        if self.since is not None:
            conds.append(Message.created_at >= self.since)
        if self.until is not None:
            conds.append(Message.created_at <= self.until)
        if self.unread is True:
            conds.append(Message.read_at.is_(None))
        elif self.unread is False:
            conds.append(Message.read_at.is_not(None))
        if self.contains and self.contains.isascii():
            # SQLite's lower() and LIKE fold ASCII only: text beyond ASCII is left to
            # ``matches``, or "ärzte" would miss "ÄRZTE" there.
            escaped = (
                self.contains.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            )
            conds.append(func.lower(Message.body).like(f"%{escaped}%", escape="\\"))
        return conds

    def matches(self, body: str) -> tuple[bool, str | None]:
        """Whether ``body`` passes the text filters, and what the pattern captured (its
        first group when it has one, else the whole match)."""
        if self.contains and self.contains.lower() not in body.lower():
            return False, None
        if self.pattern is None:
            return True, None
        found = self.pattern.search(body)
        if found is None:
            return False, None
        if self.pattern.groups >= 1:
            return True, found.group(1)
        return True, found.group(0)

    def item(self, m: Message) -> dict[str, Any] | None:
        """``m`` as the API shows it (with ``match`` under a pattern), or None if it does not
        pass the filters checked here rather than in SQL."""
        ok, captured = self.matches(m.body)
        if not ok:
            return None
        item = inbox_item(m)
        if self.pattern is not None:
            item["match"] = captured
        return item


# --- reading and marking ----------------------------------------------------------------------


async def list_inbox(
    session: AsyncSession, query: InboxQuery, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, ``limit`` at a time, and the cursor of the next page (None: no more).
    A pattern is checked here rather than in SQL, so a page with one reads on until it is
    full, or until it has looked at ``_LIST_SCAN`` messages (then the cursor says where to
    go on)."""
    conds = query.conditions()
    if cursor is not None and not MESSAGE_ID_RE.match(cursor):
        raise Invalid(f"cursor {cursor[:40]!r} is not one this API gave out", field="cursor")
    batch = limit + 1 if query.pattern is None else _SCAN
    out: list[dict[str, Any]] = []
    position, scanned = cursor, 0
    while True:
        page = [*conds, Message.id < position] if position else conds
        rows = list(
            await session.scalars(
                select(Message).where(*page).order_by(Message.id.desc()).limit(batch)
            )
        )
        for m in rows:
            item = query.item(m)
            if item is not None:
                if len(out) == limit:
                    return out, out[-1]["id"]
                out.append(item)
            position = m.id
        scanned += len(rows)
        if len(rows) < batch:
            return out, None
        if scanned >= _LIST_SCAN:
            return out, position


async def _one(session: AsyncSession, id_: str, *, for_update: bool = False) -> Message:
    if not MESSAGE_ID_RE.match(id_):
        raise NotFound(f"no received message {id_[:40]!r}", field="id")
    m = await session.get(Message, id_, with_for_update=for_update)
    if m is None or m.direction != "inbound" or m.deleted_at is not None:
        raise NotFound(f"no received message {id_!r}", field="id")
    return m


async def get(session: AsyncSession, id_: str) -> dict[str, Any]:
    return inbox_item(await _one(session, id_))


async def mark_read(session: AsyncSession, id_: str, *, read: bool = True) -> dict[str, Any]:
    m = await _one(session, id_, for_update=True)
    if read and m.read_at is None:
        m.read_at = utcnow()
    elif not read:
        m.read_at = None
    return inbox_item(m)


async def soft_delete(session: AsyncSession, id_: str) -> None:
    m = await _one(session, id_, for_update=True)
    m.deleted_at = utcnow()


async def recent(session: AsyncSession, limit: int = 50) -> list[Message]:
    """The last ``limit`` received, newest first (seed 001's /json and web page)."""
    return list(
        await session.scalars(
            select(Message)
            .where(Message.direction == "inbound", Message.deleted_at.is_(None))
            .order_by(Message.id.desc())
            .limit(limit)
        )
    )


async def prune(session: AsyncSession, *, older_than_days: int, limit: int) -> int:
    """Delete up to ``limit`` received SMS older than the retention, and those an admin
    deleted over a day ago (their events go with them). Old means received and stored
    before the cutoff: a phone with a wrong clock, or one that hands over SMS it kept for
    months, does not see them deleted the moment they arrive."""
    now = utcnow()
    cutoff = now - timedelta(days=older_than_days)
    old = and_(
        Message.direction == "inbound",
        or_(
            and_(Message.created_at < cutoff, Message.updated_at < cutoff),
            Message.deleted_at < now - timedelta(days=1),
        ),
    )
    ids = list(await session.scalars(select(Message.id).where(old).limit(limit)))
    if not ids:
        return 0
    await session.execute(delete(Message).where(Message.id.in_(ids)))
    return len(ids)


# --- waiting ----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Waiter:
    event: asyncio.Event = field(default_factory=asyncio.Event)
    pushed: list[str] = field(default_factory=list)


class InboxWaiters:
    """Long-polls for an SMS (``GET /api/v1/inbox/wait``), at most ``per_app`` at once per
    app. ``rescan``: seconds between looks when nothing may push (None: only when woken)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        per_app: int,
        rescan: float | None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._per_app = per_app
        self._rescan = rescan
        self._waiters: set[_Waiter] = set()
        self._counts: Counter[int | None] = Counter()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def changed(self, changes: Changes) -> None:
        """A change-feed listener: new SMS (or "look again") wake every waiter."""
        if not (changes.inbound or changes.rescan) or not self._waiters:
            return
        for waiter in self._waiters:
            waiter.pushed.extend(changes.inbound)
            waiter.event.set()

    async def wait(
        self,
        query: InboxQuery,
        *,
        app_id: int | None,
        since: datetime | None,
        timeout: float,
    ) -> dict[str, Any] | None:
        """The first SMS stored after ``since`` (None: now) that matches, with ``match``
        when there is a pattern; None after ``timeout`` seconds."""
        if self._counts[app_id] >= self._per_app:
            raise RateLimited(
                f"this app already has {self._per_app} waits open; finish one first "
                "(SIMGATE_INBOX_WAITERS_PER_APP)",
                retry_after=1,
            )
        start = _aware(since) if since is not None else datetime.now(UTC)
        floor = floor_id("msg", int(start.timestamp() * 1000))
        deadline = time.monotonic() + timeout
        waiter = _Waiter()
        self._waiters.add(waiter)
        self._counts[app_id] += 1
        try:
            after = floor
            while True:
                waiter.event.clear()
                pushed, waiter.pushed = waiter.pushed, []
                found, after = await self._scan(query, after, floor, pushed)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                pause = remaining if self._rescan is None else min(remaining, self._rescan)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.event.wait(), pause)
        finally:
            self._waiters.discard(waiter)
            self._counts[app_id] -= 1
            if self._counts[app_id] <= 0:
                del self._counts[app_id]

    async def _scan(
        self, query: InboxQuery, after: str, floor: str, pushed: list[str]
    ) -> tuple[dict[str, Any] | None, str]:
        """The first match stored after ``after`` (or among ``pushed``: an SMS committed
        late may carry an id below what was already read); and how far it read."""
        conds = query.conditions()
        fresh = [p for p in pushed if p > floor and MESSAGE_ID_RE.match(p)]
        newer = Message.id > after
        where = or_(newer, Message.id.in_(fresh)) if fresh else newer
        async with self._sessionmaker() as session:
            while True:
                rows = list(
                    await session.scalars(
                        select(Message).where(*conds, where).order_by(Message.id).limit(_SCAN)
                    )
                )
                for m in rows:
                    item = query.item(m)
                    if item is not None:
                        return item, max(after, m.id)
                    after = max(after, m.id)
                if len(rows) < _SCAN:
                    return None, after
                where = Message.id > after
