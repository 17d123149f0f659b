"""Two `simgate serve` processes on one PostgreSQL database: any node accepts a message,
the node holding the right gateway sends it, and no message is sent twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import connect

from tests.conftest import PG_URL, fresh_database
from tests.integration.server import Server, cli_env, simgate, simulated_modem, wait_for

pytestmark = pytest.mark.slow
FINAL = {"sent", "delivered", "failed", "expired", "canceled"}
TO = "+4915112345678"


@pytest.fixture
async def pg_url(tmp_path: Path) -> AsyncIterator[str]:
    async for url in fresh_database("postgresql", tmp_path):
        yield url


def _wait_final(url: str, key: str, ids: list[str], timeout: float = 60) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=10, headers={"X-API-Key": key}) as http:
        while True:
            found = {i: http.get(f"/api/v1/messages/{i}").json() for i in ids}
            if all(m["status"] in FINAL for m in found.values()) or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


async def test_two_nodes_share_the_queue(pg_url: str, tmp_path: Path, clean_env: None) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    envs = [
        cli_env(d, SIMGATE_DATABASE_URL=pg_url, SIMGATE_NODE_NAME=name)
        for d, name in zip(dirs, ("node-a", "node-b"), strict=True)
    ]
    made = simgate("app", "create", "multi", env=envs[0])
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    for gw, node in (("gw-a", "node-a"), ("gw-b", "node-b")):
        added = simgate(
            "gateway",
            "add",
            gw,
            "--kind",
            "fake",
            "--max-in-flight",
            "4",
            "--set",
            f"node={node}",
            "--set",
            "report_delay=0.05",
            env=envs[0],
        )
        assert added.returncode == 0, added.stderr

    a = await asyncio.to_thread(Server, dirs[0], envs[0], name="a")
    b = await asyncio.to_thread(Server, dirs[1], envs[1], name="b")
    try:
        with httpx.Client(timeout=10, headers={"X-API-Key": key}) as http:
            gws = http.get(f"{a.url}/api/v1/gateways").json()["data"]
            deadline = time.monotonic() + 30
            while {g["name"]: g["node"] for g in gws} != {"gw-a": "node-a", "gw-b": "node-b"}:
                assert time.monotonic() < deadline, gws
                time.sleep(0.2)
                gws = http.get(f"{a.url}/api/v1/gateways").json()["data"]
            # Pinned to node B's gateway but handed to node A.
            pinned = http.post(
                f"{a.url}/api/v1/messages",
                json={"to": "+4915112345678", "body": "via b", "gateway": "gw-b"},
            )
            assert pinned.status_code == 202, pinned.text
            ids = []
            for i in range(40):
                node = (a, b)[i % 2]
                resp = http.post(
                    f"{node.url}/api/v1/messages",
                    json={"to": "+4915112345678", "body": f"shared {i}"},
                )
                assert resp.status_code == 202
                ids.append(resp.json()["id"])
        pinned_id = pinned.json()["id"]
        done = await asyncio.to_thread(_wait_final, b.url, key, [pinned_id, *ids])
    finally:
        await asyncio.to_thread(a.stop)
        await asyncio.to_thread(b.stop)

    assert done[pinned_id]["status"] == "delivered"
    assert done[pinned_id]["gateway"] == "gw-b"
    sending = [e for e in done[pinned_id]["events"] if e["status"] == "sending"]
    assert [e["detail"]["node"] for e in sending] == ["node-b"]
    assert {m["status"] for m in done.values()} == {"delivered"}
    for m in done.values():  # each claimed exactly once: SKIP LOCKED, no double send
        assert [e["status"] for e in m["events"]].count("sending") == 1, m["events"]
    used = {m["gateway"] for m in done.values()}
    assert used == {"gw-a", "gw-b"}


async def test_a_revoked_key_is_refused_by_another_node_at_once(
    pg_url: str, tmp_path: Path, clean_env: None
) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    envs = [
        cli_env(
            d, SIMGATE_DATABASE_URL=pg_url, SIMGATE_NODE_NAME=name, SIMGATE_AUTH_SYNC_INTERVAL="60"
        )  # the poll alone would take a minute
        for d, name in zip(dirs, ("node-a", "node-b"), strict=True)
    ]
    made = simgate("app", "create", "multi", env=envs[0])
    key = made.stdout.strip().splitlines()[-1]
    b = await asyncio.to_thread(Server, dirs[1], envs[1], name="b")
    try:
        with httpx.Client(base_url=b.url, timeout=10, headers={"X-API-Key": key}) as http:
            assert http.get("/api/v1/me").status_code == 200  # cached on node B
            # revoked from node A's host: B's marker file never changes, NOTIFY tells it
            assert simgate("key", "revoke", key[:13], env=envs[0]).returncode == 0
            deadline = time.monotonic() + 2
            status = http.get("/api/v1/me").status_code
            while status == 200 and time.monotonic() < deadline:
                time.sleep(0.05)
                status = http.get("/api/v1/me").status_code
            assert status == 401
    finally:
        await asyncio.to_thread(b.stop)


def _ok(*args: str, env: dict[str, str]) -> str:
    done = simgate(*args, env=env)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def _gateway(url: str, key: str, name: str) -> dict:
    with httpx.Client(base_url=url, timeout=10, headers={"X-API-Key": key}) as http:
        return next(g for g in http.get("/api/v1/gateways").json()["data"] if g["name"] == name)


def _two_envs(tmp_path: Path, pg_url: str, **extra: str) -> list[dict[str, str]]:
    envs = []
    for name in ("node-a", "node-b"):
        (tmp_path / name).mkdir()
        envs.append(
            cli_env(tmp_path / name, SIMGATE_DATABASE_URL=pg_url, SIMGATE_NODE_NAME=name, **extra)
        )
    return envs


async def test_a_message_for_a_modem_pinned_to_a_stopped_node_names_that_node(
    pg_url: str, tmp_path: Path, clean_env: None
) -> None:
    await asyncio.to_thread(_pinned_to_a_stopped_node, pg_url, tmp_path)


def _pinned_to_a_stopped_node(pg_url: str, tmp_path: Path) -> None:
    env_a, env_b = _two_envs(tmp_path, pg_url)
    with simulated_modem(tmp_path, env_a) as (link, _):
        _ok("modem", "add", "pi", "--port", str(link), "--node", "node-b", env=env_a)
        key = _ok("app", "create", "multi", env=env_a).strip().splitlines()[-1]
        a = Server(tmp_path / "node-a", env_a, name="a")
        b = Server(tmp_path / "node-b", env_b, name="b")
        try:
            wait_for(
                lambda: _gateway(a.url, key, "pi")["status"] == "online",
                "pi online on node B",
            )
            assert _gateway(a.url, key, "pi")["node"] == "node-b"
            b.stop()
            with httpx.Client(base_url=a.url, timeout=10, headers={"X-API-Key": key}) as http:
                sent = http.post("/api/v1/messages", json={"to": TO, "body": "x", "gateway": "pi"})
                assert sent.status_code == 202, sent.text
                message = http.get(f"/api/v1/messages/{sent.json()['id']}").json()
            assert message["status"] == "queued"
            assert message["status_detail"].startswith(
                "waiting for gateway 'pi', which does not run: pinned to node 'node-b', "
                "which stopped "
            ), message["status_detail"]
            assert "pinned to node 'node-b', which stopped" in _ok("modem", "list", env=env_a)
        finally:
            a.stop()
            b.stop()


async def _sql(statements: list[str]) -> None:
    engine = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


def _terminate(role: str) -> str:
    """Close the role's connections (the role name is the test's own)."""
    return f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"  # noqa: S608


def _log_times(server: Server, **match: str) -> list[datetime]:
    found = []
    for line in server.log().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if all(entry.get(k) == v for k, v in match.items()):
                found.append(datetime.fromisoformat(entry["ts"]))
    return found


async def test_a_node_cut_off_from_the_database_steps_down_before_another_takes_over(
    pg_url: str, tmp_path: Path, clean_env: None
) -> None:
    role = f"sgtest_cut_{uuid.uuid4().hex[:8]}"
    await _sql([f"CREATE ROLE {role} LOGIN SUPERUSER"])
    try:
        await asyncio.to_thread(_step_down, pg_url, tmp_path, role)
    finally:
        await _sql(
            [
                f"ALTER ROLE {role} LOGIN",
                _terminate(role),
                f"DROP ROLE IF EXISTS {role}",
            ]
        )


def _step_down(pg_url: str, tmp_path: Path, role: str) -> None:
    env_a, env_b = _two_envs(tmp_path, pg_url, SIMGATE_GATEWAY_OFFLINE_AFTER="30")
    env_a["SIMGATE_DATABASE_URL"] = make_url(pg_url).set(username=role).render_as_string(False)
    _ok("gateway", "add", "shared", "--kind", "fake", env=env_b)  # schema owned by postgres
    key = _ok("app", "create", "multi", env=env_b).strip().splitlines()[-1]
    a = Server(tmp_path / "node-a", env_a, name="a")
    b = None
    try:
        wait_for(lambda: _gateway(a.url, key, "shared")["node"] == "node-a", "node A runs it")
        b = Server(tmp_path / "node-b", env_b, name="b")
        # Node A loses the database (B keeps it): its heartbeats fail from now on.
        asyncio.run(
            _sql(
                [
                    f"ALTER ROLE {role} NOLOGIN",
                    _terminate(role),
                ]
            )
        )
        wait_for(
            lambda: (
                _gateway(b.url, key, "shared")["node"] == "node-b"
                and _gateway(b.url, key, "shared")["status"] == "online"
            ),
            "node B taking the gateway over",
            timeout=120,
        )
        stepped = _log_times(
            a,
            msg="stepping down: this node could not write its heartbeat; "
            "its gateways are stopped so that another node can take them over",
        )
        taken = _log_times(b, msg="gateway status", gateway="shared", status="online")
        assert stepped, a.log()[-3000:]
        assert taken, b.log()[-3000:]
        assert stepped[0] < taken[0]
        # A gets its database back: it resumes its heartbeat and leaves the gateway to B.
        asyncio.run(_sql([f"ALTER ROLE {role} LOGIN"]))
        wait_for(
            lambda: "node-a" in _ok("node", "list", env=env_b).split("running")[0],
            "node A's heartbeat again",
        )
        assert _gateway(b.url, key, "shared")["node"] == "node-b"
    finally:
        a.stop()
        if b is not None:
            b.stop()


async def test_a_phone_on_node_a_sends_what_node_b_accepted(
    pg_url: str, tmp_path: Path, clean_env: None
) -> None:
    """The phone's socket is on A; the app talks to B. B's message reaches the phone over
    A's socket, the phone reports over HTTP to B (not the node running it), and B's
    clients see it delivered; A stops waiting at once (NOTIFY), not at the ack timeout."""
    env_a, env_b = _two_envs(tmp_path, pg_url, SIMGATE_GATEWAY_ACK_TIMEOUT="60")
    phone_key = _ok("gateway", "add", "phone", "--max-in-flight", "1", env=env_a)
    phone_key = phone_key.strip().splitlines()[-1]
    key = _ok("app", "create", "multi", env=env_a).strip().splitlines()[-1]
    a = await asyncio.to_thread(Server, tmp_path / "node-a", env_a, name="a")
    b = await asyncio.to_thread(Server, tmp_path / "node-b", env_b, name="b")
    ident = '{"channel":"GatewayChannel"}'
    try:
        async with connect(f"ws{a.url[4:]}/cable?api_key={phone_key}", ping_interval=None) as ws:
            assert json.loads(await ws.recv()) == {"type": "welcome"}
            await ws.send(json.dumps({"command": "subscribe", "identifier": ident}))
            async with httpx.AsyncClient(timeout=10, headers={"X-API-Key": key}) as http:
                deadline = time.monotonic() + 30
                while True:
                    gw = (await http.get(f"{b.url}/api/v1/gateways")).json()["data"][0]
                    if gw["status"] == "online" and gw["node"] == "node-a":
                        break
                    assert time.monotonic() < deadline, gw
                    await asyncio.sleep(0.2)
                sent = await http.post(f"{b.url}/api/v1/messages", json={"to": TO, "body": "via a"})
                message_id = sent.json()["id"]
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
                    if isinstance(frame.get("message"), dict) and (
                        frame["message"].get("action") == "send_sms"
                    ):
                        break
                assert frame["message"]["payload"]["message_id"] == message_id
                reported = time.monotonic()
                for status in ("sent", "delivered"):
                    resp = await http.post(
                        f"{b.url}/api/v1/gateway/sms/status",
                        json={"message_id": message_id, "status": status},
                        headers={"Authorization": f"Bearer {phone_key}"},
                    )
                    assert resp.status_code == 200, resp.text
                found: dict = {}
                while found.get("status") != "delivered":
                    assert time.monotonic() < deadline + 30, found
                    found = (await http.get(f"{b.url}/api/v1/messages/{message_id}")).json()
                    await asyncio.sleep(0.1)
                # Node A stopped waiting for the phone's answer (its one slot is free again)
                # long before the 60 s acknowledgement timeout: the next message comes now.
                second = await http.post(f"{b.url}/api/v1/messages", json={"to": TO, "body": "2"})
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
                    if isinstance(frame.get("message"), dict) and (
                        frame["message"].get("action") == "send_sms"
                    ):
                        break
                assert frame["message"]["payload"]["message_id"] == second.json()["id"]
                assert time.monotonic() - reported < 40
                slots = (await http.get(f"{a.url}/api/v1/gateways")).json()["data"][0]
        assert found["gateway"] == "phone"
        assert slots["counters"]["sent"] >= 1
    finally:
        await asyncio.to_thread(a.stop)
        await asyncio.to_thread(b.stop)
