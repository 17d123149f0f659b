"""One-time passcodes through the API: the lifecycle, brute force, expiry with a moved clock,
resends and their cooldown, start limits, bad input, the race of many checks of the right
code on every backend, and the promise that no code shows anywhere but in the SMS."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings
from simgate.domain.keys import Scope
from simgate.drivers.fake import FakeGateway
from simgate.store.engine import make_sessionmaker
from simgate.store.models import ApiRequest, Event, Message, MessageEvent, OtpVerification
from tests.conftest import app_client
from tests.integration.helpers import assert_error, bearer, make_key
from tests.integration.test_messages_api import add_gateway, runtime, set_limits, wait_for_status

OTP = "/api/v1/otp"
VERIFY = "/api/v1/otp/verify"
DE = "+4915112345678"
DE_2 = "+4917612345678"
US = "+12015550123"
CODE_RE = re.compile(r"(?<!\d)(\d{4,10})(?!\d)")


# --- helpers --------------------------------------------------------------------------------


class Clock:
    """The OTP service's clock, moved by hand (the verification's times follow it)."""

    def __init__(self) -> None:
        # Mid-hour, so hourly start limits never roll over during a test.
        self.now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def use_clock(client: httpx.AsyncClient) -> Clock:
    clock = Clock()
    runtime(client).otp.clock = clock
    return clock


async def start(client: httpx.AsyncClient, key: str, **body: Any) -> httpx.Response:
    body.setdefault("phone", DE)
    return await client.post(OTP, json=body, headers=bearer(key))


async def start_ok(client: httpx.AsyncClient, key: str, **body: Any) -> dict[str, Any]:
    resp = await start(client, key, **body)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def check(client: httpx.AsyncClient, key: str, **body: Any) -> dict[str, Any]:
    resp = await client.post(VERIFY, json=body, headers=bearer(key))
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def sms_to(gateway: FakeGateway, number: str, n: int = 1, timeout: float = 10.0) -> str:
    """The text of the ``n``-th SMS the gateway was asked to send to ``number``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        bodies = [d.body for d in gateway.sent if d.to == number]
        if len(bodies) >= n:
            return bodies[n - 1]
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{number} got {len(bodies)} SMS, expected {n}")
        await asyncio.sleep(0.02)


def code_in(body: str) -> str:
    found = CODE_RE.search(body)
    assert found, body
    return found.group(1)


def wrong(code: str) -> str:
    return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))


async def rows(engine: AsyncEngine) -> int:
    async with make_sessionmaker(engine)() as session:
        return int(await session.scalar(select(func.count()).select_from(OtpVerification)) or 0)


@pytest.fixture
async def key(sqlite_engine: AsyncEngine) -> str:
    return await make_key(sqlite_engine)


@pytest.fixture
async def gateway(client: httpx.AsyncClient) -> FakeGateway:
    return await add_gateway(client, "gw", mode="deliver", report_delay=0.05)


# --- the lifecycle ---------------------------------------------------------------------------


async def test_start_send_check_approve_once(
    client: httpx.AsyncClient, key: str, gateway: FakeGateway
) -> None:
    resp = await start(client, key, phone="+49 151 1234 5678")
    assert resp.status_code == 201, resp.text
    started = resp.json()
    assert started["id"].startswith("otp_")
    assert started["phone"] == DE
    assert started["status"] == "pending"
    assert started["attempts_left"] == 5
    assert started["sends"] == 1
    expires = datetime.fromisoformat(started["expires_at"])
    assert timedelta(seconds=590) < expires - datetime.now(UTC) <= timedelta(seconds=600)

    body = await sms_to(gateway, DE)
    code = code_in(body)
    assert len(code) == 6
    assert body == f"Your shop code is {code}. It expires in 10 min. Do not share it."
    assert code not in resp.text

    missed = await check(client, key, id=started["id"], code=wrong(code))
    assert missed == {
        "id": started["id"],
        "status": "pending",
        "valid": False,
        "message": "wrong code; 4 attempts left",
        "attempts_left": 4,
    }
    ok = await check(client, key, phone=DE, code=code)
    assert ok["status"] == "approved"
    assert ok["valid"] is True
    assert ok["id"] == started["id"]
    # A code works once: the same code again is not "approved" a second time.
    again = await check(client, key, id=started["id"], code=code)
    assert again["valid"] is False
    assert again["status"] == "not_found"
    assert "already approved" in again["message"]
    by_phone = await check(client, key, phone=DE, code=code)
    assert by_phone["valid"] is False
    assert by_phone["status"] == "not_found"

    shown = (await client.get(f"{OTP}/{started['id']}", headers=bearer(key))).json()
    assert shown["status"] == "approved"
    assert shown["attempts"] == 1
    assert shown["ended_at"] is not None
    assert shown["next_send_at"] is None
    message_id = shown["message"]["id"]
    assert shown["messages"] == [shown["message"]]
    sent = await wait_for_status(client, key, message_id, {"delivered"})
    assert sent["priority"] == "high"
    assert sent["metadata"] == {"verification": started["id"]}
    assert code not in sent["body"]
    assert sent["body"].startswith("Your shop code is ••••••.")
    message_expiry = datetime.fromisoformat(sent["expires_at"])
    assert abs((message_expiry - expires).total_seconds()) < 2, "the SMS expires with the code"
    shown = (await client.get(f"{OTP}/{started['id']}", headers=bearer(key))).json()
    assert shown["message"]["status"] == "delivered"


