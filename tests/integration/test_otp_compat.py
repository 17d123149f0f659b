"""Seed 002's `/send_otp` and `/verify_otp`: its request and answer shapes, keys in any of
the three places, the LAN set-up without keys (SIMGATE_OTP_OPEN_NETWORKS), and bad input.
(The same against the simulated modem, as real processes, is in test_otp_process.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings
from simgate.domain.keys import Scope
from simgate.store.models import App, OtpVerification
from tests.conftest import app_client
from tests.integration.helpers import bearer, make_key
from tests.integration.test_messages_api import add_gateway, runtime
from tests.integration.test_otp_api import DE, DE_2, code_in, rows, sms_to, use_clock, wrong


def seed_error(resp: httpx.Response, status: int, words: str = "") -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == "error", body
    assert words in body["message"], body
    return body  # type: ignore[no-any-return]


@pytest.fixture
async def key(sqlite_engine: AsyncEngine) -> str:
    return await make_key(sqlite_engine)


async def open_client(
    settings: Settings, engine: AsyncEngine, **extra: Any
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in app_client(settings.model_copy(update=extra), engine):
        use_clock(client)
        yield client


async def test_send_and_verify_in_the_seeds_shapes(client: httpx.AsyncClient, key: str) -> None:
    gateway = await add_gateway(client, "sim800")
    resp = await client.post("/send_otp", json={"api_key": key, "phone": DE})
    assert resp.status_code == 200, resp.text
    sent = resp.json()
    assert sent["status"] == "success"
    assert sent["message"] == "OTP sent successfully"
    assert sent["id"].startswith("otp_")
    assert "expires_at" in sent
    code = code_in(await sms_to(gateway, DE))

    missed = await client.post(
        "/verify_otp", json={"api_key": key, "phone": DE, "otp": wrong(code)}
    )
    body = seed_error(missed, 400, "invalid OTP; 4 attempts left")
    assert body["reason"] == "pending"
    assert body["attempts_left"] == 4
    ok = await client.post("/verify_otp", json={"phone": DE, "otp": code}, headers=bearer(key))
    assert ok.status_code == 200, ok.text
    assert ok.json() == {
        "status": "success",
        "message": "OTP verified successfully",
        "id": sent["id"],
    }
    again = await client.post(
        "/verify_otp", json={"phone": DE, "otp": code}, headers={"X-API-Key": key}
    )
    seed_error(again, 400, "no OTP pending for this phone")


async def test_too_many_wrong_codes_and_expiry(client: httpx.AsyncClient, key: str) -> None:
    gateway = await add_gateway(client, "sim800")
    clock = use_clock(client)
    await client.post("/send_otp", json={"api_key": key, "phone": DE})
    code = code_in(await sms_to(gateway, DE))
    for _ in range(5):
        await client.post("/verify_otp", json={"api_key": key, "phone": DE, "otp": wrong(code)})
    # The verification ended: the phone has none pending any more.
    late = await client.post("/verify_otp", json={"api_key": key, "phone": DE, "otp": code})
    seed_error(late, 400, "no OTP pending")

    await client.post("/send_otp", json={"api_key": key, "phone": DE_2})
    code = code_in(await sms_to(gateway, DE_2))
    clock.advance(601)
    expired = await client.post("/verify_otp", json={"api_key": key, "phone": DE_2, "otp": code})
    assert seed_error(expired, 400, "OTP expired; request a new one")["reason"] == "expired"


async def test_a_second_send_within_the_cooldown_is_429(
    client: httpx.AsyncClient, key: str
) -> None:
    await add_gateway(client, "sim800")
    use_clock(client)
    assert (await client.post("/send_otp", json={"api_key": key, "phone": DE})).status_code == 200
    resp = await client.post("/send_otp", json={"api_key": key, "phone": DE})
    body = seed_error(resp, 429, "may be sent again in 30 s")
    assert body["field"] == "phone"
    assert resp.headers["Retry-After"] == "30"


async def test_no_gateway_answers_accepted_and_a_failure_says_why(
    sqlite_settings: Settings, sqlite_engine: AsyncEngine
) -> None:
    key = await make_key(sqlite_engine)
    async for client in open_client(sqlite_settings, sqlite_engine, sendsms_wait=0.3):
        resp = await client.post("/send_otp", json={"api_key": key, "phone": DE})
        assert resp.status_code == 202, resp.text
        assert resp.json()["status"] == "success"
        assert resp.json()["queued"] is True
        await add_gateway(client, "broken", mode="reject")
        resp = await client.post("/send_otp", json={"api_key": key, "phone": DE_2})
        body = seed_error(resp, 502)
        assert body["hint"]
        assert body["id"].startswith("otp_")


async def test_keys_scopes_and_bad_input(
    client: httpx.AsyncClient, key: str, sqlite_engine: AsyncEngine
) -> None:
    no_otp = await make_key(sqlite_engine, scopes=frozenset({Scope.SEND}))
    for path in ("/send_otp", "/verify_otp"):
        seed_error(
            await client.post(path, json={"phone": DE, "otp": "123456"}), 401, "missing api_key"
        )
        seed_error(
            await client.post(path, json={"api_key": "sg_nope", "phone": DE, "otp": "1234"}),
            401,
            "invalid API key",
        )
        seed_error(
            await client.post(path, json={"api_key": no_otp, "phone": DE, "otp": "1234"}),
            403,
            "'otp' scope",
        )
        seed_error(await client.post(path, content=b"{"), 400, "not valid JSON")
        seed_error(await client.post(path, json=["phone"]), 400, "JSON object")
    cases = [
        ("/send_otp", {}, "phone"),
        ("/send_otp", {"phone": ""}, "phone"),
        ("/send_otp", {"phone": "not a number"}, "phone"),
        ("/send_otp", {"phone": DE, "message": "hi"}, "message"),
        ("/verify_otp", {"phone": DE}, "otp"),
        ("/verify_otp", {"otp": "123456"}, "phone"),
        ("/verify_otp", {"phone": DE, "otp": "12ab56"}, "otp"),
        ("/verify_otp", {"phone": DE, "otp": "12"}, "otp"),
        ("/verify_otp", {"phone": "+49 x", "otp": "123456"}, "phone"),
        ("/verify_otp", {"phone": DE, "otp": "123456", "code": "1"}, "code"),
    ]
    for path, body, field in cases:
        resp = await client.post(path, json={"api_key": key, **body})
        answer = seed_error(resp, 422)
        assert answer["field"] == field, (path, body, answer)
        assert field in answer["message"], answer
    assert await rows(sqlite_engine) == 0


async def test_the_lan_set_up_without_keys(
    sqlite_settings: Settings, sqlite_engine: AsyncEngine
) -> None:
    # The test client connects from 127.0.0.1.
    async for client in open_client(
        sqlite_settings, sqlite_engine, otp_open_networks="127.0.0.0/8"
    ):
        refused = await client.post("/send_otp", json={"phone": DE})
        seed_error(refused, 503, "simgate app create")
    await make_key(sqlite_engine, app="first")
    await make_key(sqlite_engine, app="second")
    async for client in open_client(
        sqlite_settings, sqlite_engine, otp_open_networks="10.0.0.0/8, 127.0.0.0/8"
    ):
        gateway = await add_gateway(client, "sim800")
        resp = await client.post("/send_otp", json={"phone": DE})
        assert resp.status_code == 200, resp.text
        code = code_in(await sms_to(gateway, DE))
        ok = await client.post("/verify_otp", json={"phone": DE, "otp": code})
        assert ok.json()["status"] == "success"
        async with runtime(client).sessionmaker() as session:
            owner = await session.scalar(
                select(App.name).join(OtpVerification, OtpVerification.app_id == App.id)
            )
            ip = await session.scalar(select(OtpVerification.client_ip))
        assert owner == "first", "the oldest app, when SIMGATE_OTP_OPEN_APP is not set"
        assert ip == "127.0.0.1", "open callers are limited per address"
    async for client in open_client(
        sqlite_settings,
        sqlite_engine,
        otp_open_networks="127.0.0.1/32",
        otp_open_app="second",
        otp_per_ip_per_hour=2,  # the block above used one of them
    ):
        await add_gateway(client, "sim800b")
        assert (await client.post("/send_otp", json={"phone": DE_2})).status_code == 200
        limited = await client.post("/send_otp", json={"phone": "+4917612345679"})
        assert seed_error(limited, 429)["field"] == "client_ip"
        async with runtime(client).sessionmaker() as session:
            owners = set(
                await session.scalars(
                    select(App.name).join(OtpVerification, OtpVerification.app_id == App.id)
                )
            )
        assert owners == {"first", "second"}
    async for client in open_client(sqlite_settings, sqlite_engine, otp_open_networks="10.0.0.0/8"):
        seed_error(await client.post("/send_otp", json={"phone": DE}), 401, "missing api_key")
