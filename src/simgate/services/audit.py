"""Audit trail: one row per change an operator or app made."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.store.models import AuditEvent
from simgate.store.types import utcnow


def record(
    session: AsyncSession, *, actor: str, action: str, target: str = "", **detail: Any
) -> None:
    """Add an audit row to the caller's transaction, so it commits (or not) with the change."""
    session.add(AuditEvent(actor=actor, action=action, target=target, detail=detail))


async def prune(session: AsyncSession, *, older_than_days: int) -> int:
    cutoff = utcnow() - timedelta(days=older_than_days)
    result = await session.execute(delete(AuditEvent).where(AuditEvent.created_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


async def recent(
    session: AsyncSession,
    *,
    limit: int = 100,
    actor: str | None = None,
    action: str | None = None,
    after_id: int | None = None,
) -> list[AuditEvent]:
    """Newest first; ``actor`` and ``action`` match as substrings; ``after_id`` only newer."""
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if actor:
        stmt = stmt.where(AuditEvent.actor.contains(actor, autoescape=True))
    if action:
        stmt = stmt.where(AuditEvent.action.contains(action, autoescape=True))
    if after_id is not None:
        stmt = stmt.where(AuditEvent.id > after_id)
    return list(await session.scalars(stmt))
