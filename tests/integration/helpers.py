"""Small helpers shared by the integration tests."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.domain.keys import DEFAULT_SCOPES, Scope
from simgate.services import apps as app_service
from simgate.store.engine import make_sessionmaker


async def make_key(
    engine: AsyncEngine, app: str = "shop", scopes: frozenset[Scope] = DEFAULT_SCOPES
) -> str:
    """Create ``app`` (or another key for it) and return the secret key."""
    async with make_sessionmaker(engine).begin() as s:
        if app in {a.name for a in await app_service.list_apps(s)}:
            key = await app_service.create_key(s, app=app, scopes=scopes, actor="test")
        else:
            _, key = await app_service.create_app(
                s, name=app, owner=None, scopes=scopes, actor="test"
            )
    return key.secret


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(resp: httpx.Response, status: int, code: str, field: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert err["code"] == code, err
    assert err["message"]
    if field is not None:
        assert err.get("field") == field, err
    return err
