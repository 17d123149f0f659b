"""Apps and keys pages over HTTP: visibility, creating apps and keys (shown once), revoking,
scopes, limits and their validation, CSRF and escaping."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings
from simgate.domain.messages import Received
from simgate.services import accounts, inbound
from simgate.services import apps as app_service
from simgate.services.outbound import Sender
from simgate.store.engine import make_sessionmaker
from simgate.store.models import Message, OtpVerification, WebhookEndpoint
from tests.conftest import app_client
from tests.integration.dashboard import PASSWORD, csrf, login, post_form
from tests.integration.receiver import Receiver
from tests.integration.test_webhooks import lan

_KEY = re.compile(r'id="secret-value">(sg_[A-Za-z0-9_-]+)<')


@pytest.fixture
async def people(sqlite_engine: AsyncEngine) -> None:
    async with make_sessionmaker(sqlite_engine).begin() as s:
        await accounts.create_user(s, username="root", password=PASSWORD, actor="t")
        await accounts.create_user(s, username="ulla", password=PASSWORD, role="user", actor="t")
        await app_service.create_app(s, name="ops-tools", owner="root", actor="t")
        await app_service.create_app(s, name="ulla-shop", owner="ulla", actor="t")


async def _apps(engine: AsyncEngine) -> dict[str, app_service.AppInfo]:
    async with make_sessionmaker(engine)() as s:
        return {a.name: a for a in await app_service.list_apps(s)}


@pytest.mark.usefixtures("people")
async def test_admin_sees_every_app_and_user_only_theirs(client: httpx.AsyncClient) -> None:
    await login(client, "root")
    page = await client.get("/admin/apps")
    assert page.status_code == 200
    assert "ops-tools" in page.text
    assert "ulla-shop" in page.text
    assert (await client.get("/admin/apps/ulla-shop")).status_code == 200
    client.cookies.clear()
    await login(client, "ulla")
    page = await client.get("/admin/apps")
    assert "ulla-shop" in page.text
    assert "ops-tools" not in page.text
    assert (await client.get("/admin/apps/ulla-shop")).status_code == 200
    assert (await client.get("/admin/apps/ops-tools")).status_code == 404
    assert (await client.get("/admin/apps/nothing")).status_code == 404
    admin_scope = 'value="admin"'
    assert admin_scope not in (await client.get("/admin/apps/ulla-shop")).text


@pytest.mark.usefixtures("people")
async def test_user_creates_an_app_they_own_and_sees_its_key_once(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    await login(client, "ulla")
    resp = await post_form(
        client,
        "/admin/apps",
        {"name": "ulla-news", "description": "<script>x()</script>", "owner": "root"},
    )
    assert resp.status_code == 201, resp.text
    secret = _KEY.search(resp.text)
    assert secret, "the first key is shown"
    assert "<script>x()</script>" not in resp.text
    assert "&lt;script&gt;" in resp.text
    assert (await _apps(sqlite_engine))["ulla-news"].owner == "ulla"
    again = await client.get("/admin/apps/ulla-news")
    assert secret.group(1) not in again.text
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret.group(1)}"})
    assert me.status_code == 200
    assert me.json()["app"]["name"] == "ulla-news"


@pytest.mark.usefixtures("people")
async def test_bad_app_name_is_422_and_nothing_saved(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    resp = await post_form(client, "/admin/apps", {"name": "bad name!", "owner": "root"})
    assert resp.status_code == 422
    assert 'id="e-name"' in resp.text
    assert 'value="bad name!"' in resp.text
    resp = await post_form(client, "/admin/apps", {"name": "ops-tools", "owner": "root"})
    assert resp.status_code == 422
    assert set(await _apps(sqlite_engine)) == {"ops-tools", "ulla-shop"}


@pytest.mark.usefixtures("people")
async def test_key_created_works_and_stops_working_when_revoked(
    client: httpx.AsyncClient,
) -> None:
    await login(client, "ulla")
    resp = await post_form(
        client, "/admin/apps/ulla-shop/keys", {"name": "ci", "scopes": ["send", "otp"]}
    )
    assert resp.status_code == 201, resp.text
    found = _KEY.search(resp.text)
    assert found
    secret = found.group(1)
    auth = {"Authorization": f"Bearer {secret}"}
    me = await client.get("/api/v1/me", headers=auth)
    assert me.status_code == 200
    assert me.json()["key"]["scopes"] == ["otp", "send"]
    prefix = me.json()["key"]["prefix"]
    assert secret not in (await client.get("/admin/apps/ulla-shop")).text
    out = await post_form(client, f"/admin/apps/ulla-shop/keys/{prefix}/revoke")
    assert out.status_code == 303
    assert (await client.get("/api/v1/me", headers=auth)).status_code == 401
    page = await client.get("/admin/apps/ulla-shop")
    assert "revoked" in page.text


@pytest.mark.usefixtures("people")
async def test_users_cannot_give_the_admin_scope_or_none(client: httpx.AsyncClient) -> None:
    await login(client, "ulla")
    resp = await post_form(client, "/admin/apps/ulla-shop/keys", {"scopes": ["admin"]})
    assert resp.status_code == 422
    assert 'id="e-scopes"' in resp.text
    resp = await post_form(client, "/admin/apps/ulla-shop/keys", {"name": "x"})
    assert resp.status_code == 422
    resp = await post_form(client, "/admin/apps/ops-tools/keys", {"scopes": ["send"]})
    assert resp.status_code == 404


@pytest.mark.usefixtures("people")
async def test_limits_are_saved_and_bad_ones_refused(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    await login(client, "ulla")
    for form, name in (
        ({"rate_per_minute": "-3", "rate_per_day": "", "allowed_countries": ""}, "rate_per_minute"),
        ({"rate_per_minute": "", "rate_per_day": "0", "allowed_countries": ""}, "rate_per_day"),
        (
            {"rate_per_minute": "5", "rate_per_day": "", "allowed_countries": "Germany"},
            "allowed_countries",
        ),
    ):
        resp = await post_form(client, "/admin/apps/ulla-shop/limits", form)
        assert resp.status_code == 422, form
        assert f'id="e-{name}"' in resp.text
    app = (await _apps(sqlite_engine))["ulla-shop"]
    assert (app.rate_per_minute, app.rate_per_day, app.allowed_countries) == (None, None, "")
    resp = await post_form(
        client,
        "/admin/apps/ulla-shop/limits",
        {"rate_per_minute": "5", "rate_per_day": "100", "allowed_countries": "de, at"},
    )
    assert resp.status_code == 303
    app = (await _apps(sqlite_engine))["ulla-shop"]
    assert (app.rate_per_minute, app.rate_per_day, app.allowed_countries) == (5, 100, "AT,DE")


@pytest.mark.usefixtures("people")
async def test_missing_or_wrong_csrf_changes_nothing(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    await csrf(client)
    for token in ("", "0" * 64):
        resp = await post_form(client, "/admin/apps", {"name": "sneaky"}, token=token)
        assert resp.status_code == 403
        resp = await post_form(
            client, "/admin/apps/ulla-shop/limits", {"rate_per_minute": "1"}, token=token
        )
        assert resp.status_code == 403
    apps = await _apps(sqlite_engine)
    assert "sneaky" not in apps
    assert apps["ulla-shop"].rate_per_minute is None


@pytest.mark.usefixtures("people")
async def test_otp_page_shows_verifications_never_codes(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    shop = (await _apps(sqlite_engine))["ulla-shop"]
    started = await runtime.otp.start(sender=Sender(shop.id, shop.name), phone="+4915112345678")
    async with make_sessionmaker(sqlite_engine)() as s:
        row = await s.scalar(select(OtpVerification))
        message = await s.scalar(select(Message))
    assert row is not None
    assert message is not None
    code = re.search(r"\d{6}", message.body)
    await login(client, "ulla")
    page = await client.get("/admin/otp")
    assert page.status_code == 200
    assert started["id"] in page.text
    assert "+4915112345678" in page.text
    if code:
        assert code.group(0) not in page.text
    for h in row.code_hashes:
        assert h not in page.text
    live = await client.get("/admin/otp/live?status=approved")
    assert started["id"] not in live.text
    client.cookies.clear()
    await login(client, "root")
    assert started["id"] in (await client.get("/admin/otp?app=ulla-shop")).text
    assert started["id"] not in (await client.get("/admin/otp?app=ops-tools")).text


# --- webhooks --------------------------------------------------------------------------------


@pytest.fixture
async def lan_client(
    sqlite_settings: Settings, sqlite_engine: AsyncEngine
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with webhooks allowed to reach the test receiver on 127.0.0.1."""
    async for c in app_client(lan(sqlite_settings), sqlite_engine):
        yield c


