"""Audit trail: one row per change an operator or app made."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete
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