async def test_the_sixth_attempt_fails_even_with_the_right_code(
    client: httpx.AsyncClient, key: str, gateway: FakeGateway
) -> None:
    started = await start_ok(client, key)
    code = code_in(await sms_to(gateway, DE))
    answers = [await check(client, key, id=started["id"], code=wrong(code)) for _ in range(5)]
    assert [a["attempts_left"] for a in answers] == [4, 3, 2, 1, 0]
    assert [a["status"] for a in answers] == ["pending"] * 4 + ["max_attempts"]
    sixth = await check(client, key, id=started["id"], code=code)
    assert sixth["status"] == "max_attempts"
    assert sixth["valid"] is False
    by_phone = await check(client, key, phone=DE, code=code)
    assert by_phone["valid"] is False
    shown = (await client.get(f"{OTP}/{started['id']}", headers=bearer(key))).json()
    assert shown["status"] == "max_attempts"
    assert shown["attempts"] == 5


async def test_max_attempts_is_a_setting(
    sqlite_settings: Settings, sqlite_engine: AsyncEngine
) -> None:
    key = await make_key(sqlite_engine)
    async for client in app_client(
        sqlite_settings.model_copy(update={"otp_max_attempts": 2}), sqlite_engine
    ):
        gateway = await add_gateway(client, "gw")
        started = await start_ok(client, key)
        code = code_in(await sms_to(gateway, DE))
        assert (await check(client, key, id=started["id"], code=wrong(code)))["attempts_left"] == 1
        last = await check(client, key, id=started["id"], code=wrong(code))
        assert last["status"] == "max_attempts"
        assert not (await check(client, key, id=started["id"], code=code))["valid"]


async def test_expiry_follows_the_clock(
    client: httpx.AsyncClient, key: str, gateway: FakeGateway
) -> None:
    clock = use_clock(client)
    started = await start_ok(client, key, ttl=120)
    code = code_in(await sms_to(gateway, DE))
    assert "2 min" in (await sms_to(gateway, DE))
    clock.advance(119)
    shown = (await client.get(f"{OTP}/{started['id']}", headers=bearer(key))).json()
    assert shown["status"] == "pending"
    clock.advance(1)
    late = await check(client, key, id=started["id"], code=code)
    assert late == {
        "id": started["id"],
        "status": "expired",
        "valid": False,
        "message": "the code expired; start a new verification",
        "attempts_left": None,
    }
    shown = (await client.get(f"{OTP}/{started['id']}", headers=bearer(key))).json()
    assert shown["status"] == "expired"
    # The phone's newest pending verification is gone: a start now is a new verification.
    fresh = await start_ok(client, key)
    assert fresh["id"] != started["id"]
    assert fresh["sends"] == 1


async def test_the_sweep_writes_expiry_down(
    client: httpx.AsyncClient, key: str, gateway: FakeGateway
) -> None:
    clock = use_clock(client)
    started = await start_ok(client, key, ttl=60)
    clock.advance(61)
    assert await runtime(client).otp.sweep() == 1
    assert await runtime(client).otp.sweep() == 0
    async with runtime(client).sessionmaker() as session:
        row = await session.get(OtpVerification, started["id"])
    assert row is not None
    assert row.status == "expired"
    assert row.ended_at is not None


