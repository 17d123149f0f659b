"""Two `simgate serve` processes on one PostgreSQL database: any node accepts a message,
the node holding the right gateway sends it, and no message is sent twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_database
from tests.integration.server import Server, cli_env, simgate

pytestmark = pytest.mark.slow
FINAL = {"sent", "delivered", "failed", "expired", "canceled"}


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
