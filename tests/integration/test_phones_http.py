"""Seed 003's HTTP API for phones, request by request as the Android app sends them:
registration, keys, heartbeats, received SMS and status reports, with the seed's error
shape and rate-limit headers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.services import gateways as gateway_service
from simgate.services import phones
from simgate.store.engine import make_sessionmaker
from simgate.store.models import Event, Message
from simgate.store.types import utcnow
from tests.integration.helpers import bearer, make_key

REGISTER = {
    "device_id": "samsung-galaxy-001",
    "name": "My Android Phone",
    "device_info": {
        "manufacturer": "Samsung",
        "model": "Galaxy S21",
        "os_version": "Android 13",
        "app_version": "1.0.0",
    },
}
RECEIVED = {
    "phone_number": "+959123456789",
    "message_body": "Hello, this is a test message",
    "received_at": "2025-10-20T13:45:30Z",
    "sim_slot": 1,
}


async def new_phone(engine: AsyncEngine, name: str = "phone1", **kw: Any) -> str:
    async with make_sessionmaker(engine).begin() as session:
        made = await phones.create(
            session, label=name, device_id=None, name=name, actor="test", **kw
        )
    return made.key


async def token(engine: AsyncEngine, hours: float = 1.0) -> str:
    async with make_sessionmaker(engine).begin() as session:
        secret, _ = await phones.enrollment_token(session, hours=hours, label="", actor="test")
    return secret


def seed_error(resp: httpx.Response, status: int, words: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["success"] is False
    assert words in body["error"], body


# --- registration --------------------------------------------------------------------------


async def test_register_with_an_enrollment_token(
    db_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    secret = await token(engine)
    resp = await db_client.post("/api/v1/gateway/register", json=REGISTER, headers=bearer(secret))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["success"] is True
    assert body["message"] == "Gateway registered successfully"
    gw = body["gateway"]
    assert (gw["device_id"], gw["name"], gw["status"], gw["active"]) == (
        "samsung-galaxy-001",
        "My Android Phone",
        "offline",
        True,
    )
    assert gw["gateway"] == "my-android-phone"  # the name sends pin with
    assert isinstance(gw["id"], int)
    key = gw["api_key"]
    assert key.startswith("gw_live_")
    assert len(key) == 8 + 64
    # Stored only as a hash.
    async with make_sessionmaker(engine)() as session:
        info = await gateway_service.get(session, "my-android-phone", offline_after=120)
        assert key not in str(info)
    # The token is used up by the registration.
    again = {**REGISTER, "device_id": "another"}
    seed_error(
        await db_client.post("/api/v1/gateway/register", json=again, headers=bearer(secret)),
        401,
        "used or expired enrollment token",
    )
    # The key works at once.
    beat = await db_client.post("/api/v1/gateway/heartbeat", json={}, headers=bearer(key))
    assert beat.status_code == 200, beat.text


async def test_register_without_a_token_needs_open_registration(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/v1/gateway/register", json=REGISTER)
    seed_error(resp, 401, "needs an enrollment token")
    assert resp.headers["x-ratelimit-limit"] == "10"


async def test_open_registration_takes_the_seeds_request_unchanged(
    client: httpx.AsyncClient,
) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    runtime.settings = runtime.settings.model_copy(update={"open_registration": True})
    resp = await client.post("/api/v1/gateway/register", json=REGISTER)
    assert resp.status_code == 201, resp.text
    seed_error(
        await client.post("/api/v1/gateway/register", json=REGISTER),
        400,
        "Device ID already exists",
    )
    other = await client.post("/api/v1/gateway/register", json={**REGISTER, "device_id": "pixel-2"})
    assert other.json()["gateway"]["gateway"] == "my-android-phone-2"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{nope", 400, "not valid JSON"),
        (b"[1]", 400, "must be a JSON object"),
        (b"{}", 422, "device_id is required"),
        (b'{"device_id": 5}', 422, "device_id must be a string"),
        (b'{"device_id": "  "}', 422, "device_id must not be empty"),
        (b'{"device_id": "x", "device_info": "phone"}', 422, "device_info must be an object"),
        (b'{"device_id": "x", "sims": [{"slot": 9}]}', 422, "slot must be from 1 to 4"),
        (b'{"device_id": "x", "sims": [{"slot": 1, "number": "12"}]}', 422, "sims[0].number"),
    ],
)
async def test_register_bad_input(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine, body: bytes, status: int, words: str
) -> None:
    secret = await token(sqlite_engine)
    headers = {**bearer(secret), "content-type": "application/json"}
    seed_error(
        await client.post("/api/v1/gateway/register", content=body, headers=headers), status, words
    )
    # Nothing was made, and the token still works.
    ok = await client.post("/api/v1/gateway/register", json=REGISTER, headers=bearer(secret))
    assert ok.status_code == 201


async def test_expired_and_made_up_tokens(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    async with make_sessionmaker(sqlite_engine).begin() as session:
        secret, _ = await phones.enrollment_token(session, hours=1, label="", actor="t")
        from simgate.store.models import EnrollmentToken

        row = await session.scalar(select(EnrollmentToken))
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    for candidate, words in (
        (secret, "used or expired"),
        ("gwe_" + "x" * 43, "used or expired"),
        ("not-a-token", "Invalid enrollment token"),
    ):
        resp = await client.post(
            "/api/v1/gateway/register", json=REGISTER, headers=bearer(candidate)
        )
        seed_error(resp, 401, words)


# --- keys ------------------------------------------------------------------------------------


async def test_keys_are_told_apart(client: httpx.AsyncClient, sqlite_engine: AsyncEngine) -> None:
    app_key = await make_key(sqlite_engine)
    phone_key = await new_phone(sqlite_engine)
    seed_error(
        await client.post("/api/v1/gateway/heartbeat", json={}, headers=bearer(app_key)),
        401,
        "this is an app key",
    )
    wrong = await client.get("/api/v1/me", headers=bearer(phone_key))
    assert wrong.status_code == 401
    assert "this is a gateway key" in wrong.json()["error"]["message"]
    seed_error(
        await client.post(
            "/api/v1/gateway/heartbeat", json={}, headers=bearer("gw_live_" + "0" * 64)
        ),
        401,
        "Invalid API key",
    )
    seed_error(await client.post("/api/v1/gateway/heartbeat", json={}), 401, "Missing API key")
    seed_error(
        await client.post(
            "/api/v1/gateway/heartbeat", json={}, headers={"Authorization": "Basic x"}
        ),
        401,
        "Malformed Authorization header",
    )


async def test_deactivated_is_403_and_a_rotated_key_stops_at_once(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    key = await new_phone(sqlite_engine)
    assert (
        await client.post("/api/v1/gateway/heartbeat", json={}, headers=bearer(key))
    ).status_code == 200
    sm = make_sessionmaker(sqlite_engine)
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    async with sm.begin() as session:
        await gateway_service.set_active(session, name="phone1", active=False, actor="alice")
    runtime.authenticator.invalidate()  # what the commit's NOTIFY/marker does on a server
    seed_error(
        await client.post("/api/v1/gateway/heartbeat", json={}, headers=bearer(key)),
        403,
        "Gateway inactive",
    )
    async with sm.begin() as session:
        await gateway_service.set_active(session, name="phone1", active=True, actor="alice")
        new = await phones.rotate_key(session, name="phone1", actor="alice")
    runtime.authenticator.invalidate()
    seed_error(
        await client.post("/api/v1/gateway/heartbeat", json={}, headers=bearer(key)),
        401,
        "Invalid API key",
    )
    assert (
        await client.post("/api/v1/gateway/heartbeat", json={}, headers=bearer(new))
    ).status_code == 200


# --- heartbeat -------------------------------------------------------------------------------


async def test_heartbeat_is_stored_and_shown(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    key = await new_phone(sqlite_engine, device_info={"model": "Pixel 8", "app_version": "2.1"})
    beat = {
        "status": "online",
        "battery_level": 85,
        "signal_strength": 4,
        "messages_sent": 10,
        "messages_received": 5,
        "sims": [{"slot": 1, "number": "+491701234567", "operator": "Telekom"}, {"slot": 2}],
    }
    resp = await client.post("/api/v1/gateway/heartbeat", json=beat, headers=bearer(key))
    assert resp.status_code == 200
    assert resp.json() == {
        "success": True,
        "message": "Heartbeat received",
        "gateway_status": "online",
    }
    for header in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
        assert header in resp.headers
    app_key = await make_key(sqlite_engine)
    (gw,) = (await client.get("/api/v1/gateways", headers=bearer(app_key))).json()["data"]
    assert (gw["battery"], gw["signal"]) == (85, 4)
    assert gw["device_info"] == {"model": "Pixel 8", "app_version": "2.1"}
    assert gw["app_version"] == "2.1"
    assert gw["last_heartbeat"]
    assert gw["sims"][0] == {"slot": 1, "number": "+491701234567", "operator": "Telekom"}
    assert gw["status"] == "online"  # over HTTP: it can report, not be sent to
    assert "online over HTTP only" in gw["status_detail"]
    async with make_sessionmaker(sqlite_engine)() as session:
        events = list(await session.scalars(select(Event.type)))
    assert events == ["gateway.online"]


@pytest.mark.parametrize(
    ("beat", "words"),
    [
        ({"battery_level": 101}, "battery_level must be from 0 to 100"),
        ({"battery_level": "full"}, "battery_level must be a whole number"),
        ({"signal_strength": 9}, "signal_strength must be from 0 to 5"),
        ({"messages_sent": -1}, "messages_sent must be from 0"),
        ({"status": 5}, "status must be a string"),
        ({"sims": "two"}, "sims must be a list"),
    ],
)
async def test_heartbeat_bad_values_are_422(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine, beat: dict[str, Any], words: str
) -> None:
    key = await new_phone(sqlite_engine)
    seed_error(
        await client.post("/api/v1/gateway/heartbeat", json=beat, headers=bearer(key)), 422, words
    )


async def test_heartbeat_rate_limit_allows_the_seeds_30_second_minimum(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    key = await new_phone(sqlite_engine)
    answers = [
        await client.post("/api/v1/gateway/heartbeat", json={}, headers=bearer(key))
        for _ in range(7)
    ]
    assert [a.status_code for a in answers[:6]] == [200] * 6
    assert [a.headers["x-ratelimit-remaining"] for a in answers[:6]] == [
        "5",
        "4",
        "3",
        "2",
        "1",
        "0",
    ]
    seed_error(answers[6], 429, "Rate limit exceeded")
    assert 1 <= int(answers[6].headers["retry-after"]) <= 60
    assert answers[6].headers["x-ratelimit-remaining"] == "0"
    # Another phone's window is its own.
    other = await new_phone(sqlite_engine, "phone2")
    assert (
        await client.post("/api/v1/gateway/heartbeat", json={}, headers=bearer(other))
    ).status_code == 200


# --- received SMS ------------------------------------------------------------------------------


async def test_received_sms_is_stored_once(
    db_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    key = await new_phone(engine)
    first = await db_client.post("/api/v1/gateway/sms/received", json=RECEIVED, headers=bearer(key))
    assert first.status_code == 201, first.text
    assert first.json()["success"] is True
    assert first.json()["message"] == "SMS received and processed"
    message_id = first.json()["message_id"]
    again = await db_client.post("/api/v1/gateway/sms/received", json=RECEIVED, headers=bearer(key))
    assert again.status_code == 201
    assert again.json()["message_id"] == message_id
    other = await db_client.post(
        "/api/v1/gateway/sms/received",
        json={**RECEIVED, "message_body": "another"},
        headers=bearer(key),
    )
    assert other.json()["message_id"] != message_id
    async with make_sessionmaker(engine)() as session:
        count = await session.scalar(select(func.count()).select_from(Message))
        stored = await session.get(Message, message_id)
    assert count == 2
    assert stored is not None
    assert (stored.from_number, stored.body, stored.sim_slot, stored.gateway) == (
        "+959123456789",
        "Hello, this is a test message",
        1,
        "phone1",
    )
    inbox_key = await make_key(engine)
    item = (await db_client.get(f"/api/v1/messages/{message_id}", headers=bearer(inbox_key))).json()
    assert (item["sim_slot"], item["received_at"]) == (1, "2025-10-20T13:45:30Z")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"message_body": "x"}, "phone_number is required"),
        ({"phone_number": "+491701234567"}, "message_body is required"),
        ({"phone_number": "+491701234567", "message_body": 5}, "message_body is required"),
        ({**RECEIVED, "received_at": "yesterday"}, "received_at: 'yesterday' is not an ISO-8601"),
        ({**RECEIVED, "sim_slot": 3.5}, "sim_slot must be a whole number"),
        ({**RECEIVED, "message_body": "x" * 10_001}, "longer than 10000"),
    ],
)
async def test_received_bad_input(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine, body: dict[str, Any], words: str
) -> None:
    key = await new_phone(sqlite_engine)
    seed_error(
        await client.post("/api/v1/gateway/sms/received", json=body, headers=bearer(key)),
        422,
        words,
    )


async def test_a_sender_name_is_kept_as_is(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    key = await new_phone(sqlite_engine)
    resp = await client.post(
        "/api/v1/gateway/sms/received",
        json={"phone_number": "DHL", "message_body": "Your parcel"},
        headers=bearer(key),
    )
    async with make_sessionmaker(sqlite_engine)() as session:
        stored = await session.get(Message, resp.json()["message_id"])
    assert stored is not None
    assert stored.from_number == "DHL"


# --- status reports ------------------------------------------------------------------------------


async def test_status_for_unknown_or_foreign_messages_is_404(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    key = await new_phone(sqlite_engine)
    app_key = await make_key(sqlite_engine)
    sent = await client.post(
        "/api/v1/messages", json={"to": "+4915112345678", "body": "x"}, headers=bearer(app_key)
    )
    for message_id in ("msg_unknown", sent.json()["id"]):  # never given to this phone
        seed_error(
            await client.post(
                "/api/v1/gateway/sms/status",
                json={"message_id": message_id, "status": "delivered"},
                headers=bearer(key),
            ),
            404,
            "not found for this gateway",
        )
    seed_error(
        await client.post(
            "/api/v1/gateway/sms/status",
            json={"message_id": sent.json()["id"], "status": "lost"},
            headers=bearer(key),
        ),
        422,
        "status 'lost' is not one of sent, delivered, failed, error",
    )
    seed_error(
        await client.post(
            "/api/v1/gateway/sms/status", json={"status": "sent"}, headers=bearer(key)
        ),
        422,
        "message_id is required",
    )


async def test_unknown_gateway_paths_answer_in_the_seeds_shape(client: httpx.AsyncClient) -> None:
    seed_error(await client.post("/api/v1/gateway/nope", json={}), 404, "no such resource")
    seed_error(await client.get("/api/v1/gateway/heartbeat"), 405, "method not allowed")
