"""The dispatcher under faults: failed claims, entries the database refuses, late reports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.drivers.fake import FakeConfig, FakeMode
from tests.integration.helpers import make_key
from tests.integration.test_messages_api import (
    DE,
    add_gateway,
    get_message,
    runtime,
    send_ok,
    wait_for_status,
)

# fixtures shared with the send API tests
from tests.integration.test_messages_api import fast as fast


@pytest.fixture
async def key(sqlite_engine: AsyncEngine) -> str:
    return await make_key(sqlite_engine)


async def test_a_failed_claim_gives_back_gateway_capacity(
    fast: httpx.AsyncClient, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatcher = runtime(fast).dispatcher
    real = dispatcher._claim_rows
    sessionmaker = dispatcher._sessionmaker
    failures: list[int] = []

    async def flaky(*args: Any) -> None:
        claimed = args[5]
        if failures:
            return await real(*args)

        @contextlib.asynccontextmanager
        async def commit_fails_once_claimed() -> AsyncIterator[Any]:
            async with sessionmaker() as session, session.begin():
                yield session
                if claimed:  # the claim counted capacity; now its commit "fails"
                    failures.append(1)  # raised inside the transaction: it rolls back
                    raise IntegrityError("commit", {}, Exception("simulated deadlock"))

        class OneShot:
            """The claim's own transaction is the one that fails (it opens it first)."""

            def __init__(self) -> None:
                self.used = False

            def begin(self) -> Any:
                if self.used:
                    return sessionmaker.begin()
                self.used = True
                return commit_fails_once_claimed()

            def __call__(self) -> Any:
                return sessionmaker()

        dispatcher._sessionmaker = OneShot()  # type: ignore[assignment]
        try:
            await real(*args)
        finally:
            dispatcher._sessionmaker = sessionmaker

    monkeypatch.setattr(dispatcher, "_claim_rows", flaky)
    await add_gateway(fast, "solo", max_in_flight=1)
    accepted = await send_ok(fast, key)
    done = await wait_for_status(fast, key, accepted["id"], {"sent", "delivered"})
    assert done["gateway"] == "solo"
    assert failures == [1]


async def test_an_entry_the_database_refuses_does_not_block_the_others(
    fast: httpx.AsyncClient, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatcher = runtime(fast).dispatcher
    real = dispatcher._record_batch
    poisoned: set[str] = set()

    async def picky(batch: list[Any]) -> Any:
        if any(getattr(e, "item", None) and e.item.id in poisoned for e in batch):
            raise IntegrityError("insert", {}, Exception("simulated permanent refusal"))
        return await real(batch)

    monkeypatch.setattr(dispatcher, "_record_batch", picky)
    gateway = await add_gateway(fast, "gw", max_in_flight=8, mode="sent", send_delay=0.2)
    bad = await send_ok(fast, key, body="poison")
    poisoned.add(bad["id"])
    good = [await send_ok(fast, key, body=f"fine {i}") for i in range(5)]
    for accepted in good:
        await wait_for_status(fast, key, accepted["id"], {"sent"})
    assert dispatcher.dropped == 1
    # the refused outcome is dropped, not lost: the message keeps its lease until it expires
    assert (await get_message(fast, key, bad["id"]))["status"] == "sending"
    assert len(gateway.sent) == 6


async def test_a_long_gateway_name_does_not_break_recording(
    fast: httpx.AsyncClient, key: str
) -> None:
    name = "g" * 64  # its fake references are longer than the column
    await add_gateway(fast, name)
    accepted = await send_ok(fast, key)
    done = await wait_for_status(fast, key, accepted["id"], {"delivered"})
    assert done["gateway"] == name


async def test_a_report_after_the_send_timed_out_ends_the_message(
    fast: httpx.AsyncClient, key: str
) -> None:
    gateway = await add_gateway(fast, "late", mode="sent")
    await gateway.reconfigure(FakeConfig(mode=FakeMode.STALL))
    accepted = await send_ok(fast, key)
    await gateway.reconfigure(FakeConfig(mode=FakeMode.STALL))
    deadline = asyncio.get_running_loop().time() + 10
    while True:  # until the first attempt timed out and the message is queued again
        message = await get_message(fast, key, accepted["id"])
        if message["status"] == "queued" and message["attempts"] >= 1:
            break
        assert asyncio.get_running_loop().time() < deadline, message
        await asyncio.sleep(0.05)
    assert message["error"]["code"] == "gateway_timeout"
    await gateway.reconfigure(FakeConfig(mode=FakeMode.OFFLINE))  # no second attempt
    await runtime(fast).dispatcher.delivery_report(
        "late", message_id=accepted["id"], gateway_ref=None, delivered=True
    )
    done = await get_message(fast, key, accepted["id"])
    assert done["status"] == "delivered"
    assert done["to"] == DE


async def test_a_gateway_takes_the_next_message_while_the_last_outcome_is_written(
    fast: httpx.AsyncClient, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway's slot is free once the gateway has answered: the next message is handed
    to it while the recorder still writes the last one's outcome (which holds the lease)."""
    dispatcher = runtime(fast).dispatcher
    real = dispatcher._record_batch
    release = asyncio.Event()

    async def held(batch: Any) -> bool:
        await release.wait()
        return await real(batch)

    monkeypatch.setattr(dispatcher, "_record_batch", held)
    await add_gateway(fast, "solo", max_in_flight=1)
    ids = [(await send_ok(fast, key))["id"] for _ in range(3)]
    statuses: list[str] = []
    for _ in range(200):
        statuses = [(await get_message(fast, key, i))["status"] for i in ids]
        if statuses == ["sending"] * 3:
            break
        await asyncio.sleep(0.02)
    assert statuses == ["sending"] * 3  # all handed over, one at a time, none recorded yet
    release.set()
    for i in ids:
        await wait_for_status(fast, key, i, {"sent", "delivered"})
