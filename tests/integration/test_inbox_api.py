"""The inbox API: GET /api/v1/inbox with each filter and its cursor, one received SMS,
read and unread, an admin's delete, scopes and bad input; seed 001's GET /json; and the
retention prune.

SMS arrive the way a phone hands them over (POST /api/v1/gateway/sms/received), so every
item went through the real store, with the receiving number the phone reported for its SIM.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.domain.keys import Scope
from simgate.domain.messages import Received
from simgate.services import inbound, phones
from simgate.services import inbox as inbox_service
from simgate.store.engine import make_sessionmaker
from simgate.store.models import Message, MessageEvent
from simgate.store.types import utcnow
from tests.integration.helpers import assert_error, bearer, make_key

INBOX = "/api/v1/inbox"
RECEIVED = "/api/v1/gateway/sms/received"
SENDER = "+4917612345678"
OTHER = "+4917687654321"
SIM_1 = "+4915100000001"
SIM_2 = "+4915100000002"
SIM_3 = "+4915100000003"
UNKNOWN_ID = "msg_" + "0" * 26
INBOX_ONLY = frozenset({Scope.INBOX})
SEND_ONLY = frozenset({Scope.SEND})
ADMIN = frozenset(Scope)


# --- helpers ---------------------------------------------------------------------------------


async def new_phone(
    engine: AsyncEngine, name: str = "phone1", numbers: tuple[str, ...] = (SIM_1, SIM_2)
) -> str:
    """A phone gateway whose SIMs (slot 1, 2, …) have ``numbers``; its key."""
    sims = [{"slot": i, "number": n} for i, n in enumerate(numbers, start=1)]
    async with make_sessionmaker(engine).begin() as session:
        made = await phones.create(
            session, label=name, device_id=None, name=name, actor="test", sims=sims or None
        )
    return made.key


async def receive(
    client: httpx.AsyncClient,
    phone_key: str,
    body: str,
    *,
    sender: str = SENDER,
    sim_slot: int | None = None,
    received_at: str | None = None,
) -> str:
    """The phone hands over an SMS; its message id."""
    payload: dict[str, Any] = {"phone_number": sender, "message_body": body}
    if sim_slot is not None:
        payload["sim_slot"] = sim_slot
    if received_at is not None:
        payload["received_at"] = received_at
    resp = await client.post(RECEIVED, json=payload, headers=bearer(phone_key))
    assert resp.status_code == 201, resp.text
    message_id: str = resp.json()["message_id"]
    return message_id


async def page(client: httpx.AsyncClient, key: str, **params: Any) -> dict[str, Any]:
    resp = await client.get(INBOX, params=params, headers=bearer(key))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def ids(client: httpx.AsyncClient, key: str, **params: Any) -> list[str]:
    return [item["id"] for item in (await page(client, key, **params))["data"]]


async def all_pages(
    client: httpx.AsyncClient, key: str, cursor: str | None = None, **params: Any
) -> tuple[list[str], list[dict[str, Any]]]:
    """Every id, page by page (following next_cursor from ``cursor``), and the pages."""
    found: list[str] = []
    pages: list[dict[str, Any]] = []
    for _ in range(100):
        current = await page(client, key, **params, **({"cursor": cursor} if cursor else {}))
        pages.append(current)
        found += [item["id"] for item in current["data"]]
        cursor = current["next_cursor"]
        if cursor is None:
            return found, pages
    pytest.fail("the cursor never ran out")


def store_directly(body: str, *, sender: str = SENDER, received_at: datetime | None = None) -> Any:
    """What inbound.store takes from any gateway."""
    return Received(
        gateway="modem1",
        sender=sender,
        body=body,
        received_at=received_at or utcnow(),
        to=SIM_1,
    )


# --- one item --------------------------------------------------------------------------------


async def test_an_item_carries_what_the_gateway_reported(
    db_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    key = await make_key(engine, "reader", INBOX_ONLY)
    phone = await new_phone(engine)
    bare = await new_phone(engine, "bare", numbers=())
    on_two = await receive(
        db_client,
        phone,
        "Your code is 123456",
        sim_slot=2,
        received_at="2025-10-20T13:45:30Z",
    )
    unknown_number = await receive(db_client, bare, "hello", sender="Google")

    resp = await db_client.get(f"{INBOX}/{on_two}", headers=bearer(key))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "id": on_two,
        "direction": "inbound",
        "from": SENDER,
        "to": SIM_2,  # the number of the SIM in slot 2, as the phone reported it
        "body": "Your code is 123456",
        "received_at": "2025-10-20T13:45:30Z",
        "gateway": "phone1",
        "sim_slot": 2,
        "segments": 1,
        "read_at": None,
    }
    other = (await db_client.get(f"{INBOX}/{unknown_number}", headers=bearer(key))).json()
    assert (other["from"], other["to"], other["gateway"]) == ("Google", None, "bare")
    # The list shows the same items.
    listed = (await page(db_client, key))["data"]
    assert [item["id"] for item in listed] == [unknown_number, on_two]
    assert listed[1] == resp.json()


async def test_get_one_that_is_not_a_received_sms_is_404(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    key = await make_key(sqlite_engine)  # send and inbox
    sent = await client.post(
        "/api/v1/messages", json={"to": SENDER, "body": "outbound"}, headers=bearer(key)
    )
    assert sent.status_code == 202, sent.text
    for message_id in (UNKNOWN_ID, "nope", sent.json()["id"], "msg_" + "x" * 200):
        for method, path in (
            ("GET", f"{INBOX}/{message_id}"),
            ("POST", f"{INBOX}/{message_id}/read"),
            ("DELETE", f"{INBOX}/{message_id}/read"),
        ):
            resp = await client.request(method, path, headers=bearer(key))
            err = assert_error(resp, 404, "not_found", "id")
            assert "no received message" in err["message"]


# --- filters ---------------------------------------------------------------------------------


async def test_each_filter(db_client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    key = await make_key(engine, "reader", INBOX_ONLY)
    phone1 = await new_phone(engine, "phone1", (SIM_1, SIM_2))
    phone2 = await new_phone(engine, "phone2", (SIM_3,))
    m1 = await receive(
        db_client,
        phone1,
        "Your code is 123456",
        sim_slot=1,
        received_at="2025-01-01T10:00:00Z",
    )
    m2 = await receive(
        db_client,
        phone1,
        "Termin bei den ÄRZTEN in Berlin",
        sender=OTHER,
        sim_slot=2,
        received_at="2025-01-01T11:00:00Z",
    )
    m3 = await receive(
        db_client,
        phone2,
        "G-482913 is your Google verification CODE",
        sender="Google",
        sim_slot=1,
        received_at="2025-01-01T12:00:00Z",
    )
    assert await ids(db_client, key) == [m3, m2, m1]  # newest first

    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"from": SENDER}, [m1]),
        ({"from": "+49 176 1234 5678"}, [m1]),  # any format of the number
        ({"from": "Google"}, [m3]),  # a sender name
        ({"from": "+4915199999999"}, []),
        ({"to": SIM_2}, [m2]),
        ({"to": "+49 151 0000 0001"}, [m1]),
        ({"to": SIM_3}, [m3]),
        ({"gateway": "phone2"}, [m3]),
        ({"gateway": "phone1"}, [m2, m1]),
        ({"gateway": "nobody"}, []),
        ({"sim_slot": 2}, [m2]),
        ({"sim_slot": 1}, [m3, m1]),
        ({"contains": "code"}, [m3, m1]),  # any case: "code" and "CODE"
        ({"contains": "CODE IS"}, [m1]),
        ({"contains": "berlin"}, [m2]),
        ({"contains": "ärzten"}, [m2]),  # any case beyond ASCII too
        ({"contains": "100%"}, []),  # LIKE's wildcards are plain text here
        ({"contains": "_"}, []),
        ({"contains": "zzz"}, []),
        ({"pattern": r"\d{6}"}, [m3, m1]),
        ({"pattern": r"\bcode is \d{6}\b"}, [m1]),
        ({"pattern": r"G-(\d+)"}, [m3]),
        ({"pattern": r"(?i)verification code"}, [m3]),
        ({"since": "2025-01-01T10:30:00Z"}, [m3, m2]),
        ({"until": "2025-01-01T11:30:00Z"}, [m2, m1]),
        ({"since": "2025-01-01T10:30:00Z", "until": "2025-01-01T11:30:00Z"}, [m2]),
        ({"since": "2025-01-01T12:30:00+02:00"}, [m3, m2]),  # 10:30 UTC
        ({"since": "2025-01-01T11:00:00Z", "until": "2025-01-01T11:00:00Z"}, [m2]),  # inclusive
        ({"since": "2025-01-01T10:30:00"}, [m3, m2]),  # no zone: UTC
        ({"from": SENDER, "contains": "code", "sim_slot": 1, "gateway": "phone1"}, [m1]),
        ({"from": SENDER, "sim_slot": 2}, []),
    ]
    for params, expected in cases:
        assert await ids(db_client, key, **params) == expected, params

    matched = (await page(db_client, key, pattern=r"G-(\d+)"))["data"]
    assert matched[0]["match"] == "482913"  # the first group
    whole = (await page(db_client, key, pattern=r"code is \d{6}"))["data"]
    assert whole[0]["match"] == "code is 123456"  # no group: the whole match
    assert "match" not in (await page(db_client, key, contains="code"))["data"][0]


async def test_read_and_unread(db_client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    key = await make_key(engine, "reader", INBOX_ONLY)
    phone = await new_phone(engine)
    first = await receive(db_client, phone, "first")
    second = await receive(db_client, phone, "second")
    assert await ids(db_client, key, unread="true") == [second, first]
    assert await ids(db_client, key, unread="false") == []

    read = await db_client.post(f"{INBOX}/{first}/read", headers=bearer(key))
    assert read.status_code == 200, read.text
    read_at = read.json()["read_at"]
    assert read_at is not None
    assert datetime.fromisoformat(read_at).tzinfo is not None
    again = await db_client.post(f"{INBOX}/{first}/read", headers=bearer(key))
    assert again.json()["read_at"] == read_at  # marking it read again keeps the first time
    got = (await db_client.get(f"{INBOX}/{first}", headers=bearer(key))).json()
    assert got["read_at"] == read_at
    assert await ids(db_client, key, unread="true") == [second]
    assert await ids(db_client, key, unread="false") == [first]
    assert await ids(db_client, key) == [second, first]

    unread = await db_client.delete(f"{INBOX}/{first}/read", headers=bearer(key))
    assert unread.status_code == 200, unread.text
    assert unread.json()["read_at"] is None
    assert unread.json()["id"] == first
    assert await ids(db_client, key, unread="true") == [second, first]
    # Unread twice is still unread.
    twice = await db_client.delete(f"{INBOX}/{first}/read", headers=bearer(key))
    assert twice.json()["read_at"] is None


# --- pagination ------------------------------------------------------------------------------


async def test_cursor_pages_have_no_duplicates_or_gaps(
    db_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    key = await make_key(engine, "reader", INBOX_ONLY)
    phone = await new_phone(engine)
    stored = [
        await receive(db_client, phone, f"message {i}" + (" code" if i % 3 == 0 else ""))
        for i in range(10)
    ]
    newest_first = stored[::-1]

    found, pages = await all_pages(db_client, key, limit=3)
    assert found == newest_first
    assert [len(p["data"]) for p in pages] == [3, 3, 3, 1]
    assert all(p["next_cursor"] for p in pages[:-1])

    found, _ = await all_pages(db_client, key, limit=10)
    assert found == newest_first
    found, pages = await all_pages(db_client, key, limit=2, contains="CODE")
    assert found == [m for i, m in enumerate(stored) if i % 3 == 0][::-1]
    assert [len(p["data"]) for p in pages] == [2, 2]
    # With a pattern the page is filled by reading on past what does not match.
    found, pages = await all_pages(db_client, key, limit=1, pattern=r"message [13579]\b")
    assert found == [m for i, m in enumerate(stored) if i % 2 == 1][::-1]
    assert all(len(p["data"]) == 1 for p in pages)

    # An SMS arriving between pages is not slipped into the older pages.
    first = await page(db_client, key, limit=4)
    late = await receive(db_client, phone, "late")
    rest, _ = await all_pages(db_client, key, limit=4, cursor=first["next_cursor"])
    assert [item["id"] for item in first["data"]] + rest == newest_first
    assert late not in rest
    assert (await ids(db_client, key, limit=1)) == [late]


# --- deleting --------------------------------------------------------------------------------


async def test_an_admin_deletes_a_received_sms(
    db_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    reader = await make_key(engine, "reader", INBOX_ONLY)
    admin = await make_key(engine, "ops", ADMIN)
    phone = await new_phone(engine)
    keep = await receive(db_client, phone, "keep me")
    gone = await receive(db_client, phone, "delete me")

    refused = await db_client.delete(f"{INBOX}/{gone}", headers=bearer(reader))
    assert_error(refused, 403, "forbidden")
    assert await ids(db_client, reader) == [gone, keep]

    deleted = await db_client.delete(f"{INBOX}/{gone}", headers=bearer(admin))
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""
    assert_error(
        await db_client.get(f"{INBOX}/{gone}", headers=bearer(reader)), 404, "not_found", "id"
    )
    assert_error(
        await db_client.post(f"{INBOX}/{gone}/read", headers=bearer(reader)), 404, "not_found"
    )
    assert_error(
        await db_client.delete(f"{INBOX}/{gone}", headers=bearer(admin)), 404, "not_found", "id"
    )
    assert await ids(db_client, reader) == [keep]
    assert await ids(db_client, admin) == [keep]
    seed = await db_client.get("/json", headers=bearer(reader))
    assert [m["text"] for m in seed.json()] == ["keep me"]
    # Hidden, not yet removed: the next prune removes it a day later.
    async with make_sessionmaker(engine)() as session:
        row = await session.get(Message, gone)
    assert row is not None
    assert row.deleted_at is not None


# --- scopes and bad input -------------------------------------------------------------------


async def test_a_key_without_the_inbox_scope_is_refused(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    phone = await new_phone(sqlite_engine)
    message_id = await receive(client, phone, "secret 123456")
    send_only = await make_key(sqlite_engine, "sender", SEND_ONLY)
    for method, path in (
        ("GET", INBOX),
        ("GET", f"{INBOX}/{message_id}"),
        ("POST", f"{INBOX}/{message_id}/read"),
        ("DELETE", f"{INBOX}/{message_id}/read"),
        ("GET", f"{INBOX}/wait?timeout=1"),
    ):
        resp = await client.request(method, path, headers=bearer(send_only))
        err = assert_error(resp, 403, "forbidden")
        assert "'inbox' scope" in err["message"], err
        missing = await client.request(method, path)
        assert_error(missing, 401, "unauthorized")
        wrong = await client.request(method, path, headers=bearer("sg_" + "x" * 40))
        assert_error(wrong, 401, "unauthorized")
        with_phone_key = await client.request(method, path, headers=bearer(phone))
        assert_error(with_phone_key, 401, "unauthorized")
    # Deleting needs the admin scope, not just inbox.
    inbox_only = await make_key(sqlite_engine, "reader", INBOX_ONLY)
    err = assert_error(
        await client.delete(f"{INBOX}/{message_id}", headers=bearer(inbox_only)), 403, "forbidden"
    )
    assert "'admin' scope" in err["message"]
    # Nothing was read or deleted by the refused calls.
    item = (await client.get(f"{INBOX}/{message_id}", headers=bearer(inbox_only))).json()
    assert item["read_at"] is None
    # The admin scope includes inbox.
    admin = await make_key(sqlite_engine, "ops", frozenset({Scope.ADMIN}))
    assert await ids(client, admin) == [message_id]


BAD_LIST: list[tuple[dict[str, Any], str, str]] = [
    ({"pattern": "(unclosed"}, "pattern", "not a usable regular expression"),
    ({"pattern": r"(a)\1"}, "pattern", "backreferences"),  # RE2 has none
    ({"pattern": "(?=lookahead)"}, "pattern", "lookaround"),
    ({"pattern": "(?<!behind)x"}, "pattern", "pattern"),
    ({"pattern": "a" * 257}, "pattern", "256"),
    ({"since": "yesterday"}, "since", "since"),
    ({"since": "2025-13-01T00:00:00Z"}, "since", "since"),
    ({"until": "soon"}, "until", "until"),
    ({"since": "2025-01-02T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "until", "before"),
    ({"sim_slot": "first"}, "sim_slot", "sim_slot"),
    ({"sim_slot": 3}, "sim_slot", "1 or 2"),
    ({"sim_slot": 0}, "sim_slot", "1 or 2"),
    ({"cursor": "nope"}, "cursor", "cursor"),
    ({"cursor": "msg_" + "0" * 25}, "cursor", "cursor"),
    ({"cursor": "x" * 65}, "cursor", "cursor"),
    ({"limit": 0}, "limit", "limit"),
    ({"limit": 501}, "limit", "limit"),
    ({"limit": "many"}, "limit", "limit"),
    ({"unread": "maybe"}, "unread", "unread"),
    ({"contains": "c" * 161}, "contains", "contains"),
    ({"from": "+" + "4" * 64}, "from", "from"),
    ({"from": "   "}, "from", "from"),
    ({"to": "   "}, "to", "to"),
    ({"gateway": "g" * 65}, "gateway", "gateway"),
]
BAD_WAIT: list[tuple[dict[str, Any], str, str]] = [
    ({"timeout": 0}, "timeout", "timeout"),
    ({"timeout": -1}, "timeout", "timeout"),
    ({"timeout": 121}, "timeout", "timeout"),
    ({"timeout": "soon"}, "timeout", "timeout"),
    ({"pattern": "(unclosed"}, "pattern", "pattern"),
    ({"pattern": r"(\d)\1"}, "pattern", "backreferences"),
    ({"pattern": "b" * 257}, "pattern", "pattern"),
    ({"since": "yesterday"}, "since", "since"),
    ({"sim_slot": 3}, "sim_slot", "1 or 2"),
    ({"contains": "c" * 161}, "contains", "contains"),
    ({"from": "   "}, "from", "from"),
]


@pytest.mark.parametrize(
    ("path", "params", "field", "words"),
    [(INBOX, *case) for case in BAD_LIST] + [(f"{INBOX}/wait", *case) for case in BAD_WAIT],
)
async def test_bad_input_is_a_422_naming_the_field(
    client: httpx.AsyncClient,
    sqlite_engine: AsyncEngine,
    path: str,
    params: dict[str, Any],
    field: str,
    words: str,
) -> None:
    key = await make_key(sqlite_engine, "reader", INBOX_ONLY)
    # A wait that was not refused would answer 408 after a second, not hang.
    resp = await client.get(path, params={"timeout": 1, **params}, headers=bearer(key))
    err = assert_error(resp, 422, "invalid", field)
    assert field in err["message"], err
    assert words in err["message"], err
    assert client.app.state.runtime.inbox.waiting == 0  # type: ignore[attr-defined]


async def test_patterns_are_re2_syntax_that_python_would_refuse_or_hang_on(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    key = await make_key(sqlite_engine, "reader", INBOX_ONLY)
    phone = await new_phone(sqlite_engine)
    slow_for_backtracking = "a" * 5000 + "b"
    await receive(client, phone, slow_for_backtracking)
    plain = await receive(client, phone, "aaaa")
    # Catastrophic for a backtracking engine; RE2 answers at once.
    assert await ids(client, key, pattern="(a+)+$") == [plain]
    assert await ids(client, key, pattern="(a|aa)*c") == []
    # RE2's own syntax: named groups the RE2 way, classes, flags.
    found = (await page(client, key, pattern=r"(?P<run>a{4})\z"))["data"]
    assert [item["match"] for item in found] == ["aaaa"]


# --- seed 001: GET /json --------------------------------------------------------------------


async def test_json_lists_the_last_50_received_newest_first(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    key = await make_key(sqlite_engine, "reader", INBOX_ONLY)
    sm = client.app.state.runtime.sessionmaker  # type: ignore[attr-defined]
    async with sm.begin() as session:
        for i in range(52):
            await inbound.store(session, store_directly(f"sms {i}"))
    phone = await new_phone(sqlite_engine)
    await receive(
        client, phone, "Your code is 123456", sender="Google", received_at="2025-10-20T13:45:30Z"
    )

    for how in (
        {"headers": bearer(key)},
        {"headers": {"X-API-Key": key}},
        {"params": {"api_key": key}},
    ):
        resp = await client.get("/json", **how)  # type: ignore[arg-type]
        assert resp.status_code == 200, (how, resp.text)
        assert resp.headers["content-type"].startswith("application/json")
        listed = resp.json()
        assert isinstance(listed, list)
        assert len(listed) == 50
        # Newest first: the phone's SMS was stored last (with the time the phone reported).
        assert listed[0] == {
            "number": "Google",
            "text": "Your code is 123456",
            "timestamp": "2025-10-20T13:45:30Z",
        }
        assert [m["text"] for m in listed[1:4]] == ["sms 51", "sms 50", "sms 49"]
        assert listed[-1]["text"] == "sms 3"
        for m in listed:
            assert set(m) == {"number", "text", "timestamp"}
            assert datetime.fromisoformat(m["timestamp"]).tzinfo is not None
        assert listed[1]["number"] == SENDER


async def test_json_errors_have_the_seed_shape(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    send_only = await make_key(sqlite_engine, "sender", SEND_ONLY)
    phone = await new_phone(sqlite_engine)
    await receive(client, phone, "private")
    for how, status, message in (
        ({}, 401, "missing api_key"),
        ({"params": {"api_key": ""}}, 401, "missing api_key"),
        ({"params": {"api_key": "sg_" + "x" * 40}}, 401, "invalid API key"),
        ({"headers": bearer("sg_" + "x" * 40)}, 401, "invalid API key"),
        ({"headers": {"X-API-Key": "nope"}}, 401, "invalid API key"),
        ({"headers": {"Authorization": "Basic abc"}}, 401, "invalid API key"),
        ({"headers": bearer(phone)}, 401, "invalid API key"),
        ({"headers": bearer(send_only)}, 403, "this API key lacks the 'inbox' scope"),
        ({"params": {"api_key": send_only}}, 403, "this API key lacks the 'inbox' scope"),
    ):
        resp = await client.get("/json", **how)  # type: ignore[arg-type]
        assert resp.status_code == status, (how, resp.text)
        body = resp.json()
        assert body["status"] == "error", body
        assert body["message"] == message, (how, body)
        assert "private" not in resp.text


async def test_json_is_open_to_anyone_once_the_inbox_is_public(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    phone = await new_phone(sqlite_engine)
    await receive(client, phone, "for the whole LAN")
    assert (await client.get("/json")).status_code == 401
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    runtime.settings = runtime.settings.model_copy(update={"inbox_public": True})
    resp = await client.get("/json")
    assert resp.status_code == 200, resp.text
    assert [m["text"] for m in resp.json()] == ["for the whole LAN"]
    # Public /json does not open the rest of the inbox.
    assert_error(await client.get(INBOX), 401, "unauthorized")


async def test_json_on_every_database(db_client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    key = await make_key(engine, "reader", INBOX_ONLY)
    phone = await new_phone(engine)
    await receive(db_client, phone, "Grüße 👋", received_at="2025-10-20T13:45:30.250000Z")
    await receive(db_client, phone, "second", sender="+49 176 8765 4321")
    listed = (await db_client.get("/json", params={"api_key": key})).json()
    assert [(m["number"], m["text"]) for m in listed] == [
        (OTHER, "second"),
        (SENDER, "Grüße 👋"),
    ]
    assert listed[1]["timestamp"] == "2025-10-20T13:45:30.250000Z"


# --- retention ---------------------------------------------------------------------------------


async def test_prune_removes_old_and_deleted_sms_in_chunks(
    db_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    key = await make_key(engine, "reader", INBOX_ONLY)
    admin = await make_key(engine, "ops", ADMIN)
    now = utcnow()
    sm = make_sessionmaker(engine)
    async with sm.begin() as session:
        old = [
            await inbound.store(
                session, store_directly(f"old {i}", received_at=now - timedelta(days=91 + i))
            )
            for i in range(5)
        ]
        recent = await inbound.store(
            session, store_directly("recent", received_at=now - timedelta(days=89))
        )
        deleted_long_ago = [
            await inbound.store(session, store_directly(f"deleted {i}")) for i in range(2)
        ]
        deleted_now = await inbound.store(session, store_directly("deleted just now"))
        fresh = await inbound.store(session, store_directly("fresh"))
        # An old outbound message is not the inbox's to prune.
        session.add(
            Message(
                id="msg_01M80AAAAAAAAAAAAAAAAAAAAA",
                direction="outbound",
                app_id=None,
                to_number=SENDER,
                from_number="",
                body="sent long ago",
                encoding="gsm7",
                segments=1,
                status="delivered",
                priority=0,
                next_attempt_at=now,
                attempts=0,
                created_at=now - timedelta(days=400),
                updated_at=now - timedelta(days=400),
            )
        )
    async with sm.begin() as session:  # stored long ago too, not only received then
        for i, message_id in enumerate(old):
            await session.execute(
                update(Message)
                .where(Message.id == message_id)
                .values(updated_at=now - timedelta(days=91 + i))
            )
    for message_id in deleted_long_ago:
        resp = await db_client.delete(f"{INBOX}/{message_id}", headers=bearer(admin))
        assert resp.status_code == 204
    assert (
        await db_client.delete(f"{INBOX}/{deleted_now}", headers=bearer(admin))
    ).status_code == (204)
    async with sm.begin() as session:
        await session.execute(
            update(Message)
            .where(Message.id.in_(deleted_long_ago))
            .values(deleted_at=now - timedelta(days=2))
        )

    chunks = []
    for _ in range(10):
        async with sm.begin() as session:
            n = await inbox_service.prune(session, older_than_days=90, limit=3)
        chunks.append(n)
        if n == 0:
            break
    assert chunks == [3, 3, 1, 0]

    async with sm() as session:
        left = set(await session.scalars(select(Message.id)))
        orphans = await session.scalar(
            select(func.count())
            .select_from(MessageEvent)
            .where(MessageEvent.message_id.in_([*old, *deleted_long_ago]))
        )
    assert left == {recent, deleted_now, fresh, "msg_01M80AAAAAAAAAAAAAAAAAAAAA"}
    assert orphans == 0  # their events went with them
    assert await ids(db_client, key) == [fresh, recent]
    # The SMS deleted a moment ago stays hidden until its day is up.
    assert_error(
        await db_client.get(f"{INBOX}/{deleted_now}", headers=bearer(key)), 404, "not_found"
    )


async def test_prune_keeps_an_sms_received_long_ago_but_stored_now(
    sqlite_engine: AsyncEngine,
) -> None:
    """A phone with a wrong clock, or one handing over SMS it kept for months."""
    sm = make_sessionmaker(sqlite_engine)
    async with sm.begin() as session:
        late = await inbound.store(
            session, store_directly("late", received_at=utcnow() - timedelta(days=400))
        )
    async with sm.begin() as session:
        assert await inbox_service.prune(session, older_than_days=90, limit=100) == 0
    async with sm() as session:
        assert await session.get(Message, late) is not None


async def test_prune_with_nothing_to_do_is_zero(sqlite_engine: AsyncEngine) -> None:
    sm = make_sessionmaker(sqlite_engine)
    async with sm.begin() as session:
        await inbound.store(session, store_directly("kept", received_at=datetime.now(UTC)))
    async with sm.begin() as session:
        assert await inbox_service.prune(session, older_than_days=1, limit=100) == 0
    async with sm() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 1
