"""Telling waiters what changed, the moment it is committed.

Code that stores a received SMS or moves a message's status notes it on the session
(``note_inbound``, ``note_status``, ``note_event``). When that transaction commits, the
node's listeners hear of it at once; on PostgreSQL the same notes go out with
``pg_notify`` inside the transaction, so other nodes hear of it exactly when it becomes
visible. A rolled-back transaction tells nobody. A note is a hint, never the data:
listeners read the database, so a note for something a savepoint undid is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from simgate.config import Settings
from simgate.services.notify import listen_forever

log = logging.getLogger(__name__)

CHANNEL = "simgate_changes"
_NOTES = "simgate_changes"
_FEED = "simgate_feed"
# pg_notify refuses payloads of 8000 bytes or more.
_MAX_PAYLOAD = 7000


@dataclass
class Changes:
    inbound: list[str] = field(default_factory=list)
    statuses: list[tuple[str, str]] = field(default_factory=list)
    events: bool = False
    # Something may have been missed (a listener reconnected): look at everything again.
    rescan: bool = False
    remote: bool = False

    def __bool__(self) -> bool:
        return bool(self.inbound or self.statuses or self.events or self.rescan)


class FeedSession(Session):
    """The sessions simgate uses: they carry the notes made during a transaction."""


def _notes(session: Session) -> Changes | None:
    if _FEED not in session.info:
        return None
    notes: Changes | None = session.info.get(_NOTES)
    if notes is None:
        notes = session.info[_NOTES] = Changes()
    return notes


def _sync(session: AsyncSession | Session) -> Session:
    return session.sync_session if isinstance(session, AsyncSession) else session


def note_inbound(session: AsyncSession | Session, message_id: str) -> None:
    notes = _notes(_sync(session))
    if notes is not None:
        notes.inbound.append(message_id)


def note_status(session: AsyncSession | Session, message_id: str, status: str) -> None:
    notes = _notes(_sync(session))
    if notes is not None:
        notes.statuses.append((message_id, status))


def note_event(session: AsyncSession | Session) -> None:
    notes = _notes(_sync(session))
    if notes is not None:
        notes.events = True


class ChangeFeed:
    """One per running app. ``listeners`` are called with every committed Changes (from
    this node, or from others via ``remote``); they must be quick and never block."""

    def __init__(self, *, node: str, notify: bool) -> None:
        self.node = node
        self.notify = notify
        self.listeners: list[Callable[[Changes], None]] = []

    def sessionmaker(self, engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
        return async_sessionmaker(
            engine, expire_on_commit=False, sync_session_class=FeedSession, info={_FEED: self}
        )

    def publish(self, changes: Changes) -> None:
        for listener in list(self.listeners):
            try:
                listener(changes)
            except Exception:
                log.exception("a change listener failed")

    def remote(self, payload: str) -> None:
        """A NOTIFY from some node (an empty payload: the listener reconnected)."""
        if not payload:
            self.publish(Changes(rescan=True, remote=True))
            return
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if not isinstance(data, dict) or data.get("n") == self.node:
            return  # our own, already told locally
        changes = Changes(remote=True, events=bool(data.get("e")))
        for item in data.get("i") or ():
            if isinstance(item, str):
                changes.inbound.append(item)
        for item in data.get("s") or ():
            if isinstance(item, list) and len(item) == 2:
                changes.statuses.append((str(item[0]), str(item[1])))
        if changes:
            self.publish(changes)

    def payloads(self, changes: Changes) -> list[str]:
        """The NOTIFY payloads for ``changes``, each under pg_notify's size limit."""
        out: list[str] = []
        current: dict[str, Any] = {"n": self.node}
        size = len(json.dumps(current))
        if changes.events:
            current["e"] = 1
            size += 8
        items: list[tuple[str, Any]] = [("i", i) for i in changes.inbound]
        items += [("s", list(s)) for s in changes.statuses]
        for key, value in items:
            cost = len(json.dumps(value)) + 8
            if size + cost > _MAX_PAYLOAD and (current.get("i") or current.get("s")):
                out.append(json.dumps(current, separators=(",", ":")))
                current = {"n": self.node}
                size = len(json.dumps(current))
            current.setdefault(key, []).append(value)
            size += cost
        if len(current) > 1 or not out:
            out.append(json.dumps(current, separators=(",", ":")))
        return out


@contextlib.asynccontextmanager
async def followed(settings: Settings, listener: Callable[[Changes], None]) -> AsyncIterator[None]:
    """For a process that is not a server (the CLI): ``listener`` hears what servers commit,
    through PostgreSQL NOTIFY, while the block runs. Elsewhere there is nothing to hear and
    the caller keeps looking itself."""
    if settings.backend != "postgresql":
        yield
        return
    feed = ChangeFeed(node=f"cli-{os.getpid()}", notify=False)
    feed.listeners.append(listener)
    task = asyncio.get_running_loop().create_task(
        listen_forever(settings.effective_database_url, {CHANNEL: feed.remote})
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


@event.listens_for(FeedSession, "before_commit")
def _before_commit(session: Session) -> None:
    notes: Changes | None = session.info.get(_NOTES)
    feed: ChangeFeed | None = session.info.get(_FEED)
    if not notes or feed is None or not feed.notify:
        return
    for payload in feed.payloads(notes):
        session.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})


@event.listens_for(FeedSession, "after_commit")
def _after_commit(session: Session) -> None:
    notes: Changes | None = session.info.pop(_NOTES, None)
    feed: ChangeFeed | None = session.info.get(_FEED)
    if notes and feed is not None:
        feed.publish(notes)


@event.listens_for(FeedSession, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_NOTES, None)