_SECRET = re.compile(r'id="secret-value">(whsec_[A-Za-z0-9+/=]+)<')


async def _hook(client: httpx.AsyncClient, url: str, description: str = "") -> tuple[str, str]:
    resp = await post_form(
        client,
        "/admin/webhooks",
        {
            "app": "ulla-shop",
            "url": url,
            "events": ["message.received"],
            "description": description,
        },
    )
    assert resp.status_code == 201, resp.text
    found = _SECRET.search(resp.text)
    assert found
    ref = re.search(r"Webhook (wh_\d+)", resp.text)
    assert ref
    return ref.group(1), found.group(1)


@pytest.mark.usefixtures("people")
async def test_webhook_created_rotated_and_redelivered(lan_client: httpx.AsyncClient) -> None:
    client = lan_client
    await login(client, "ulla")
    async with Receiver() as receiver:
        ref, secret = await _hook(client, receiver.url(), "<script>alert(1)</script>")
        page = await client.get(f"/admin/webhooks/{ref}")
        assert page.status_code == 200
        assert secret not in page.text
        assert "<script>alert(1)</script>" not in page.text
        assert "&lt;script&gt;" in page.text
        listed = await client.get("/admin/webhooks?app=ulla-shop")
        assert ref in listed.text
        assert "&lt;script&gt;" in listed.text
        rotated = await post_form(client, f"/admin/webhooks/{ref}/rotate")
        assert rotated.status_code == 200
        new = _SECRET.search(rotated.text)
        assert new
        assert new.group(1) != secret
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        async with runtime.sessionmaker.begin() as s:
            await inbound.store(
                s,
                Received(
                    gateway="gw1",
                    sender="+4915112345678",
                    body="hello",
                    received_at=datetime.now(UTC),
                    to="+4915112345678",
                ),
            )
        runtime.webhooks.wake()
        await receiver.wait_for(1)
        for _ in range(100):
            page = await client.get(f"/admin/webhooks/{ref}")
            found = re.search(r"deliveries/(whd_\d+)/redeliver", page.text)
            if found and "delivered" in page.text:
                break
            await asyncio.sleep(0.05)
        assert found
        again = await post_form(
            client, f"/admin/webhooks/{ref}/deliveries/{found.group(1)}/redeliver"
        )
        assert again.status_code == 303, again.text
        await receiver.wait_for(2)
        missing = await post_form(client, f"/admin/webhooks/{ref}/deliveries/whd_999999/redeliver")
        assert missing.status_code == 404
        off = await post_form(client, f"/admin/webhooks/{ref}/disable")
        assert off.status_code == 303
        assert "disabled" in (await client.get(f"/admin/webhooks/{ref}")).text
    client.cookies.clear()
    await login(client, "root")
    assert (await client.get(f"/admin/webhooks/{ref}")).status_code == 200
    assert (await post_form(client, f"/admin/webhooks/{ref}/delete")).status_code == 303
    assert (await client.get(f"/admin/webhooks/{ref}")).status_code == 404


