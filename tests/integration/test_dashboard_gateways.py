"""The gateway pages beyond what test_dashboard_pages covers: the key of a phone added on
the dashboard works for the phone, its heartbeats fill the signal history, device info is
shown as text, and removing or rotating without the form's CSRF token changes nothing."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.services import accounts, phones
from simgate.store.engine import make_sessionmaker
from simgate.store.models import Gateway, GatewaySample
from tests.integration.dashboard import ORIGIN, PASSWORD, login, post_form

XSS = "<script>alert(1)</script>"


@pytest.fixture
async def root(sqlite_engine: AsyncEngine) -> None:
    async with make_sessionmaker(sqlite_engine).begin() as s:
        await accounts.create_user(s, username="root", password=PASSWORD, actor="t")


async def test_a_phone_added_here_reports_with_its_key(
    client: httpx.AsyncClient, root: None, sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    made = await post_form(client, "/admin/gateways/new/android", {"label": "Till", "name": "till"})
    assert made.status_code == 201
    key = made.text.split('id="secret-value">')[1].split("<")[0]
    beat = await client.post(
        "/api/v1/gateway/heartbeat",
        json={"status": "online", "battery_level": 81, "signal_strength": 3},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert beat.status_code == 200, beat.text
    async with make_sessionmaker(sqlite_engine)() as s:
        row = (await s.scalars(select(Gateway).where(Gateway.name == "till"))).one()
        assert (row.battery, row.signal) == (81, 3)
        taken = list(await s.scalars(select(GatewaySample).where(GatewaySample.gateway == "till")))
        assert [(x.status, x.battery) for x in taken] == [("online", 81)]
    page = await client.get("/admin/gateways/till")
    assert page.status_code == 200
    assert "Signal history" in page.text
    assert "81 %" in page.text
    chart = page.text.split('<svg class="chart signal-chart"')[1].split("</svg>")[0]
    assert "battery 81%" in chart  # the heartbeat's sample is drawn
    assert "signal 3" in chart
    assert 'class="st st-online"' in chart
    assert key not in page.text
    listed = await client.get("/admin/gateways/live")
    assert "/admin/gateways/till" in listed.text


async def test_device_info_and_label_are_shown_as_text(
    client: httpx.AsyncClient, root: None, sqlite_engine: AsyncEngine
) -> None:
    async with make_sessionmaker(sqlite_engine).begin() as s:
        await phones.create(
            s,
            label="Label " + XSS,
            device_id="dev-" + XSS,
            device_info={"model": XSS, "app_version": "1.2 " + XSS},
            name="xss-phone",
            actor="t",
        )
    await login(client, "root")
    for path in ("/admin/gateways/xss-phone", "/admin/gateways", "/admin/gateways/live"):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert XSS not in page.text, path
    detail = await client.get("/admin/gateways/xss-phone")
    assert detail.text.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3


async def test_remove_and_rotate_need_the_forms_token(
    client: httpx.AsyncClient, root: None, sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    await post_form(client, "/admin/gateways/new/android", {"label": "Till", "name": "till"})
    async with make_sessionmaker(sqlite_engine)() as s:
        before = (await s.scalars(select(Gateway.key_hash).where(Gateway.name == "till"))).one()
    for action in ("remove", "rotate-key", "deactivate"):
        for data in ({}, {"csrf_token": "0" * 64}):
            resp = await client.post(f"/admin/gateways/till/{action}", data=data, headers=ORIGIN)
            assert resp.status_code == 403, (action, data)
            assert "nothing was changed" in resp.text
    async with make_sessionmaker(sqlite_engine)() as s:
        row = (await s.scalars(select(Gateway).where(Gateway.name == "till"))).one()
        assert row.key_hash == before
        assert row.is_active
