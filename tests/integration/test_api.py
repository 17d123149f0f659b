"""The HTTP surface of the foundation: health, metrics, docs, the error model, auth."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings, load_settings
from simgate.domain.keys import Scope
from simgate.store.engine import make_engine
from tests.conftest import app_client
from tests.integration.helpers import assert_error, bearer, make_key


async def test_healthz(client: httpx.AsyncClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"


async def test_readyz_ready(client: httpx.AsyncClient) -> None:
    resp = await client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json()["database"] == "ok"


async def test_readyz_without_migrations_is_503(sqlite_settings: Settings) -> None:
    engine = make_engine(sqlite_settings)  # never upgraded
    try:
        async for c in app_client(sqlite_settings, engine):
            err = assert_error(await c.get("/readyz"), 503, "not_ready")
            assert "simgate db upgrade" in err["hint"]
    finally:
        await engine.dispose()


async def test_readyz_with_unreachable_database_is_503(tmp_path, clean_env) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(
        data_dir=tmp_path, database_url="postgresql+asyncpg://u:hunter2@127.0.0.1:1/x"
    )
    engine = make_engine(settings)
    try:
        async for c in app_client(settings, engine):
            err = assert_error(await c.get("/readyz"), 503, "not_ready")
            assert "hunter2" not in err["message"]
    finally:
        await engine.dispose()


async def test_metrics_exposition(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    text = (await client.get("/metrics")).text
    assert 'simgate_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "simgate_http_request_duration_seconds_bucket" in text
    assert "simgate_auth_cache_hits_total" in text


async def test_metrics_token(sqlite_settings: Settings, sqlite_engine: AsyncEngine) -> None:
    settings = sqlite_settings.model_copy(update={"metrics_token": "m3trics-t0ken"})
    async for c in app_client(settings, sqlite_engine):
        assert_error(await c.get("/metrics"), 401, "unauthorized", "authorization")
        ok = await c.get("/metrics", headers=bearer("m3trics-t0ken"))
        assert ok.status_code == 200


async def test_docs_are_served_without_internet(client: httpx.AsyncClient) -> None:
    html = (await client.get("/docs")).text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)""", html)
    assert urls
    assert all(u.startswith("/") for u in urls), urls
    assert "cdn" not in html
    assert "googleapis" not in html
    for url in urls:
        assert (await client.get(url)).status_code == 200, url
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/me" in spec["paths"]
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert spec["paths"]["/api/v1/me"]["get"]["security"]


async def test_unknown_path_is_404_in_error_shape(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/nope"), 404, "not_found")


async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient) -> None:
    resp = await client.delete("/healthz")
    assert_error(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers["allow"]


async def test_internal_error_hides_details(client: httpx.AsyncClient) -> None:
    async def boom() -> None:
        raise RuntimeError("secret internals")

    client.app.add_api_route("/boom", boom)  # type: ignore[attr-defined]
    resp = await client.get("/boom")
    err = assert_error(resp, 500, "internal_error")
    assert "secret internals" not in resp.text
    assert err["request_id"] == resp.headers["x-request-id"]


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    unsafe = await client.get("/healthz", headers={"X-Request-ID": "x" * 200})
    assert unsafe.headers["x-request-id"] != "x" * 200


# --- auth ---------------------------------------------------------------------------------


async def test_missing_key_is_401_with_challenge(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/v1/me")
    err = assert_error(resp, 401, "unauthorized")
    assert "Authorization: Bearer" in err["message"]
    assert resp.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "authorization"),
        ({"Authorization": "Bearer"}, "authorization"),
        ({"Authorization": "Bearer  "}, "authorization"),
        ({"Authorization": "Bearer a b"}, "authorization"),
        ({"X-API-Key": " "}, "x-api-key"),
    ],
)
async def test_malformed_auth_headers(
    client: httpx.AsyncClient, headers: dict[str, str], field: str
) -> None:
    assert_error(await client.get("/api/v1/me", headers=headers), 401, "unauthorized", field)


@pytest.mark.parametrize(
    "key", ["sg_aaaaaaaaaa_" + "b" * 43, "not-a-key", "gw_live_" + "0" * 64, "é" * 3]
)
async def test_unknown_keys_are_401(client: httpx.AsyncClient, key: str) -> None:
    resp = await client.get("/api/v1/me", headers={"X-API-Key": key.encode()})
    assert_error(resp, 401, "unauthorized")