@pytest.mark.usefixtures("people")
async def test_bad_webhook_urls_are_422_and_others_apps_hidden(
    client: httpx.AsyncClient, lan_client: httpx.AsyncClient
) -> None:
    # ``client`` keeps the SSRF rules: a loopback target is refused there.
    await login(client, "ulla")
    for url in ("ftp://example.com/x", "http://127.0.0.1:9/hook", "not a url", ""):
        resp = await post_form(
            client, "/admin/webhooks", {"app": "ulla-shop", "url": url, "events": ["*"]}
        )
        assert resp.status_code == 422, url
        assert 'id="e-url"' in resp.text
    resp = await post_form(
        client,
        "/admin/webhooks",
        {"app": "ops-tools", "url": "https://example.com/x", "events": ["*"]},
    )
    assert resp.status_code == 422
    assert 'id="e-app"' in resp.text
    assert "wh_" not in (await client.get("/admin/webhooks")).text
    await login(lan_client, "root")
    resp = await post_form(
        lan_client,
        "/admin/webhooks",
        {"app": "ops-tools", "url": "http://127.0.0.1:9/hook", "events": ["*"]},
    )
    assert resp.status_code == 201
    ref = re.search(r"Webhook (wh_\d+)", resp.text)
    assert ref
    assert (await client.get(f"/admin/webhooks/{ref.group(1)}")).status_code == 404
    assert (await client.get("/admin/webhooks/nonsense")).status_code == 404


