"""Webhooks that survive what servers go through: a SIGKILL before or during delivery, two
nodes sharing one database, every database backend, and pruning of the delivery log.

Everything is real: ``simgate serve`` processes, databases, the h11 receiver in
``receiver.py``. Retries are made due by moving ``next_attempt_at`` in the database rather
than by waiting out the schedule; nothing asserts on timings, the timeouts only keep a
broken run from hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings, load_settings
from simgate.domain.keys import DEFAULT_SCOPES
from simgate.domain.placement import Placement
from simgate.services import events, phones
from simgate.services import gateways as gateway_service
from simgate.services import webhooks as service
from simgate.store import migrate
from simgate.store.engine import make_engine, make_sessionmaker
from simgate.store.models import App, Event, WebhookAttempt, WebhookDelivery
from simgate.store.types import utcnow
from simgate.web.runtime import Runtime
from tests.conftest import app_client, fresh_database
from tests.integration.helpers import bearer, make_key
from tests.integration.receiver import Receiver, Reply, Request
from tests.integration.server import Server, cli_env
from tests.integration.test_webhooks import (
    HOOKS,
    deliveries,
    lan,
    make_due,
    receive_sms,
    register,
    runtime,
    until,
    verify,
)

SENDER = "+4917612345678"
TO = "+4915112345678"
RECEIVED = "/api/v1/gateway/sms/received"


# --- shared by the process tests -------------------------------------------------------------


async def prepare(url: str, data_dir: Path, phone_names: tuple[str, ...]) -> tuple[str, list[str]]:
    """Migrate the database and create an app key and phone gateways: the app's key and
    the phones' keys."""
    settings = load_settings(data_dir=data_dir, database_url=url, log_format="console")
    engine = make_engine(settings)
    try:
        await migrate.upgrade(engine)
        key = await make_key(engine)
        keys = []
        async with make_sessionmaker(engine).begin() as session:
            for name in phone_names:
                made = await phones.create(
                    session, label=name, device_id=None, name=name, actor="test"
                )
                keys.append(made.key)
    finally:
        await engine.dispose()
    return key, keys


def server_env(data_dir: Path, url: str, node: str, timeout: float = 5.0) -> dict[str, str]:
    return cli_env(
        data_dir,
        SIMGATE_DATABASE_URL=url,
        SIMGATE_NODE_NAME=node,
        SIMGATE_WEBHOOK_ALLOW_PRIVATE="true",
        SIMGATE_WEBHOOK_TIMEOUT=str(timeout),
    )


async def start(data_dir: Path, env: dict[str, str], name: str) -> Server:
    return await asyncio.to_thread(Server, data_dir, env, name=name)


async def stop(server: Server, sig: int = signal.SIGTERM) -> None:
    await asyncio.to_thread(server.stop, sig)


async def endpoint(http: httpx.AsyncClient, key: str, url: str, kinds: list[str]) -> dict[str, Any]:
    resp = await http.post(HOOKS, json={"url": url, "events": kinds}, headers=bearer(key))
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def ingest(http: httpx.AsyncClient, phone_key: str, text: str, base: str = "") -> str:
    """A phone hands over an SMS; its message id (answered only once it is stored)."""
    resp = await http.post(
        f"{base}{RECEIVED}",
        json={"phone_number": SENDER, "message_body": text, "sim_slot": 1},
        headers=bearer(phone_key),
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["message_id"])


async def delivery_log(http: httpx.AsyncClient, key: str, hook: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 200}
    while True:
        resp = await http.get(f"{HOOKS}/{hook}/deliveries", params=params, headers=bearer(key))
        assert resp.status_code == 200, resp.text
        page = resp.json()
        out += page["data"]
        if page["next_cursor"] is None:
            return out
        params["cursor"] = page["next_cursor"]


async def all_delivered(
    http: httpx.AsyncClient, key: str, hook: str, n: int, timeout: float = 60.0
) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]]:
        rows = await delivery_log(http, key, hook)
        done = len(rows) >= n and all(d["status"] == "delivered" for d in rows)
        return rows if done else []

    rows: list[dict[str, Any]] = await until(check, f"{n} deliveries to be delivered", timeout)
    return rows


def by_webhook_id(secret: str, requests: list[Request]) -> dict[str, dict[str, Any]]:
    """Every request checked (signature, one body per webhook-id): the JSON per id."""
    bodies: dict[str, bytes] = {}
    out: dict[str, dict[str, Any]] = {}
    for r in requests:
        wid = r.headers["webhook-id"]
        first = bodies.setdefault(wid, r.body)
        assert r.body == first, f"{wid} was sent again with another body"
        out[wid] = verify(secret, r)
    return out


