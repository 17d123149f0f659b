"""Dashboard sessions: a random token in an HttpOnly cookie, its SHA-256 in the database."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.services import audit
from simgate.services.accounts import UserInfo
from simgate.store.models import Session, User
from simgate.store.types import utcnow


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def open_session(
    session: AsyncSession,
    *,
    user: UserInfo,
    ttl: timedelta,
    client_ip: str = "",
    user_agent: str = "",
) -> str:
    """Store a new session for ``user``; the returned token goes in the cookie only."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        Session(
            token_hash=_digest(token),
            user_id=user.id,
            created_at=now,
            expires_at=now + ttl,
            client_ip=client_ip[:64],
            user_agent=user_agent[:255],
        )
    )
    audit.record(session, actor=f"user:{user.username}", action="user.login", ip=client_ip)
    return token


async def user_for(session: AsyncSession, token: str) -> UserInfo | None:
    """The active user a live session token belongs to, or None."""
    if not token or len(token) > 128:
        return None
    # Looked up by the token's hash: equality on a SHA-256 digest leaks nothing usable
    # about the token through timing.
    row = (
        await session.execute(
            select(User)
            .join(Session, Session.user_id == User.id)
            .where(Session.token_hash == _digest(token), Session.expires_at > utcnow())
        )
    ).scalar_one_or_none()
    if row is None or not row.is_active:
        return None
    return UserInfo.of(row)


async def close_session(session: AsyncSession, token: str) -> None:
    await session.execute(delete(Session).where(Session.token_hash == _digest(token)))


async def prune(session: AsyncSession) -> int:
    result = await session.execute(delete(Session).where(Session.expires_at <= utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass
class LoginThrottle:
    """At most ``limit`` failed logins per client IP and username in ``window`` seconds:
    guessing passwords gets slow, and one attacker cannot lock out a user elsewhere."""

    limit: int = 10
    window: float = 300.0

    def __post_init__(self) -> None:
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] > self.window:
            times.popleft()
        return times

    def retry_after(self, ip: str, username: str) -> int:
        """Seconds to wait before another try is allowed; 0 when allowed now."""
        now = time.monotonic()
        times = self._recent((ip, username.lower()), now)
        if len(times) < self.limit:
            return 0
        return max(1, int(self.window - (now - times[0])) + 1)

    def failed(self, ip: str, username: str) -> None:
        now = time.monotonic()
        self._recent((ip, username.lower()), now).append(now)
        if len(self._failures) > 10_000:  # bound memory under a spray of usernames
            for key in [k for k, v in self._failures.items() if not v][:5_000]:
                del self._failures[key]

    def succeeded(self, ip: str, username: str) -> None:
        self._failures.pop((ip, username.lower()), None)


async def close_other_sessions(session: AsyncSession, *, user_id: int, keep: str) -> int:
    """End every session of ``user_id`` except the one whose token is ``keep`` (after a
    password change: a stolen session does not outlive it); how many ended."""
    result = await session.execute(
        delete(Session).where(Session.user_id == user_id, Session.token_hash != _digest(keep))
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def close_user_sessions(session: AsyncSession, *, user_id: int) -> int:
    """End every session of ``user_id`` (their password was reset, or they were disabled)."""
    result = await session.execute(delete(Session).where(Session.user_id == user_id))
    return int(getattr(result, "rowcount", 0) or 0)
