"""The outbound message API end to end: POST/GET/list/cancel /api/v1/messages through the
dispatcher to fake gateways, retries, failover, limits, and seed 000's /api/sendsms.

Nothing here asserts on timings: tests poll for a status with a generous deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings
from simgate.domain.keys import Scope
from simgate.drivers.fake import FakeConfig, FakeGateway, FakeMode
from simgate.services import apps as app_service
from simgate.services import gateways as gateway_service
from simgate.store.engine import make_sessionmaker
from simgate.store.models import AppUsage
from simgate.web.runtime import Runtime
from tests.conftest import app_client
from tests.integration.helpers import assert_error, bearer, make_key

MESSAGES = "/api/v1/messages"
DE = "+4915112345678"
DE_2 = "+4917612345678"
US = "+12015550123"
FINAL = {"sent", "delivered", "failed", "expired", "canceled"}
UNKNOWN_ID = "msg_" + "0" * 26

# --- helpers --------------------------------------------------------------------------------


def runtime(client: httpx.AsyncClient) -> Runtime:
    return client.app.state.runtime  # type: ignore[attr-defined,no-any-return]


def de_numbers(n: int) -> list[str]:
    """``n`` distinct valid German mobile numbers (n <= 100)."""
    return [f"+49151123456{i:02d}" for i in range(n)]


def in_seconds(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def add_gateway(
    client: httpx.AsyncClient,
    name: str,
    *,
    max_in_flight: int = 4,
    rate_per_minute: int = 0,
    **config: Any,
) -> FakeGateway:
    """Create a fake gateway row, start it in the running app and return its live driver."""
    rt = runtime(client)
    async with make_sessionmaker(rt.engine).begin() as session:
        await gateway_service.create(
            session,
            name=name,
            kind="fake",
            config=config,
            max_in_flight=max_in_flight,
            rate_per_minute=rate_per_minute,
            actor="test",
        )
    await rt.gateways.sync()
    gateway = rt.dispatcher.gateways[name]
    assert isinstance(gateway, FakeGateway)
    return gateway


async def set_limits(engine: AsyncEngine, app: str = "shop", **limits: Any) -> None:
    async with make_sessionmaker(engine).begin() as session:
        await app_service.set_limits(session, name=app, actor="t", **limits)


async def send(
    client: httpx.AsyncClient,
    key: str,
    payload: dict[str, Any],
    *,
    idempotency_key: str | None = None,
) -> httpx.Response:
    headers = bearer(key)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return await client.post(MESSAGES, json=payload, headers=headers)


async def send_ok(client: httpx.AsyncClient, key: str, **payload: Any) -> dict[str, Any]:
    """POST a message that must be accepted; its 202 body."""
    payload.setdefault("to", DE)
    payload.setdefault("body", "hello")
    resp = await send(client, key, payload)
    assert resp.status_code == 202, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def get_message(client: httpx.AsyncClient, key: str, message_id: str) -> dict[str, Any]:
    resp = await client.get(f"{MESSAGES}/{message_id}", headers=bearer(key))
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def wait_for_status(
    client: httpx.AsyncClient,
    key: str,
    message_id: str,
    statuses: set[str],
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Poll the message until its status is one of ``statuses``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        message = await get_message(client, key, message_id)
        if message["status"] in statuses:
            return message
        if time.monotonic() > deadline:
            pytest.fail(
                f"{message_id} stayed {message['status']!r}, expected one of {sorted(statuses)}; "
                f"events: {message['events']}"
            )
        await asyncio.sleep(0.02)


async def list_page(client: httpx.AsyncClient, key: str, **params: Any) -> dict[str, Any]:
    resp = await client.get(MESSAGES, params=params, headers=bearer(key))
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def listed_ids(client: httpx.AsyncClient, key: str, **params: Any) -> list[str]:
    return [item["id"] for item in (await list_page(client, key, **params))["data"]]


def statuses_of(message: dict[str, Any]) -> list[str]:
    return [event["status"] for event in message["events"]]


async def clear_of_minute_boundary() -> None:
    """Per-minute quotas use fixed windows: start a burst well inside one window."""
    now = datetime.now(UTC)
    if now.second >= 55:
        await asyncio.sleep(60 - now.second - now.microsecond / 1e6 + 0.1)


def fast_settings(settings: Settings, **extra: Any) -> Settings:
    """Retries and timeouts small enough for tests."""
    update = {
        "retry_base_delay": 0.05,
        "retry_max_delay": 0.2,
        "gateway_ack_timeout": 0.5,
        **extra,
    }
    return settings.model_copy(update=update)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
async def key(sqlite_engine: AsyncEngine) -> str:
    """A key for the app "shop" with the default scopes."""
    return await make_key(sqlite_engine)


@pytest.fixture
async def fast(
    sqlite_settings: Settings, sqlite_engine: AsyncEngine
) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``client`` but with fast retries and a 0.5 s gateway acknowledgement timeout."""
    async for c in app_client(fast_settings(sqlite_settings), sqlite_engine):
        yield c


# --- sending ---------------------------------------------------------------------------------


