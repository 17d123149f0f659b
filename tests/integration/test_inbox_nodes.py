"""The inbox across two `simgate serve` processes on one database: a wait held by node A is
answered when a phone hands the SMS to node B. On PostgreSQL that is NOTIFY (node A has no
rescan there: without the push it would time out); on MariaDB node A finds it by looking
once a second. Also `simgate inbox wait` reading PostgreSQL directly, and a status wait on
node A (/api/sendsms) ending when node B cancels its message."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_database
from tests.integration.server import SIMGATE, Server, cli_env, simgate, wait_for

pytestmark = pytest.mark.slow
SENDER = "+4917612345678"
SIM = "+4915100000001"


@pytest.fixture
async def pg_url(tmp_path: Path) -> AsyncIterator[str]:
    async for url in fresh_database("postgresql", tmp_path):
        yield url


@pytest.fixture
async def mariadb_url(tmp_path: Path) -> AsyncIterator[str]:
    async for url in fresh_database("mariadb", tmp_path):
        yield url


def _ok(*args: str, env: dict[str, str]) -> str:
    done = simgate(*args, env=env)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@contextmanager
def two_nodes(
    tmp_path: Path, db_url: str, **extra: str
) -> Iterator[tuple[Server, Server, dict[str, str], str, str]]:
    """Nodes A and B on ``db_url``: the servers, node A's environment, an app key and the
    key of a phone (registered with its SIM's number; it never connects, it only posts)."""
    envs = []
    for name in ("node-a", "node-b"):
        (tmp_path / name).mkdir()
        envs.append(
            cli_env(tmp_path / name, SIMGATE_DATABASE_URL=db_url, SIMGATE_NODE_NAME=name, **extra)
        )
    key = _ok("app", "create", "tests", env=envs[0]).strip().splitlines()[-1]
    phone = _ok("gateway", "add", "phone", env=envs[0]).strip().splitlines()[-1]
    a = Server(tmp_path / "node-a", envs[0], name="a")
    b = None
    try:
        b = Server(tmp_path / "node-b", envs[1], name="b")
        with httpx.Client(base_url=b.url, timeout=10) as http:
            beat = http.post(
                "/api/v1/gateway/heartbeat",
                json={"sims": [{"slot": 1, "number": SIM}]},
                headers={"Authorization": f"Bearer {phone}"},
            )
            assert beat.status_code == 200, beat.text
        yield a, b, envs[0], key, phone
    finally:
        a.stop()
        if b is not None:
            b.stop()


def waiters_on(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    (line,) = [x for x in text.splitlines() if x.startswith("simgate_inbox_waiters ")]
    return float(line.split()[1])


def start_wait(pool: ThreadPoolExecutor, server: Server, key: str, **params: Any) -> Future[Any]:
    def call() -> httpx.Response:
        return httpx.get(
            f"{server.url}/api/v1/inbox/wait",
            params=params,
            headers={"Authorization": f"Bearer {key}"},
            timeout=float(params.get("timeout", 30)) + 30,
        )

    return pool.submit(call)


def deliver(server: Server, phone: str, body: str) -> str:
    """The phone hands ``body`` to ``server``; the stored message's id."""
    resp = httpx.post(
        f"{server.url}/api/v1/gateway/sms/received",
        json={"phone_number": SENDER, "message_body": body, "sim_slot": 1},
        headers={"Authorization": f"Bearer {phone}"},
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    message_id: str = resp.json()["message_id"]
    return message_id


def answered(future: Future[Any]) -> dict[str, Any]:
    resp = future.result(timeout=90)
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json()
    return found


def _push_across_nodes(tmp_path: Path, pg_url: str) -> None:
    with (
        two_nodes(tmp_path, pg_url, SIMGATE_SENDSMS_WAIT="60") as (a, b, env_a, key, phone),
        ThreadPoolExecutor(4) as pool,
    ):
        on_a = start_wait(pool, a, key, contains="code", pattern=r"(\d{6})", timeout=60)
        on_b = start_wait(pool, b, key, contains="code", pattern=r"(\d{6})", timeout=60)
        wait_for(lambda: waiters_on(a) == 1 and waiters_on(b) == 1, "a wait on each node")
        message_id = deliver(b, phone, "Your code is 123456")
        from_a, from_b = answered(on_a), answered(on_b)
        assert from_a == from_b
        assert (from_a["id"], from_a["match"], from_a["to"], from_a["gateway"]) == (
            message_id,
            "123456",
            SIM,
            "phone",
        )
        wait_for(lambda: waiters_on(a) == 0, "node A's wait closed")

        # `simgate inbox wait` straight from the database, woken by the servers' NOTIFY.
        since = datetime.now(UTC).isoformat()
        cli = subprocess.Popen(
            [
                *(SIMGATE, "inbox", "wait", "--contains", "code", "--pattern", r"(\d{6})"),
                *("--since", since, "--timeout", "60"),
            ],
            env=env_a,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deliver(b, phone, "Your new code is 654321")
            out, err = cli.communicate(timeout=90)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        assert cli.returncode == 0, err
        assert out.strip() == "654321"

        # A status wait on node A ends when node B changes the message's status.
        with httpx.Client(timeout=90, headers={"X-API-Key": key}) as http:
            sendsms = pool.submit(
                http.post, f"{a.url}/api/sendsms", json={"phone": SENDER, "message": "x"}
            )
            message = wait_for(
                lambda: http.get(f"{b.url}/api/v1/messages?direction=outbound").json()["data"],
                "the message node A accepted",
            )
            assert isinstance(message, list)
            canceled = http.post(f"{b.url}/api/v1/messages/{message[0]['id']}/cancel")
            assert canceled.status_code == 200, canceled.text
            resp = sendsms.result(timeout=90)
        assert resp.status_code == 502, resp.text
        assert (resp.json()["status"], resp.json()["code"]) == ("error", "canceled")


async def test_a_wait_on_one_node_is_answered_by_an_sms_on_another_postgresql(
    pg_url: str, tmp_path: Path, clean_env: None
) -> None:
    await asyncio.to_thread(_push_across_nodes, tmp_path, pg_url)


def _rescan_across_nodes(tmp_path: Path, url: str) -> None:
    with two_nodes(tmp_path, url) as (a, b, _, key, phone), ThreadPoolExecutor(2) as pool:
        on_a = start_wait(pool, a, key, contains="code", pattern=r"(\d{6})", timeout=60)
        wait_for(lambda: waiters_on(a) == 1, "the wait on node A")
        deliver(b, phone, "no digits here, code")  # not a match: node A waits on
        message_id = deliver(b, phone, "Your code is 777777")
        found = answered(on_a)
        assert (found["id"], found["match"]) == (message_id, "777777")


async def test_a_wait_on_one_node_finds_an_sms_on_another_mariadb(
    mariadb_url: str, tmp_path: Path, clean_env: None
) -> None:
    await asyncio.to_thread(_rescan_across_nodes, tmp_path, mariadb_url)
