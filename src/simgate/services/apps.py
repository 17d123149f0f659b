"""Apps and their API keys. A key's secret is returned once at creation and never stored."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.domain.keys import (
    DEFAULT_SCOPES,
    PREFIX_RE,
    Scope,
    format_scopes,
    generate_key,
    hash_key,
    key_prefix,
)
from simgate.errors import Conflict, Invalid, NotFound
from simgate.services import audit
from simgate.store.models import ApiKey, App, Counter, Message, User
from simgate.store.types import utcnow

APP_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
AUTH_GENERATION = "auth_generation"
AUTH_CHANNEL = "simgate_auth"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: int
    app: str
    prefix: str
    name: str
    scopes: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class AppInfo:
    id: int
    name: str
    description: str
    owner: str | None
    is_active: bool
    created_at: datetime
    active_keys: int
    rate_per_minute: int | None = None
    rate_per_day: int | None = None
    allowed_countries: str = ""


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """What creating a key answers: the secret is here and nowhere else, ever."""

    secret: str
    info: KeyInfo


def check_app_name(name: str) -> str:
    if not APP_NAME_RE.match(name):
        raise Invalid(
            f"app name {name!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            field="name",
        )
    return name


async def bump_auth_generation(session: AsyncSession) -> None:
    """Tell every node's key cache to forget: part of the revoking transaction."""
    await session.execute(
        update(Counter).where(Counter.name == AUTH_GENERATION).values(value=Counter.value + 1)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Other nodes forget at once (delivered at commit); elsewhere they poll.
        await session.execute(text("SELECT pg_notify(:c, '')"), {"c": AUTH_CHANNEL})


async def auth_generation(session: AsyncSession) -> int:
    return int(
        await session.scalar(select(Counter.value).where(Counter.name == AUTH_GENERATION)) or 0
    )


async def _get_app(session: AsyncSession, name: str) -> App:
    app = await session.scalar(select(App).where(App.name == name))
    if app is None:
        raise NotFound(f"no app named {name!r}", field="app")
    return app


async def _add_key(
    session: AsyncSession, app: App, *, scopes: frozenset[Scope], name: str
) -> CreatedKey:
    new = generate_key()
    row = ApiKey(
        app_id=app.id,
        prefix=new.prefix,
        key_hash=new.digest,
        name=name,
        scopes=format_scopes(scopes),
        created_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    return CreatedKey(secret=new.secret, info=_key_info(row, app.name))


def _key_info(row: ApiKey, app_name: str) -> KeyInfo:
    return KeyInfo(
        row.id,
        app_name,
        row.prefix,
        row.name,
        row.scopes,
        row.created_at,
        row.last_used_at,
        row.revoked_at,
    )


async def create_app(
    session: AsyncSession,
    *,
    name: str,
    owner: str | None,
    actor: str,
    description: str = "",
    scopes: frozenset[Scope] = DEFAULT_SCOPES,
) -> tuple[AppInfo, CreatedKey]:
    """Create an app with its first key. Without ``owner`` the first admin owns it (or, when
    no admin exists yet, the first admin created later)."""
    check_app_name(name)
    if len(description) > 255:
        raise Invalid("description is too long: at most 255 characters", field="description")
    if owner is not None:
        owner_row = await session.scalar(select(User).where(User.username == owner))
        if owner_row is None:
            raise NotFound(f"no user named {owner!r} to own the app", field="owner")
    else:
        owner_row = await session.scalar(
            select(User).where(User.role == "admin").order_by(User.id).limit(1)
        )
    if await session.scalar(select(App.id).where(App.name == name)) is not None:
        raise Conflict(f"an app named {name!r} already exists", field="name")
    app = App(
        name=name,
        description=description,
        owner_id=owner_row.id if owner_row else None,
        is_active=True,
        created_at=utcnow(),
    )
    session.add(app)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"an app named {name!r} already exists", field="name") from None
    key = await _add_key(session, app, scopes=scopes, name="default")
    audit.record(
        session,
        actor=actor,
        action="app.create",
        target=name,
        owner=owner_row.username if owner_row else None,
        key=key.info.prefix,
    )
    info = _app_info(app, owner_row.username if owner_row else None, 1)
    return info, key


async def list_apps(session: AsyncSession, *, owner: str | None = None) -> list[AppInfo]:
    active = (
        select(ApiKey.app_id, func.count().label("n"))
        .where(ApiKey.revoked_at.is_(None))
        .group_by(ApiKey.app_id)
        .subquery()
    )
    stmt = (
        select(App, User.username, func.coalesce(active.c.n, 0))
        .outerjoin(User, User.id == App.owner_id)
        .outerjoin(active, active.c.app_id == App.id)
        .order_by(App.name)
    )
    if owner is not None:
        stmt = stmt.where(User.username == owner)
    rows = await session.execute(stmt)
    return [_app_info(app, username, int(n)) for app, username, n in rows]


def _app_info(app: App, owner: str | None, active_keys: int) -> AppInfo:
    return AppInfo(
        app.id,
        app.name,
        app.description,
        owner,
        app.is_active,
        app.created_at,
        active_keys,
        app.rate_per_minute,
        app.rate_per_day,
        app.allowed_countries or "",
    )


UNSET: Any = object()


async def set_limits(
    session: AsyncSession,
    *,
    name: str,
    rate_per_minute: int | None = UNSET,
    rate_per_day: int | None = UNSET,
    allowed_countries: str | None = UNSET,
    actor: str,
) -> AppInfo:
    """Change an app's sending limits; None removes a limit, an omitted one stays."""
    app = await _get_app(session, name)
    changes: dict[str, Any] = {}
    for field, value in (("rate_per_minute", rate_per_minute), ("rate_per_day", rate_per_day)):
        if value is UNSET:
            continue
        if value is not None and value < 1:
            raise Invalid(f"{field}: must be at least 1 (or empty for no limit)", field=field)
        setattr(app, field, value)
        changes[field] = value
    if allowed_countries is not UNSET:
        codes = [c.strip().upper() for c in (allowed_countries or "").split(",") if c.strip()]
        bad = [c for c in codes if len(c) != 2 or not c.isalpha()]
        if bad:
            raise Invalid(
                f"allowed_countries: {bad[0]!r} is not a two-letter country code such as DE",
                field="allowed_countries",
            )
        app.allowed_countries = ",".join(sorted(set(codes)))
        changes["allowed_countries"] = app.allowed_countries
    audit.record(session, actor=actor, action="app.limits", target=name, **changes)
    owner = None
    if app.owner_id is not None:
        owner = await session.scalar(select(User.username).where(User.id == app.owner_id))
    return _app_info(app, owner, 0)


async def create_key(
    session: AsyncSession,
    *,
    app: str,
    scopes: frozenset[Scope] = DEFAULT_SCOPES,
    name: str = "",
    actor: str,
) -> CreatedKey:
    if len(name) > 64:
        raise Invalid("key name is too long: at most 64 characters", field="name")
    row = await _get_app(session, app)
    key = await _add_key(session, row, scopes=scopes, name=name)
    audit.record(
        session,
        actor=actor,
        action="key.create",
        target=key.info.prefix,
        app=app,
        scopes=key.info.scopes,
    )
    return key


async def list_keys(session: AsyncSession, *, app: str | None = None) -> list[KeyInfo]:
    stmt = select(ApiKey, App.name).join(App, App.id == ApiKey.app_id).order_by(ApiKey.id)
    if app is not None:
        await _get_app(session, app)
        stmt = stmt.where(App.name == app)
    return [_key_info(row, name) for row, name in await session.execute(stmt)]


async def revoke_key(session: AsyncSession, *, prefix: str, actor: str) -> KeyInfo:
    """Revoke by visible prefix (or by the whole key). Revoking twice is not an error."""
    given = prefix.strip()
    if PREFIX_RE.match(given):
        stmt = select(ApiKey, App.name).where(ApiKey.prefix == given)
    elif key_prefix(given) is not None:
        stmt = select(ApiKey, App.name).where(ApiKey.key_hash == hash_key(given))
    else:
        raise Invalid(
            f"{given[:16]!r} is not a key prefix: expected 'sg_' followed by 10 letters or "
            "digits, as 'simgate key list' shows",
            field="prefix",
        )
    found = (await session.execute(stmt.join(App, App.id == ApiKey.app_id))).first()
    if found is None:
        raise NotFound(f"no key with prefix {given[:13]!r}", field="prefix")
    row, app_name = found
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await bump_auth_generation(session)
        audit.record(session, actor=actor, action="key.revoke", target=row.prefix, app=app_name)
    return _key_info(row, app_name)


async def find_app(session: AsyncSession, name: str, *, owner: str | None = None) -> AppInfo:
    """One app by name; with ``owner``, only if that user owns it (another's is NotFound,
    so its existence is not revealed)."""
    for info in await list_apps(session, owner=owner):
        if info.name == name:
            return info
    raise NotFound(f"no app named {name!r}", field="app")


async def usage_since(
    session: AsyncSession, *, since: datetime, app_ids: list[int] | None = None
) -> dict[int, int]:
    """Outbound messages each app submitted since ``since`` (apps with none are left out)."""
    stmt = (
        select(Message.app_id, func.count())
        .where(
            Message.direction == "outbound",
            Message.created_at >= since,
            Message.app_id.is_not(None),
        )
        .group_by(Message.app_id)
    )
    if app_ids is not None:
        stmt = stmt.where(Message.app_id.in_(app_ids or [-1]))
    return {int(app_id or 0): int(n) for app_id, n in await session.execute(stmt)}