# --- resending -------------------------------------------------------------------------------


async def test_resend_waits_for_the_cooldown_and_keeps_the_verification(
    client: httpx.AsyncClient, key: str, gateway: FakeGateway
) -> None:
    clock = use_clock(client)
    first = await start_ok(client, key)
    code_1 = code_in(await sms_to(gateway, DE))
    clock.advance(10)
    early = await start(client, key)
    err = assert_error(early, 429, "rate_limited", "phone")
    assert early.headers["Retry-After"] == "20"
    assert "may be sent again in 20 s" in err["message"]
    clock.advance(20)
    second = await start_ok(client, key)
    assert second["id"] == first["id"]
    assert second["resent"] is True
    assert second["sends"] == 2
    assert len(second["messages"]) == 2
    code_2 = code_in(await sms_to(gateway, DE, 2))
    assert "10 min" in (await sms_to(gateway, DE, 2)), "the minutes left, rounded up"
    # Both codes belong to the verification; either approves it, once.
    assert (await check(client, key, phone=DE, code=code_1))["valid"] is True
    assert (await check(client, key, phone=DE, code=code_2))["valid"] is False
    assert first["expires_at"] == second["expires_at"], "a resend does not extend the code"


async def test_resend_endpoint_and_the_send_limit(
    client: httpx.AsyncClient, key: str, gateway: FakeGateway
) -> None:
    clock = use_clock(client)
    started = await start_ok(client, key)
    for n in range(2, 6):
        clock.advance(30)
        resp = await client.post(f"{OTP}/{started['id']}/resend", headers=bearer(key))
        assert resp.status_code == 201, resp.text
        assert resp.json()["sends"] == n
    clock.advance(30)
    resp = await client.post(f"{OTP}/{started['id']}/resend", headers=bearer(key))
    err = assert_error(resp, 429, "rate_limited", "phone")
    assert "already sent 5 codes" in err["message"]
    assert int(resp.headers["Retry-After"]) == 600 - 150
    shown = (await client.get(f"{OTP}/{started['id']}", headers=bearer(key))).json()
    assert shown["sends"] == 5
    assert shown["next_send_at"] is None
    await sms_to(gateway, DE, 5)


async def test_a_resend_cancels_the_earlier_sms_still_queued(
    client: httpx.AsyncClient, key: str
) -> None:
    clock = use_clock(client)  # no gateway: every SMS stays queued
    started = await start_ok(client, key)
    clock.advance(30)
    again = await start_ok(client, key)
    first, second = again["messages"]
    assert first["status"] == "canceled"
    assert second["status"] == "queued"
    assert started["message"]["id"] == first["id"]


# --- cancel and approval stop queued SMS -------------------------------------------------------


async def test_cancel_stops_the_code_and_its_sms(client: httpx.AsyncClient, key: str) -> None:
    started = await start_ok(client, key)
    async with runtime(client).sessionmaker() as session:
        queued = await session.get(Message, started["message"]["id"])
    assert queued is not None
    assert queued.status == "queued"
    code = code_in(queued.body)  # still in the queue: only the queue holds it in clear
    resp = await client.post(f"{OTP}/{started['id']}/cancel", headers=bearer(key))
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "canceled"
    assert resp.json()["message"]["status"] == "canceled"
    late = await check(client, key, id=started["id"], code=code)
    assert late["status"] == "canceled"
    assert late["valid"] is False
    again = await client.post(f"{OTP}/{started['id']}/cancel", headers=bearer(key))
    assert_error(again, 409, "conflict", "id")
    resend = await client.post(f"{OTP}/{started['id']}/resend", headers=bearer(key))
    assert_error(resend, 409, "conflict", "id")
    async with runtime(client).sessionmaker() as session:
        scrubbed = await session.get(Message, started["message"]["id"])
    assert scrubbed is not None
    assert code not in scrubbed.body


async def test_approval_cancels_an_sms_still_queued(client: httpx.AsyncClient, key: str) -> None:
    started = await start_ok(client, key)
    async with runtime(client).sessionmaker() as session:
        queued = await session.get(Message, started["message"]["id"])
    assert queued is not None
    assert (await check(client, key, phone=DE, code=code_in(queued.body)))["valid"]
    shown = (await client.get(f"{OTP}/{started['id']}", headers=bearer(key))).json()
    assert shown["message"]["status"] == "canceled"


