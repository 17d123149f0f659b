"""Phones over real WebSockets (``/cable``), against a real uvicorn: the Action Cable
handshake, sending through a phone end to end, receiving, dual SIM, timeouts, failover,
reconnects, and what happens to bad keys and bad frames."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from simgate.config import Settings
from simgate.services import gateways as gateway_service
from simgate.services import phones
from simgate.store.engine import make_sessionmaker
from simgate.store.models import Event
from simgate.store.types import utcnow
from tests.integration.helpers import bearer, make_key
from tests.integration.live import IDENTIFIER, Live, Phone, live_server, phone_socket

TO = "+4915112345678"


async def new_phone(engine: AsyncEngine, name: str = "phone1", **kw: Any) -> str:
    async with make_sessionmaker(engine).begin() as session:
        made = await phones.create(
            session, label=name, device_id=None, name=name, actor="test", **kw
        )
    return made.key


@pytest.fixture
async def live(sqlite_settings: Settings, sqlite_engine: AsyncEngine) -> AsyncIterator[Live]:
    settings = sqlite_settings.model_copy(update={"gateway_ack_timeout": 2.0})
    async with live_server(settings, sqlite_engine) as server:
        yield server


@pytest.fixture
async def db_live(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Live]:
    async with live_server(settings, engine) as server:
        yield server


async def until(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def message(live: Live, key: str, message_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=live.url, headers=bearer(key)) as http:
        return (await http.get(f"/api/v1/messages/{message_id}")).json()  # type: ignore[no-any-return]


async def post(live: Live, key: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=live.url, headers=bearer(key)) as http:
        resp = await http.post("/api/v1/messages", json=body)
    assert resp.status_code == 202, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def ready(live: Live, name: str = "phone1") -> None:
    await until(
        lambda: (gw := live.runtime.dispatcher.gateways.get(name)) is not None and gw.online,
        f"{name} running and online",
    )


async def send_sms(phone: Phone) -> dict[str, Any]:
    frame = await phone.frame()
    assert frame.get("identifier") == IDENTIFIER, frame
    assert frame["message"]["action"] == "send_sms", frame
    return frame["message"]["payload"]  # type: ignore[no-any-return]


# --- the handshake -----------------------------------------------------------------------------


async def test_subprotocol_is_chosen_when_offered_and_not_needed(
    live: Live, sqlite_engine: AsyncEngine
) -> None:
    key = await new_phone(sqlite_engine)
    official = ["actioncable-v1-json", "actioncable-unsupported"]
    async with phone_socket(live, key, subprotocols=official) as phone:
        assert phone.ws.subprotocol == "actioncable-v1-json"
    async with phone_socket(live, key) as phone:  # OkHttp, as in the seed: offers none
        assert phone.ws.subprotocol is None
    # Pings come every 3 s, as Action Cable clients expect.
    async with phone_socket(live, key) as phone:
        raw = json.loads(await asyncio.wait_for(phone.ws.recv(), 5))
        assert raw["type"] == "ping"
        assert isinstance(raw["message"], int)


@pytest.mark.parametrize("which", ["wrong", "app key", "missing", "deactivated"])
async def test_bad_keys_get_a_disconnect_and_are_never_subscribed(
    live: Live, sqlite_engine: AsyncEngine, which: str
) -> None:
    key = await new_phone(sqlite_engine)
    if which == "deactivated":
        async with make_sessionmaker(sqlite_engine).begin() as session:
            await gateway_service.set_active(session, name="phone1", active=False, actor="alice")
        live.runtime.authenticator.invalidate()
    presented = {
        "wrong": "gw_live_" + "1" * 64,
        "app key": await make_key(sqlite_engine),
        "missing": "",
        "deactivated": key,
    }[which]
    async with connect(f"{live.ws_url}/cable?api_key={presented}", ping_interval=None) as ws:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert frame["type"] == "disconnect"
        assert (frame["reason"], frame["reconnect"]) == ("unauthorized", False)
        if which == "deactivated":
            assert frame["error"] == "Gateway inactive"
        assert await closed(ws, json.dumps({"command": "subscribe", "identifier": IDENTIFIER}))


async def closed(ws: Any, frame: str) -> bool:
    """Whether the server closed the socket (a frame sent now gets no answer but the end)."""
    try:
        await ws.send(frame)
        await asyncio.wait_for(ws.recv(), 5)
    except ConnectionClosed:
        return True
    return False


async def test_the_key_may_come_as_a_bearer_header(live: Live, sqlite_engine: AsyncEngine) -> None:
    key = await new_phone(sqlite_engine)
    async with connect(
        f"{live.ws_url}/cable", additional_headers=bearer(key), ping_interval=None
    ) as ws:
        assert json.loads(await ws.recv()) == {"type": "welcome"}


# --- sending -----------------------------------------------------------------------------------


async def test_send_through_a_phone_end_to_end(db_live: Live, engine: AsyncEngine) -> None:
    key = await new_phone(engine)
    app_key = await make_key(engine)
    async with phone_socket(db_live, key) as phone:
        await ready(db_live)
        sent = await post(
            db_live, app_key, {"to": TO, "body": "Your OTP is 123456", "gateway": "phone1"}
        )
        payload = await send_sms(phone)
        assert payload == {
            "message_id": sent["id"],
            "phone_number": TO,
            "message_body": "Your OTP is 123456",
            "priority": "normal",
        }
        ack = await phone.perform("delivery_status", message_id=sent["id"], status="sent")
        assert ack["message"] == {
            "action": "ack",
            "for": "delivery_status",
            "success": True,
            "message_id": sent["id"],
            "status": "sent",
        }
        await until(lambda: _status(db_live, app_key, sent["id"], "sent"), "the message sent")
        # data as an object, fields flat beside the action (what perform(action, data) sends)
        await phone.send(
            command="message",
            identifier=IDENTIFIER,
            data={"action": "delivery_status", "message_id": sent["id"], "status": "delivered"},
        )
        assert (await phone.frame())["message"]["success"] is True
        await until(lambda: _status(db_live, app_key, sent["id"], "delivered"), "delivered")
        # A duplicate, late "sent" changes nothing: delivered never goes back.
        await phone.perform("delivery_status", message_id=sent["id"], status="sent")
        await asyncio.sleep(0.3)
        found = await message(db_live, app_key, sent["id"])
        assert found["status"] == "delivered"
        assert found["gateway"] == "phone1"


async def _status(live: Live, key: str, message_id: str, status: str) -> bool:
    return (await message(live, key, message_id))["status"] == status


async def test_high_priority_and_a_failed_report(live: Live, sqlite_engine: AsyncEngine) -> None:
    key = await new_phone(sqlite_engine)
    app_key = await make_key(sqlite_engine)
    async with phone_socket(live, key) as phone:
        await ready(live)
        sent = await post(
            live, app_key, {"to": TO, "body": "x", "gateway": "phone1", "priority": "high"}
        )
        payload = await send_sms(phone)
        assert payload["priority"] == "high"
        await phone.perform("delivery_status", message_id=sent["id"], status="sent")
        await phone.perform(
            "delivery_status", message_id=sent["id"], status="failed", error_message="No service"
        )
        await until(lambda: _status(live, app_key, sent["id"], "failed"), "failed")
        found = await message(live, app_key, sent["id"])
        assert found["error"]["message"] == "No service"


async def test_status_over_http_for_a_message_sent_over_the_cable(
    live: Live, sqlite_engine: AsyncEngine
) -> None:
    key = await new_phone(sqlite_engine)
    app_key = await make_key(sqlite_engine)
    async with phone_socket(live, key) as phone:
        await ready(live)
        sent = await post(live, app_key, {"to": TO, "body": "x", "gateway": "phone1"})
        await send_sms(phone)
        async with httpx.AsyncClient(base_url=live.url, headers=bearer(key)) as http:
            for status in ("sent", "delivered"):
                resp = await http.post(
                    "/api/v1/gateway/sms/status", json={"message_id": sent["id"], "status": status}
                )
                assert resp.json() == {"success": True, "message": "Status updated"}
        await until(lambda: _status(live, app_key, sent["id"], "delivered"), "delivered")


async def test_an_unacknowledged_send_goes_to_another_gateway(
    live: Live, sqlite_engine: AsyncEngine
) -> None:
    key = await new_phone(sqlite_engine)
    app_key = await make_key(sqlite_engine)
    async with phone_socket(live, key) as phone:
        await ready(live)
        sent = await post(live, app_key, {"to": TO, "body": "x"})
        await send_sms(phone)  # ...and never answer it
        async with make_sessionmaker(sqlite_engine).begin() as session:
            await gateway_service.create(
                session, name="spare", kind="fake", config={}, max_in_flight=4, actor="test"
            )
        live.runtime.gateways.wake()
        await until(
            lambda: _status(live, app_key, sent["id"], "delivered"), "delivered via spare", 30
        )
        found = await message(live, app_key, sent["id"])
    assert found["gateway"] == "spare"
    steps = [(e["status"], (e.get("detail") or {}).get("gateway")) for e in found["events"]]
    assert steps[:3] == [("queued", None), ("sending", "phone1"), ("queued", "phone1")]
    assert ("sending", "spare") in steps
    queued = found["events"][2]["detail"]
    assert queued["error"] == "gateway_timeout"


async def test_a_phone_that_connects_gets_what_waited_for_it(
    live: Live, sqlite_engine: AsyncEngine
) -> None:
    key = await new_phone(sqlite_engine)
    app_key = await make_key(sqlite_engine)
    sent = await post(live, app_key, {"to": TO, "body": "waited", "gateway": "phone1"})
    waiting = await message(live, app_key, sent["id"])
    assert waiting["status"] == "queued"
    assert waiting["status_detail"].startswith(
        "waiting for gateway 'phone1', which does not run: not connected"
    ), waiting["status_detail"]
    async with phone_socket(live, key) as phone:
        payload = await send_sms(phone)
        assert payload["message_id"] == sent["id"]


async def test_a_dropped_connection_sends_the_message_again_with_its_id(
    live: Live, sqlite_engine: AsyncEngine
) -> None:
    key = await new_phone(sqlite_engine)
    app_key = await make_key(sqlite_engine)
    async with phone_socket(live, key) as phone:
        await ready(live)
        sent = await post(live, app_key, {"to": TO, "body": "x", "gateway": "phone1"})
        await send_sms(phone)
    # Gone before it answered: the message goes back to the queue, and comes again.
    async with phone_socket(live, key) as phone:
        payload = await send_sms(phone)
        assert payload["message_id"] == sent["id"]
        await phone.perform("delivery_status", message_id=sent["id"], status="delivered")
        await until(lambda: _status(live, app_key, sent["id"], "delivered"), "delivered")


async def test_deactivating_or_rotating_closes_an_open_socket(
    live: Live, sqlite_engine: AsyncEngine
) -> None:
    key = await new_phone(sqlite_engine)
    sm = make_sessionmaker(sqlite_engine)
    async with phone_socket(live, key) as phone:
        async with sm.begin() as session:
            await gateway_service.set_active(session, name="phone1", active=False, actor="alice")
        live.runtime.authenticator.invalidate()
        frame = await phone.frame()
        assert frame == {
            "type": "disconnect",
            "reason": "unauthorized",
            "reconnect": False,
            "error": "Gateway inactive",
        }
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(phone.ws.recv(), 5)
    async with sm.begin() as session:
        await gateway_service.set_active(session, name="phone1", active=True, actor="alice")
    live.runtime.authenticator.invalidate()
    async with phone_socket(live, key) as phone:
        async with sm.begin() as session:
            await phones.rotate_key(session, name="phone1", actor="alice")
        live.runtime.authenticator.invalidate()
        frame = await phone.frame()
        assert frame["error"] == "Invalid API key"


# --- dual SIM ----------------------------------------------------------------------------------


async def test_a_send_asks_for_a_sim_and_each_sim_has_its_own_rate(
    live: Live, sqlite_engine: AsyncEngine
) -> None:
    key = await new_phone(sqlite_engine, config={"sim_rates": "1:1,2:1"})
    app_key = await make_key(sqlite_engine)
    async with phone_socket(live, key) as phone:
        await phone.perform(
            "heartbeat",
            sims=[{"slot": 1, "number": "+491701111111"}, {"slot": 2, "number": "+491702222222"}],
        )
        await ready(live)
        first = await post(live, app_key, {"to": TO, "body": "one", "gateway": "phone1", "sim": 2})
        assert first["sim"] == 2
        payload = await send_sms(phone)
        assert (payload["message_id"], payload["sim_slot"]) == (first["id"], 2)
        # SIM 2 has used its one a minute; a message without a SIM goes out on SIM 1...
        second = await post(live, app_key, {"to": TO, "body": "two", "gateway": "phone1"})
        payload = await send_sms(phone)
        assert (payload["message_id"], payload["sim_slot"]) == (second["id"], 1)
        # ...and the next waits for a SIM to have room.
        third = await post(
            live, app_key, {"to": TO, "body": "three", "gateway": "phone1", "sim": 2}
        )
        with pytest.raises(TimeoutError):
            await phone.frame(timeout=1.5)
        assert (await message(live, app_key, third["id"]))["status"] == "queued"
        # Received on SIM 2: stored with the slot and SIM 2's number.
        ack = await phone.perform(
            "sms_received", phone_number="+4917612345678", message_body="hi", sim_slot=2
        )
        inbound = await message(live, app_key, ack["message"]["message_id"])
    assert (inbound["sim_slot"], inbound["to"]) == (2, "+491702222222")


async def test_sim_must_be_1_or_2(live: Live, sqlite_engine: AsyncEngine) -> None:
    app_key = await make_key(sqlite_engine)
    async with httpx.AsyncClient(base_url=live.url, headers=bearer(app_key)) as http:
        resp = await http.post("/api/v1/messages", json={"to": TO, "body": "x", "sim": 3})
    assert resp.status_code == 422
    assert resp.json()["error"]["field"] == "sim"


# --- receiving and heartbeats over the cable -------------------------------------------------


async def test_inbound_and_heartbeat_over_the_cable(live: Live, sqlite_engine: AsyncEngine) -> None:
    key = await new_phone(sqlite_engine)
    app_key = await make_key(sqlite_engine)
    async with phone_socket(live, key) as phone:
        beat = await phone.perform(
            "heartbeat", status="online", battery_level=85, signal_strength=3
        )
        assert beat["message"] == {
            "action": "ack",
            "for": "heartbeat",
            "success": True,
            "gateway_status": "online",
        }
        sms = {
            "phone_number": "+959123456789",
            "message_body": "Hello",
            "received_at": "2025-10-20T13:45:30Z",
        }
        first = await phone.perform("sms_received", **sms)
        again = await phone.perform("sms_received", **sms)  # the phone retrying
        assert first["message"]["message_id"] == again["message"]["message_id"]
        bad = await phone.perform("sms_received", message_body="no sender")
        assert bad["message"] == {
            "action": "error",
            "error": "phone_number is required",
            "for": "sms_received",
        }
    found = await message(live, app_key, first["message"]["message_id"])
    assert (found["from"], found["body"]) == ("+959123456789", "Hello")
    async with httpx.AsyncClient(base_url=live.url, headers=bearer(app_key)) as http:
        (gw,) = (await http.get("/api/v1/gateways")).json()["data"]
    assert (gw["battery"], gw["signal"]) == (85, 3)


# --- bad frames ----------------------------------------------------------------------------------


async def test_bad_frames_are_answered_and_the_connection_goes_on(
    live: Live, sqlite_engine: AsyncEngine
) -> None:
    key = await new_phone(sqlite_engine)
    async with phone_socket(live, key) as phone:
        await phone.ws.send("this is not json")
        assert (await phone.frame())["type"] == "error"
        await phone.ws.send("x" * 100_000)
        assert "at most" in (await phone.frame())["message"]
        await phone.send(command="subscribe", identifier='{"channel":"AdminChannel"}')
        assert (await phone.frame())["type"] == "reject_subscription"
        unknown = await phone.perform("launch_rockets")
        assert "unknown action 'launch_rockets'" in unknown["message"]["error"]
        status = await phone.perform("delivery_status", message_id="msg_x", status="sent")
        assert "not found for this gateway" in status["message"]["error"]
        beat = await phone.perform("heartbeat", status="online")
        assert beat["message"]["success"] is True


async def test_a_flooding_phone_is_disconnected(live: Live, sqlite_engine: AsyncEngine) -> None:
    key = await new_phone(sqlite_engine)
    async with phone_socket(live, key) as phone:
        frame = json.dumps(
            {"command": "message", "identifier": IDENTIFIER, "data": '{"action":"ping"}'}
        )
        with pytest.raises(ConnectionClosed):  # noqa: PT012 (the flood and the end belong together)
            for _ in range(5000):
                await phone.ws.send(frame)
            while True:
                got = json.loads(await asyncio.wait_for(phone.ws.recv(), 10))
                if got.get("type") == "disconnect":
                    assert got["reason"] == "flooding"
    # Nothing else was harmed: it may connect again.
    async with phone_socket(live, key):
        pass


# --- presence -----------------------------------------------------------------------------------


async def test_offline_detection_with_a_controllable_clock(
    live: Live, sqlite_engine: AsyncEngine
) -> None:
    http_key = await new_phone(sqlite_engine, "http-phone")
    cable_key = await new_phone(sqlite_engine, "cable-phone")
    sm = make_sessionmaker(sqlite_engine)
    async with httpx.AsyncClient(base_url=live.url, headers=bearer(http_key)) as http:
        assert (await http.post("/api/v1/gateway/heartbeat", json={})).status_code == 200
    async with phone_socket(live, cable_key):
        await ready(live, "cable-phone")
        async with sm.begin() as session:
            gone = await phones.sweep_offline(
                session, now=utcnow() + timedelta(seconds=60), offline_after=120
            )
        assert gone == []
        async with sm.begin() as session:
            gone = await phones.sweep_offline(
                session, now=utcnow() + timedelta(seconds=121), offline_after=120
            )
        # The HTTP phone's heartbeat aged out; the connected phone's node keeps renewing it,
        # but a clock 121 s ahead sees that renewal as old too: both are judged by time.
        assert "http-phone" in gone
    async with sm() as session:
        events = [
            (e.type, e.subject) for e in await session.scalars(select(Event).order_by(Event.id))
        ]
    assert ("gateway.online", "http-phone") in events
    assert ("gateway.online", "cable-phone") in events
    assert ("gateway.offline", "http-phone") in events
    # Twice the same sweep: an event is recorded once.
    async with sm.begin() as session:
        assert (
            await phones.sweep_offline(
                session, now=utcnow() + timedelta(seconds=200), offline_after=120
            )
            == []
        )