async def test_send_reaches_sent_then_delivered(client: httpx.AsyncClient, key: str) -> None:
    gateway = await add_gateway(client, "gw1", mode="deliver", report_delay=0.5)
    resp = await send(client, key, {"to": "+49 151 1234 5678", "body": "Hello"})
    assert resp.status_code == 202, resp.text
    accepted = resp.json()
    assert accepted["id"].startswith("msg_")
    assert accepted["status"] == "queued"
    assert accepted["to"] == DE
    assert accepted["segments"] == 1
    assert accepted["encoding"] == "gsm7"
    assert datetime.fromisoformat(accepted["created_at"]).tzinfo is not None

    sent = await wait_for_status(client, key, accepted["id"], {"sent", "delivered"})
    assert sent["status"] == "sent", "the delivery report came before the send was recorded"
    done = await wait_for_status(client, key, accepted["id"], {"delivered"})
    assert done["gateway"] == "gw1"
    assert done["error"] is None
    assert done["to"] == DE
    assert done["body"] == "Hello"
    assert done["direction"] == "outbound"
    assert statuses_of(done) == ["queued", "sending", "sent", "delivered"]
    times = [datetime.fromisoformat(e["at"]) for e in done["events"]]
    assert times == sorted(times)
    assert [d.message_id for d in gateway.sent] == [accepted["id"]]
    assert gateway.sent[0].to == DE


async def test_send_to_a_list_answers_one_message_each(client: httpx.AsyncClient, key: str) -> None:
    resp = await send(client, key, {"to": [DE, "+49 176 12345678", "+33612345678"], "body": "x"})
    assert resp.status_code == 202, resp.text
    items = resp.json()["messages"]
    assert [m["to"] for m in items] == [DE, DE_2, "+33612345678"]
    assert len({m["id"] for m in items}) == 3
    assert all(m["status"] == "queued" for m in items)
    assert sorted(await listed_ids(client, key)) == sorted(m["id"] for m in items)


@pytest.mark.parametrize(
    ("body", "encoding", "segments"),
    [
        ("Hello, world!", "gsm7", 1),
        ("a" * 160, "gsm7", 1),
        ("a" * 161, "gsm7", 2),
        ("a" * 306, "gsm7", 2),
        ("a" * 307, "gsm7", 3),
        ("€" * 80, "gsm7", 1),  # extension characters take two septets
        ("€" * 81, "gsm7", 2),
        ("Grüße äöü ñ é", "gsm7", 1),
        ("Привет", "ucs2", 1),
        ("ж" * 70, "ucs2", 1),
        ("ж" * 71, "ucs2", 2),
        ("ok 👍", "ucs2", 1),
        ("👍" * 35, "ucs2", 1),  # a surrogate pair each: 70 units
        ("👍" * 36, "ucs2", 2),
    ],
)
async def test_encoding_and_segments(
    client: httpx.AsyncClient, key: str, body: str, encoding: str, segments: int
) -> None:
    accepted = await send_ok(client, key, body=body)
    assert (accepted["encoding"], accepted["segments"]) == (encoding, segments)
    stored = await get_message(client, key, accepted["id"])
    assert (stored["encoding"], stored["segments"]) == (encoding, segments)