# --- texts ---------------------------------------------------------------------------------------


async def test_templates_locales_and_length(
    client: httpx.AsyncClient, key: str, gateway: FakeGateway
) -> None:
    await start_ok(client, key, phone=DE, locale="de-AT", length=8)
    body = await sms_to(gateway, DE)
    code = code_in(body)
    assert len(code) == 8
    assert body == f"Ihr shop-Code lautet {code}. Er ist 10 Min. gültig. Nicht weitergeben."
    await start_ok(
        client,
        key,
        phone=DE_2,
        template="{{Login}} {code} für {app} ({minutes} Minuten)",
        app_name="Mein Laden",
        ttl=90,
        length=4,
    )
    body = await sms_to(gateway, DE_2)
    assert re.fullmatch(r"\{Login\} \d{4} für Mein Laden \(2 Minuten\)", body), body


async def test_country_allow_list_of_the_app_applies(
    client: httpx.AsyncClient, key: str, sqlite_engine: AsyncEngine
) -> None:
    await set_limits(sqlite_engine, allowed_countries="DE")
    resp = await start(client, key, phone=US)
    err = assert_error(resp, 403, "forbidden", "phone")
    assert err["message"].startswith("phone: ")
    assert await rows(sqlite_engine) == 0
    assert (await start(client, key, phone=DE)).status_code == 201


# --- limits ------------------------------------------------------------------------------------


async def limited_client(
    settings: Settings, engine: AsyncEngine, **limits: int
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in app_client(settings.model_copy(update=limits), engine):
        use_clock(client)
        yield client


async def test_per_phone_limit(sqlite_settings: Settings, sqlite_engine: AsyncEngine) -> None:
    key = await make_key(sqlite_engine)
    async for client in limited_client(
        sqlite_settings, sqlite_engine, otp_per_phone_per_hour=2, otp_resend_cooldown=0
    ):
        await start_ok(client, key)
        await start_ok(client, key)  # a resend counts too: it is another SMS to the number
        resp = await start(client, key)
        err = assert_error(resp, 429, "rate_limited", "phone")
        assert "2 codes were sent to this number in the last hour" in err["message"]
        assert int(resp.headers["Retry-After"]) == 1800
        assert (await start(client, key, phone=DE_2)).status_code == 201
        async with runtime(client).sessionmaker() as session:
            sms = await session.scalar(select(func.count()).select_from(Message))
        assert sms == 3, "a refused start sends nothing"
        runtime(client).otp.clock.advance(1800)  # type: ignore[attr-defined]
        # A new hour: the verification expired meanwhile (10 min), so this starts anew.
        assert (await start(client, key)).status_code == 201


async def test_per_app_and_per_address_limits(
    sqlite_settings: Settings, sqlite_engine: AsyncEngine
) -> None:
    key = await make_key(sqlite_engine)
    other = await make_key(sqlite_engine, app="other")
    async for client in limited_client(
        sqlite_settings, sqlite_engine, otp_per_app_per_hour=3, otp_per_ip_per_hour=2
    ):
        numbers = [f"+49151123456{i:02d}" for i in range(5)]
        await start_ok(client, key, phone=numbers[0], client_ip="203.0.113.7")
        await start_ok(client, key, phone=numbers[1], client_ip="203.0.113.7")
        resp = await start(client, key, phone=numbers[2], client_ip="203.0.113.7")
        assert_error(resp, 429, "rate_limited", "client_ip")
        await start_ok(client, key, phone=numbers[2], client_ip="2001:db8::1")
        resp = await start(client, key, phone=numbers[3])
        err = assert_error(resp, 429, "rate_limited")
        assert "3 verifications were started by this app" in err["message"]
        assert "Retry-After" in resp.headers
        # Another app has its own budget.
        assert (await start(client, other, phone=numbers[4])).status_code == 201
        assert await rows(sqlite_engine) == 4


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "phone"),
        ({"phone": ""}, "phone"),
        ({"phone": "12"}, "phone"),
        ({"phone": "+49 abc"}, "phone"),
        ({"phone": 4915112345678}, "phone"),
        ({"phone": DE, "length": 3}, "length"),
        ({"phone": DE, "length": 11}, "length"),
        ({"phone": DE, "length": "six"}, "length"),
        ({"phone": DE, "ttl": 0}, "ttl"),
        ({"phone": DE, "ttl": 1801}, "ttl"),
        ({"phone": DE, "template": "no code here"}, "template"),
        ({"phone": DE, "template": "{code} {user}"}, "template"),
        ({"phone": DE, "template": "{code} {"}, "template"),
        ({"phone": DE, "template": "{code:>8}"}, "template"),
        ({"phone": DE, "template": "{code} " + "x" * 480}, "template"),
        ({"phone": DE, "locale": "xx"}, "locale"),
        ({"phone": DE, "locale": "not a locale"}, "locale"),
        ({"phone": DE, "app_name": "{code}"}, "app_name"),
        ({"phone": DE, "app_name": " "}, "app_name"),
        ({"phone": DE, "client_ip": "999.1.1.1"}, "client_ip"),
        ({"phone": DE, "gateway": "nope"}, "gateway"),
        ({"phone": DE, "colour": "red"}, "colour"),
    ],
)
async def test_bad_starts_are_422_and_store_nothing(
    client: httpx.AsyncClient, key: str, sqlite_engine: AsyncEngine, body: dict, field: str
) -> None:
    resp = await client.post(OTP, json=body, headers=bearer(key))
    err = assert_error(resp, 422, "invalid", field)
    assert err["message"].startswith(f"{field}: ")
    assert await rows(sqlite_engine) == 0


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"id": "otp_" + "0" * 26}, "code", "is required"),
        ({"phone": DE, "code": ""}, "code", "is required"),
        ({"phone": DE, "code": "12a456"}, "code", "digits (0-9)"),
        ({"phone": DE, "code": "12 456"}, "code", "digits (0-9)"),
        ({"phone": DE, "code": "123"}, "code", "4-10 digits long"),
        ({"phone": DE, "code": "12345678901"}, "code", "4-10 digits long"),
        ({"phone": DE, "code": "١٢٣٤٥٦"}, "code", "digits (0-9)"),
        ({"phone": DE, "code": ["123456"]}, "code", ""),
        ({"phone": DE, "code": -123456}, "code", ""),
        ({"code": "123456"}, "id", "give the verification's id or the phone"),
        ({"phone": "nope", "code": "123456"}, "phone", ""),
        ({"phone": DE, "code": "123456", "otp": "1"}, "otp", "not a known field"),
    ],
)
async def test_bad_checks_are_422(
    client: httpx.AsyncClient, key: str, body: dict, field: str, words: str
) -> None:
    resp = await client.post(VERIFY, json=body, headers=bearer(key))
    err = assert_error(resp, 422, "invalid", field)
    assert words in err["message"]
    for value in body.values():  # the message never repeats what was sent as a code
        if isinstance(value, str) and len(value) >= 4 and field == "code":
            assert value not in err["message"]