async def all_due(url: str, data_dir: Path) -> None:
    """Every pending delivery due now, written while no server runs (instead of waiting
    out the backoff)."""
    settings = load_settings(data_dir=data_dir, database_url=url, log_format="console")
    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine).begin() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.status == "pending")
                .values(next_attempt_at=utcnow() - timedelta(seconds=1))
            )
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def served_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async for url in fresh_database(request.param, tmp_path):
        yield url


# --- 1. SIGKILL ----------------------------------------------------------------------------

N_CRASH = 8


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before-delivery", "in-flight"])
async def test_sigkill_loses_no_event(
    served_db: str, data_dir: Path, clean_env: None, when: str
) -> None:
    """Every SMS answered 201 has its ``message.received`` delivered after a SIGKILL and a
    restart: whether the receiver had refused everything so far (503) or was still holding
    the attempts open when the server died."""
    key, [phone] = await prepare(served_db, data_dir, ("phone1",))
    in_flight = when == "in-flight"
    # In flight, the longest timeout: the dead server's leases (timeout + 30 s) then outlast
    # the wait below, so only the restarted node taking its leases back can deliver them.
    env = server_env(data_dir, served_db, "crash-node", timeout=60.0 if in_flight else 5.0)
    # in flight: the receiver holds every attempt open, so none is answered before the kill
    first_reply = Reply(hang=True) if in_flight else Reply(status=503)
    async with Receiver(first_reply) as receiver:
        first = await start(data_dir, env, "first")
        try:
            async with httpx.AsyncClient(base_url=first.url, timeout=10) as http:
                hook = await endpoint(http, key, receiver.url(), ["message.received"])
                texts: dict[str, str] = {}
                for i in range(N_CRASH):
                    text = f"crash {when} {i}"
                    texts[await ingest(http, phone, text)] = text
            if in_flight:  # the kill cuts at least one attempt off halfway
                await receiver.wait_for(1, timeout=30)
        finally:
            await stop(first, signal.SIGKILL)
        cut_off = {r.headers["webhook-id"] for r in receiver.requests}
        # An attempt that already failed (503, or no answer in time) waits out its backoff;
        # one the crash cut off still holds the dead server's lease, which the restarted
        # node takes back by itself.
        await all_due(served_db, data_dir)
        receiver.default = Reply(status=204)
        before = len(receiver.requests)

        again = await start(data_dir, env, "second")
        try:
            async with httpx.AsyncClient(base_url=again.url, timeout=10) as http:
                rows = await all_delivered(http, key, hook["id"], N_CRASH)
        finally:
            await stop(again)

    got = by_webhook_id(hook["secret"], receiver.requests)
    after = {r.headers["webhook-id"] for r in receiver.requests[before:]}
    # one delivery per event, each delivered, each id heard of by the receiver
    assert len(rows) == N_CRASH
    assert {d["event_id"] for d in rows} == set(got)
    assert {d["event_id"] for d in rows} <= after, "nothing was answered 2xx before the kill"
    heard = {body["data"]["id"]: body for body in got.values()}
    assert set(heard) == set(texts), "an SMS's event is missing"
    for mid, text in texts.items():
        body = heard[mid]
        assert body["type"] == "message.received"
        assert (body["data"]["body"], body["data"]["from"]) == (text, SENDER)
    for d in rows:  # what the first server tried was refused or never answered
        codes = [a["status_code"] for a in d["log"]]
        assert codes[-1] == 204
        assert set(codes[:-1]) <= {503, None}
    if in_flight:
        # what the crash cut off is sent again, under the same webhook-id
        assert cut_off
        assert cut_off <= after


# --- 2. two nodes --------------------------------------------------------------------------

N_SMS = 40
N_OUT = 30  # each gives message.sent and message.delivered


@pytest.fixture
async def pg_url(tmp_path: Path) -> AsyncIterator[str]:
    async for url in fresh_database("postgresql", tmp_path):
        yield url


async def _metric(http: httpx.AsyncClient, url: str, name: str) -> float:
    text = (await http.get(f"{url}/metrics")).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


