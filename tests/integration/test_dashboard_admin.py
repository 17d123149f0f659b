"""Users, account, logs and API-example pages over HTTP."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.services import accounts
from simgate.services import apps as app_service
from simgate.store.engine import make_sessionmaker
from tests.integration.dashboard import ORIGIN, PASSWORD, login, post_form


@pytest.fixture
async def people(sqlite_engine: AsyncEngine) -> str:
    async with make_sessionmaker(sqlite_engine).begin() as s:
        await accounts.create_user(s, username="root", password=PASSWORD, actor="t")
        await accounts.create_user(s, username="ulla", password=PASSWORD, role="user", actor="t")
        await app_service.create_app(s, name="ops-tools", owner="root", actor="t")
        _, key = await app_service.create_app(s, name="ulla-shop", owner="ulla", actor="t")
    return key.secret


async def _users(engine: AsyncEngine) -> dict[str, accounts.UserInfo]:
    async with make_sessionmaker(engine)() as s:
        return {u.username: u for u in await accounts.list_users(s)}


async def _can_login(client: httpx.AsyncClient, username: str, password: str) -> bool:
    fresh = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))
    async with fresh:
        resp = await fresh.post(
            "/login", data={"username": username, "password": password}, headers=ORIGIN
        )
    return resp.status_code == 303


@pytest.mark.usefixtures("people")
async def test_admin_pages_are_for_admins(client: httpx.AsyncClient) -> None:
    await login(client, "root")
    for page in ("/admin/users", "/admin/logs", "/admin/account", "/admin/api"):
        assert (await client.get(page)).status_code == 200, page
    client.cookies.clear()
    await login(client, "ulla")
    for page in ("/admin/users", "/admin/logs"):
        assert (await client.get(page)).status_code == 403, page
    for page in ("/admin/account", "/admin/api"):
        assert (await client.get(page)).status_code == 200, page
    resp = await post_form(
        client, "/admin/users", {"username": "evil", "password": PASSWORD, "role": "admin"}
    )
    assert resp.status_code == 403


@pytest.mark.usefixtures("people")
async def test_create_users_and_refuse_bad_ones(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    for form, name in (
        ({"username": "bad name", "password": PASSWORD, "role": "user"}, "username"),
        ({"username": "bert", "password": "short", "role": "user"}, "password"),
        ({"username": "bert", "password": PASSWORD, "role": "boss"}, "role"),
        ({"username": "ulla", "password": PASSWORD, "role": "user"}, "username"),
    ):
        resp = await post_form(client, "/admin/users", form)
        assert resp.status_code == 422, form
        assert f'id="e-{name}"' in resp.text, form
    assert set(await _users(sqlite_engine)) == {"root", "ulla"}
    resp = await post_form(
        client, "/admin/users", {"username": "bert", "password": PASSWORD, "role": "user"}
    )
    assert resp.status_code == 303
    assert (await _users(sqlite_engine))["bert"].role == "user"
    assert await _can_login(client, "bert", PASSWORD)


@pytest.mark.usefixtures("people")
async def test_roles_activation_and_passwords(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    resp = await post_form(client, "/admin/users/ulla/role", {"role": "admin"})
    assert resp.status_code == 303
    assert (await _users(sqlite_engine))["ulla"].role == "admin"
    resp = await post_form(client, "/admin/users/root/role", {"role": "user"})
    assert resp.status_code == 422
    assert "own admin role" in resp.text
    resp = await post_form(client, "/admin/users/root/deactivate")
    assert resp.status_code == 422
    assert "deactivate yourself" in resp.text
    users = await _users(sqlite_engine)
    assert users["root"].role == "admin"
    assert users["root"].is_active
    assert (await post_form(client, "/admin/users/ulla/deactivate")).status_code == 303
    assert not (await _users(sqlite_engine))["ulla"].is_active
    assert not await _can_login(client, "ulla", PASSWORD)
    assert (await post_form(client, "/admin/users/ulla/activate")).status_code == 303
    resp = await post_form(client, "/admin/users/ulla/password", {"password": "short"})
    assert resp.status_code == 422
    resp = await post_form(client, "/admin/users/ulla/password", {"password": "a-new-one-123"})
    assert resp.status_code == 303
    assert await _can_login(client, "ulla", "a-new-one-123")
    assert not await _can_login(client, "ulla", PASSWORD)
    assert (await post_form(client, "/admin/users/nobody/activate")).status_code == 404


@pytest.mark.usefixtures("people")
async def test_account_password_change(client: httpx.AsyncClient) -> None:
    await login(client, "ulla")
    other = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))
    async with other:
        await login(other, "ulla")
        form = {"current": "wrong-password", "new": "n3w-password", "repeat": "n3w-password"}
        resp = await post_form(client, "/admin/account", form)
        assert resp.status_code == 422
        assert 'id="e-current"' in resp.text
        form = {"current": PASSWORD, "new": "n3w-password", "repeat": "different-1"}
        resp = await post_form(client, "/admin/account", form)
        assert resp.status_code == 422
        assert 'id="e-repeat"' in resp.text
        form = {"current": PASSWORD, "new": "short", "repeat": "short"}
        resp = await post_form(client, "/admin/account", form)
        assert resp.status_code == 422
        assert 'id="e-new"' in resp.text
        assert await _can_login(client, "ulla", PASSWORD)
        form = {"current": PASSWORD, "new": "n3w-password", "repeat": "n3w-password"}
        resp = await post_form(client, "/admin/account", form)
        assert resp.status_code == 303
        page = await client.get(resp.headers["location"])
        assert "password was changed" in page.text
        # the other session ended, this one goes on
        assert (await other.get("/admin/account")).status_code == 303
    assert await _can_login(client, "ulla", "n3w-password")
    assert not await _can_login(client, "ulla", PASSWORD)


async def test_logs_show_a_request_made_with_a_key(client: httpx.AsyncClient, people: str) -> None:
    resp = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {people}"})
    assert resp.status_code == 200
    await login(client, "root")
    page = await client.get("/admin/logs")
    assert page.status_code == 200
    assert "/api/v1/me" in page.text
    assert "ulla-shop" in page.text
    assert "app.create" in page.text  # the audit log
    none = await client.get("/admin/logs?status=5xx")
    assert "/api/v1/me" not in none.text
    live = await client.get("/admin/logs/live?path=/me", headers={"hx-request": "true"})
    assert "/api/v1/me" in live.text
    assert "<html" not in live.text


@pytest.mark.usefixtures("people")
async def test_api_examples_use_this_server_and_the_viewers_apps(
    client: httpx.AsyncClient,
) -> None:
    await login(client, "ulla")
    page = await client.get("/admin/api")
    assert "http://simgate.test/api/v1/messages" in page.text
    assert "ulla-shop" in page.text
    assert "ops-tools" not in page.text
    assert "$SIMGATE_KEY" in page.text
    assert 'href="/docs"' in page.text
    assert 'data-copy="#ex-send-curl"' in page.text


@pytest.mark.usefixtures("people")
async def test_forms_without_the_csrf_token_change_nothing(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    for token in ("", "f" * 64):
        resp = await post_form(client, "/admin/users/ulla/role", {"role": "admin"}, token=token)
        assert resp.status_code == 403
        form = {"current": PASSWORD, "new": "n3w-password", "repeat": "n3w-password"}
        resp = await post_form(client, "/admin/account", form, token=token)
        assert resp.status_code == 403
    assert (await _users(sqlite_engine))["ulla"].role == "user"
    assert await _can_login(client, "root", PASSWORD)