async def test_checks_of_what_does_not_exist(client: httpx.AsyncClient, key: str) -> None:
    for body in (
        {"id": "otp_" + "0" * 26, "code": "123456"},
        {"id": "msg_" + "0" * 26, "code": "123456"},
        {"id": "x" * 64, "code": "123456"},
        {"phone": DE, "code": "123456"},
    ):
        answer = await check(client, key, **body)
        assert answer["status"] == "not_found", body
        assert answer["valid"] is False, body
    for path in (f"{OTP}/otp_{'0' * 26}", f"{OTP}/nope"):
        assert_error(await client.get(path, headers=bearer(key)), 404, "not_found", "id")
    for action in ("cancel", "resend"):
        resp = await client.post(f"{OTP}/otp_{'0' * 26}/{action}", headers=bearer(key))
        assert_error(resp, 404, "not_found", "id")
        broken = await client.post(
            VERIFY, content=b"{", headers={**bearer(key), "Content-Type": "application/json"}
        )
    assert_error(broken, 400, "invalid_json")


async def test_an_app_sees_only_its_own_verifications(
    client: httpx.AsyncClient, key: str, sqlite_engine: AsyncEngine, gateway: FakeGateway
) -> None:
    other = await make_key(sqlite_engine, app="other")
    started = await start_ok(client, key)
    code = code_in(await sms_to(gateway, DE))
    assert_error(
        await client.get(f"{OTP}/{started['id']}", headers=bearer(other)), 404, "not_found"
    )
    theirs = await check(client, other, id=started["id"], code=code)
    assert theirs["status"] == "not_found"
    assert not theirs["valid"]
    assert (await check(client, other, phone=DE, code=code))["status"] == "not_found"
    assert (await check(client, key, phone=DE, code=code))["valid"]


