"""Helpers for dashboard tests over HTTP: log in, read a page's CSRF token, post forms as
the browser would (same Origin, the token in the form)."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.services import accounts
from simgate.services import apps as app_service
from simgate.services import gateways as gateway_service
from simgate.store.engine import make_sessionmaker

PASSWORD = "s3cure-enough"
ORIGIN = {"origin": "http://simgate.test"}
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> None:
    resp = await client.post(
        "/login", data={"username": username, "password": password}, headers=ORIGIN
    )
    assert resp.status_code == 303, resp.text


def csrf_in(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


async def csrf(client: httpx.AsyncClient, page: str = "/dashboard") -> str:
    resp = await client.get(page)
    assert resp.status_code == 200, resp.text
    return csrf_in(resp.text)


async def post_form(
    client: httpx.AsyncClient,
    url: str,
    data: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    files: dict[str, Any] | None = None,
) -> httpx.Response:
    """POST a form with this session's CSRF token (fetched from /dashboard when not given)."""
    form = dict(data or {})
    form.setdefault("csrf_token", token if token is not None else await csrf(client))
    return await client.post(url, data=form, files=files, headers=ORIGIN)


async def seed_people(engine: AsyncEngine) -> dict[str, int]:
    """An admin ``root`` with the app ``ops-tools``, a user ``ulla`` with ``ulla-shop``, and
    a modem ``pi`` that never starts; the two apps' ids."""
    async with make_sessionmaker(engine).begin() as s:
        await accounts.create_user(s, username="root", password=PASSWORD, actor="t")
        await accounts.create_user(s, username="ulla", password=PASSWORD, role="user", actor="t")
        ops = await app_service.create_app(s, name="ops-tools", owner="root", actor="t")
        shop = await app_service.create_app(s, name="ulla-shop", owner="ulla", actor="t")
        await gateway_service.create(
            s, name="pi", kind="modem", config={"port": "/dev/null-x"}, actor="t"
        )
    return {"ops": ops[0].id, "shop": shop[0].id}