async def _endpoint_row(client: httpx.AsyncClient, ref: str) -> WebhookEndpoint:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    async with runtime.sessionmaker() as s:
        row = await s.get(WebhookEndpoint, int(ref.removeprefix("wh_")))
        assert row is not None
        return row


@pytest.mark.usefixtures("people")
async def test_a_webhook_is_edited_with_the_checks_of_creating(
    lan_client: httpx.AsyncClient,
) -> None:
    client = lan_client
    await login(client, "ulla")
    ref, _ = await _hook(client, "http://127.0.0.1:9/a", "first")
    page = await client.get(f"/admin/webhooks/{ref}")
    assert 'action="/admin/webhooks/' + ref + '/edit"' in page.text
    changed = await post_form(
        client,
        f"/admin/webhooks/{ref}/edit",
        {
            "url": "http://127.0.0.1:9/b",
            "events": ["message.delivered", "message.failed"],
            "description": "<b>second</b>",
        },
    )
    assert changed.status_code == 303, changed.text
    shown = await client.get(changed.headers["location"])
    assert "The endpoint was changed." in shown.text
    assert "&lt;b&gt;second&lt;/b&gt;" in shown.text
    row = await _endpoint_row(client, ref)
    assert (row.url, sorted(row.events), row.description) == (
        "http://127.0.0.1:9/b",
        ["message.delivered", "message.failed"],
        "<b>second</b>",
    )
    for form, field in (
        ({"url": "ftp://example.com/x", "events": ["*"]}, "url"),
        ({"url": "", "events": ["*"]}, "url"),
        ({"url": "http://127.0.0.1:9/c", "events": []}, "events"),
        ({"url": "http://127.0.0.1:9/c", "events": ["message.nope"]}, "events"),
    ):
        refused = await post_form(client, f"/admin/webhooks/{ref}/edit", form)
        assert refused.status_code == 422, form
        assert f'id="e-{field}"' in refused.text, (form, refused.text)
        assert "<details open>" in refused.text
        assert (await _endpoint_row(client, ref)).url == "http://127.0.0.1:9/b"  # unchanged
    stale = await post_form(
        client, f"/admin/webhooks/{ref}/edit", {"url": "http://127.0.0.1:9/z"}, token="0" * 64
    )
    assert stale.status_code == 403
    assert (await _endpoint_row(client, ref)).url == "http://127.0.0.1:9/b"
    missing = await post_form(client, "/admin/webhooks/wh_999999/edit", {"url": "x"})
    assert missing.status_code == 404


@pytest.mark.usefixtures("people")
async def test_a_webhook_secret_rotates_with_the_overlap_asked_for(
    lan_client: httpx.AsyncClient,
) -> None:
    client = lan_client
    await login(client, "ulla")
    ref, secret = await _hook(client, "http://127.0.0.1:9/a")
    for value in ("abc", "-1", "169", "1.5"):
        refused = await post_form(client, f"/admin/webhooks/{ref}/rotate", {"overlap_hours": value})
        assert refused.status_code == 422, value
        assert 'id="e-overlap_hours"' in refused.text
        assert _SECRET.search(refused.text) is None
        assert (await _endpoint_row(client, ref)).previous_secret is None
    hours = await post_form(client, f"/admin/webhooks/{ref}/rotate", {"overlap_hours": "2"})
    assert hours.status_code == 200
    assert "keeps signing for 2 hours" in hours.text
    row = await _endpoint_row(client, ref)
    assert row.previous_secret == secret
    assert row.previous_expires_at is not None
    left = row.previous_expires_at.replace(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(hours=1, minutes=59) < left <= timedelta(hours=2)
    now = await post_form(client, f"/admin/webhooks/{ref}/rotate", {"overlap_hours": "0"})
    assert now.status_code == 200
    assert "The previous secret no longer signs." in now.text
    assert (await _endpoint_row(client, ref)).previous_secret is None
