"""Login, sessions and the dashboard home page over HTTP."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.services import accounts
from simgate.services import apps as app_service
from simgate.store.engine import make_sessionmaker
from simgate.store.models import Session
from simgate.store.types import utcnow
from tests.integration.dashboard import post_form

PASSWORD = "s3cure-enough"
ORIGIN = {"origin": "http://simgate.test"}


@pytest.fixture
async def people(sqlite_engine: AsyncEngine) -> None:
    async with make_sessionmaker(sqlite_engine).begin() as s:
        await accounts.create_user(s, username="root", password=PASSWORD, actor="t")
        await accounts.create_user(s, username="ulla", password=PASSWORD, role="user", actor="t")
        await app_service.create_app(s, name="ops-tools", owner="root", actor="t")
        await app_service.create_app(s, name="ulla-shop", owner="ulla", actor="t")


async def _login(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD, **form: str
) -> httpx.Response:
    return await client.post(
        "/login", data={"username": username, "password": password, **form}, headers=ORIGIN
    )


async def test_root_and_dashboard_send_strangers_to_login(client: httpx.AsyncClient) -> None:
    root = await client.get("/")
    assert root.status_code == 303
    assert root.headers["location"] == "/login"
    dash = await client.get("/dashboard")
    assert dash.status_code == 303
    assert dash.headers["location"].startswith("/login?next=")
    page = await client.get("/login")
    assert page.status_code == 200
    assert 'name="password"' in page.text


@pytest.mark.usefixtures("people")
async def test_wrong_password_is_refused_without_saying_why(client: httpx.AsyncClient) -> None:
    for username, password in (("root", "not-the-password"), ("nobody", PASSWORD)):
        resp = await _login(client, username, password)
        assert resp.status_code == 401
        assert "Wrong username or password." in resp.text
        assert "simgate_session" not in resp.headers.get("set-cookie", "")


@pytest.mark.usefixtures("people")
@pytest.mark.parametrize(
    ("form", "word"), [({"username": "root"}, "password"), ({"password": PASSWORD}, "username")]
)
async def test_missing_fields_are_named(
    client: httpx.AsyncClient, form: dict[str, str], word: str
) -> None:
    resp = await client.post("/login", data=form, headers=ORIGIN)
    assert resp.status_code == 422
    assert f"Please enter your {word}." in resp.text


@pytest.mark.usefixtures("people")
async def test_admin_sees_every_app_user_only_theirs(client: httpx.AsyncClient) -> None:
    resp = await _login(client, "root")
    assert resp.status_code == 303
    assert resp.headers["location"] == "/dashboard"
    cookie = resp.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
    page = await client.get("/dashboard")
    assert "ops-tools" in page.text
    assert "ulla-shop" in page.text
    await post_form(client, "/logout")
    client.cookies.clear()
    await _login(client, "ulla")
    page = await client.get("/dashboard")
    assert "ulla-shop" in page.text
    assert "ops-tools" not in page.text


@pytest.mark.usefixtures("people")
async def test_logout_ends_the_session(client: httpx.AsyncClient) -> None:
    await _login(client, "root")
    token = client.cookies["simgate_session"]
    out = await post_form(client, "/logout")
    assert out.headers["location"] == "/login"
    client.cookies.set("simgate_session", token)  # a stolen copy is useless now
    assert (await client.get("/dashboard")).status_code == 303


@pytest.mark.usefixtures("people")
async def test_expired_session_goes_back_to_login(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    await _login(client, "root")
    async with make_sessionmaker(sqlite_engine).begin() as s:
        await s.execute(update(Session).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert (await client.get("/dashboard")).status_code == 303


@pytest.mark.usefixtures("people")
async def test_disabled_user_loses_access(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    await _login(client, "ulla")
    async with make_sessionmaker(sqlite_engine).begin() as s:
        await accounts.set_active(s, username="ulla", active=False, actor="t")
    assert (await client.get("/dashboard")).status_code == 303
    assert (await _login(client, "ulla")).status_code == 401


@pytest.mark.usefixtures("people")
@pytest.mark.parametrize(
    ("next_", "expected"),
    [
        ("/dashboard", "/dashboard"),
        ("//evil.example/x", "/dashboard"),
        ("https://evil.example/", "/dashboard"),
        ("/\\evil.example", "/dashboard"),
    ],
)
async def test_next_never_leaves_the_site(
    client: httpx.AsyncClient, next_: str, expected: str
) -> None:
    resp = await _login(client, "root", next=next_)
    assert resp.headers["location"] == expected


@pytest.mark.usefixtures("people")
async def test_cross_site_login_post_is_refused(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/login",
        data={"username": "root", "password": PASSWORD},
        headers={"origin": "https://evil.example"},
    )
    assert resp.status_code == 403
    assert "simgate_session" not in resp.headers.get("set-cookie", "")


@pytest.mark.usefixtures("people")
async def test_repeated_failures_are_throttled(client: httpx.AsyncClient) -> None:
    for _ in range(10):
        assert (await _login(client, "root", "guess")).status_code == 401
    resp = await _login(client, "root", PASSWORD)  # even the right one waits
    assert resp.status_code == 429
    assert int(resp.headers["retry-after"]) > 0
    other = await _login(client, "ulla")  # another account is not locked out
    assert other.status_code == 303


@pytest.mark.usefixtures("people")
async def test_the_session_cookie_is_secure_over_https(client: httpx.AsyncClient) -> None:
    plain = await _login(client, "root")
    cookie = plain.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie  # a browser would drop it on plain http
    https = httpx.AsyncClient(transport=client._transport, base_url="https://simgate.test")
    async with https:
        resp = await https.post(
            "/login",
            data={"username": "root", "password": PASSWORD},
            headers={"origin": "https://simgate.test"},
        )
    assert resp.status_code == 303
    assert "; secure" in resp.headers["set-cookie"].lower()
