"""The dashboard's gateway and message pages over HTTP: who may see them, bad input next
to its field with nothing stored, CSRF, and user text shown as text."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.domain.messages import Received
from simgate.services import inbound
from simgate.services.outbound import Outbound, Sender, SendRequest
from simgate.store.engine import make_sessionmaker
from simgate.store.models import Gateway, Message
from simgate.store.types import utcnow
from tests.integration.dashboard import (
    ORIGIN,
    csrf,
    login,
    post_form,
    seed_people,
)
from tests.integration.server import cli_env, simgate

XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"


@pytest.fixture
async def people(sqlite_engine: AsyncEngine) -> dict[str, int]:
    return await seed_people(sqlite_engine)


async def _send(engine: AsyncEngine, settings: object, app_id: int | None, body: str) -> str:
    out = Outbound(make_sessionmaker(engine), settings)  # type: ignore[arg-type]
    try:
        accepted = await out.submit(
            sender=Sender(app_id, "t"),
            req=SendRequest(to=["+4915112345678"], body=body, many=False),
        )
    finally:
        await out.close()
    return accepted.message_ids[0]


async def _count(engine: AsyncEngine, model: type) -> int:
    async with make_sessionmaker(engine)() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_gateway_pages_are_for_admins(
    client: httpx.AsyncClient, people: dict[str, int]
) -> None:
    await login(client, "ulla")
    for path in (
        "/admin/gateways",
        "/admin/gateways/pi",
        "/admin/gateways/pi/test",
        "/admin/gateways/new/modem",
    ):
        assert (await client.get(path)).status_code == 403, path
    client.cookies.clear()
    await login(client, "root")
    page = await client.get("/admin/gateways")
    assert page.status_code == 200
    assert "/admin/gateways/pi" in page.text
    assert (await client.get("/admin/gateways/live")).status_code == 200
    assert (await client.get("/admin/gateways/pi")).status_code == 200
    missing = await client.get("/admin/gateways/nope")
    assert missing.status_code == 404
    assert "There is no gateway" in missing.text


@pytest.mark.parametrize(
    ("form", "field", "words"),
    [
        ({"name": "", "port": "/dev/ttyUSB0"}, "name", "Give the modem a name"),
        ({"name": "m1", "port": ""}, "port", "Pick a serial port"),
        ({"name": "m1", "port": "COM3"}, "port", "is a path"),
        ({"name": "m1", "port": "/dev/ttyUSB0", "baud": "fast"}, "baud", "whole number"),
        ({"name": "m1", "port": "/dev/ttyUSB0", "baud": "9"}, "baud", "from 1200"),
        ({"name": "m1", "port": "/dev/ttyUSB0", "pin": "12"}, "pin", "4 to 8 digits"),
        (
            {"name": "m1", "port": "/dev/ttyUSB0", "rate_per_minute": "-1"},
            "rate_per_minute",
            "from 0",
        ),
        ({"name": "bad name!", "port": "/dev/ttyUSB0"}, None, "name"),
        ({"name": "pi", "port": "/dev/ttyUSB0"}, None, "pi"),  # taken
    ],
)
async def test_add_modem_refuses_bad_fields_and_stores_nothing(
    client: httpx.AsyncClient,
    people: dict[str, int],
    sqlite_engine: AsyncEngine,
    form: dict[str, str],
    field: str | None,
    words: str,
) -> None:
    await login(client, "root")
    before = await _count(sqlite_engine, Gateway)
    resp = await post_form(client, "/admin/gateways/new/modem", {"baud": "115200", **form})
    assert resp.status_code == 422
    assert words in resp.text
    if field:
        assert f'id="e-{field}"' in resp.text
    assert "1234" not in resp.text  # a PIN is never shown back
    assert await _count(sqlite_engine, Gateway) == before


async def test_add_modem_then_deactivate_and_activate(
    client: httpx.AsyncClient, people: dict[str, int], sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    resp = await post_form(
        client,
        "/admin/gateways/new/modem",
        {
            "name": "huawei-1",
            "port": "/dev/ttyUSB7",
            "baud": "115200",
            "pin": "1234",
            "rate_per_minute": "5",
        },
    )
    assert resp.status_code == 303
    assert resp.headers["location"] == "/admin/gateways/huawei-1?added=1"
    async with make_sessionmaker(sqlite_engine)() as s:
        row = (await s.scalars(select(Gateway).where(Gateway.name == "huawei-1"))).one()
        assert row.config["pin"] == "1234"
        assert row.rate_per_minute == 5
        assert row.place_kind == "host"  # like `simgate modem add`: any server on this host
    page = await client.get("/admin/gateways/huawei-1")
    assert "1234" not in page.text
    assert (await post_form(client, "/admin/gateways/huawei-1/deactivate")).status_code == 303
    async with make_sessionmaker(sqlite_engine)() as s:
        assert not (
            await s.scalars(select(Gateway.is_active).where(Gateway.name == "huawei-1"))
        ).one()
    # a stale or missing token changes nothing
    stale = await client.post(
        "/admin/gateways/huawei-1/activate", data={"csrf_token": "0" * 64}, headers=ORIGIN
    )
    assert stale.status_code == 403
    none = await client.post("/admin/gateways/huawei-1/activate", headers=ORIGIN)
    assert none.status_code == 403
    async with make_sessionmaker(sqlite_engine)() as s:
        assert not (
            await s.scalars(select(Gateway.is_active).where(Gateway.name == "huawei-1"))
        ).one()
    assert (await post_form(client, "/admin/gateways/huawei-1/activate")).status_code == 303
    assert (await post_form(client, "/admin/gateways/nope/activate")).status_code == 404


async def test_test_send_queues_a_pinned_message_and_reports_it(
    client: httpx.AsyncClient, people: dict[str, int], sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    bad = await post_form(client, "/admin/gateways/pi/test", {"to": "not a number", "body": "x"})
    assert bad.status_code == 422
    empty = await post_form(client, "/admin/gateways/pi/test", {"to": "", "body": ""})
    assert empty.status_code == 422
    assert 'id="e-to"' in empty.text
    assert await _count(sqlite_engine, Message) == 0
    sent = await post_form(client, "/admin/gateways/pi/test", {"to": "+4915112345678", "body": XSS})
    assert sent.status_code == 303
    message_id = sent.headers["location"].split("message=")[1]
    page = await client.get(sent.headers["location"])
    assert 'id="test-status"' in page.text
    status = await client.get(f"/admin/gateways/pi/test/status?message={message_id}")
    assert status.status_code == 200
    assert ">queued<" in status.text
    async with make_sessionmaker(sqlite_engine)() as s:
        m = await s.get(Message, message_id)
        assert m is not None
        assert m.gateway_pinned == "pi"
    detail = await client.get(f"/admin/messages/{message_id}")
    assert XSS not in detail.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail.text


async def test_messages_lists_filters_and_visibility(
    client: httpx.AsyncClient,
    people: dict[str, int],
    sqlite_engine: AsyncEngine,
    sqlite_settings: object,
) -> None:
    mine = await _send(sqlite_engine, sqlite_settings, people["shop"], "for ulla " + XSS)
    theirs = await _send(sqlite_engine, sqlite_settings, people["ops"], "for ops")
    async with make_sessionmaker(sqlite_engine).begin() as s:
        await inbound.store(
            s,
            Received(
                gateway="pi", sender="+4917612345678", body="inbound " + XSS, received_at=utcnow()
            ),
        )
    await login(client, "ulla")
    page = await client.get("/admin/messages")
    assert mine in page.text
    assert theirs not in page.text
    assert XSS not in page.text
    assert "&lt;script&gt;" in page.text
    assert (await client.get(f"/admin/messages/{theirs}")).status_code == 404
    assert (await client.get("/admin/messages/msg_nonsense")).status_code == 404
    inbound_page = await client.get("/admin/messages?direction=inbound")
    assert "shown to admins" in inbound_page.text
    client.cookies.clear()
    await login(client, "root")
    page = await client.get("/admin/messages?direction=inbound")
    assert "inbound &lt;script&gt;" in page.text
    both = await client.get("/admin/messages")
    assert mine in both.text
    assert theirs in both.text
    assert mine in (await client.get("/admin/messages?status=queued&phone=%2B4915112345678")).text
    assert mine not in (await client.get("/admin/messages?status=delivered")).text
    for query, field in (
        ("status=lost", "status"),
        ("phone=12ab", "phone"),
        ("direction=up", "direction"),
    ):
        resp = await client.get(f"/admin/messages?{query}")
        assert resp.status_code == 422, query
        assert f'id="e-{field}"' in resp.text
    assert (await client.get("/admin/messages/live")).status_code == 200


async def test_cancel_a_queued_message_and_not_a_canceled_one(
    client: httpx.AsyncClient,
    people: dict[str, int],
    sqlite_engine: AsyncEngine,
    sqlite_settings: object,
) -> None:
    mine = await _send(sqlite_engine, sqlite_settings, people["shop"], "cancel me")
    theirs = await _send(sqlite_engine, sqlite_settings, people["ops"], "not yours")
    await login(client, "ulla")
    token = await csrf(client)
    assert (
        await post_form(client, f"/admin/messages/{theirs}/cancel", token=token)
    ).status_code == 404
    none = await client.post(f"/admin/messages/{mine}/cancel", headers=ORIGIN)
    assert none.status_code == 403
    resp = await post_form(client, f"/admin/messages/{mine}/cancel", token=token)
    assert resp.status_code == 303
    again = await post_form(client, f"/admin/messages/{mine}/cancel", token=token)
    assert again.status_code == 409
    assert "cannot be canceled" in again.text
    async with make_sessionmaker(sqlite_engine)() as s:
        assert (await s.get(Message, mine)).status == "canceled"  # type: ignore[union-attr]
        assert (await s.get(Message, theirs)).status == "queued"  # type: ignore[union-attr]


async def test_add_an_android_phone_shows_its_key_once_with_a_qr_code(
    client: httpx.AsyncClient, people: dict[str, int], sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    before = await _count(sqlite_engine, Gateway)
    for form, words in (
        ({"label": ""}, "Give the phone a name"),
        ({"label": "x" * 129}, "At most 128"),
        ({"label": "ok", "rate_per_minute": "many"}, "whole number"),
        ({"label": "ok", "name": "bad name!"}, "name"),
        ({"label": "ok", "name": "pi"}, "pi"),  # taken by the modem
    ):
        resp = await post_form(client, "/admin/gateways/new/android", form)
        assert resp.status_code == 422, form
        assert words in resp.text
    assert await _count(sqlite_engine, Gateway) == before
    made = await post_form(client, "/admin/gateways/new/android", {"label": "Shop " + XSS})
    assert made.status_code == 201
    assert "<svg" in made.text
    assert (
        'id="qr-payload">simgate://connect?server=http%3A%2F%2Fsimgate.test&amp;key=gw_live_'
        in made.text
    )
    assert XSS not in made.text
    key = made.text.split('id="secret-value">')[1].split("<")[0]
    async with make_sessionmaker(sqlite_engine)() as s:
        row = (await s.scalars(select(Gateway).where(Gateway.kind == "android"))).one()
        assert row.label == "Shop " + XSS
        assert key not in str(row.key_hash)
    page = await client.get(f"/admin/gateways/{row.name}")
    assert key not in page.text
    assert "Shop &lt;script&gt;" in page.text


def test_the_emulator_takes_the_qr_text_or_says_what_is_wrong(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    bad = simgate("gateway", "emulate", "--qr", "https://example.com", env=env)
    assert bad.returncode == 1
    assert "--qr: expected a URI starting simgate://connect?" in bad.stderr
    both = simgate("gateway", "emulate", "--qr", "x", "--url", "http://a", env=env)
    assert "either --qr or --url" in both.stderr
    neither = simgate("gateway", "emulate", env=env)
    assert neither.returncode == 1
    assert "--url and --key, or --qr" in neither.stderr


async def test_rotate_a_phone_key_remove_a_gateway_and_enrollment_tokens(
    client: httpx.AsyncClient, people: dict[str, int], sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    made = await post_form(client, "/admin/gateways/new/android", {"label": "Till", "name": "till"})
    old = made.text.split('id="secret-value">')[1].split("<")[0]
    rotated = await post_form(client, "/admin/gateways/till/rotate-key")
    assert rotated.status_code == 200
    new = rotated.text.split('id="secret-value">')[1].split("<")[0]
    assert new != old
    assert new.startswith("gw_live_")
    assert "the old one is refused" in rotated.text
    hb = {"status": "online"}
    assert (
        await client.post(
            "/api/v1/gateway/heartbeat", json=hb, headers={"Authorization": f"Bearer {old}"}
        )
    ).status_code == 401
    assert (
        await client.post(
            "/api/v1/gateway/heartbeat", json=hb, headers={"Authorization": f"Bearer {new}"}
        )
    ).status_code == 200
    modem = await post_form(client, "/admin/gateways/pi/rotate-key")
    assert modem.status_code == 409
    assert "not a phone" in modem.text
    assert (await post_form(client, "/admin/gateways/nope/rotate-key")).status_code == 404

    assert (await post_form(client, "/admin/gateways/till/remove")).status_code == 303
    assert (await client.get("/admin/gateways/till")).status_code == 404
    assert (await post_form(client, "/admin/gateways/till/remove")).status_code == 404

    page = await client.get("/admin/gateways/new/enroll")
    assert page.status_code == 200
    for hours, words in (("soon", "number of hours"), ("0", "1 minute"), ("100000", "hours")):
        bad = await post_form(client, "/admin/gateways/new/enroll", {"label": "x", "hours": hours})
        assert bad.status_code == 422, hours
        assert words in bad.text
    token = await post_form(
        client, "/admin/gateways/new/enroll", {"label": "Warehouse <b>", "hours": "2"}
    )
    assert token.status_code == 201
    secret = token.text.split('id="secret-value">')[1].split("<")[0]
    assert "Warehouse &lt;b&gt;" in token.text
    listed = await client.get("/admin/gateways/new/enroll")
    assert secret not in listed.text
    assert secret[:12] in listed.text or "Warehouse" in listed.text
    registered = await client.post(
        "/api/v1/gateway/register",
        json={"name": "Warehouse phone", "device_id": "dev-1"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert registered.status_code == 201, registered.text