async def test_key_works_in_both_headers(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    key = await make_key(sqlite_engine)
    for headers in (bearer(key), {"X-API-Key": key}, {"authorization": f"bearer {key}"}):
        resp = await client.get("/api/v1/me", headers=headers)
        assert resp.status_code == 200, resp.text
        assert resp.json()["app"]["name"] == "shop"
        assert resp.json()["key"]["prefix"] == key[:13]


async def test_scope_is_enforced(client: httpx.AsyncClient, sqlite_engine: AsyncEngine) -> None:
    key = await make_key(sqlite_engine, scopes=frozenset({Scope.SEND}))
    err = assert_error(await client.get("/api/v1/apps", headers=bearer(key)), 403, "forbidden")
    assert "'admin'" in err["message"]


# --- admin API ------------------------------------------------------------------------------


@pytest.fixture
async def admin_key(sqlite_engine: AsyncEngine) -> str:
    return await make_key(sqlite_engine, app="ops", scopes=frozenset(Scope))


async def test_admin_creates_app_and_revokes_its_key_at_once(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    created = await client.post(
        "/api/v1/apps", json={"name": "newsletter", "scopes": ["send"]}, headers=bearer(admin_key)
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert (await client.get("/api/v1/me", headers=bearer(key))).status_code == 200
    more = await client.post(
        "/api/v1/apps/newsletter/keys", json={"name": "ci"}, headers=bearer(admin_key)
    )
    assert more.status_code == 201
    listed = await client.get("/api/v1/apps/newsletter/keys", headers=bearer(admin_key))
    assert [k["name"] for k in listed.json()["data"]] == ["default", "ci"]
    assert key not in listed.text
    revoked = await client.delete(f"/api/v1/keys/{key[:13]}", headers=bearer(admin_key))
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"]
    assert_error(await client.get("/api/v1/me", headers=bearer(key)), 401, "unauthorized")
    other = more.json()["key"]
    assert (await client.get("/api/v1/me", headers=bearer(other))).status_code == 200


async def test_admin_api_bad_input(client: httpx.AsyncClient, admin_key: str) -> None:
    h = bearer(admin_key)
    assert_error(
        await client.post("/api/v1/apps", json={"name": "ops"}, headers=h), 409, "conflict", "name"
    )
    assert_error(
        await client.post("/api/v1/apps", json={"name": "a b"}, headers=h), 422, "invalid", "name"
    )
    assert_error(await client.post("/api/v1/apps", json={}, headers=h), 422, "invalid", "name")
    assert_error(
        await client.post("/api/v1/apps", json={"name": "x", "colour": "red"}, headers=h),
        422,
        "invalid",
        "colour",
    )
    assert_error(
        await client.post("/api/v1/apps", json={"name": "x", "scopes": ["fly"]}, headers=h),
        422,
        "invalid",
        "scopes",
    )
    assert_error(
        await client.post(
            "/api/v1/apps", content=b"{not json", headers={**h, "content-type": "application/json"}
        ),
        400,
        "invalid_json",
        "body",
    )
    assert_error(
        await client.post("/api/v1/apps/ghost/keys", json={}, headers=h), 404, "not_found", "app"
    )
    assert_error(await client.delete("/api/v1/keys/sg_zzzzzzzzzz", headers=h), 404, "not_found")
    assert_error(await client.delete("/api/v1/keys/whatever", headers=h), 422, "invalid", "prefix")
    assert_error(await client.get("/api/v1/requests?limit=0", headers=h), 422, "invalid", "limit")
    assert_error(await client.get("/api/v1/requests?limit=x", headers=h), 422, "invalid", "limit")
    listed = await client.get("/api/v1/apps", headers=h)
    assert [a["name"] for a in listed.json()["data"]] == ["ops"]


# --- body limit -----------------------------------------------------------------------------


async def test_declared_oversized_body_is_413(client: httpx.AsyncClient, admin_key: str) -> None:
    body = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    resp = await client.post(
        "/api/v1/apps",
        content=body,
        headers={**bearer(admin_key), "content-type": "application/json"},
    )
    assert_error(resp, 413, "payload_too_large")


async def test_streamed_oversized_body_is_413(client: httpx.AsyncClient, admin_key: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(40):
            yield b"x" * 32768
        yield b'"}'

    resp = await client.post(
        "/api/v1/apps",
        content=chunks(),
        headers={**bearer(admin_key), "content-type": "application/json"},
    )
    assert_error(resp, 413, "payload_too_large")
    listed = await client.get("/api/v1/apps", headers=bearer(admin_key))
    assert [a["name"] for a in listed.json()["data"]] == ["ops"]


async def test_bad_content_length_is_400(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/v1/apps", content=b"{}", headers={"content-length": "abc"})
    assert_error(resp, 400, "bad_request", "content-length")


# --- request log ----------------------------------------------------------------------------


async def test_authenticated_calls_are_logged(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    key = await make_key(sqlite_engine)
    await client.get("/api/v1/me", headers=bearer(key))
    await client.get("/api/v1/requests?limit=abc", headers=bearer(key))
    await client.get("/api/v1/me")  # unauthenticated: not an app's call
    resp = await client.get("/api/v1/requests", headers=bearer(key))
    rows = resp.json()["data"]
    assert [(r["endpoint"], r["status"]) for r in rows] == [
        ("/api/v1/requests", 422),
        ("/api/v1/me", 200),
    ]
    assert rows[0]["client_ip"] == "127.0.0.1"
    assert rows[0]["key_prefix"] == key[:13]
    assert rows[0]["latency_ms"] >= 0


async def test_every_backend_authenticates_and_revokes(
    db_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    admin = await make_key(engine, app="ops", scopes=frozenset(Scope))
    key = await make_key(engine, app="shop")
    assert (await db_client.get("/api/v1/me", headers=bearer(key))).status_code == 200
    await db_client.delete(f"/api/v1/keys/{key[:13]}", headers=bearer(admin))
    assert_error(await db_client.get("/api/v1/me", headers=bearer(key)), 401, "unauthorized")
    rows = (await db_client.get("/api/v1/requests", headers=bearer(admin))).json()["data"]
    assert rows[0]["endpoint"] == "/api/v1/keys/{prefix}"


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
