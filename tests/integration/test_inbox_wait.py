"""GET /api/v1/inbox/wait: the long-poll a test uses to read a code from an SMS. It answers
the first match arriving after ``since`` (with ``match``), 408 at its timeout, applies every
filter, holds at most INBOX_WAITERS_PER_APP waits per app, lets go of a client that left,
and RE2 keeps any pattern linear. Also the status waiters behind /api/sendsms, woken by
the change feed.

Nothing here asserts on timings: a wait is started, the test waits (with a generous
deadline) until the server holds it, and only then does the SMS arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings
from simgate.domain.keys import Scope
from simgate.services.waiters import StatusWaiters
from simgate.web.runtime import Runtime
from tests.conftest import app_client
from tests.integration.helpers import assert_error, bearer, make_key
from tests.integration.live import live_server
from tests.integration.test_inbox_api import (
    OTHER,
    SENDER,
    SIM_1,
    SIM_2,
    SIM_3,
    new_phone,
    receive,
)

WAIT = "/api/v1/inbox/wait"
INBOX_ONLY = frozenset({Scope.INBOX})
T = TypeVar("T")


def runtime(client: httpx.AsyncClient) -> Runtime:
    return client.app.state.runtime  # type: ignore[attr-defined,no-any-return]


async def until(check: Callable[[], object], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def started(coro: Coroutine[Any, Any, T]) -> AsyncIterator[asyncio.Future[T]]:
    """``coro`` as a task that never outlives the test."""
    task = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def wait_call(client: httpx.AsyncClient, key: str, **params: Any) -> httpx.Response:
    params.setdefault("timeout", 30)
    return await client.get(WAIT, params=params, headers=bearer(key), timeout=60)


async def holding(client: httpx.AsyncClient, n: int) -> None:
    await until(lambda: runtime(client).inbox.waiting == n, f"{n} open wait(s)")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


# --- answering -------------------------------------------------------------------------------


async def test_an_sms_arriving_while_waiting_is_the_answer(
    db_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    key = await make_key(engine, "tests", INBOX_ONLY)
    phone = await new_phone(engine)
    before = now_iso()
    async with started(wait_call(db_client, key, pattern=r"(\d{6})", contains="code")) as waiting:
        await holding(db_client, 1)
        assert not waiting.done()
        message_id = await receive(db_client, phone, "Your code is 123456.", sim_slot=1)
        resp = await asyncio.wait_for(waiting, 60)
    assert resp.status_code == 200, resp.text
    found = resp.json()
    assert found["match"] == "123456"  # the first group
    assert (found["id"], found["from"], found["to"], found["gateway"]) == (
        message_id,
        SENDER,
        SIM_1,
        "phone1",
    )
    assert found["body"] == "Your code is 123456."
    assert runtime(db_client).inbox.waiting == 0

    # The same SMS read again through `since`: the whole match without a group, the first
    # group when there are several, and no `match` at all without a pattern.
    for pattern, match in (
        (r"\d{6}", "123456"),
        (r"code is \d+", "code is 123456"),
        (r"(code) is (\d+)", "code"),
    ):
        again = await wait_call(db_client, key, since=before, pattern=pattern, timeout=5)
        assert again.status_code == 200, again.text
        assert again.json()["match"] == match, pattern
    plain = await wait_call(db_client, key, since=before, timeout=5)
    assert plain.status_code == 200
    assert "match" not in plain.json()


async def test_nothing_arriving_is_a_408_at_the_timeout(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    key = await make_key(sqlite_engine, "tests", INBOX_ONLY)
    phone = await new_phone(sqlite_engine)
    async with started(wait_call(client, key, contains="never", timeout=1)) as waiting:
        await holding(client, 1)
        await receive(client, phone, "something else")  # wakes it; it waits on
        resp = await asyncio.wait_for(waiting, 60)
    err = assert_error(resp, 408, "timeout", "timeout")
    assert "no matching SMS arrived within 1 s" in err["message"]
    fraction = await wait_call(client, key, timeout=0.5)
    assert "within 0.5 s" in assert_error(fraction, 408, "timeout")["message"]
    assert runtime(client).inbox.waiting == 0


async def test_since_counts_what_arrived_after_it_and_nothing_before(
    db_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    key = await make_key(engine, "tests", INBOX_ONLY)
    phone = await new_phone(engine)
    earlier = await receive(db_client, phone, "Your code is 111111")
    await asyncio.sleep(0.01)  # `since` falls strictly after the first SMS's millisecond
    since = now_iso()
    before_since = await wait_call(db_client, key, since=since, pattern=r"(\d{6})", timeout=1)
    assert_error(before_since, 408, "timeout")

    later = await receive(db_client, phone, "Your code is 222222")
    # Stored before the call, after `since`: answered at once.
    found = await wait_call(db_client, key, since=since, pattern=r"(\d{6})", timeout=30)
    assert found.status_code == 200, found.text
    assert (found.json()["id"], found.json()["match"]) == (later, "222222")
    # Without `since` only what arrives after the call counts.
    assert_error(await wait_call(db_client, key, contains="code", timeout=1), 408, "timeout")
    # A `since` long ago finds the first of them; a zone other than UTC means the same.
    old = await wait_call(db_client, key, since="2000-01-01T02:00:00+02:00", pattern=r"(\d{6})")
    assert old.json()["id"] == earlier


async def test_every_filter_applies_to_a_wait(
    db_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    key = await make_key(engine, "tests", INBOX_ONLY)
    phone1 = await new_phone(engine, "phone1", (SIM_1, SIM_2))
    phone2 = await new_phone(engine, "phone2", (SIM_3, SIM_2))  # SIM_2 in its slot 2 too
    picky = wait_call(
        db_client,
        key,
        **{
            "from": "+49 176 1234 5678",
            "to": SIM_2,
            "gateway": "phone1",
            "sim_slot": 2,
            "contains": "CODE",
            "pattern": r"(\d{6})",
        },
    )
    async with started(picky) as waiting, started(wait_call(db_client, key)) as anything:
        await holding(db_client, 2)
        first = await receive(db_client, phone1, "your code 100001", sender=OTHER, sim_slot=2)
        for phone, body, slot in (
            (phone1, "your code 100002", 1),  # slot 1: another `to` and `sim_slot`
            (phone2, "your code 100003", 2),  # another gateway only
            (phone1, "your 100004", 2),  # no "code"
            (phone1, "your code is near", 2),  # no six digits
        ):
            await receive(db_client, phone, body, sim_slot=slot)
        assert not waiting.done()
        wanted = await receive(db_client, phone1, "Your Code: 424242", sim_slot=2)
        resp = await asyncio.wait_for(waiting, 60)
        unfiltered = await asyncio.wait_for(anything, 60)
    assert resp.status_code == 200, resp.text
    assert (resp.json()["id"], resp.json()["match"]) == (wanted, "424242")
    # The wait without filters took the first SMS of all.
    assert unfiltered.json()["id"] == first


async def test_a_sender_name_and_a_named_sim_number_match_too(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    key = await make_key(sqlite_engine, "tests", INBOX_ONLY)
    phone = await new_phone(sqlite_engine)
    async with started(
        wait_call(client, key, **{"from": "Google", "to": "+49 151 0000 0002"})
    ) as w:
        await holding(client, 1)
        await receive(client, phone, "G-123456", sender="Googl", sim_slot=2)
        wanted = await receive(client, phone, "G-654321", sender="Google", sim_slot=2)
        resp = await asyncio.wait_for(w, 60)
    assert resp.json()["id"] == wanted


# --- limits and patterns ---------------------------------------------------------------------


@pytest.fixture
async def limited(
    sqlite_settings: Settings, sqlite_engine: AsyncEngine
) -> AsyncIterator[httpx.AsyncClient]:
    """An app that lets each app hold two waits at once."""
    settings = sqlite_settings.model_copy(update={"inbox_waiters_per_app": 2})
    async for c in app_client(settings, sqlite_engine):
        yield c


async def test_an_app_holds_at_most_its_share_of_waits(
    limited: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    key = await make_key(sqlite_engine, "tests", INBOX_ONLY)
    other_app = await make_key(sqlite_engine, "other", INBOX_ONLY)
    phone = await new_phone(sqlite_engine)
    since = now_iso()
    async with (
        started(wait_call(limited, key, contains="release")) as one,
        started(wait_call(limited, key, contains="release")) as two,
    ):
        await holding(limited, 2)
        refused = await wait_call(limited, key, contains="release")
        err = assert_error(refused, 429, "rate_limited")
        assert "2 waits open" in err["message"]
        assert "SIMGATE_INBOX_WAITERS_PER_APP" in err["message"]
        assert int(refused.headers["Retry-After"]) >= 1
        # Another key of the same app shares the app's limit; another app has its own.
        same_app = await make_key(sqlite_engine, "tests", INBOX_ONLY)
        assert_error(await wait_call(limited, same_app, timeout=1), 429, "rate_limited")
        assert_error(await wait_call(limited, other_app, timeout=1), 408, "timeout")
        await receive(limited, phone, "release them")
        answers = await asyncio.wait_for(asyncio.gather(one, two), 60)
    assert [r.status_code for r in answers] == [200, 200]
    assert runtime(limited).inbox.waiting == 0
    # The slots are free again.
    again = await wait_call(limited, key, contains="release", since=since)
    assert again.status_code == 200, again.text


async def test_a_catastrophic_pattern_still_returns(
    client: httpx.AsyncClient, sqlite_engine: AsyncEngine
) -> None:
    """`(a+)+$` against 'aaa…ab' takes a backtracking engine longer than the universe has;
    RE2 reads the body once. The wait must answer at all (no timing asserted)."""
    key = await make_key(sqlite_engine, "tests", INBOX_ONLY)
    phone = await new_phone(sqlite_engine)
    since = now_iso()
    await receive(client, phone, "a" * 9000 + "b")
    no_match = await wait_call(client, key, since=since, pattern="(a+)+$", timeout=1)
    assert_error(no_match, 408, "timeout")
    async with started(wait_call(client, key, pattern="(a+)+$", timeout=30)) as waiting:
        await holding(client, 1)
        await receive(client, phone, "a" * 9000 + "b!")
        matching = await receive(client, phone, "a" * 9000)
        resp = await asyncio.wait_for(waiting, 60)
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"] == matching
    assert set(resp.json()["match"]) == {"a"}


async def test_a_client_that_goes_away_frees_its_wait(
    sqlite_settings: Settings, sqlite_engine: AsyncEngine
) -> None:
    key = await make_key(sqlite_engine, "tests", INBOX_ONLY)
    async with live_server(sqlite_settings, sqlite_engine) as live:
        port = int(live.url.rsplit(":", 1)[1])

        async def gauge() -> float:
            async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
                text = (await http.get("/metrics")).text
            (line,) = [x for x in text.splitlines() if x.startswith("simgate_inbox_waiters ")]
            return float(line.split()[1])

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            request = (
                f"GET {WAIT}?timeout=120&contains=never HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n\r\n"
            )
            writer.write(request.encode())
            await writer.drain()
            await until(lambda: live.runtime.inbox.waiting == 1, "the wait held")
            assert await gauge() == 1
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        # Gone long before its 120 s are up.
        await until(lambda: live.runtime.inbox.waiting == 0, "the wait let go", timeout=30)
        assert await gauge() == 0
        assert reader.at_eof() or not await reader.read(1)


# --- status waiters (/api/sendsms) ------------------------------------------------------------


@pytest.fixture
async def patient(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """On every backend, with /api/sendsms waiting up to a minute for the gateway."""
    async for c in app_client(settings.model_copy(update={"sendsms_wait": 60.0}), engine):
        yield c


async def test_a_status_wait_is_woken_by_the_change_feed(
    patient: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """/api/sendsms waits for its message's status. Here nothing but the change feed can
    wake it: its safety re-read is set beyond SENDSMS_WAIT, the dispatcher never sends
    (no gateway), and the status changes in another request (a cancel)."""
    key = await make_key(engine)
    rt = runtime(patient)
    status_waiters = StatusWaiters(rt.sessionmaker, recheck=600.0)
    rt.waiters = status_waiters
    rt.feed.listeners.append(status_waiters.changed)
    sendsms = patient.post(
        "/api/sendsms", json={"api_key": key, "phone": SENDER, "message": "x"}, timeout=90
    )
    async with started(sendsms) as answer:
        await until(lambda: status_waiters.waiting == 1, "/api/sendsms waiting")
        listed = await patient.get(
            "/api/v1/messages", params={"direction": "outbound"}, headers=bearer(key)
        )
        (message,) = listed.json()["data"]
        assert message["status"] == "queued"
        canceled = await patient.post(
            f"/api/v1/messages/{message['id']}/cancel", headers=bearer(key)
        )
        assert canceled.status_code == 200, canceled.text
        resp = await asyncio.wait_for(answer, 90)
    assert resp.status_code == 502, resp.text
    body = resp.json()
    assert (body["status"], body["id"], body["code"]) == ("error", message["id"], "canceled")
    assert status_waiters.waiting == 0
