"""Users, apps and keys on every database backend."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.domain.keys import Scope, hash_key
from simgate.errors import Conflict, Invalid, NotFound, Unauthorized
from simgate.services import accounts
from simgate.services import apps as app_service
from simgate.store.engine import make_sessionmaker
from simgate.store.models import ApiKey, App, AuditEvent, User

PASSWORD = "correct horse battery"


async def _count(engine: AsyncEngine, model: type) -> int:
    async with make_sessionmaker(engine)() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_create_user_and_login(engine: AsyncEngine) -> None:
    sm = make_sessionmaker(engine)
    async with sm.begin() as s:
        user = await accounts.create_user(s, username="alice", password=PASSWORD, actor="t")
    assert user.role == "admin"
    async with sm.begin() as s:
        row = await s.scalar(select(User).where(User.username == "alice"))
        assert row is not None
        assert row.password_hash.startswith("$argon2id$")
        assert PASSWORD not in row.password_hash
        ok = await accounts.verify_login(s, username="alice", password=PASSWORD)
    assert ok.last_login_at is not None


@pytest.mark.parametrize(("username", "password"), [("alice", "wrong pass"), ("bob", PASSWORD)])
async def test_wrong_login_says_nothing_about_which(
    engine: AsyncEngine, username: str, password: str
) -> None:
    sm = make_sessionmaker(engine)
    async with sm.begin() as s:
        await accounts.create_user(s, username="alice", password=PASSWORD, actor="t")
    async with sm.begin() as s:
        with pytest.raises(Unauthorized, match="wrong username or password"):
            await accounts.verify_login(s, username=username, password=password)


async def test_disabled_user_cannot_log_in(engine: AsyncEngine) -> None:
    sm = make_sessionmaker(engine)
    async with sm.begin() as s:
        await accounts.create_user(s, username="alice", password=PASSWORD, actor="t")
        await accounts.set_active(s, username="alice", active=False, actor="t")
    async with sm.begin() as s:
        with pytest.raises(Unauthorized):
            await accounts.verify_login(s, username="alice", password=PASSWORD)


async def test_duplicate_username_is_a_conflict_and_changes_nothing(engine: AsyncEngine) -> None:
    sm = make_sessionmaker(engine)
    async with sm.begin() as s:
        await accounts.create_user(s, username="alice", password=PASSWORD, actor="t")
    with pytest.raises(Conflict, match="'alice' already exists"):
        async with sm.begin() as s:
            await accounts.create_user(s, username="alice", password="another pw", actor="t")
    assert await _count(engine, User) == 1
    async with sm.begin() as s:
        await accounts.verify_login(s, username="alice", password=PASSWORD)


@pytest.mark.parametrize(
    ("username", "password", "role", "field"),
    [
        ("bad name", PASSWORD, "admin", "username"),
        ("", PASSWORD, "admin", "username"),
        ("alice", "short", "admin", "password"),
        ("alice", PASSWORD, "root", "role"),
    ],
)
async def test_invalid_user_input_names_the_field(
    engine: AsyncEngine, username: str, password: str, role: str, field: str
) -> None:
    with pytest.raises(Invalid) as info:
        async with make_sessionmaker(engine).begin() as s:
            await accounts.create_user(
                s, username=username, password=password, role=role, actor="t"
            )
    assert info.value.field == field
    assert await _count(engine, User) == 0


async def test_app_before_any_admin_is_adopted_by_the_first(engine: AsyncEngine) -> None:
    sm = make_sessionmaker(engine)
    async with sm.begin() as s:
        info, _ = await app_service.create_app(s, name="shop", owner=None, actor="t")
    assert info.owner is None
    async with sm.begin() as s:
        await accounts.create_user(s, username="carol", password=PASSWORD, role="user", actor="t")
        await accounts.create_user(s, username="root", password=PASSWORD, actor="t")
    async with sm() as s:
        (listed,) = await app_service.list_apps(s)
    assert listed.owner == "root"
    assert listed.active_keys == 1


async def test_key_stored_only_as_hash(engine: AsyncEngine) -> None:
    sm = make_sessionmaker(engine)
    async with sm.begin() as s:
        _, key = await app_service.create_app(s, name="shop", owner=None, actor="t")
    async with sm() as s:
        row = await s.scalar(select(ApiKey))
    assert row is not None
    assert row.key_hash == hash_key(key.secret)
    assert key.secret not in (row.key_hash, row.prefix, row.name, row.scopes)
    assert row.prefix == key.info.prefix


async def test_duplicate_app_name_is_a_conflict(engine: AsyncEngine) -> None:
    sm = make_sessionmaker(engine)
    async with sm.begin() as s:
        await app_service.create_app(s, name="shop", owner=None, actor="t")
    with pytest.raises(Conflict) as info:
        async with sm.begin() as s:
            await app_service.create_app(s, name="shop", owner=None, actor="t")
    assert info.value.field == "name"
    assert await _count(engine, App) == 1
    assert await _count(engine, ApiKey) == 1


@pytest.mark.parametrize(
    ("name", "owner", "error"),
    [("bad name", None, Invalid), ("-x", None, Invalid), ("ok", "nobody", NotFound)],
)
async def test_invalid_app_input(
    engine: AsyncEngine, name: str, owner: str | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        async with make_sessionmaker(engine).begin() as s:
            await app_service.create_app(s, name=name, owner=owner, actor="t")
    assert await _count(engine, App) == 0


async def test_keys_create_list_revoke_and_audit(engine: AsyncEngine) -> None:
    sm = make_sessionmaker(engine)
    async with sm.begin() as s:
        await app_service.create_app(s, name="shop", owner=None, actor="t")
        second = await app_service.create_key(
            s, app="shop", scopes=frozenset({Scope.SEND}), name="ci", actor="t"
        )
        generation = await app_service.auth_generation(s)
    async with sm.begin() as s:
        revoked = await app_service.revoke_key(s, prefix=second.info.prefix, actor="t")
        assert revoked.revoked_at is not None
        assert await app_service.auth_generation(s) == generation + 1
    async with sm.begin() as s:  # twice is fine and bumps nothing
        await app_service.revoke_key(s, prefix=second.secret, actor="t")
        assert await app_service.auth_generation(s) == generation + 1
        keys = await app_service.list_keys(s, app="shop")
        actions = list(await s.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert [k.revoked_at is None for k in keys] == [True, False]
    assert actions == ["app.create", "key.create", "key.revoke"]


@pytest.mark.parametrize(
    ("prefix", "error"),
    [("sg_zzzzzzzzzz", NotFound), ("nonsense", Invalid), ("sg_ABC", Invalid)],
)
async def test_revoke_unknown_or_malformed(
    engine: AsyncEngine, prefix: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        async with make_sessionmaker(engine).begin() as s:
            await app_service.revoke_key(s, prefix=prefix, actor="t")


async def test_key_for_unknown_app(engine: AsyncEngine) -> None:
    with pytest.raises(NotFound, match="no app named 'ghost'"):
        async with make_sessionmaker(engine).begin() as s:
            await app_service.create_key(s, app="ghost", actor="t")


async def test_unicode_and_timezones_round_trip(engine: AsyncEngine) -> None:
    sm = make_sessionmaker(engine)
    async with sm.begin() as s:
        info, _ = await app_service.create_app(
            s, name="cafe", owner=None, description="Ünïcödé 📱 описание", actor="t"
        )
    async with sm() as s:
        (listed,) = await app_service.list_apps(s)
    assert listed.description == "Ünïcödé 📱 описание"
    assert listed.created_at.tzinfo is not None
    assert abs((listed.created_at - info.created_at).total_seconds()) < 0.001
