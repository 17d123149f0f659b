"""Webhooks end to end: endpoints through the API, events fanned out from the outbox, POSTed
to a real local receiver, signed (checked with the independent ``standardwebhooks``
package), retried, ordered, logged, redelivered, switched off when gone.

Retries are made due by moving ``next_attempt_at`` in the database rather than by waiting
out the real schedule; nothing asserts on timings.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from simgate.config import Settings, load_settings
from simgate.domain import webhooks as rules
from simgate.domain.keys import Scope
from simgate.domain.messages import Received
from simgate.services import events, inbound
from simgate.services import webhooks as service
from simgate.store.models import Event, WebhookDelivery, WebhookEndpoint
from simgate.web.runtime import Runtime
from tests.conftest import app_client
from tests.integration.helpers import assert_error, bearer, make_key
from tests.integration.receiver import Receiver, Reply
from tests.integration.test_messages_api import add_gateway

HOOKS = "/api/v1/webhooks"
DE = "+4915112345678"
PUBLIC_IP = "93.184.216.34"


def runtime(client: httpx.AsyncClient) -> Runtime:
    return client.app.state.runtime  # type: ignore[attr-defined,no-any-return]


def lan(settings: Settings, **extra: Any) -> Settings:
    """Settings that let webhooks reach the receiver on 127.0.0.1."""
    return load_settings(
        data_dir=settings.data_dir,
        database_url=settings.database_url,
        log_format="console",
        webhook_allow_private=True,
        webhook_timeout=extra.pop("webhook_timeout", 2.0),
        **extra,
    )


@pytest.fixture
async def client(
    sqlite_settings: Settings, sqlite_engine: AsyncEngine
) -> AsyncIterator[httpx.AsyncClient]:
    async for c in app_client(lan(sqlite_settings), sqlite_engine):
        yield c


@pytest.fixture
async def key(sqlite_engine: AsyncEngine) -> str:
    return await make_key(sqlite_engine)


@pytest.fixture
def engine(sqlite_engine: AsyncEngine) -> AsyncEngine:
    return sqlite_engine


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as r:
        yield r


async def register(
    client: httpx.AsyncClient, key: str, url: str, events: list[str] | None = None
) -> dict[str, Any]:
    resp = await client.post(
        HOOKS, json={"url": url, "events": events or ["*"]}, headers=bearer(key)
    )
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def receive_sms(client: httpx.AsyncClient, body: str, sender: str = DE) -> str:
    rt = runtime(client)
    async with rt.sessionmaker.begin() as session:
        return await inbound.store(
            session,
            Received(gateway="gw1", sender=sender, body=body, received_at=datetime.now(UTC), to=DE),
        )


def verify(secret: str, request: Any) -> dict[str, Any]:
    """Check a received webhook with the standardwebhooks package; its JSON."""
    headers = {k: v for k, v in request.headers.items() if k.startswith("webhook-")}
    out: dict[str, Any] = Webhook(secret).verify(request.body, headers)
    return out


async def deliveries(client: httpx.AsyncClient, key: str, hook: str) -> list[dict[str, Any]]:
    resp = await client.get(f"{HOOKS}/{hook}/deliveries", headers=bearer(key))
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]  # type: ignore[no-any-return]


async def make_due(client: httpx.AsyncClient) -> None:
    """Every pending delivery due now (instead of waiting out its backoff)."""
    rt = runtime(client)
    async with rt.sessionmaker.begin() as session:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status == "pending")
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    rt.webhooks.wake()


async def until(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def delivery_rows(client: httpx.AsyncClient) -> list[WebhookDelivery]:
    async with runtime(client).sessionmaker() as session:
        return list(await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


# --- registering ----------------------------------------------------------------------------


async def test_create_shows_the_secret_once(client: httpx.AsyncClient, key: str) -> None:
    created = await register(client, key, "http://127.0.0.1:9/hook", ["message.received"])
    assert created["id"].startswith("wh_")
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["message.received"]
    assert created["is_active"] is True
    listed = (await client.get(HOOKS, headers=bearer(key))).json()["data"]
    assert [h["id"] for h in listed] == [created["id"]]
    assert "secret" not in listed[0]
    one = (await client.get(f"{HOOKS}/{created['id']}", headers=bearer(key))).json()
    assert "secret" not in one
    assert one["url"] == "http://127.0.0.1:9/hook"


async def test_other_apps_do_not_see_an_endpoint(
    client: httpx.AsyncClient, key: str, engine: AsyncEngine
) -> None:
    created = await register(client, key, "http://127.0.0.1:9/hook")
    other = await make_key(engine, "other")
    assert (await client.get(HOOKS, headers=bearer(other))).json()["data"] == []
    resp = await client.get(f"{HOOKS}/{created['id']}", headers=bearer(other))
    assert_error(resp, 404, "not_found")
    resp = await client.delete(f"{HOOKS}/{created['id']}", headers=bearer(other))
    assert_error(resp, 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x", "events": ["*"]}, "url"),
        ({"url": "not a url", "events": ["*"]}, "url"),
        ({"url": "", "events": ["*"]}, "url"),
        ({"url": "http://user:pw@127.0.0.1/x", "events": ["*"]}, "url"),
        ({"url": "http://127.0.0.1:9/x", "events": []}, "events"),
        ({"url": "http://127.0.0.1:9/x", "events": ["message.exploded"]}, "events"),
        ({"url": "http://127.0.0.1:9/x", "events": "message.sent"}, "events"),
        ({"url": "http://127.0.0.1:9/x"}, "events"),
        ({"events": ["*"]}, "url"),
        ({"url": "http://127.0.0.1:9/x", "events": ["*"], "description": "x" * 300}, None),
    ],
)
async def test_bad_endpoints_are_refused(
    client: httpx.AsyncClient, key: str, body: dict[str, Any], field: str | None
) -> None:
    resp = await client.post(HOOKS, json=body, headers=bearer(key))
    assert resp.status_code == 422, resp.text
    err = resp.json()["error"]
    if field is not None:
        assert field in (err.get("field") or "") or field in err["message"], err
    assert (await client.get(HOOKS, headers=bearer(key))).json()["data"] == []


async def test_message_received_needs_the_inbox_scope(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    sender = await make_key(engine, "sender", frozenset({Scope.SEND}))
    resp = await client.post(
        HOOKS, json={"url": "http://127.0.0.1:9/x", "events": ["*"]}, headers=bearer(sender)
    )
    assert_error(resp, 422, "invalid", "events")
    resp = await client.post(
        HOOKS,
        json={"url": "http://127.0.0.1:9/x", "events": ["message.sent"]},
        headers=bearer(sender),
    )
    assert resp.status_code == 201, resp.text


async def test_at_most_twenty_endpoints(client: httpx.AsyncClient, key: str) -> None:
    for i in range(service.MAX_ENDPOINTS):
        await register(client, key, f"http://127.0.0.1:9/h{i}", ["message.sent"])
    resp = await client.post(
        HOOKS, json={"url": "http://127.0.0.1:9/more", "events": ["*"]}, headers=bearer(key)
    )
    assert_error(resp, 409, "conflict")


async def test_unknown_ids_are_404(client: httpx.AsyncClient, key: str) -> None:
    for ref in ("wh_999999", "nope", "wh_-1", "wh_99999999999999999999999"):
        assert_error(await client.get(f"{HOOKS}/{ref}", headers=bearer(key)), 404, "not_found")
    hook = await register(client, key, "http://127.0.0.1:9/x")
    resp = await client.post(
        f"{HOOKS}/{hook['id']}/deliveries/whd_12345/redeliver", headers=bearer(key)
    )
    assert_error(resp, 404, "not_found")
    resp = await client.get(f"{HOOKS}/{hook['id']}/deliveries?cursor=zzz", headers=bearer(key))
    assert_error(resp, 422, "invalid", "cursor")
    resp = await client.get(f"{HOOKS}/{hook['id']}/deliveries?status=lost", headers=bearer(key))
    assert_error(resp, 422, "invalid", "status")


async def test_needs_a_key(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(HOOKS), 401, "unauthorized")


# --- delivering -----------------------------------------------------------------------------


async def test_received_sms_is_posted_and_signed(
    client: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    hook = await register(client, key, receiver.url(), ["message.received"])
    mid = await receive_sms(client, "your code is 123456")
    [request] = await receiver.wait_for(1)
    assert request.method == "POST"
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"].startswith("evt_")
    body = verify(hook["secret"], request)
    assert body["type"] == "message.received"
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None
    data = body["data"]
    assert data["id"] == mid
    assert data["from"] == DE
    assert data["to"] == DE
    assert data["body"] == "your code is 123456"
    assert data["direction"] == "inbound"
    # a different secret does not verify
    with pytest.raises(WebhookVerificationError):
        verify(rules.new_secret(), request)
    [logged] = await until(lambda: _delivered(client, key, hook["id"]), "the delivery to be logged")
    assert logged["type"] == "message.received"
    assert logged["attempts"] == 1
    assert logged["log"][0]["status_code"] == 204
    assert logged["log"][0]["latency_ms"] >= 0


async def _delivered(client: httpx.AsyncClient, key: str, hook: str) -> list[dict[str, Any]]:
    rows = await deliveries(client, key, hook)
    return rows if rows and all(d["status"] == "delivered" for d in rows) else []


async def test_event_filter_and_outbound_events_in_order(
    client: httpx.AsyncClient, key: str, receiver: Receiver, engine: AsyncEngine
) -> None:
    await add_gateway(client, "gw1", mode="deliver", report_delay=0.2)
    hook = await register(client, key, receiver.url(), ["message.sent", "message.delivered"])
    other_app = await make_key(engine, "other")
    async with Receiver() as theirs:
        await register(client, other_app, theirs.url(), ["message.sent"])
        resp = await client.post(
            "/api/v1/messages",
            json={"to": DE, "body": "hello", "metadata": {"order": "42"}},
            headers=bearer(key),
        )
        assert resp.status_code == 202, resp.text
        mid = resp.json()["id"]
        await receive_sms(client, "not for this filter")
        got = await receiver.wait_for(2)
        await asyncio.sleep(0.3)
        assert theirs.requests == []  # another app's message is not theirs to hear of
    bodies = [verify(hook["secret"], r) for r in got]
    assert [b["type"] for b in bodies] == ["message.sent", "message.delivered"]
    assert all(b["data"]["id"] == mid for b in bodies)
    assert bodies[0]["data"]["metadata"] == {"order": "42"}
    assert bodies[1]["data"]["status"] == "delivered"
    assert len(receiver.requests) == 2


async def test_failed_message_event_carries_the_error(
    client: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    await add_gateway(client, "gw1", mode="reject")
    hook = await register(client, key, receiver.url(), ["message.failed"])
    resp = await client.post(
        "/api/v1/messages", json={"to": DE, "body": "x", "ttl": 60}, headers=bearer(key)
    )
    assert resp.status_code == 202, resp.text
    [request] = await receiver.wait_for(1, timeout=60)
    body = verify(hook["secret"], request)
    assert body["type"] == "message.failed"
    assert body["data"]["error"]["code"]


async def test_gateway_events(client: httpx.AsyncClient, key: str, receiver: Receiver) -> None:
    hook = await register(client, key, receiver.url(), ["gateway.online", "gateway.offline"])
    await add_gateway(client, "gw1", mode="sent")
    [request] = await receiver.wait_for(1)
    body = verify(hook["secret"], request)
    assert body["type"] == "gateway.online"
    assert body["data"]["gateway"] == "gw1"
    assert body["data"]["status"] == "online"


async def test_ordering_holds_while_an_earlier_event_is_retried(
    client: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    hook = await register(client, key, receiver.url(), ["message.sent", "message.delivered"])
    receiver.script(Reply(status=503))
    rt = runtime(client)
    now = datetime.now(UTC)
    async with rt.sessionmaker.begin() as session:
        for status in ("sent", "delivered"):
            events.record(
                session,
                f"message.{status}",
                "msg_x",
                {"id": "msg_x", "status": status},
                app_id=await _app_id(client, hook["id"]),
                order_key="msg_x",
                at=now,
            )
    await receiver.wait_for(1)
    await asyncio.sleep(0.5)
    # the 'sent' delivery waits for its retry; 'delivered' must not overtake it
    assert len(receiver.requests) == 1
    await make_due(client)
    got = await receiver.wait_for(3)
    types = [json.loads(r.body)["type"] for r in got]
    assert types == ["message.sent", "message.sent", "message.delivered"]


async def _app_id(client: httpx.AsyncClient, ref: str) -> int:
    async with runtime(client).sessionmaker() as session:
        ep = await session.get(WebhookEndpoint, int(ref.removeprefix("wh_")))
        assert ep is not None
        return ep.app_id


async def test_retries_back_off_and_honour_retry_after(
    client: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    hook = await register(client, key, receiver.url(), ["message.received"])
    receiver.script(
        Reply(status=500, body=b"boom"),
        Reply(status=429, headers=[("retry-after", "7200")]),
    )
    await receive_sms(client, "retry me")
    await receiver.wait_for(1)

    async def attempted(n: int) -> WebhookDelivery | None:
        rows = await delivery_rows(client)
        return rows[0] if rows and rows[0].attempts >= n and rows[0].lease_owner is None else None

    first = await until(lambda: attempted(1), "the first attempt to be recorded")
    assert first.status == "pending"
    wait = (_utc(first.next_attempt_at) - _utc(first.updated_at)).total_seconds()
    assert rules.SCHEDULE[0] <= wait <= rules.SCHEDULE[0] * (1 + rules.JITTER) + 1
    await make_due(client)
    await receiver.wait_for(2)
    second = await until(lambda: attempted(2), "the second attempt to be recorded")
    wait = (_utc(second.next_attempt_at) - _utc(second.updated_at)).total_seconds()
    assert 7190 <= wait <= 7210, "Retry-After lengthens the wait"
    await make_due(client)
    await receiver.wait_for(3)
    [logged] = await until(lambda: _delivered(client, key, hook["id"]), "delivery")
    assert [a["status_code"] for a in logged["log"]] == [500, 429, 204]
    assert logged["log"][0]["response"] == "boom"
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(ids) == 1, "every attempt carries the same webhook-id"


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def test_gives_up_after_the_last_attempt(
    client: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    receiver.default = Reply(status=500)
    hook = await register(client, key, receiver.url(), ["message.received"])
    await receive_sms(client, "never")
    for n in range(1, rules.MAX_ATTEMPTS + 1):
        await receiver.wait_for(n)
        await until(lambda n=n: _attempts_recorded(client, n), f"attempt {n} to be recorded")
        await make_due(client)
    [row] = await until(lambda: _with_status(client, key, hook["id"], "failed"), "failure")
    assert row["attempts"] == rules.MAX_ATTEMPTS
    assert row["last_status_code"] == 500


async def _attempts_recorded(client: httpx.AsyncClient, n: int) -> bool:
    rows = await delivery_rows(client)
    return bool(rows) and rows[0].attempts >= n and rows[0].lease_owner is None


async def _with_status(
    client: httpx.AsyncClient, key: str, hook: str, status: str
) -> list[dict[str, Any]]:
    rows = await deliveries(client, key, hook)
    return [d for d in rows if d["status"] == status]


async def test_410_disables_the_endpoint_and_says_why(
    client: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    receiver.script(Reply(status=410))
    hook = await register(client, key, receiver.url(), ["message.received"])
    await receive_sms(client, "one")
    await receiver.wait_for(1)

    async def disabled() -> dict[str, Any] | None:
        ep = (await client.get(f"{HOOKS}/{hook['id']}", headers=bearer(key))).json()
        return ep if not ep["is_active"] else None

    ep = await until(disabled, "the endpoint to be switched off")
    assert "410" in ep["disabled_reason"]
    assert ep["disabled_at"]
    await receive_sms(client, "two")
    await asyncio.sleep(0.5)
    assert len(receiver.requests) == 1, "a disabled endpoint gets nothing"
    # switching it on again works, and it gets new events
    resp = await client.patch(
        f"{HOOKS}/{hook['id']}", json={"is_active": True}, headers=bearer(key)
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["disabled_reason"] is None
    await receive_sms(client, "three")
    got = await receiver.wait_for(2)
    assert json.loads(got[1].body)["data"]["body"] == "three"


async def test_endpoint_failing_for_days_is_disabled(
    client: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    receiver.default = Reply(status=502)
    hook = await register(client, key, receiver.url(), ["message.received"])
    rt = runtime(client)
    async with rt.sessionmaker.begin() as session:
        await session.execute(
            update(WebhookEndpoint).values(failing_since=datetime.now(UTC) - timedelta(days=6))
        )
    await receive_sms(client, "one")
    await receiver.wait_for(1)

    async def disabled() -> dict[str, Any] | None:
        ep = (await client.get(f"{HOOKS}/{hook['id']}", headers=bearer(key))).json()
        return ep if not ep["is_active"] else None

    ep = await until(disabled, "the endpoint to be switched off")
    assert "failed for 5 days" in ep["disabled_reason"]
    assert "502" in ep["disabled_reason"]


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(hang=True), "no answer within"),
        (Reply(status=302, headers=[("location", "http://example.com/")]), "redirect"),
        (Reply(garbage=True), "not valid HTTP"),
        (Reply(status=200, body=b"x" * 100_000), None),
    ],
    ids=["hangs", "redirects", "garbage", "huge-answer"],
)
async def test_misbehaving_receivers(
    client: httpx.AsyncClient, key: str, receiver: Receiver, reply: Reply, error: str | None
) -> None:
    receiver.script(reply)
    hook = await register(client, key, receiver.url(), ["message.received"])
    await receive_sms(client, "x")
    await receiver.wait_for(1)

    async def recorded() -> list[dict[str, Any]]:
        rows = await deliveries(client, key, hook["id"])
        return rows if rows and rows[0]["attempts"] >= 1 else []

    [row] = await until(recorded, "the attempt to be recorded")
    if error is None:
        assert row["status"] == "delivered"
        assert len(row["log"][0]["response"]) <= service.EXCERPT_CHARS
        return
    assert row["status"] == "pending"
    assert error in row["last_error"], row
    assert row["log"][0]["error"]
    if reply.status == 302:
        assert len(receiver.requests) == 1, "redirects are not followed"


async def test_manual_redelivery(client: httpx.AsyncClient, key: str, receiver: Receiver) -> None:
    hook = await register(client, key, receiver.url(), ["message.received"])
    await receive_sms(client, "again")
    [row] = await until(lambda: _delivered(client, key, hook["id"]), "delivery")
    resp = await client.post(
        f"{HOOKS}/{hook['id']}/deliveries/{row['id']}/redeliver", headers=bearer(key)
    )
    assert resp.status_code == 200, resp.text
    again = resp.json()
    assert again["attempts"] == 2
    assert again["log"][-1]["manual"] is True
    assert len(receiver.requests) == 2
    assert receiver.requests[0].headers["webhook-id"] == receiver.requests[1].headers["webhook-id"]


async def test_rotation_signs_with_both_secrets_during_the_overlap(
    client: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    hook = await register(client, key, receiver.url(), ["message.received"])
    resp = await client.post(
        f"{HOOKS}/{hook['id']}/rotate-secret", json={"overlap_seconds": 3600}, headers=bearer(key)
    )
    assert resp.status_code == 200, resp.text
    rotated = resp.json()
    assert rotated["secret"] != hook["secret"]
    assert rotated["previous_secret_expires_at"]
    await receive_sms(client, "both")
    [request] = await receiver.wait_for(1)
    assert verify(hook["secret"], request)["type"] == "message.received"
    assert verify(rotated["secret"], request)["type"] == "message.received"
    assert len(request.headers["webhook-signature"].split()) == 2
    # with no overlap, only the new secret signs
    resp = await client.post(
        f"{HOOKS}/{hook['id']}/rotate-secret", json={"overlap_seconds": 0}, headers=bearer(key)
    )
    third = resp.json()["secret"]
    await receive_sms(client, "one")
    got = await receiver.wait_for(2)
    verify(third, got[1])
    with pytest.raises(WebhookVerificationError):
        verify(rotated["secret"], got[1])
    resp = await client.post(
        f"{HOOKS}/{hook['id']}/rotate-secret", json={"overlap_seconds": -1}, headers=bearer(key)
    )
    assert_error(resp, 422, "invalid", "overlap_seconds")


async def test_status_callback_per_message(
    client: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    await add_gateway(client, "gw1", mode="deliver", report_delay=0.1)
    resp = await client.post(f"{HOOKS}/callback-secret", headers=bearer(key))
    assert resp.status_code == 200, resp.text
    secret = resp.json()["secret"]
    resp = await client.post(
        "/api/v1/messages",
        json={"to": DE, "body": "hi", "status_callback": receiver.url("/status")},
        headers=bearer(key),
    )
    assert resp.status_code == 202, resp.text
    got = await receiver.wait_for(2)
    bodies = [verify(secret, r) for r in got]
    assert [b["type"] for b in bodies] == ["message.sent", "message.delivered"]
    assert {r.path for r in got} == {"/status"}


async def test_delete_removes_endpoint_and_log(
    client: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    hook = await register(client, key, receiver.url(), ["message.received"])
    await receive_sms(client, "x")
    await until(lambda: _delivered(client, key, hook["id"]), "delivery")
    resp = await client.delete(f"{HOOKS}/{hook['id']}", headers=bearer(key))
    assert resp.status_code == 204
    assert await delivery_rows(client) == []
    assert_error(await client.get(f"{HOOKS}/{hook['id']}", headers=bearer(key)), 404, "not_found")


async def test_events_are_dispatched_once(client: httpx.AsyncClient, key: str) -> None:
    await register(client, key, "http://127.0.0.1:9/x", ["message.received"])
    await receive_sms(client, "x")
    rt = runtime(client)

    async def dispatched() -> bool:
        async with rt.sessionmaker() as session:
            return all(e.dispatched for e in await session.scalars(select(Event)))

    await until(dispatched, "the fan-out")
    async with rt.sessionmaker.begin() as session:
        assert await service.fan_out(session, lock=False) == 0
    assert len(await delivery_rows(client)) == 1


# --- the SSRF guard -------------------------------------------------------------------------


@pytest.fixture
async def strict(
    sqlite_settings: Settings, sqlite_engine: AsyncEngine
) -> AsyncIterator[httpx.AsyncClient]:
    """Default settings: private targets refused."""
    async for c in app_client(sqlite_settings, sqlite_engine):
        yield c


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0x7f000001/hook",
        "http://2130706433/hook",
    ],
)
async def test_private_targets_are_refused_by_default(
    strict: httpx.AsyncClient, key: str, url: str
) -> None:
    resp = await strict.post(HOOKS, json={"url": url, "events": ["*"]}, headers=bearer(key))
    assert_error(resp, 422, "invalid", "url")
    resp = await strict.post(
        "/api/v1/messages",
        json={"to": DE, "body": "x", "status_callback": url},
        headers=bearer(key),
    )
    assert_error(resp, 422, "invalid", "status_callback")


async def test_rebinding_is_caught_at_delivery_time(
    strict: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    rt = runtime(strict)
    answers = {"name": PUBLIC_IP}

    async def resolver(host: str, port: int) -> list[str]:
        return [answers["name"]]

    rt.webhooks.resolver = resolver
    url = f"http://hooks.example:{receiver.port}/hook"
    hook = await register(strict, key, url, ["message.received"])
    answers["name"] = "127.0.0.1"  # the name now points inside
    await receive_sms(strict, "x")

    async def recorded() -> list[dict[str, Any]]:
        rows = await deliveries(strict, key, hook["id"])
        return rows if rows and rows[0]["attempts"] >= 1 else []

    [row] = await until(recorded, "the refused attempt to be logged")
    assert row["status"] == "pending"
    assert "127.0.0.1" in row["last_error"]
    assert "refused" in row["last_error"]
    assert receiver.requests == []


async def test_allow_private_lets_lan_targets_through(
    client: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    await register(client, key, receiver.url(), ["message.received"])
    await receive_sms(client, "lan")
    await receiver.wait_for(1)


async def test_openapi_documents_the_payloads(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert set(rules.EVENT_TYPES) <= set(doc.get("webhooks", {}))
    assert "/api/v1/webhooks" in doc["paths"]