@pytest.mark.db
async def test_body_round_trips_exactly(db_client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    key = await make_key(engine)
    body = "Grüße 👋🏽 — 你好 ¥€\n\ttab  two spaces \U0001f9ea\r\nend "
    accepted = await send_ok(db_client, key, body=body)
    assert accepted["encoding"] == "ucs2"
    assert (await get_message(db_client, key, accepted["id"]))["body"] == body
    listed = (await list_page(db_client, key))["data"]
    assert listed[0]["body"] == body


async def test_options_are_stored(client: httpx.AsyncClient, key: str) -> None:
    await add_gateway(client, "gw1", mode="offline")
    metadata = {"order": 17, "tags": ["a", "ü"], "nested": {"ok": True}}
    resp = await client.post(
        MESSAGES,
        json={
            "to": DE,
            "body": "x",
            "gateway": "gw1",
            "ttl": 3600,
            "priority": "high",
            "metadata": metadata,
        },
        headers={"X-API-Key": key},
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["gateway"] == "gw1"
    stored = await get_message(client, key, resp.json()["id"])
    assert stored["metadata"] == metadata
    assert stored["priority"] == "high"
    assert stored["gateway"] == "gw1"
    created = datetime.fromisoformat(stored["created_at"])
    assert datetime.fromisoformat(stored["expires_at"]) - created == timedelta(seconds=3600)


async def test_high_priority_goes_first(client: httpx.AsyncClient, key: str) -> None:
    gateway = await add_gateway(client, "gw1", mode="offline", max_in_flight=1)
    normal = [(await send_ok(client, key, body=f"n{i}"))["id"] for i in range(3)]
    high = (await send_ok(client, key, body="urgent", priority="high"))["id"]
    await gateway.reconfigure(FakeConfig(mode=FakeMode.SENT))
    for message_id in [high, *normal]:
        await wait_for_status(client, key, message_id, {"sent"})
    assert [d.message_id for d in gateway.sent] == [high, *normal]


async def test_undelivered_report_fails_a_sent_message(client: httpx.AsyncClient, key: str) -> None:
    await add_gateway(client, "gw1", mode="undelivered", report_delay=0.2)
    accepted = await send_ok(client, key)
    done = await wait_for_status(client, key, accepted["id"], {"failed", "delivered"})
    assert done["status"] == "failed"
    assert statuses_of(done) == ["queued", "sending", "sent", "failed"]
    assert done["error"]["code"] == "undelivered"
    assert done["error"]["hint"]


async def test_gateway_send_rate_holds_back_the_next_message(
    client: httpx.AsyncClient, key: str
) -> None:
    gateway = await add_gateway(client, "gw1", mode="sent", rate_per_minute=1)
    accepted = await send_ok(client, key, to=[DE, DE_2])
    ids = {m["id"] for m in accepted["messages"]}
    deadline = time.monotonic() + 10
    while not gateway.sent:
        assert time.monotonic() < deadline, "the first message was never sent"
        await asyncio.sleep(0.02)
    [first] = ids & {d.message_id for d in gateway.sent}
    [second] = ids - {first}
    await wait_for_status(client, key, first, {"sent"})
    assert (await get_message(client, key, second))["status"] == "queued"
    assert [d.message_id for d in gateway.sent] == [first]


async def test_pinning_a_deactivated_gateway_is_422(client: httpx.AsyncClient, key: str) -> None:
    await add_gateway(client, "gw1", mode="sent")
    async with runtime(client).sessionmaker.begin() as session:
        await gateway_service.set_active(session, name="gw1", active=False, actor="test")
    resp = await send(client, key, {"to": DE, "body": "x", "gateway": "gw1"})
    err = assert_error(resp, 422, "invalid", "gateway")
    assert "deactivated" in err["message"]
    assert await listed_ids(client, key) == []


# --- bad input -------------------------------------------------------------------------------

LONG_BODY = "a" * (153 * 10 + 1)  # 11 GSM-7 segments; max_segments is 10


@pytest.mark.parametrize(
    ("payload", "status", "code", "field"),
    [
        pytest.param({"to": "12345", "body": "x"}, 422, "invalid", "to", id="bad-number"),
        pytest.param({"to": "+49 abc", "body": "x"}, 422, "invalid", "to", id="not-a-number"),
        pytest.param(
            {"to": [DE, DE_2, US, "+4915", DE], "body": "x"},
            422,
            "invalid",
            "to[3]",
            id="bad-number-in-list",
        ),
        pytest.param({"to": [], "body": "x"}, 422, "invalid", "to", id="empty-list"),
        pytest.param({"to": DE, "body": ""}, 422, "invalid", "body", id="empty-body"),
        pytest.param({"to": DE, "body": " \n "}, 422, "invalid", "body", id="blank-body"),
        pytest.param({"to": DE, "body": LONG_BODY}, 422, "invalid", "body", id="too-many-segments"),
        pytest.param({"to": DE, "body": "a" * 6000}, 422, "invalid", "body", id="huge-body"),
        pytest.param({"to": DE}, 422, "invalid", "body", id="missing-body"),
        pytest.param({"body": "x"}, 422, "invalid", "to", id="missing-to"),
        pytest.param({"to": 123, "body": "x"}, 422, "invalid", "to", id="to-int"),
        pytest.param({"to": [1], "body": "x"}, 422, "invalid", "to", id="to-int-list"),
        pytest.param({"to": {"n": DE}, "body": "x"}, 422, "invalid", "to", id="to-object"),
        pytest.param({"to": DE, "body": 5}, 422, "invalid", "body", id="body-int"),
        pytest.param({"to": DE, "body": "x", "sender": "me"}, 422, "invalid", "sender", id="extra"),
        pytest.param(
            {"to": DE, "body": "x", "gateway": "nope"}, 422, "invalid", "gateway", id="gw"
        ),
        pytest.param(
            {"to": DE, "body": "x", "send_at": in_seconds(-3600)},
            422,
            "invalid",
            "send_at",
            id="send-at-past",
        ),
        pytest.param(
            {"to": DE, "body": "x", "send_at": in_seconds(31 * 86400)},
            422,
            "invalid",
            "send_at",
            id="send-at-far",
        ),
        pytest.param(
            {"to": DE, "body": "x", "send_at": "tomorrow"},
            422,
            "invalid",
            "send_at",
            id="send-at-garbage",
        ),
        pytest.param({"to": DE, "body": "x", "ttl": -5}, 422, "invalid", "ttl", id="ttl-negative"),
        pytest.param({"to": DE, "body": "x", "ttl": 0}, 422, "invalid", "ttl", id="ttl-zero"),
        pytest.param(
            {"to": DE, "body": "x", "ttl": 7 * 86400 + 1}, 422, "invalid", "ttl", id="ttl-large"
        ),
        pytest.param(
            {"to": DE, "body": "x", "priority": "urgent"},
            422,
            "invalid",
            "priority",
            id="priority",
        ),
        pytest.param(
            {"to": DE, "body": "x", "metadata": {"blob": "x" * 5000}},
            422,
            "invalid",
            "metadata",
            id="metadata-large",
        ),
        pytest.param(
            {"to": DE, "body": "x", "metadata": ["not", "an", "object"]},
            422,
            "invalid",
            "metadata",
            id="metadata-list",
        ),
    ],
)
async def test_bad_input_is_refused_and_stores_nothing(
    client: httpx.AsyncClient,
    key: str,
    payload: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    await add_gateway(client, "gw1", mode="sent")
    err = assert_error(await send(client, key, payload), status, code, field)
    assert field.split("[")[0] in err["message"]
    assert await listed_ids(client, key) == []


async def test_invalid_json_is_400(client: httpx.AsyncClient, key: str) -> None:
    headers = {**bearer(key), "Content-Type": "application/json"}
    resp = await client.post(
        MESSAGES, content=b'{"to": "+4915112345678", "body": ', headers=headers
    )
    assert_error(resp, 400, "invalid_json")
    assert await listed_ids(client, key) == []


async def test_missing_key_is_401(client: httpx.AsyncClient, key: str) -> None:
    resp = await client.post(MESSAGES, json={"to": DE, "body": "x"})
    assert_error(resp, 401, "unauthorized")
    assert await listed_ids(client, key) == []


async def test_key_without_send_scope_is_403(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine, key: str
) -> None:
    reader = await make_key(sqlite_engine, app="reader", scopes=frozenset({Scope.INBOX}))
    err = assert_error(await send(client, reader, {"to": DE, "body": "x"}), 403, "forbidden")
    assert "'send'" in err["message"]
    assert await listed_ids(client, key) == []
    admin = await make_key(sqlite_engine, app="ops", scopes=frozenset(Scope))
    assert await listed_ids(client, admin) == []


async def test_bad_number_message_names_the_number(client: httpx.AsyncClient, key: str) -> None:
    err = assert_error(await send(client, key, {"to": [DE, "+4915"], "body": "x"}), 422, "invalid")
    assert err["field"] == "to[1]"
    assert "+4915" in err["message"]


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


# --- idempotency -----------------------------------------------------------------------------


async def test_idempotency_key_replays_the_same_answer(client: httpx.AsyncClient, key: str) -> None:
    payload = {"to": [DE, DE_2], "body": "once only"}
    first = await send(client, key, payload, idempotency_key="order-17")
    assert first.status_code == 202, first.text
    assert first.headers.get("Idempotent-Replayed") != "true"
    again = await send(client, key, payload, idempotency_key="order-17")
    assert again.status_code == first.status_code
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(await listed_ids(client, key)) == 2
    # A new key is a new request.
    other = await send(client, key, payload, idempotency_key="order-18")
    assert other.status_code == 202
    assert len(await listed_ids(client, key)) == 4


async def test_idempotency_key_with_another_body_is_409(
    client: httpx.AsyncClient, key: str
) -> None:
    first = await send(client, key, {"to": DE, "body": "one"}, idempotency_key="k1")
    assert first.status_code == 202
    resp = await send(client, key, {"to": DE, "body": "two"}, idempotency_key="k1")
    assert_error(resp, 409, "conflict", "idempotency-key")
    assert await listed_ids(client, key) == [first.json()["id"]]


async def test_idempotency_keys_belong_to_one_app(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine, key: str
) -> None:
    other = await make_key(sqlite_engine, app="other")
    payload = {"to": DE, "body": "same"}
    mine = await send(client, key, payload, idempotency_key="shared")
    theirs = await send(client, other, payload, idempotency_key="shared")
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.headers.get("Idempotent-Replayed") != "true"


@pytest.mark.db
async def test_concurrent_duplicates_create_one_message(
    db_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    key = await make_key(engine)
    payload = {"to": DE, "body": "exactly once"}
    responses = await asyncio.gather(
        *(send(db_client, key, payload, idempotency_key="dup-1") for _ in range(10))
    )
    assert [r.status_code for r in responses] == [202] * 10, [r.text for r in responses]
    bodies = [r.json() for r in responses]
    assert all(b == bodies[0] for b in bodies)
    replayed = [r.headers.get("Idempotent-Replayed") == "true" for r in responses]
    assert replayed.count(False) == 1
    assert await listed_ids(db_client, key) == [bodies[0]["id"]]


async def test_idempotency_keys_differing_in_case_are_different(
    db_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    key = await make_key(engine)
    first = await send(db_client, key, {"to": DE, "body": "same"}, idempotency_key="abc")
    second = await send(db_client, key, {"to": DE, "body": "same"}, idempotency_key="ABC")
    assert first.status_code == second.status_code == 202
    assert "idempotent-replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]


# --- scheduling, ttl, cancel -----------------------------------------------------------------


async def test_scheduled_message_waits_for_send_at(client: httpx.AsyncClient, key: str) -> None:
    gateway = await add_gateway(client, "gw1", mode="sent")
    accepted = await send_ok(client, key, send_at=in_seconds(3))
    assert accepted["status"] == "scheduled"
    assert "send_at" in accepted
    now = await get_message(client, key, accepted["id"])
    assert now["status"] == "scheduled"
    assert gateway.sent == []
    done = await wait_for_status(client, key, accepted["id"], {"sent"}, timeout=15)
    assert statuses_of(done) == ["scheduled", "sending", "sent"]
    assert datetime.fromisoformat(done["sent_at"]) >= datetime.fromisoformat(done["send_at"])
    assert [d.message_id for d in gateway.sent] == [accepted["id"]]


async def test_ttl_expires_a_message_no_gateway_could_send(
    client: httpx.AsyncClient, key: str
) -> None:
    gateway = await add_gateway(client, "gw1", mode="offline")
    accepted = await send_ok(client, key, ttl=1)
    assert accepted["status"] == "queued"
    done = await wait_for_status(client, key, accepted["id"], FINAL, timeout=15)
    assert done["status"] == "expired"
    assert statuses_of(done) == ["queued", "expired"]
    assert gateway.attempts == 0


async def test_cancel_a_queued_message(client: httpx.AsyncClient, key: str) -> None:
    accepted = await send_ok(client, key)  # no gateway: it stays queued
    resp = await client.post(f"{MESSAGES}/{accepted['id']}/cancel", headers=bearer(key))
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "canceled"
    assert resp.json()["id"] == accepted["id"]
    message = await get_message(client, key, accepted["id"])
    assert message["status"] == "canceled"
    assert statuses_of(message) == ["queued", "canceled"]
    again = await client.post(f"{MESSAGES}/{accepted['id']}/cancel", headers=bearer(key))
    assert_error(again, 409, "conflict")


async def test_cancel_a_scheduled_message_keeps_it_from_sending(
    client: httpx.AsyncClient, key: str
) -> None:
    gateway = await add_gateway(client, "gw1", mode="sent")
    accepted = await send_ok(client, key, send_at=in_seconds(60))
    resp = await client.post(f"{MESSAGES}/{accepted['id']}/cancel", headers=bearer(key))
    assert resp.status_code == 200, resp.text
    assert (await get_message(client, key, accepted["id"]))["status"] == "canceled"
    assert gateway.sent == []


async def test_cancel_a_sent_message_is_409(client: httpx.AsyncClient, key: str) -> None:
    await add_gateway(client, "gw1", mode="sent")
    accepted = await send_ok(client, key)
    await wait_for_status(client, key, accepted["id"], {"sent"})
    resp = await client.post(f"{MESSAGES}/{accepted['id']}/cancel", headers=bearer(key))
    err = assert_error(resp, 409, "conflict")
    assert "sent" in err["message"]
    assert (await get_message(client, key, accepted["id"]))["status"] == "sent"


async def test_cancel_unknown_or_foreign_message_is_404(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine, key: str
) -> None:
    for bad in (UNKNOWN_ID, "nope"):
        resp = await client.post(f"{MESSAGES}/{bad}/cancel", headers=bearer(key))
        assert_error(resp, 404, "not_found")
    accepted = await send_ok(client, key)
    other = await make_key(sqlite_engine, app="other")
    resp = await client.post(f"{MESSAGES}/{accepted['id']}/cancel", headers=bearer(other))
    assert_error(resp, 404, "not_found")
    assert (await get_message(client, key, accepted["id"]))["status"] == "queued"


# --- retries, failover, timeouts -------------------------------------------------------------


async def test_transient_failures_are_retried(fast: httpx.AsyncClient, key: str) -> None:
    gateway = await add_gateway(fast, "gw1", mode="sent", fail_first=2)
    accepted = await send_ok(fast, key)
    done = await wait_for_status(fast, key, accepted["id"], FINAL)
    assert done["status"] == "sent"
    assert done["attempts"] == 3
    assert gateway.attempts == 3
    assert statuses_of(done) == [
        "queued",
        "sending",
        "queued",
        "sending",
        "queued",
        "sending",
        "sent",
    ]
    retries = [e for e in done["events"][1:] if e["status"] == "queued"]
    assert [e["detail"]["error"] for e in retries] == ["network_busy", "network_busy"]
    assert [e["detail"]["attempt"] for e in retries] == [1, 2]
    assert [d.message_id for d in gateway.sent] == [accepted["id"]]
    assert done["error"] is None  # it got through; the old error lives in the events only


async def test_permanent_failure_fails_at_once(fast: httpx.AsyncClient, key: str) -> None:
    gateway = await add_gateway(fast, "gw1", mode="reject")
    accepted = await send_ok(fast, key)
    done = await wait_for_status(fast, key, accepted["id"], FINAL)
    assert done["status"] == "failed"
    assert done["attempts"] == 1
    assert gateway.attempts == 1
    assert done["error"]["code"] == "invalid_destination"
    assert done["error"]["message"]
    assert done["error"]["hint"]
    assert statuses_of(done) == ["queued", "sending", "failed"]


async def test_retries_give_up_after_max_attempts(
    sqlite_settings: Settings, sqlite_engine: AsyncEngine, key: str
) -> None:
    settings = fast_settings(sqlite_settings, retry_max_attempts=3)
    async for client in app_client(settings, sqlite_engine):
        gateway = await add_gateway(client, "gw1", mode="fail")
        accepted = await send_ok(client, key)
        done = await wait_for_status(client, key, accepted["id"], FINAL)
        assert done["status"] == "failed"
        assert done["attempts"] == 3
        assert gateway.attempts == 3
        assert done["error"]["code"] == "network_busy"
        assert statuses_of(done).count("sending") == 3
        assert gateway.sent == []


async def test_failover_to_another_gateway(fast: httpx.AsyncClient, key: str) -> None:
    a = await add_gateway(fast, "A", mode="gateway_fail")
    b = await add_gateway(fast, "B", mode="sent")
    accepted = await send_ok(fast, key)
    done = await wait_for_status(fast, key, accepted["id"], FINAL)
    assert done["status"] == "sent"
    assert done["gateway"] == "B"
    assert a.attempts == 1
    assert [d.message_id for d in b.sent] == [accepted["id"]]
    retry = next(e for e in done["events"][1:] if e["status"] == "queued")
    assert retry["detail"]["gateway"] == "A"
    assert retry["detail"]["error"] == "gateway_refused"


async def test_pinned_message_never_goes_elsewhere(fast: httpx.AsyncClient, key: str) -> None:
    a = await add_gateway(fast, "A", mode="gateway_fail")
    b = await add_gateway(fast, "B", mode="sent")
    accepted = await send_ok(fast, key, gateway="A")
    assert accepted["gateway"] == "A"
    done = await wait_for_status(fast, key, accepted["id"], FINAL)
    assert done["status"] == "failed"
    assert done["gateway"] == "A"
    assert done["attempts"] == a.attempts == runtime(fast).settings.retry_max_attempts
    assert b.attempts == 0
    assert b.sent == []
    sending = [e for e in done["events"] if e["status"] == "sending"]
    assert {e["detail"]["gateway"] for e in sending} == {"A"}


async def test_pinned_message_waits_for_its_gateway(fast: httpx.AsyncClient, key: str) -> None:
    a = await add_gateway(fast, "A", mode="offline")
    b = await add_gateway(fast, "B", mode="sent")
    accepted = await send_ok(fast, key, gateway="A")
    other = await send_ok(fast, key)
    await wait_for_status(fast, key, other["id"], {"sent"})
    assert (await get_message(fast, key, accepted["id"]))["status"] == "queued"
    assert [d.message_id for d in b.sent] == [other["id"]]
    await a.reconfigure(FakeConfig(mode=FakeMode.SENT))
    done = await wait_for_status(fast, key, accepted["id"], FINAL)
    assert done["status"] == "sent"
    assert [d.message_id for d in a.sent] == [accepted["id"]]


async def test_stalled_gateway_times_out_and_the_message_moves_on(
    fast: httpx.AsyncClient, key: str
) -> None:
    a = await add_gateway(fast, "A", mode="stall")
    b = await add_gateway(fast, "B", mode="sent")
    accepted = await send_ok(fast, key)
    done = await wait_for_status(fast, key, accepted["id"], FINAL)
    assert done["status"] == "sent"
    assert done["gateway"] == "B"
    assert done["attempts"] == 2
    assert a.attempts == 1
    assert a.sent == []
    assert [d.message_id for d in b.sent] == [accepted["id"]]
    assert statuses_of(done) == ["queued", "sending", "queued", "sending", "sent"]
    timeout = done["events"][2]["detail"]
    assert timeout["gateway"] == "A"
    assert timeout["error"] == "gateway_timeout"


async def test_stalled_only_gateway_keeps_retrying(fast: httpx.AsyncClient, key: str) -> None:
    gateway = await add_gateway(fast, "A", mode="stall")
    accepted = await send_ok(fast, key)
    deadline = time.monotonic() + 10
    while True:
        message = await get_message(fast, key, accepted["id"])
        if message["attempts"] >= 2 and message["error"] is not None:
            break
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.02)
    assert message["error"]["code"] == "gateway_timeout"
    assert message["status"] in {"queued", "sending", "failed"}
    assert gateway.sent == []


# --- per-app limits --------------------------------------------------------------------------


async def test_rate_per_minute_refuses_the_fourth(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine, key: str
) -> None:
    await set_limits(sqlite_engine, rate_per_minute=3)
    await clear_of_minute_boundary()
    for _ in range(3):
        await send_ok(client, key)
    resp = await send(client, key, {"to": DE, "body": "fourth"})
    assert_error(resp, 429, "rate_limited")
    assert int(resp.headers["Retry-After"]) >= 1
    assert len(await listed_ids(client, key)) == 3


async def test_batch_over_the_limit_is_refused_whole(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine, key: str
) -> None:
    await set_limits(sqlite_engine, rate_per_minute=50)
    await clear_of_minute_boundary()
    resp = await send(client, key, {"to": de_numbers(100), "body": "bulk"})
    assert_error(resp, 429, "rate_limited")
    assert "Retry-After" in resp.headers
    assert await listed_ids(client, key) == []
    # Nothing of the quota was used up by the refused batch.
    ok = await send(client, key, {"to": de_numbers(50), "body": "bulk"})
    assert ok.status_code == 202, ok.text
    assert len(ok.json()["messages"]) == 50
    assert_error(await send(client, key, {"to": DE, "body": "one more"}), 429, "rate_limited")


async def test_rate_limits_are_per_app(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine, key: str
) -> None:
    other = await make_key(sqlite_engine, app="other")
    await set_limits(sqlite_engine, rate_per_minute=1)
    await clear_of_minute_boundary()
    await send_ok(client, key)
    assert_error(await send(client, key, {"to": DE, "body": "x"}), 429, "rate_limited")
    await send_ok(client, other)


async def test_allowed_countries(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine, key: str
) -> None:
    await set_limits(sqlite_engine, allowed_countries="DE")
    err = assert_error(await send(client, key, {"to": US, "body": "x"}), 403, "forbidden", "to")
    assert "US" in err["message"]
    resp = await send(client, key, {"to": [DE, US], "body": "x"})
    assert_error(resp, 403, "forbidden", "to[1]")
    assert await listed_ids(client, key) == []
    await send_ok(client, key, to=DE)


@pytest.mark.db
async def test_concurrent_sends_never_overshoot_the_limit(
    db_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    key = await make_key(engine)
    await set_limits(engine, rate_per_minute=3)
    await clear_of_minute_boundary()
    responses = await asyncio.gather(
        *(send(db_client, key, {"to": DE, "body": f"c{i}"}) for i in range(20))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] * 3 + [429] * 17, [r.text for r in responses]
    assert len(await listed_ids(db_client, key)) == 3


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


# --- listing ---------------------------------------------------------------------------------


async def test_list_paginates_newest_first(client: httpx.AsyncClient, key: str) -> None:
    ids = [(await send_ok(client, key, body=f"n{i}"))["id"] for i in range(7)]
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = await list_page(client, key, **params)
        pages.append(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 5
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [m["id"] for p in pages for m in p] == ids[::-1]
    item = pages[0][0]
    assert item["direction"] == "outbound"
    assert item["body"] == "n6"
    assert {"id", "to", "body", "status", "segments", "encoding", "gateway", "created_at"} <= set(
        item
    )


async def test_list_filters(client: httpx.AsyncClient, key: str) -> None:
    gateway = await add_gateway(client, "gw1", mode="sent")
    first = await send_ok(client, key, to=DE, body="first")
    await wait_for_status(client, key, first["id"], {"sent"})
    await gateway.reconfigure(FakeConfig(mode=FakeMode.OFFLINE))
    second = await send_ok(client, key, to=DE_2, body="second")
    third = await send_ok(client, key, to=DE, body="third")

    assert await listed_ids(client, key, direction="outbound") == [
        third["id"],
        second["id"],
        first["id"],
    ]
    assert await listed_ids(client, key, direction="inbound") == []
    assert await listed_ids(client, key, status="sent") == [first["id"]]
    assert await listed_ids(client, key, status="queued") == [third["id"], second["id"]]
    assert await listed_ids(client, key, status="delivered") == []
    assert await listed_ids(client, key, phone=DE) == [third["id"], first["id"]]
    assert await listed_ids(client, key, phone=DE_2) == [second["id"]]
    assert await listed_ids(client, key, since=second["created_at"]) == [
        third["id"],
        second["id"],
    ]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await listed_ids(client, key, since=future) == []
    assert await listed_ids(client, key, status="queued", phone=DE) == [third["id"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"status": "lost"}, "status"),
        ({"direction": "sideways"}, "direction"),
        ({"since": "yesterday"}, "since"),
    ],
)
async def test_list_bad_parameters_are_422(
    client: httpx.AsyncClient, key: str, params: dict[str, Any], field: str
) -> None:
    resp = await client.get(MESSAGES, params=params, headers=bearer(key))
    assert_error(resp, 422, "invalid", field)


async def test_apps_see_only_their_own_outbound_messages(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine, key: str
) -> None:
    other = await make_key(sqlite_engine, app="other")
    mine = await send_ok(client, key, body="mine")
    theirs = await send_ok(client, other, body="theirs")
    assert await listed_ids(client, key) == [mine["id"]]
    assert await listed_ids(client, other) == [theirs["id"]]
    assert await listed_ids(client, other, direction="outbound", phone=DE) == [theirs["id"]]
    resp = await client.get(f"{MESSAGES}/{mine['id']}", headers=bearer(other))
    assert_error(resp, 404, "not_found")
    assert_error(
        await client.get(f"{MESSAGES}/{UNKNOWN_ID}", headers=bearer(key)), 404, "not_found"
    )


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


# --- gateways --------------------------------------------------------------------------------


async def test_gateways_list_shows_status_and_counters(client: httpx.AsyncClient, key: str) -> None:
    await add_gateway(client, "gw1", mode="sent")
    await add_gateway(client, "gw2", mode="sent")
    accepted = await send_ok(client, key, to=[DE, DE_2])
    for item in accepted["messages"]:
        await wait_for_status(client, key, item["id"], {"sent"})
    resp = await client.get("/api/v1/gateways", headers=bearer(key))
    assert resp.status_code == 200, resp.text
    data = {g["name"]: g for g in resp.json()["data"]}
    assert set(data) == {"gw1", "gw2"}
    for gateway in data.values():
        assert gateway["kind"] == "fake"
        assert gateway["status"] == "online"
        assert gateway["last_seen"] is not None
        assert {"signal", "battery", "counters"} <= set(gateway)
    assert sum(g["counters"]["sent"] for g in data.values()) == 2
    assert sum(g["counters"]["failed"] for g in data.values()) == 0


async def test_gateways_list_shows_offline(client: httpx.AsyncClient, key: str) -> None:
    await add_gateway(client, "down", mode="offline")
    resp = await client.get("/api/v1/gateways", headers=bearer(key))
    [gateway] = resp.json()["data"]
    assert gateway["name"] == "down"
    assert gateway["status"] == "offline"


# --- seed 000: /api/sendsms ------------------------------------------------------------------

SENDSMS = "/api/sendsms"


async def test_sendsms_success_with_api_key_in_body(client: httpx.AsyncClient, key: str) -> None:
    gateway = await add_gateway(client, "gw1", mode="deliver")
    resp = await client.post(SENDSMS, json={"api_key": key, "phone": DE, "message": "Hi"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "success"
    assert body["message"] == "SMS sent successfully"
    assert body["id"].startswith("msg_")
    assert [d.message_id for d in gateway.sent] == [body["id"]]
    stored = await get_message(client, key, body["id"])
    assert stored["status"] in {"sent", "delivered"}
    assert stored["body"] == "Hi"


async def test_sendsms_with_authorization_header(client: httpx.AsyncClient, key: str) -> None:
    await add_gateway(client, "gw1", mode="sent")
    resp = await client.post(SENDSMS, json={"phone": DE, "message": "Hi"}, headers=bearer(key))
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "success"
    resp = await client.post(
        SENDSMS, json={"phone": DE, "message": "Hi"}, headers={"X-API-Key": key}
    )
    assert resp.json()["status"] == "success"


@pytest.mark.parametrize(
    ("payload", "headers"),
    [
        ({"api_key": "sg_aaaaaaaaaa_" + "b" * 43, "phone": DE, "message": "x"}, {}),
        ({"api_key": "wrong", "phone": DE, "message": "x"}, {}),
        ({"phone": DE, "message": "x"}, {}),
        ({"phone": DE, "message": "x"}, {"Authorization": "Bearer wrong"}),
    ],
)
async def test_sendsms_bad_key_is_401(
    client: httpx.AsyncClient, key: str, payload: dict[str, Any], headers: dict[str, str]
) -> None:
    resp = await client.post(SENDSMS, json=payload, headers=headers)
    assert resp.status_code == 401, resp.text
    assert resp.json()["status"] == "error"
    assert resp.json()["message"]
    assert await listed_ids(client, key) == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"message": "x"}, "phone"),
        ({"phone": "", "message": "x"}, "phone"),
        ({"phone": DE}, "message"),
        ({"phone": 4915112345678, "message": "x"}, "phone"),
    ],
)
async def test_sendsms_missing_fields_are_422(
    client: httpx.AsyncClient, key: str, payload: dict[str, Any], field: str
) -> None:
    resp = await client.post(SENDSMS, json={"api_key": key, **payload})
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["status"] == "error"
    assert body["field"] == field
    assert await listed_ids(client, key) == []


async def test_sendsms_invalid_phone_names_phone(client: httpx.AsyncClient, key: str) -> None:
    resp = await client.post(SENDSMS, json={"api_key": key, "phone": "12345", "message": "x"})
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["status"] == "error"
    assert body["field"] == "phone"
    assert "phone" in body["message"]
    assert await listed_ids(client, key) == []


async def test_sendsms_invalid_json_is_an_error(client: httpx.AsyncClient, key: str) -> None:
    resp = await client.post(
        SENDSMS, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.json()["status"] == "error"


async def test_sendsms_gateway_error_answers_error_with_hint(
    client: httpx.AsyncClient, key: str
) -> None:
    await add_gateway(client, "gw1", mode="reject")
    resp = await client.post(SENDSMS, json={"api_key": key, "phone": DE, "message": "x"})
    assert not resp.is_success, resp.text
    body = resp.json()
    assert body["status"] == "error"
    assert body["message"]
    assert body["hint"]
    assert (await get_message(client, key, body["id"]))["status"] == "failed"


async def test_sendsms_without_gateway_answers_queued(
    sqlite_settings: Settings, sqlite_engine: AsyncEngine, key: str
) -> None:
    settings = sqlite_settings.model_copy(update={"sendsms_wait": 0.5})
    async for client in app_client(settings, sqlite_engine):
        resp = await client.post(SENDSMS, json={"api_key": key, "phone": DE, "message": "x"})
        assert resp.status_code == 202, resp.text
        body = resp.json()
        assert body["status"] == "queued"
        assert (await get_message(client, key, body["id"]))["status"] == "queued"


async def test_sendsms_rate_limit_is_429_with_retry_after(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine, key: str
) -> None:
    await add_gateway(client, "gw1", mode="sent")
    await set_limits(sqlite_engine, rate_per_minute=1)
    await clear_of_minute_boundary()
    payload = {"api_key": key, "phone": DE, "message": "x"}
    assert (await client.post(SENDSMS, json=payload)).status_code == 200
    resp = await client.post(SENDSMS, json=payload)
    assert resp.status_code == 429, resp.text
    assert resp.json()["status"] == "error"
    assert int(resp.headers["Retry-After"]) >= 1


async def test_deeply_nested_json_on_sendsms_is_400(client: httpx.AsyncClient, key: str) -> None:
    body = "[" * 100_000 + "]" * 100_000
    resp = await client.post(
        "/api/sendsms", content=body, headers={**bearer(key), "content-type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.json()["status"] == "error"


async def test_pinned_message_backs_off_instead_of_burning_attempts(
    fast: httpx.AsyncClient, key: str
) -> None:
    gateway = await add_gateway(fast, "only", mode="gateway_fail")
    accepted = await send_ok(fast, key, gateway="only")
    await asyncio.sleep(0.5)
    message = await get_message(fast, key, accepted["id"])
    # with no other gateway allowed, a refusal waits out the backoff like a transient error
    assert message["status"] == "queued"
    assert message["attempts"] < 5
    assert gateway.attempts == message["attempts"]


async def test_recipients_of_one_request_go_out_in_order(
    client: httpx.AsyncClient, key: str
) -> None:
    numbers = de_numbers(20)
    accepted = (await send(client, key, {"to": numbers, "body": "in order"})).json()
    ids = [m["id"] for m in accepted["messages"]]
    assert ids == sorted(ids)
    gateway = await add_gateway(client, "gw1", max_in_flight=1)
    for message_id in ids:
        await wait_for_status(client, key, message_id, {"sent", "delivered"})
    assert [d.to for d in gateway.sent] == numbers


async def test_reading_an_inbound_message_needs_the_inbox_scope(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    from simgate.domain.keys import Scope
    from simgate.store.models import Message
    from simgate.store.types import utcnow

    now = utcnow()
    async with make_sessionmaker(sqlite_engine).begin() as session:
        session.add(
            Message(
                id="msg_01M80AAAAAAAAAAAAAAAAAAAAA",
                direction="inbound",
                app_id=None,
                to_number="+4915100000000",
                from_number=DE,
                body="code 1234",
                encoding="gsm7",
                segments=1,
                status="received",
                priority=0,
                next_attempt_at=now,
                attempts=0,
                created_at=now,
                updated_at=now,
            )
        )
    send_only = await make_key(sqlite_engine, app="sender", scopes=frozenset({Scope.SEND}))
    inbox = await make_key(sqlite_engine, app="reader", scopes=frozenset({Scope.INBOX}))
    path = f"{MESSAGES}/msg_01M80AAAAAAAAAAAAAAAAAAAAA"
    assert_error(await client.get(path, headers=bearer(send_only)), 403, "forbidden")
    found = await client.get(path, headers=bearer(inbox))
    assert found.status_code == 200
    assert found.json()["from"] == DE


async def test_old_idempotency_keys_and_usage_windows_are_pruned(
    client: httpx.AsyncClient, key: str, sqlite_engine: AsyncEngine
) -> None:
    from sqlalchemy import func, select, update

    from simgate.services import outbound
    from simgate.store.models import AppUsage, IdempotencyKey

    await set_limits(sqlite_engine, rate_per_minute=100)
    for i in range(2):
        resp = await send(client, key, {"to": DE, "body": "x"}, idempotency_key=f"k{i}")
        assert resp.status_code == 202
    sm = make_sessionmaker(sqlite_engine)
    async with sm.begin() as session:
        old = datetime.now(UTC) - timedelta(days=3)
        await session.execute(
            update(IdempotencyKey).where(IdempotencyKey.key == "k0").values(created_at=old)
        )
        await session.execute(update(AppUsage).values(window_start=old))
    async with sm.begin() as session:
        assert await outbound.prune(session, idempotency_hours=24) == 2
    async with sm() as session:
        keys = list(await session.scalars(select(IdempotencyKey.key)))
        usage = await session.scalar(select(func.count()).select_from(AppUsage))
    assert keys == ["k1"]
    assert usage == 0
    # the pruned key is free again: a new request with it makes a new message
    again = await send(client, key, {"to": DE, "body": "y"}, idempotency_key="k0")
    assert again.status_code == 202
    assert "idempotent-replayed" not in again.headers
