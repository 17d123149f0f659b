"""Compose, resend and the message filters on the dashboard, over HTTP: every recipient
checked before anything is queued, bad rows named, and what a user may send for and see."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import load_settings
from simgate.services import accounts
from simgate.services import apps as app_service
from simgate.store.engine import make_sessionmaker
from simgate.store.models import Message
from tests.conftest import app_client
from tests.integration.dashboard import (
    ORIGIN,
    PASSWORD,
    csrf,
    login,
    post_form,
    seed_people,
)

XSS = "<script>alert(1)</script>"


@pytest.fixture
async def people(sqlite_engine: AsyncEngine) -> dict[str, int]:
    return await seed_people(sqlite_engine)


async def _messages(engine: AsyncEngine) -> list[Message]:
    async with make_sessionmaker(engine)() as s:
        return list(await s.scalars(select(Message).order_by(Message.id)))


async def _count(engine: AsyncEngine) -> int:
    async with make_sessionmaker(engine)() as s:
        return int(await s.scalar(select(func.count()).select_from(Message)) or 0)


async def _compose(
    client: httpx.AsyncClient, data: dict[str, Any], files: dict[str, Any] | None = None
) -> httpx.Response:
    token = await csrf(client, "/admin/compose")
    return await post_form(client, "/admin/compose", data, token=token, files=files)


async def test_compose_needs_a_login(client: httpx.AsyncClient, people: dict[str, int]) -> None:
    page = await client.get("/admin/compose")
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login")
    sent = await client.post(
        "/admin/compose",
        data={"app": "ops-tools", "to": "+4915112345678", "body": "x"},
        headers=ORIGIN,
    )
    assert sent.status_code == 303
    assert "/login" in sent.headers["location"]


async def test_one_number_is_queued_for_the_app_and_shown(
    client: httpx.AsyncClient, people: dict[str, int], sqlite_engine: AsyncEngine
) -> None:
    await login(client, "ulla")
    page = await client.get("/admin/compose")
    assert page.status_code == 200
    assert 'value="ulla-shop"' in page.text
    assert "ops-tools" not in page.text  # another user's app is not offered
    assert "send as the operator" not in page.text
    resp = await _compose(client, {"app": "ulla-shop", "to": "+49 151 1234 5678", "body": "Hallo"})
    assert resp.status_code == 303, resp.text
    assert re.fullmatch(r"/admin/messages/[^/?]+\?queued=1", resp.headers["location"])
    detail = await client.get(resp.headers["location"])
    assert "Queued: it goes out" in detail.text
    (m,) = await _messages(sqlite_engine)
    assert (m.to_number, m.body, m.app_id, m.status) == (
        "+4915112345678",
        "Hallo",
        people["shop"],
        "queued",
    )


async def test_a_list_with_bad_rows_queues_nothing_until_they_are_skipped(
    client: httpx.AsyncClient, people: dict[str, int], sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    form = {
        "app": "ops-tools",
        "to": "+4915112345678\nnot a number\n+33612345678, +4915112345678",
        "body": "Sale today",
    }
    refused = await _compose(client, form)
    assert refused.status_code == 422
    assert "1 recipient cannot be sent to" in refused.text
    assert "line 2" in refused.text
    assert "not a number" in refused.text
    assert "send to the 2 valid numbers" in refused.text
    assert "1 duplicate number will be sent once" in refused.text
    assert await _count(sqlite_engine) == 0
    sent = await _compose(client, {**form, "skip_invalid": "1"})
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"] == "/admin/messages?queued=2&skipped=1"
    listing = await client.get(sent.headers["location"])
    assert "Queued 2 messages; 1 recipients were skipped" in listing.text
    assert sorted(m.to_number for m in await _messages(sqlite_engine)) == [
        "+33612345678",
        "+4915112345678",
    ]


async def test_a_csv_upload_names_its_bad_rows_and_keeps_its_numbers_in_the_form(
    client: httpx.AsyncClient, people: dict[str, int], sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    csv = b"name,mobile\nAnna,+4915112345678\nBen,12\nCem,+4915112345679\n"
    files = {"csv": ("customers.csv", csv, "text/csv")}
    refused = await _compose(client, {"app": "ops-tools", "to": "", "body": "Hi"}, files)
    assert refused.status_code == 422
    assert "row 3" in refused.text
    assert "<code>12</code>" in refused.text
    # The file's numbers are now in the list, so sending again needs no new upload.
    to = re.search(r'<textarea id="f-to"[^>]*>(.*?)</textarea>', refused.text, re.S)
    assert to is not None
    assert to.group(1).split("\n") == ["+4915112345678", "12", "+4915112345679"]
    assert await _count(sqlite_engine) == 0
    sent = await _compose(
        client, {"app": "ops-tools", "to": to.group(1), "body": "Hi", "skip_invalid": "1"}
    )
    assert sent.status_code == 303
    assert len(await _messages(sqlite_engine)) == 2


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary data"),
        (b"", "empty"),
        (b"name,phone\nAnna,\n", "no phone numbers"),
    ],
)
async def test_unreadable_csv_files_are_refused_next_to_the_field(
    client: httpx.AsyncClient,
    people: dict[str, int],
    sqlite_engine: AsyncEngine,
    content: bytes,
    words: str,
) -> None:
    await login(client, "root")
    files = {"csv": ("list.csv", content, "text/csv")}
    resp = await _compose(client, {"app": "ops-tools", "to": "", "body": "Hi"}, files)
    assert resp.status_code == 422
    assert re.search(r'id="e-csv">list\.csv: [^<]*' + words, resp.text), resp.text
    assert await _count(sqlite_engine) == 0


@pytest.mark.parametrize(
    ("who", "form", "field", "words"),
    [
        ("root", {"app": "", "to": "+4915112345678", "body": "x"}, "app", "Pick the app"),
        ("root", {"app": "nope", "to": "+4915112345678", "body": "x"}, "app", "Pick one of"),
        ("ulla", {"app": "ops-tools", "to": "+4915112345678", "body": "x"}, "app", "Pick one of"),
        ("ulla", {"app": "-", "to": "+4915112345678", "body": "x"}, "app", "Pick one of"),
        ("root", {"app": "ops-tools", "to": "", "body": "x"}, "to", "at least one"),
        ("root", {"app": "ops-tools", "to": "+4915112345678", "body": " "}, "body", "Enter the"),
        (
            "root",
            {"app": "ops-tools", "to": "+4915112345678", "body": "x" * 1700},
            "body",
            "at most 10",
        ),
        (
            "root",
            {"app": "ops-tools", "to": "+4915112345678", "body": "x", "gateway": "zz"},
            "gateway",
            "active gateway",
        ),
    ],
)
async def test_bad_compose_fields_are_named_and_nothing_is_queued(
    client: httpx.AsyncClient,
    people: dict[str, int],
    sqlite_engine: AsyncEngine,
    who: str,
    form: dict[str, str],
    field: str,
    words: str,
) -> None:
    await login(client, who)
    resp = await _compose(client, form)
    assert resp.status_code == 422, resp.text
    found = re.search(rf'id="e-{field}">([^<]*)<', resp.text)
    assert found, resp.text
    assert words in found.group(1)
    assert await _count(sqlite_engine) == 0


async def test_the_operator_may_send_for_no_app_and_pin_a_gateway(
    client: httpx.AsyncClient, people: dict[str, int], sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    resp = await _compose(
        client, {"app": "-", "to": "+4915112345678", "body": "from ops", "gateway": "pi"}
    )
    assert resp.status_code == 303
    (m,) = await _messages(sqlite_engine)
    assert (m.app_id, m.gateway_pinned) == (None, "pi")


async def test_an_apps_allowed_countries_and_limits_apply(
    client: httpx.AsyncClient, people: dict[str, int], sqlite_engine: AsyncEngine
) -> None:
    async with make_sessionmaker(sqlite_engine).begin() as s:
        await app_service.set_limits(
            s, name="ops-tools", allowed_countries="DE", rate_per_minute=1, actor="t"
        )
    await login(client, "root")
    refused = await _compose(client, {"app": "ops-tools", "to": "+33612345678", "body": "x"})
    assert refused.status_code == 422
    assert "is in FR; this app may send to DE" in refused.text
    ok = await _compose(client, {"app": "ops-tools", "to": "+4915112345678", "body": "x"})
    assert ok.status_code == 303
    limited = await _compose(client, {"app": "ops-tools", "to": "+4915112345679", "body": "y"})
    assert limited.status_code == 429
    assert "per minute" in limited.text or "limit" in limited.text
    assert await _count(sqlite_engine) == 1


@pytest.fixture
async def small_client(tmp_path: Path, clean_env: None) -> AsyncIterator[httpx.AsyncClient]:
    from simgate.store import migrate
    from simgate.store.engine import make_engine

    settings = load_settings(data_dir=tmp_path, log_format="console", max_recipients=3)
    engine = make_engine(settings)
    await migrate.upgrade(engine)
    async with make_sessionmaker(engine).begin() as s:
        await accounts.create_user(s, username="root", password=PASSWORD, actor="t")
        await app_service.create_app(s, name="ops-tools", owner="root", actor="t")
    try:
        async for c in app_client(settings, engine):
            c.engine = engine  # type: ignore[attr-defined]
            yield c
    finally:
        await engine.dispose()


async def test_more_recipients_than_allowed_at_once_are_refused(
    small_client: httpx.AsyncClient,
) -> None:
    await login(small_client, "root")
    numbers = "\n".join(f"+49151123456{i:02d}" for i in range(4))
    resp = await _compose(small_client, {"app": "ops-tools", "to": numbers, "body": "x"})
    assert resp.status_code == 422
    assert "4 recipients: at most 3 can be sent to at once" in resp.text
    assert await _count(small_client.engine) == 0  # type: ignore[attr-defined]


async def test_compose_needs_the_forms_token(
    client: httpx.AsyncClient, people: dict[str, int], sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    form = {"app": "ops-tools", "to": "+4915112345678", "body": "x"}
    assert (await post_form(client, "/admin/compose", form, token="0" * 64)).status_code == 403
    assert (await client.post("/admin/compose", data=form, headers=ORIGIN)).status_code == 403
    assert await _count(sqlite_engine) == 0


async def test_the_text_typed_is_shown_back_as_text(
    client: httpx.AsyncClient, people: dict[str, int], sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    resp = await _compose(client, {"app": "ops-tools", "to": "nope", "body": XSS})
    assert resp.status_code == 422
    assert XSS not in resp.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in resp.text


async def test_the_segment_counter(client: httpx.AsyncClient, people: dict[str, int]) -> None:
    await login(client, "ulla")
    token = await csrf(client, "/admin/compose")
    headers = {**ORIGIN, "X-CSRF-Token": token, "HX-Request": "true"}

    async def count(body: str) -> str:
        resp = await client.post("/admin/compose/segments", data={"body": body}, headers=headers)
        assert resp.status_code == 200
        return resp.text

    assert "0 characters" in await count("")
    assert "5 characters · GSM7 · 1 SMS part (155 left" in await count("Hello")
    assert "161 characters · GSM7 · 2 SMS parts" in await count("x" * 161)
    assert "2 characters · GSM7" in await count("€")  # an escape: two septets
    unicode = await count("Привет")
    assert "6 UCS-2 units · UCS2 · 1 SMS part" in unicode
    assert "70 instead of 160" in unicode
    assert "More than the 10 parts" in await count("x" * 1600)
    assert "&lt;b&gt;" not in await count("<b>")  # only figures come back, never the text
    refused = await client.post("/admin/compose/segments", data={"body": "x"}, headers=ORIGIN)
    assert refused.status_code == 403


async def test_resend_queues_a_copy_and_refuses_one_time_codes(
    client: httpx.AsyncClient, people: dict[str, int], sqlite_engine: AsyncEngine
) -> None:
    await login(client, "ulla")
    first = await _compose(client, {"app": "ulla-shop", "to": "+4915112345678", "body": "Order 7"})
    original = first.headers["location"].split("/")[-1].split("?")[0]
    page = await client.get(f"/admin/messages/{original}")
    assert f'action="/admin/messages/{original}/resend"' in page.text
    token = await csrf(client, f"/admin/messages/{original}")
    again = await post_form(client, f"/admin/messages/{original}/resend", token=token)
    assert again.status_code == 303
    new_id = again.headers["location"].split("/")[-1].split("?")[0]
    assert new_id != original
    shown = await client.get(again.headers["location"])
    assert f'href="/admin/messages/{original}"' in shown.text
    copy = next(m for m in await _messages(sqlite_engine) if m.id == new_id)
    assert (copy.body, copy.to_number, copy.app_id, copy.status) == (
        "Order 7",
        "+4915112345678",
        people["shop"],
        "queued",
    )
    assert copy.meta == {"resend_of": original}
    # A one-time code is not kept, so it cannot be sent again.
    async with make_sessionmaker(sqlite_engine).begin() as s:
        await s.execute(
            update(Message).where(Message.id == original).values(body_redacted="Code ••••••")
        )
    refused = await post_form(client, f"/admin/messages/{original}/resend", token=token)
    assert refused.status_code == 409
    assert "one-time code" in refused.text
    assert await _count(sqlite_engine) == 2
    missing = await post_form(client, "/admin/messages/msg_nope/resend", token=token)
    assert missing.status_code == 404


async def test_a_user_cannot_resend_another_apps_message(
    client: httpx.AsyncClient, people: dict[str, int], sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    sent = await _compose(client, {"app": "ops-tools", "to": "+4915112345678", "body": "ops"})
    original = sent.headers["location"].split("/")[-1].split("?")[0]
    client.cookies.clear()
    await login(client, "ulla")
    resp = await post_form(client, f"/admin/messages/{original}/resend")
    assert resp.status_code == 404
    assert await _count(sqlite_engine) == 1


async def test_message_filters_by_app_gateway_text_and_date(
    client: httpx.AsyncClient, people: dict[str, int], sqlite_engine: AsyncEngine
) -> None:
    await login(client, "root")
    for app, body, gateway in (
        ("ops-tools", "Deploy done 100%", "pi"),
        ("ops-tools", "Backup OK", ""),
        ("ulla-shop", "Your ORDER shipped", ""),
    ):
        resp = await _compose(
            client, {"app": app, "to": "+4915112345678", "body": body, "gateway": gateway}
        )
        assert resp.status_code == 303, resp.text
    async with make_sessionmaker(sqlite_engine).begin() as s:
        await s.execute(
            update(Message).where(Message.body == "Backup OK").values(body_redacted="Code ••••")
        )

    async def bodies(query: str, who_sees: int = 200) -> list[str]:
        resp = await client.get(f"/admin/messages?{query}")
        assert resp.status_code == who_sees, resp.text
        return re.findall(r'<td class="body">([^<]*)</td>', resp.text)

    assert len(await bodies("")) == 3
    assert await bodies("app=ulla-shop") == ["Your ORDER shipped"]
    assert await bodies("gateway=pi") == ["Deploy done 100%"]
    assert await bodies("q=order") == ["Your ORDER shipped"]
    assert await bodies("q=100%25") == ["Deploy done 100%"]
    assert await bodies("q=%25") == ["Deploy done 100%"]  # '%' is a character, not a wildcard
    assert await bodies("q=Backup") == []  # a redacted text is matched as shown
    assert len(await bodies("since=2000-01-01&until=2999-12-31")) == 3
    assert await bodies("until=2000-01-01") == []
    for query, field in (
        ("since=yesterday", "since"),
        ("until=2026-13-01", "until"),
        ("since=2026-02-02&until=2026-02-01", "until"),
        ("app=nope", "app"),
        ("app=ops-tools&direction=inbound", "app"),
    ):
        resp = await client.get(f"/admin/messages?{query}")
        assert resp.status_code == 422, query
        assert f'id="e-{field}"' in resp.text, query
    # Older pages keep the filters.
    client.cookies.clear()
    await login(client, "ulla")
    assert await bodies("") == ["Your ORDER shipped"]
    assert (await client.get("/admin/messages?app=ops-tools")).status_code == 422
    assert 'value="ops-tools"' not in (await client.get("/admin/messages")).text
