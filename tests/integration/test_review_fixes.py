"""Bad input and failure modes that once answered 500 or miscounted."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings, load_settings
from simgate.store.engine import make_engine, make_sessionmaker
from simgate.store.models import AppUsage
from tests.conftest import app_client
from tests.integration.helpers import assert_error, bearer, make_key
from tests.integration.test_messages_api import DE, send, set_limits


@pytest.fixture
async def key(sqlite_engine: AsyncEngine) -> str:
    return await make_key(sqlite_engine)


async def test_a_refused_request_uses_no_quota(
    client: httpx.AsyncClient, key: str, sqlite_engine: AsyncEngine
) -> None:
    await set_limits(sqlite_engine, rate_per_minute=5, rate_per_day=1)
    assert (await send(client, key, {"to": DE, "body": "one"})).status_code == 202
    for _ in range(3):
        assert_error(await send(client, key, {"to": DE, "body": "no"}), 429, "rate_limited")
    async with make_sessionmaker(sqlite_engine)() as session:
        counts = dict((await session.execute(select(AppUsage.window, AppUsage.count))).all())
    assert counts == {"minute": 1, "day": 1}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"to": "+4915112345678", "body": "x", "metadata": {"a": NaN}}', "metadata"),
        ('{"to": "+4915112345678", "body": "x", "metadata": {"a": Infinity}}', "metadata"),
        ('{"to": "+4915112345678", "body": "nul \\u0000 inside"}', "body"),
    ],
)
async def test_values_databases_refuse_are_422(
    client: httpx.AsyncClient, key: str, raw: str, field: str
) -> None:
    resp = await client.post(
        "/api/v1/messages",
        content=raw.encode(),
        headers={**bearer(key), "content-type": "application/json"},
    )
    assert_error(resp, 422, "invalid", field)


async def test_deeply_nested_json_on_sendsms_is_400(client: httpx.AsyncClient, key: str) -> None:
    body = "[" * 100_000 + "]" * 100_000
    resp = await client.post(
        "/api/sendsms", content=body, headers={**bearer(key), "content-type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.json()["status"] == "error"


async def test_phone_filter_is_normalised(client: httpx.AsyncClient, key: str) -> None:
    assert (await send(client, key, {"to": DE, "body": "x"})).status_code == 202
    for phone in (DE, "+49 151 12345678"):
        found = await client.get("/api/v1/messages", params={"phone": phone}, headers=bearer(key))
        assert len(found.json()["data"]) == 1
    # an unescaped + arrives as a space: say so instead of answering an empty list
    raw = await client.get("/api/v1/messages?phone=+4915112345678", headers=bearer(key))
    assert raw.status_code in (200, 422)
    if raw.status_code == 422:
        assert raw.json()["error"]["field"] == "phone"
    bad = await client.get("/api/v1/messages", params={"phone": "12"}, headers=bearer(key))
    assert_error(bad, 422, "invalid", "phone")


async def test_database_outage_is_503_with_retry_after(tmp_path, clean_env) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = load_settings(
        data_dir=tmp_path, database_url="postgresql+asyncpg://u@127.0.0.1:1/none"
    )
    engine = make_engine(settings)
    try:
        async for c in app_client(settings, engine):
            resp = await c.get("/api/v1/me", headers=bearer("sg_abcdefghij_" + "x" * 43))
            err = assert_error(resp, 503, "unavailable")
            assert "database" in err["message"]
            assert resp.headers["retry-after"] == "5"
    finally:
        await engine.dispose()


async def test_idempotency_keys_differing_in_case_are_different(
    db_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    key = await make_key(engine)
    first = await send(db_client, key, {"to": DE, "body": "same"}, idempotency_key="abc")
    second = await send(db_client, key, {"to": DE, "body": "same"}, idempotency_key="ABC")
    assert first.status_code == second.status_code == 202
    assert "idempotent-replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]