@pytest.mark.slow
async def test_two_nodes_deliver_each_event_once_and_in_order(
    pg_url: str, tmp_path: Path, clean_env: None
) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    nodes = ("node-a", "node-b")
    key, phone_keys = await prepare(pg_url, dirs[0], ("phone-a", "phone-b"))
    engine = make_engine(load_settings(data_dir=dirs[0], database_url=pg_url))
    try:
        async with make_sessionmaker(engine).begin() as session:
            for gw, node in zip(("gw-a", "gw-b"), nodes, strict=True):
                await gateway_service.create(
                    session,
                    name=gw,
                    kind="fake",
                    config={"report_delay": 0.05},
                    placement=Placement.on_node(node),
                    max_in_flight=4,
                    actor="test",
                )
    finally:
        await engine.dispose()
    envs = [server_env(d, pg_url, n) for d, n in zip(dirs, nodes, strict=True)]

    async with Receiver() as receiver:
        servers = await asyncio.gather(start(dirs[0], envs[0], "a"), start(dirs[1], envs[1], "b"))
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                a, b = servers
                resp = await http.post(
                    f"{a.url}{HOOKS}",
                    json={
                        "url": receiver.url(),
                        "events": ["message.received", "message.sent", "message.delivered"],
                    },
                    headers=bearer(key),
                )
                assert resp.status_code == 201, resp.text
                hook = resp.json()
                texts: dict[str, str] = {}
                outbound: list[str] = []
                for i in range(N_SMS):
                    on = servers[i % 2].url
                    text = f"two nodes {i}"
                    texts[await ingest(http, phone_keys[i % 2], text, on)] = text
                    if i < N_OUT:
                        resp = await http.post(
                            f"{on}/api/v1/messages",
                            json={"to": TO, "body": f"out {i}", "gateway": ("gw-a", "gw-b")[i % 2]},
                            headers=bearer(key),
                        )
                        assert resp.status_code == 202, resp.text
                        outbound.append(resp.json()["id"])
                n = N_SMS + 2 * N_OUT
                async with httpx.AsyncClient(base_url=b.url, timeout=10) as on_b:
                    rows = await all_delivered(on_b, key, hook["id"], n, timeout=90)
                delivered = [
                    await _metric(
                        http, s.url, 'simgate_webhook_deliveries_total{outcome="delivered"}'
                    )
                    for s in servers
                ]
        finally:
            await asyncio.gather(stop(servers[0]), stop(servers[1]))

    # Each event was claimed by one node, once: one attempt, one request, per webhook-id.
    assert len(rows) == n
    assert all(d["attempts"] == 1 for d in rows), [d for d in rows if d["attempts"] != 1]
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == n
    assert len(set(ids)) == n, "an event was delivered twice"
    assert set(ids) == {d["event_id"] for d in rows}
    assert sum(delivered) == n
    got = by_webhook_id(hook["secret"], receiver.requests)
    received = {
        b["data"]["id"]: b["data"]["body"] for b in got.values() if b["type"] == "message.received"
    }
    assert received == texts
    # A message's sent reached the receiver before its delivered (same order_key).
    seen: dict[str, list[str]] = {}
    for r in receiver.requests:
        body = json.loads(r.body)
        if body["type"] != "message.received":
            seen.setdefault(body["data"]["id"], []).append(body["type"])
    assert set(seen) == set(outbound)
    out_of_order = {m: t for m, t in seen.items() if t != ["message.sent", "message.delivered"]}
    assert out_of_order == {}


# --- 3. every backend, in process ------------------------------------------------------------


