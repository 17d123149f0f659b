"""Users: admins and ordinary users who own apps. Passwords are hashed with argon2id."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.errors import Conflict, Invalid, NotFound, Unauthorized
from simgate.services import audit
from simgate.store.models import App, User
from simgate.store.types import utcnow

ROLES = ("admin", "user")
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024

_hasher = PasswordHasher()
# Verified against when the username is unknown, so a wrong name costs the same time as a
# wrong password and response times do not reveal which usernames exist.
_DUMMY_HASH = _hasher.hash("simgate-timing-equaliser")


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    username: str
    role: str
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, user: User) -> UserInfo:
        return cls(
            user.id, user.username, user.role, user.is_active, user.created_at, user.last_login_at
        )


def check_username(username: str) -> str:
    if not USERNAME_RE.match(username):
        raise Invalid(
            f"username {username!r} is not valid: use 1-64 letters, digits, '.', '_', '@' or "
            "'-', starting with a letter or digit",
            field="username",
        )
    return username


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise Invalid(
            f"password is too short: use at least {MIN_PASSWORD} characters", field="password"
        )
    if len(password) > MAX_PASSWORD:
        raise Invalid(f"password is too long: at most {MAX_PASSWORD} characters", field="password")
    return password


async def create_user(
    session: AsyncSession, *, username: str, password: str, role: str = "admin", actor: str
) -> UserInfo:
    check_username(username)
    check_password(password)
    if role not in ROLES:
        raise Invalid(f"role {role!r} is not valid; use {' or '.join(ROLES)}", field="role")
    if await session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"a user named {username!r} already exists", field="username")
    first_admin = role == "admin" and not await session.scalar(
        select(func.count()).select_from(User).where(User.role == "admin")
    )
    user = User(
        username=username,
        password_hash=_hasher.hash(password),
        role=role,
        is_active=True,
        created_at=utcnow(),
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"a user named {username!r} already exists", field="username") from None
    if first_admin:
        # Apps created before any admin existed belong to the first admin.
        await session.execute(update(App).where(App.owner_id.is_(None)).values(owner_id=user.id))
    audit.record(session, actor=actor, action="user.create", target=username, role=role)
    return UserInfo.of(user)


async def get_user(session: AsyncSession, username: str) -> User:
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user named {username!r}", field="username")
    return user


async def list_users(session: AsyncSession) -> list[UserInfo]:
    rows = await session.scalars(select(User).order_by(User.id))
    return [UserInfo.of(u) for u in rows]


async def set_password(session: AsyncSession, *, username: str, password: str, actor: str) -> None:
    check_password(password)
    user = await get_user(session, username)
    user.password_hash = _hasher.hash(password)
    audit.record(session, actor=actor, action="user.set_password", target=username)


async def set_active(session: AsyncSession, *, username: str, active: bool, actor: str) -> None:
    user = await get_user(session, username)
    user.is_active = active
    audit.record(
        session, actor=actor, action="user.enable" if active else "user.disable", target=username
    )


async def verify_login(session: AsyncSession, *, username: str, password: str) -> UserInfo:
    """The user if the password matches and the account is active; Unauthorized otherwise.

    The message never says whether the username or the password was wrong.
    """
    user = await session.scalar(select(User).where(User.username == username))
    stored = user.password_hash if user is not None else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
        ok = user is not None and user.is_active
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None:
        raise Unauthorized("wrong username or password")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    return UserInfo.of(user)


async def set_role(session: AsyncSession, *, username: str, role: str, actor: str) -> UserInfo:
    if role not in ROLES:
        raise Invalid(f"role {role!r} is not valid; use {' or '.join(ROLES)}", field="role")
    user = await get_user(session, username)
    if user.role != role:
        user.role = role
        audit.record(session, actor=actor, action="user.role", target=username, role=role)
    return UserInfo.of(user)


async def change_own_password(
    session: AsyncSession, *, username: str, current: str, new: str, actor: str
) -> None:
    """A user changes their own password: the current one must match (field ``current``)."""
    user = await get_user(session, username)
    try:
        _hasher.verify(user.password_hash, current)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        raise Invalid("the current password is wrong", field="current") from None
    check_password(new)
    user.password_hash = _hasher.hash(new)
    audit.record(session, actor=actor, action="user.change_password", target=username)
