"""The lean endpoints (``POST /api/v1/messages``, ``GET /api/v1/messages/{id}``,
``GET /api/v1/me``, ``GET /healthz``) answer exactly as the FastAPI routes they stand in
front of: the same status, body, error shape, headers, metrics label and request-log entry,
for good requests and every kind of bad one. The reference is the same app with the lean
routes taken out, on the same database."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings
from simgate.domain.keys import Scope
from simgate.services import apps as app_service
from simgate.store.engine import make_sessionmaker
from simgate.store.models import ApiRequest, Message
from simgate.web.api.lean import LeanEndpoint, SendEndpoint
from simgate.web.app import create_app
from simgate.web.middleware import CoreMiddleware

DE = "+4915112345678"
GOOD = json.dumps({"to": DE, "body": "hi"}).encode()
JSON = {"content-type": "application/json"}

# (name, headers (None removes one; "KEY"/"INBOX" stand for keys), raw body)
CASES: list[tuple[str, dict[str, str | None], bytes]] = [
    ("json", JSON, GOOD),
    ("json with charset", {"content-type": "application/json; charset=utf-8"}, GOOD),
    ("json suffix type", {"content-type": "application/vnd.api+json"}, GOOD),
    ("upper-case type", {"content-type": "Application/JSON"}, GOOD),
    ("no content type", {}, GOOD),
    ("text/plain", {"content-type": "text/plain"}, GOOD),
    ("form", {"content-type": "application/x-www-form-urlencoded"}, b"to=1&body=2"),
    ("empty body", JSON, b""),
    ("malformed json", JSON, b"{not"),
    ("list", JSON, b"[1, 2]"),
    ("string", JSON, b'"x"'),
    ("null", JSON, b"null"),
    ("field missing", JSON, json.dumps({"to": DE}).encode()),
    ("unknown field", JSON, json.dumps({"to": DE, "body": "x", "zz": 1}).encode()),
    ("to not a string", JSON, b'{"to": 5, "body": "x"}'),
    ("to list with a number", JSON, json.dumps({"to": [DE, 5], "body": "x"}).encode()),
    ("not a phone number", JSON, b'{"to": "+49", "body": "x"}'),
    ("two problems", JSON, b'{"to": 5, "body": 6}'),
    ("NaN", JSON, b'{"to": "+4915112345678", "body": "x", "ttl": NaN}'),
    ("utf-16", JSON, '{"to": "+4915112345678", "body": "x"}'.encode("utf-16")),
    ("latin-1", JSON, b'{"to": "+4915112345678", "body": "\xe9"}'),
    ("sim 3", JSON, json.dumps({"to": DE, "body": "x", "sim": 3}).encode()),
    (
        "send_at too far",
        JSON,
        json.dumps({"to": DE, "body": "x", "send_at": "2090-01-01"}).encode(),
    ),
    ("batch", JSON, json.dumps({"to": [DE, "+4915112345679"], "body": "x"}).encode()),
    ("metadata", JSON, json.dumps({"to": DE, "body": "x", "metadata": {"a": [1]}}).encode()),
    ("idempotency key too long", {**JSON, "idempotency-key": "k" * 300}, GOOD),
    ("no key", {**JSON, "authorization": None}, GOOD),
    ("no key, malformed json", {**JSON, "authorization": None}, b"{not"),
    ("no key, bad field", {**JSON, "authorization": None}, b'{"to": 5}'),
    ("unknown key", {**JSON, "authorization": "Bearer sg_nope"}, GOOD),
    ("basic auth", {**JSON, "authorization": "Basic abc"}, GOOD),
    ("gateway key", {**JSON, "authorization": "Bearer gw_live_abc"}, GOOD),
    ("x-api-key", {**JSON, "authorization": None, "x-api-key": "KEY"}, GOOD),
    ("empty x-api-key", {**JSON, "authorization": None, "x-api-key": " "}, GOOD),
    ("key without send scope", {**JSON, "authorization": "Bearer INBOX"}, GOOD),
]
SHOWN_HEADERS = ("content-type", "www-authenticate", "idempotent-replayed", "retry-after")


@pytest.fixture
async def keys(sqlite_engine: AsyncEngine) -> dict[str, str]:
    async with make_sessionmaker(sqlite_engine).begin() as s:
        _, key = await app_service.create_app(s, name="lean", owner=None, actor="t")
        inbox = await app_service.create_key(
            s, app="lean", scopes=frozenset({Scope.INBOX}), actor="t"
        )
        _, other = await app_service.create_app(s, name="other", owner=None, actor="t")
    return {"KEY": key.secret, "INBOX": inbox.secret, "OTHER": other.secret}


async def _client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://simgate.test") as c:
            yield c


@pytest.fixture
async def pair(
    sqlite_settings: Settings, sqlite_engine: AsyncEngine
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    lean_app = create_app(sqlite_settings, engine=sqlite_engine)
    assert isinstance(getattr(lean_app.router.routes[0], "app", None), SendEndpoint)
    reference = create_app(sqlite_settings, engine=sqlite_engine)
    reference.router.routes[:] = [
        r for r in reference.router.routes if not isinstance(getattr(r, "app", None), LeanEndpoint)
    ]
    for middleware in reference.user_middleware:  # nor answered by the core middleware
        if middleware.cls is CoreMiddleware:
            middleware.kwargs["lean"] = ()
    async for lean in _client(lean_app):
        async for ref in _client(reference):
            yield lean, ref


def _headers(case: dict[str, str | None], keys: dict[str, str]) -> dict[str, str]:
    out = {"authorization": f"Bearer {keys['KEY']}"}
    for name, value in case.items():
        if value is None:
            out.pop(name, None)
            continue
        for stand_in, secret in keys.items():
            value = value.replace(stand_in, secret)
        out[name] = value
    return out


_VARYING = re.compile(r'"(msg_[0-9A-Z]{26}|\d{4}-\d\d-\d\dT[0-9:.]+Z)"')


def _shown(resp: httpx.Response) -> tuple[int, str, dict[str, str]]:
    data = resp.json()
    if isinstance(data.get("error"), dict):
        data["error"].pop("request_id", None)
    text = _VARYING.sub('"…"', json.dumps(data, sort_keys=True))
    headers = {h: resp.headers[h] for h in SHOWN_HEADERS if h in resp.headers}
    return resp.status_code, text, headers


@pytest.mark.parametrize(("name", "case", "body"), CASES, ids=[c[0] for c in CASES])
async def test_the_lean_route_answers_as_the_fastapi_route(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient],
    keys: dict[str, str],
    name: str,
    case: dict[str, str | None],
    body: bytes,
) -> None:
    lean, ref = pair
    headers = _headers(case, keys)
    got = _shown(await lean.post("/api/v1/messages", content=body, headers=headers))
    want = _shown(await ref.post("/api/v1/messages", content=body, headers=headers))
    assert got == want
    assert got[0] != 500


async def test_idempotent_replays_and_conflicts_match(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient], keys: dict[str, str]
) -> None:
    lean, ref = pair
    for n, client in enumerate((lean, ref)):
        headers = {**_headers(JSON, keys), "idempotency-key": f"k{n}"}
        first = await client.post("/api/v1/messages", content=GOOD, headers=headers)
        again = await client.post("/api/v1/messages", content=GOOD, headers=headers)
        other = await client.post(
            "/api/v1/messages", json={"to": DE, "body": "other"}, headers=headers
        )
        assert first.status_code == again.status_code == 202
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert other.status_code == 409
        assert other.json()["error"]["field"] == "idempotency-key"


async def test_requests_are_counted_logged_and_stored(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient],
    keys: dict[str, str],
    sqlite_engine: AsyncEngine,
) -> None:
    lean, _ = pair
    headers = _headers(JSON, keys)
    assert (await lean.post("/api/v1/messages", content=GOOD, headers=headers)).status_code == 202
    assert (await lean.post("/api/v1/messages", content=b"{", headers=headers)).status_code == 400
    bad = await lean.post("/api/v1/messages", json={"to": "+49", "body": "x"}, headers=headers)
    assert bad.status_code == 422
    metrics = (await lean.get("/metrics")).text
    for status in ("202", "400", "422"):
        assert (
            f'simgate_http_requests_total{{method="POST",route="/api/v1/messages",'
            f'status="{status}"}} 1.0'
        ) in metrics
    await lean._transport.app.state.runtime.request_log.flush()  # type: ignore[attr-defined]
    async with make_sessionmaker(sqlite_engine)() as s:
        logged = sorted((r.endpoint, r.status) for r in await s.scalars(select(ApiRequest)))
        stored = await s.scalar(select(func.count()).select_from(Message))
    # 400 comes before the key is read (as FastAPI does it), so it is not an app's call
    assert logged == [("/api/v1/messages", 202), ("/api/v1/messages", 422)]
    assert stored == 1


async def test_the_call_is_still_documented(
    pair: tuple[httpx.AsyncClient, Any], keys: dict[str, str]
) -> None:
    lean, _ = pair
    schema = (await lean.get("/openapi.json")).json()
    post = schema["paths"]["/api/v1/messages"]["post"]
    assert post["responses"]["202"]
    assert "requestBody" in post
    assert {"get", "post"} <= set(schema["paths"]["/api/v1/messages"])
    listed = await lean.get("/api/v1/messages", headers=_headers({}, keys))
    assert listed.status_code == 200  # GET still reaches the FastAPI route
    assert [m["to"] for m in listed.json()["data"]] == []


async def test_under_a_root_path_the_lean_routes_answer(
    sqlite_settings: Settings, sqlite_engine: AsyncEngine, keys: dict[str, str]
) -> None:
    """Under a root path the router, not the core middleware, reaches the lean routes."""
    app = create_app(sqlite_settings, engine=sqlite_engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1), root_path="/sms")
        async with httpx.AsyncClient(transport=transport, base_url="http://simgate.test") as c:
            headers = _headers(JSON, keys)
            ok = await c.post("/sms/api/v1/messages", content=GOOD, headers=headers)
            bad = await c.post("/sms/api/v1/messages", content=b'{"to": 5}', headers=headers)
            me = await c.get("/sms/api/v1/me", headers=headers)
            message = await c.get(f"/sms/api/v1/messages/{ok.json()['id']}", headers=headers)
            missing = await c.get("/sms/api/v1/messages/nope", headers=headers)
            health = await c.get("/sms/healthz")
            head = await c.head("/sms/healthz")
            metrics = (await c.get("/sms/metrics")).text
    assert ok.status_code == 202
    assert ok.json()["to"] == DE
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "to"
    assert 'route="/api/v1/messages",status="202"' in metrics
    assert me.status_code == 200
    assert me.json()["app"]["name"] == "lean"
    assert message.status_code == 200
    assert message.json()["id"] == ok.json()["id"]
    assert missing.status_code == 404
    assert missing.json()["error"]["field"] == "id"
    assert health.json()["status"] == "ok"
    assert head.status_code == 405
    assert 'route="/api/v1/messages/{message_id}",status="200"' in metrics


# (name, method, path ("MSG" stands for a message of the app "lean"), headers)
GETS: list[tuple[str, str, str, dict[str, str | None]]] = [
    ("me", "GET", "/api/v1/me", {}),
    ("me with a query", "GET", "/api/v1/me?x=1&api_key=KEY", {}),
    ("me, x-api-key", "GET", "/api/v1/me", {"authorization": None, "x-api-key": "KEY"}),
    ("me, inbox key", "GET", "/api/v1/me", {"authorization": "Bearer INBOX"}),
    ("me, no key", "GET", "/api/v1/me", {"authorization": None}),
    ("me, unknown key", "GET", "/api/v1/me", {"authorization": "Bearer sg_nope"}),
    ("me, gateway key", "GET", "/api/v1/me", {"authorization": "Bearer gw_live_abc"}),
    ("me, basic auth", "GET", "/api/v1/me", {"authorization": "Basic abc"}),
    ("me, empty x-api-key", "GET", "/api/v1/me", {"authorization": None, "x-api-key": ""}),
    ("me, HEAD", "HEAD", "/api/v1/me", {}),
    ("me, POST", "POST", "/api/v1/me", {}),
    ("me, trailing slash", "GET", "/api/v1/me/", {}),
    ("healthz", "GET", "/healthz", {"authorization": None}),
    ("healthz with a bad key", "GET", "/healthz", {"authorization": "Bearer sg_nope"}),
    ("healthz, HEAD", "HEAD", "/healthz", {}),
    ("message", "GET", "/api/v1/messages/MSG", {}),
    ("message with metadata", "GET", "/api/v1/messages/META", {}),
    ("message, other app", "GET", "/api/v1/messages/MSG", {"authorization": "Bearer OTHER"}),
    ("message, inbox key", "GET", "/api/v1/messages/MSG", {"authorization": "Bearer INBOX"}),
    ("message, no key", "GET", "/api/v1/messages/MSG", {"authorization": None}),
    ("message unknown", "GET", "/api/v1/messages/msg_01ARZ3NDEKTSV4RRFFQ69G5FAV", {}),
    ("message id malformed", "GET", "/api/v1/messages/nope", {}),
    ("message id encoded", "GET", "/api/v1/messages/a%20b%2Fc", {}),
    ("message id long", "GET", "/api/v1/messages/" + "x" * 3000, {}),
    ("message, DELETE", "DELETE", "/api/v1/messages/MSG", {}),
    ("message, trailing slash", "GET", "/api/v1/messages/MSG/", {}),
    ("messages list still routed", "GET", "/api/v1/messages?limit=1", {}),
]


def _body(resp: httpx.Response) -> Any:
    if not resp.content:
        return None
    try:
        data = resp.json()
    except ValueError:
        return resp.text
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        data["error"].pop("request_id", None)
    return data


@pytest.mark.parametrize(("name", "method", "path", "case"), GETS, ids=[g[0] for g in GETS])
async def test_the_lean_gets_answer_as_the_fastapi_routes(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient],
    keys: dict[str, str],
    name: str,
    method: str,
    path: str,
    case: dict[str, str | None],
) -> None:
    lean, ref = pair
    headers = _headers(case, keys)
    sent = await lean.post("/api/v1/messages", content=GOOD, headers=_headers(JSON, keys))
    # floats and Unicode, which JSON encoders write in more than one way
    metadata = {"f": 1.5e-7, "big": 1e22, "n": -0.0, "ü": "✓", "list": [1, None, True]}
    meta = await lean.post(
        "/api/v1/messages",
        json={"to": DE, "body": "x", "metadata": metadata},
        headers=_headers({}, keys),
    )
    path = path.replace("MSG", sent.json()["id"]).replace("META", meta.json()["id"])
    path = path.replace("KEY", keys["KEY"])
    got = await lean.request(method, path, headers=headers)
    want = await ref.request(method, path, headers=headers)
    assert (got.status_code, _body(got)) == (want.status_code, _body(want))
    assert got.content.replace(got.headers.get("x-request-id", "").encode(), b"") == (
        want.content.replace(want.headers.get("x-request-id", "").encode(), b"")
    )
    shown = ("content-type", "content-length", "allow", "location", "www-authenticate")
    assert {h: got.headers.get(h) for h in shown} == {h: want.headers.get(h) for h in shown}
    assert got.status_code < 500


async def test_keyed_gets_are_counted_and_logged_under_their_routes(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient],
    keys: dict[str, str],
    sqlite_engine: AsyncEngine,
) -> None:
    lean, _ = pair
    headers = _headers({}, keys)
    posted = await lean.post("/api/v1/messages", content=GOOD, headers=_headers(JSON, keys))
    sent = posted.json()
    assert (await lean.get("/api/v1/me", headers=headers)).status_code == 200
    assert (await lean.get(f"/api/v1/messages/{sent['id']}", headers=headers)).status_code == 200
    assert (await lean.get("/api/v1/messages/nope", headers=headers)).status_code == 404
    assert (await lean.get("/api/v1/me", headers={"authorization": "Bearer x"})).status_code == 401
    assert (await lean.get("/healthz")).status_code == 200
    metrics = (await lean.get("/metrics")).text
    for route, status in [
        ("/api/v1/me", 200),
        ("/api/v1/me", 401),
        ("/api/v1/messages/{message_id}", 200),
        ("/api/v1/messages/{message_id}", 404),
        ("/healthz", 200),
    ]:
        line = f'simgate_http_requests_total{{method="GET",route="{route}",status="{status}"}} 1.0'
        assert line in metrics
    await lean._transport.app.state.runtime.request_log.flush()  # type: ignore[attr-defined]
    async with make_sessionmaker(sqlite_engine)() as s:
        logged = sorted(
            (r.method, r.endpoint, r.status) for r in await s.scalars(select(ApiRequest))
        )
    assert logged == [
        ("GET", "/api/v1/me", 200),
        ("GET", "/api/v1/messages/{message_id}", 200),
        ("GET", "/api/v1/messages/{message_id}", 404),
        ("POST", "/api/v1/messages", 202),
    ]


async def test_the_gets_are_still_documented(pair: tuple[httpx.AsyncClient, Any]) -> None:
    lean, _ = pair
    paths = (await lean.get("/openapi.json")).json()["paths"]
    assert "get" in paths["/api/v1/me"]
    assert "get" in paths["/api/v1/messages/{message_id}"]
    assert "get" in paths["/healthz"]
    assert paths["/api/v1/me"]["get"]["responses"]["200"]["content"]["application/json"]