async def test_scope_and_authentication(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    no_otp = await make_key(sqlite_engine, scopes=frozenset({Scope.SEND}))
    assert_error(await start(client, no_otp), 403, "forbidden")
    resp = await client.post(VERIFY, json={"phone": DE, "code": "123456"}, headers=bearer(no_otp))
    assert_error(resp, 403, "forbidden")
    assert_error(await client.post(OTP, json={"phone": DE}), 401, "unauthorized")
    assert await rows(sqlite_engine) == 0


async def test_codes_sent_as_json_numbers(
    client: httpx.AsyncClient, key: str, gateway: FakeGateway
) -> None:
    await start_ok(client, key, template="{code}")
    code = code_in(await sms_to(gateway, DE))
    if code.startswith("0"):
        pytest.skip("a code with a leading zero cannot be written as a JSON number")
    assert (await check(client, key, phone=DE, code=int(code)))["valid"]


# --- never shown -------------------------------------------------------------------------------


async def test_no_code_in_answers_logs_metrics_or_the_database(
    client: httpx.AsyncClient,
    key: str,
    gateway: FakeGateway,
    sqlite_engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    # Ten digits: no timestamp or id could contain the code by chance.
    started = await start_ok(client, key, length=10)
    answers.append(str(started))
    code = code_in(await sms_to(gateway, DE))
    assert len(code) == 10
    answers.append(str(await check(client, key, id=started["id"], code=wrong(code))))
    answers.append(str(await check(client, key, id=started["id"], code=code)))
    message_id = started["message"]["id"]
    await wait_for_status(client, key, message_id, {"delivered"})
    for path in (
        f"{OTP}/{started['id']}",
        f"/api/v1/messages/{message_id}",
        "/api/v1/messages",
        "/api/v1/requests",
    ):
        resp = await client.get(path, headers=bearer(key))
        assert resp.status_code == 200, (path, resp.text)
        answers.append(resp.text)
    resp = await client.post(
        "/send_otp", json={"phone": DE_2}, headers=bearer(key)
    )  # the compatibility answer, too
    answers.append(resp.text)
    await runtime(client).otp.refresh_stats()
    answers.append((await client.get("/metrics")).text)
    await runtime(client).request_log.flush()
    for answer in answers:
        assert code not in answer
    for record in caplog.records:
        assert code not in record.getMessage()
        assert code not in str(record.__dict__)
    async with make_sessionmaker(sqlite_engine)() as session:
        for model in (OtpVerification, Message, MessageEvent, Event, ApiRequest):
            for row in (await session.scalars(select(model))).all():
                values = {c.key: getattr(row, c.key) for c in model.__mapper__.column_attrs}
                assert code not in str(values), (model.__name__, values)


# --- metrics -------------------------------------------------------------------------------------


def sample(metrics: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in metrics.splitlines():
        if line.startswith(f"{name}{{") and line.split("}")[0][len(name) + 1 :] == wanted:
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_metrics_count_outcomes_and_the_conversion_ratio(
    client: httpx.AsyncClient, key: str, gateway: FakeGateway
) -> None:
    await start_ok(client, key, phone=DE)
    code = code_in(await sms_to(gateway, DE))
    failed = await start_ok(client, key, phone=DE_2)
    code_2 = code_in(await sms_to(gateway, DE_2))
    assert (await check(client, key, phone=DE, code=code))["valid"]
    for _ in range(5):
        await check(client, key, id=failed["id"], code=wrong(code_2))
    await runtime(client).otp.refresh_stats()
    metrics = (await client.get("/metrics")).text
    total = "simgate_otp_verifications_total"
    assert sample(metrics, total, app="shop", outcome="started") == 2
    assert sample(metrics, total, app="shop", outcome="approved") == 1
    assert sample(metrics, total, app="shop", outcome="max_attempts") == 1
    assert sample(metrics, "simgate_otp_checks_total", app="shop", result="wrong") == 5
    assert sample(metrics, "simgate_otp_checks_total", app="shop", result="approved") == 1
    assert sample(metrics, "simgate_otp_conversion_ratio", app="shop") == 0.5
    assert sample(metrics, "simgate_otp_verifications_24h", app="shop", status="approved") == 1


# --- the race, on every backend ----------------------------------------------------------------


async def started_with_code(client: httpx.AsyncClient) -> tuple[str, str, str]:
    """(key, verification id, code) of a verification started through ``client``."""
    key = await make_key(runtime(client).engine)
    gateway = await add_gateway(client, "gw")
    started = await start_ok(client, key)
    return key, started["id"], code_in(await sms_to(gateway, DE))


async def test_many_checks_of_the_right_code_approve_once(db_client: httpx.AsyncClient) -> None:
    key, vid, code = await started_with_code(db_client)
    rt = runtime(db_client)
    # A second app on the same database: its checks run in transactions of their own,
    # racing the first app's (on SQLite they share the one connection and take turns).
    async for other in app_client(rt.settings.model_copy(update={"node_name": "b"}), rt.engine):
        answers = await asyncio.gather(
            *(check(c, key, id=vid, code=code) for _ in range(10) for c in (db_client, other))
        )
    assert sum(a["valid"] for a in answers) == 1
    assert sorted({a["status"] for a in answers}) == ["approved", "not_found"]


async def test_concurrent_wrong_codes_are_all_counted(db_client: httpx.AsyncClient) -> None:
    key, vid, code = await started_with_code(db_client)
    rt = runtime(db_client)
    async for other in app_client(rt.settings.model_copy(update={"node_name": "b"}), rt.engine):
        answers = await asyncio.gather(
            *(check(c, key, id=vid, code=wrong(code)) for _ in range(6) for c in (db_client, other))
        )
    statuses = sorted(a["status"] for a in answers)
    assert statuses.count("pending") == 4
    assert statuses.count("max_attempts") == 8
    assert sorted(a["attempts_left"] for a in answers if a["status"] == "pending") == [1, 2, 3, 4]
    assert not (await check(db_client, key, id=vid, code=code))["valid"]
    shown = (await db_client.get(f"{OTP}/{vid}", headers=bearer(key))).json()
    assert shown["attempts"] == 5
    assert shown["status"] == "max_attempts"


# --- the secret ----------------------------------------------------------------------------------


async def test_the_secret_is_kept_in_the_data_directory(
    client: httpx.AsyncClient, key: str, sqlite_settings: Settings
) -> None:
    await start_ok(client, key)
    path = Path(sqlite_settings.data_dir) / "otp.key"
    assert path.stat().st_mode & 0o077 == 0, "readable by its owner only"
    assert len(bytes.fromhex(path.read_text().strip())) == 32


async def test_a_short_secret_is_refused() -> None:
    from simgate.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="SIMGATE_OTP_SECRET: must be at least 32"):
        load_settings(otp_secret="short")
    with pytest.raises(ConfigError, match="SIMGATE_OTP_OPEN_NETWORKS"):
        load_settings(otp_open_networks="192.168.0.0/24, lan")


async def test_raw_rows_hold_no_code(
    client: httpx.AsyncClient, key: str, gateway: FakeGateway
) -> None:
    started = await start_ok(client, key)
    code = code_in(await sms_to(gateway, DE))
    async with runtime(client).sessionmaker() as session:
        raw = (
            await session.execute(
                text("SELECT * FROM otp_verifications WHERE id = :id"), {"id": started["id"]}
            )
        ).one()
    assert code not in str(tuple(raw))


async def test_a_verification_pinned_to_a_gateway_goes_through_it(
    client: httpx.AsyncClient, key: str
) -> None:
    first = await add_gateway(client, "first")
    second = await add_gateway(client, "second")
    clock = use_clock(client)
    started = await start_ok(client, key, gateway="second")
    assert started["gateway"] == "second"
    await sms_to(second, DE)
    clock.advance(30)
    await start_ok(client, key)  # the resend keeps the gateway it was started with
    await sms_to(second, DE, 2)
    assert not [d for d in first.sent if d.to == DE]


async def test_the_api_is_documented(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    for path in (
        "/api/v1/otp",
        "/api/v1/otp/verify",
        "/api/v1/otp/{verification_id}",
        "/send_otp",
        "/verify_otp",
    ):
        assert path in schema["paths"], path
    assert schema["paths"]["/api/v1/otp"]["post"]["security"]