@pytest.fixture
async def hooks_client(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async for c in app_client(lan(settings), engine):
        yield c


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as r:
        yield r


@pytest.mark.db
async def test_retry_and_delivery_log_on_every_backend(
    hooks_client: httpx.AsyncClient, engine: AsyncEngine, receiver: Receiver
) -> None:
    key = await make_key(engine)
    hook = await register(hooks_client, key, receiver.url(), ["message.received"])
    receiver.script(Reply(status=503, body=b"busy"))
    mid = await receive_sms(hooks_client, "retry on every backend")
    await receiver.wait_for(1)

    async def first_recorded() -> list[dict[str, Any]]:
        rows = await deliveries(hooks_client, key, hook["id"])
        return rows if rows and rows[0]["attempts"] == 1 else []

    [pending] = await until(first_recorded, "the 503 to be recorded")
    assert pending["status"] == "pending"
    assert pending["next_attempt_at"] is not None
    assert pending["last_status_code"] == 503
    await make_due(hooks_client)  # moves next_attempt_at into the past and wakes the worker
    await receiver.wait_for(2)

    async def done() -> list[dict[str, Any]]:
        rows = await deliveries(hooks_client, key, hook["id"])
        return rows if rows and rows[0]["status"] == "delivered" else []

    [row] = await until(done, "the retry to be recorded")
    assert row["attempts"] == 2
    assert [a["status_code"] for a in row["log"]] == [503, 204]
    assert row["log"][0]["response"] == "busy"
    assert row["type"] == "message.received"
    assert row["next_attempt_at"] is None
    assert row["delivered_at"] is not None
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == row["event_id"]
    assert first.body == second.body
    assert verify(hook["secret"], second)["data"]["id"] == mid
    assert len(receiver.requests) == 2


async def _app_id(engine: AsyncEngine) -> int:
    async with make_sessionmaker(engine)() as session:
        found = await session.scalar(select(App.id).where(App.name == "shop"))
    assert found is not None
    return int(found)


@pytest.mark.db
async def test_same_order_key_waits_for_a_retry_on_every_backend(
    hooks_client: httpx.AsyncClient, engine: AsyncEngine, receiver: Receiver
) -> None:
    key = await make_key(engine)
    hook = await register(hooks_client, key, receiver.url(), ["message.sent", "message.delivered"])
    app_id = await _app_id(engine)
    receiver.script(Reply(status=503))
    rt: Runtime = runtime(hooks_client)
    async with rt.sessionmaker.begin() as session:
        for status in ("sent", "delivered"):
            events.record(
                session,
                f"message.{status}",
                "msg_ordered",
                {"id": "msg_ordered", "status": status},
                app_id=app_id,
                order_key="msg_ordered",
            )
        # another message's events do not wait behind it
        events.record(
            session,
            "message.sent",
            "msg_other",
            {"id": "msg_other", "status": "sent"},
            app_id=app_id,
            order_key="msg_other",
        )
    await receiver.wait_for(2)

    async def settled() -> list[dict[str, Any]]:
        rows = await deliveries(hooks_client, key, hook["id"])
        attempted = [d for d in rows if d["attempts"] >= 1]
        return rows if len(attempted) == 2 else []

    await until(settled, "the first two attempts to be recorded")
    rows = await deliveries(hooks_client, key, hook["id"])
    # the 'delivered' one has not been tried: its 'sent' is still pending
    assert sorted(d["attempts"] for d in rows) == [0, 1, 1]
    first_two = [
        (json.loads(r.body)["data"]["id"], r.headers["webhook-id"]) for r in receiver.requests
    ]
    assert {m for m, _ in first_two} == {"msg_ordered", "msg_other"}
    await make_due(hooks_client)
    await receiver.wait_for(4)
    await until(
        lambda: _all_delivered_in_process(hooks_client, key, hook["id"]), "everything delivered"
    )
    ordered = [
        json.loads(r.body)["type"]
        for r in receiver.requests
        if json.loads(r.body)["data"]["id"] == "msg_ordered"
    ]
    assert ordered == ["message.sent", "message.sent", "message.delivered"]
    assert len(receiver.requests) == 4


async def _all_delivered_in_process(
    client: httpx.AsyncClient, key: str, hook: str
) -> list[dict[str, Any]]:
    rows = await deliveries(client, key, hook)
    return rows if rows and all(d["status"] == "delivered" for d in rows) else []


# --- 4. pruning ------------------------------------------------------------------------------

RETENTION = 30


@pytest.mark.db
async def test_prune_takes_finished_old_rows_in_chunks(
    settings: Settings, engine: AsyncEngine
) -> None:
    await make_key(engine, scopes=DEFAULT_SCOPES)
    app_id = await _app_id(engine)
    sm = make_sessionmaker(engine)
    async with sm.begin() as session:
        await service.create_endpoint(
            session,
            app_id=app_id,
            scopes=DEFAULT_SCOPES,
            url="http://127.0.0.1:9/hook",
            events=["message.received"],
            description=None,
            settings=lan(settings),
        )
    old = utcnow() - timedelta(days=RETENTION + 1)
    recent = utcnow() - timedelta(days=RETENTION - 1)
    # (status, created_at): one event and one delivery each
    plan = [
        ("delivered", old),
        ("failed", old),
        ("canceled", old),
        ("delivered", old),
        ("delivered", old),
        ("pending", old),  # never pruned, however old
        ("delivered", recent),  # too young
    ]
    async with sm.begin() as session:
        for i, (_, at) in enumerate(plan):
            events.record(session, "message.received", f"m{i}", {"id": f"m{i}"}, at=at)
        # an old event no endpoint wanted: dispatched with no delivery
        events.record(session, "gateway.online", "gw", {"gateway": "gw"}, at=old)
    async with sm.begin() as session:
        assert await service.fan_out(session, lock=settings.backend != "sqlite") == len(plan) + 1
    async with sm.begin() as session:
        # an old event not fanned out yet
        events.record(session, "message.received", "late", {"id": "late"}, at=old)
    async with sm.begin() as session:
        rows = list(await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        assert len(rows) == len(plan)
        by_subject = {e.id: e.subject for e in await session.scalars(select(Event))}
        for d in rows:
            status, at = plan[int(by_subject[d.event_id].removeprefix("m"))]
            d.status = status
            d.created_at = at
            for _ in range(2):
                session.add(
                    WebhookAttempt(
                        delivery_id=d.id,
                        at=at,
                        status_code=204 if status == "delivered" else 500,
                        latency_ms=1.0,
                        error="",
                        response_excerpt="",
                        manual=False,
                    )
                )

    limit = 2
    chunks = []
    for _ in range(20):
        async with sm.begin() as session:
            n = await service.prune(session, older_than_days=RETENTION, limit=limit)
        if n == 0:
            break
        assert n <= 2 * limit  # at most ``limit`` deliveries and ``limit`` events a call
        chunks.append(n)
    assert sum(chunks) == 5 + 6  # five finished deliveries, their five events and the unwanted one
    assert len(chunks) >= 3  # five deliveries cannot go in fewer than three chunks of two

    async with sm() as session:
        left = list(await session.scalars(select(WebhookDelivery)))
        assert sorted(d.status for d in left) == ["delivered", "pending"]
        attempts = list(await session.scalars(select(WebhookAttempt)))
        assert sorted({a.delivery_id for a in attempts}) == sorted(d.id for d in left)
        assert len(attempts) == 4
        subjects = sorted(e.subject for e in await session.scalars(select(Event)))
        # the pending's event, the young one's, and the one not fanned out yet stay
        assert subjects == sorted(["m5", "m6", "late"])
        assert await session.scalar(select(func.count()).select_from(Event)) == 3
    # nothing more to do
    async with sm.begin() as session:
        assert await service.prune(session, older_than_days=RETENTION, limit=limit) == 0


# --- two nodes fanning out at once --------------------------------------------------------


@pytest.mark.db
async def test_fan_out_on_another_node_does_not_let_delivered_overtake_sent(
    settings: Settings, engine: AsyncEngine, receiver: Receiver
) -> None:
    """One node is in the middle of fanning out a message's ``message.sent`` (its
    transaction holds the event) when the message's ``message.delivered`` is recorded
    and a second node looks for work: it must not deliver ``message.delivered`` first."""
    if settings.backend == "sqlite":
        pytest.skip("one writer at a time: SQLite has no second node fanning out meanwhile")
    await make_key(engine)
    app_id = await _app_id(engine)
    here = lan(settings)
    sm = make_sessionmaker(engine)
    async with sm.begin() as session:
        await service.create_endpoint(
            session,
            app_id=app_id,
            scopes=DEFAULT_SCOPES,
            url=receiver.url(),
            events=["message.sent", "message.delivered"],
            description=None,
            settings=here,
        )

    def record(session: Any, status: str) -> None:
        events.record(
            session,
            f"message.{status}",
            "msg_race",
            {"id": "msg_race", "status": status},
            app_id=app_id,
            order_key="msg_race",
        )

    async with sm.begin() as session:
        record(session, "sent")
    node_a = sm()
    worker = service.WebhookWorker(sm, here.model_copy(update={"node_name": "node-b"}), poll=0.2)
    task: asyncio.Task[None] | None = None
    try:
        # Node A begins to fan out: its transaction holds the undispatched 'sent' event.
        await node_a.begin()
        taking = select(Event).where(Event.dispatched.is_(False)).order_by(Event.id)
        held = list(await node_a.scalars(taking.with_for_update(skip_locked=True)))
        assert [e.type for e in held] == ["message.sent"]
        async with sm.begin() as session:
            record(session, "delivered")
        # Node B looks for work meanwhile; whatever it sends now must not be 'delivered'.
        task = asyncio.create_task(worker.run())
        with contextlib.suppress(TimeoutError):
            await receiver.wait_for(1, timeout=1.5)
        await service.fan_out(node_a, lock=True)
        await node_a.commit()
        await receiver.wait_for(2, timeout=30)
    finally:
        await node_a.close()
        await worker.stop()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    types = [json.loads(r.body)["type"] for r in receiver.requests]
    assert types == ["message.sent", "message.delivered"]
    async with sm() as session:
        rows = list(await session.scalars(select(WebhookDelivery)))
    assert len(rows) == 2, "each event fanned out once"
