"""Outbound messages as plain objects for the dispatcher's hot path.

The dispatcher claims, records and reports thousands of messages a second. As ORM objects
each one costs attribute instrumentation, an identity map entry and a unit-of-work flush
that works out again which columns changed. Here a message is read with one Core SELECT of
the columns the pipeline uses into a slotted object, changed by the same code that changes
ORM messages (``outbound.move`` and the dispatcher's rules), and written back with one
UPDATE per set of changed columns, executed for every message that shares it.

The locking is the caller's, as with ORM objects: rows read ``FOR UPDATE`` on
PostgreSQL/MariaDB, the one write connection on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.store import bulk
from simgate.store.models import Message

MESSAGES = cast(Table, Message.__table__)

# Attribute name -> column name (the same but for ``meta``, stored as ``metadata``).
FIELDS = {
    "id": "id",
    "direction": "direction",
    "app_id": "app_id",
    "to_number": "to_number",
    "body": "body",
    "encoding": "encoding",
    "segments": "segments",
    "status": "status",
    "priority": "priority",
    "gateway_pinned": "gateway_pinned",
    "gateway": "gateway",
    "avoid_gateway": "avoid_gateway",
    "expires_at": "expires_at",
    "next_attempt_at": "next_attempt_at",
    "attempts": "attempts",
    "lease_owner": "lease_owner",
    "lease_expires_at": "lease_expires_at",
    "gateway_ref": "gateway_ref",
    "error_code": "error_code",
    "error_message": "error_message",
    "error_hint": "error_hint",
    "meta": "metadata",
    "updated_at": "updated_at",
    "sent_at": "sent_at",
    "delivered_at": "delivered_at",
    "sim_slot": "sim_slot",
    "status_callback": "status_callback",
    "body_redacted": "body_redacted",
}
_NAMES = tuple(FIELDS)
_COLUMNS = [MESSAGES.c[column] for column in FIELDS.values()]


class QueuedMessage:
    """One message's pipeline columns; ``changes()`` says what was set since it was read."""

    __slots__ = (*_NAMES, "_read")

    id: str
    direction: str
    app_id: int | None
    to_number: str
    body: str
    encoding: str
    segments: int
    status: str
    priority: int
    gateway_pinned: str | None
    gateway: str | None
    avoid_gateway: str | None
    expires_at: datetime | None
    next_attempt_at: datetime
    attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    gateway_ref: str | None
    error_code: str | None
    error_message: str | None
    error_hint: str | None
    meta: dict[str, Any] | None
    updated_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    sim_slot: int | None
    status_callback: str | None
    body_redacted: str | None
    _read: tuple[Any, ...]

    def __init__(self, values: Iterable[Any]) -> None:
        read = tuple(values)
        for name, value in zip(_NAMES, read, strict=True):
            object.__setattr__(self, name, value)
        self._read = read

    def changes(self) -> dict[str, Any]:
        """Column name -> new value, for every column set to something else since read."""
        out = {}
        for name, before in zip(_NAMES, self._read, strict=True):
            now = getattr(self, name)
            if now is not before and now != before:
                out[FIELDS[name]] = now
        return out

    def __repr__(self) -> str:
        return f"QueuedMessage(id={self.id!r}, status={self.status!r})"


def query() -> Select[Any]:
    """SELECT of the pipeline columns; add the WHERE, ORDER BY, LIMIT and lock."""
    return select(*_COLUMNS)


async def load(session: AsyncSession, stmt: Select[Any]) -> list[QueuedMessage]:
    return [QueuedMessage(row) for row in await session.execute(stmt)]


async def save_with(
    session: AsyncSession, messages: Iterable[QueuedMessage], inserts: Sequence[bulk.Part]
) -> None:
    """``save`` the messages and insert ``inserts`` (the history and events that tell of
    the changes). On PostgreSQL that is one statement (store/bulk.py); elsewhere one
    statement per change set and table."""
    if session.get_bind().dialect.name != "postgresql":
        await save(session, messages)
        for table, rows in inserts:
            await bulk.insert_many(session, table, rows)
        return
    groups = _changed(messages)
    updates = [(MESSAGES, rows) for rows in groups.values()]
    if groups or any(rows for _, rows in inserts):
        stmt, params = bulk.statement(inserts=inserts, updates=updates)
        await session.execute(stmt, params)


async def save(session: AsyncSession, messages: Iterable[QueuedMessage]) -> int:
    """Write what changed: one UPDATE per set of changed columns, run for every message
    with that set. Returns how many messages changed."""
    groups = _changed(messages)
    for keys, rows in groups.items():
        # The parameters are named apart from the columns, as update() wants them.
        stmt = (
            update(MESSAGES)
            .where(MESSAGES.c.id == bindparam("v_id"))
            .values({key: bindparam(f"v_{key}") for key in keys if key != "id"})
        )
        await session.execute(stmt, [{f"v_{k}": v for k, v in row.items()} for row in rows])
    return sum(len(p) for p in groups.values())


def _changed(messages: Iterable[QueuedMessage]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """The changed messages grouped by the set of columns changed: for each, the rows of
    ``id`` and the changed columns' new values."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for m in messages:
        changed = m.changes()
        if changed:
            changed["id"] = m.id
            groups.setdefault(tuple(sorted(changed)), []).append(changed)
    return groups
