"""The official Action Cable client (``@rails/actioncable`` from npm, under Node) against
simgate's ``/cable``: it must negotiate, subscribe, take ``send_sms``, report and hand over
an SMS exactly as it would against Rails. The packages are installed from the npm
registry by the test set-up (``npm ci`` in ``tests/e2e/cable_client``)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.config import Settings
from simgate.services import phones
from simgate.store.engine import make_sessionmaker
from tests.integration.helpers import bearer, make_key
from tests.integration.live import Live, live_server

CLIENT = Path(__file__).with_name("cable_client")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def cable_client() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable(
            "node and npm are needed (Debian's nodejs and npm; make test installs them as root)"
        )
    if not (CLIENT / "node_modules" / "@rails" / "actioncable").is_dir():
        done = subprocess.run(
            [str(npm), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CLIENT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            _unavailable(f"npm ci failed in {CLIENT}: {done.stderr.strip()[-500:]}")
    return CLIENT


@pytest.fixture
async def live(sqlite_settings: Settings, sqlite_engine: AsyncEngine) -> AsyncIterator[Live]:
    async with live_server(sqlite_settings, sqlite_engine) as server:
        yield server


class NodePhone:
    def __init__(self, client: Path, url: str, key: str) -> None:
        self.proc = subprocess.Popen(
            ["node", str(client / "phone.mjs"), url, key],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    async def event(
        self, kind: str, action: str | None = None, timeout: float = 20
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
            if not line:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                pytest.fail(f"the Node client ended before {kind!r}: {err[-2000:]}")
            event = json.loads(line)
            if event["event"] == kind and (action is None or event["data"].get("action") == action):
                return event  # type: ignore[no-any-return]
        pytest.fail(f"no {kind!r} from the Node client within {timeout} s")

    def sms(self, sender: str, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"from": sender, "text": text}) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


async def _new_phone(engine: AsyncEngine) -> str:
    async with make_sessionmaker(engine).begin() as session:
        made = await phones.create(session, label="node", device_id=None, name="node", actor="t")
    return made.key


async def test_the_official_client_sends_and_receives(
    cable_client: Path, live: Live, sqlite_engine: AsyncEngine
) -> None:
    key = await _new_phone(sqlite_engine)
    app_key = await make_key(sqlite_engine)
    phone = NodePhone(cable_client, live.ws_url, key)
    try:
        connected = await phone.event("connected")
        assert connected["protocol"] == "actioncable-v1-json"
        deadline = time.monotonic() + 20
        while not (gw := live.runtime.dispatcher.gateways.get("node")) or not gw.online:
            assert time.monotonic() < deadline, "the gateway never came online"
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=live.url, headers=bearer(app_key)) as http:
            sent = await http.post(
                "/api/v1/messages", json={"to": "+4915112345678", "body": "via the official client"}
            )
            message_id = sent.json()["id"]
            received = await phone.event("received", "send_sms")
            assert received["data"] == {
                "action": "send_sms",
                "payload": {
                    "message_id": message_id,
                    "phone_number": "+4915112345678",
                    "message_body": "via the official client",
                    "priority": "normal",
                },
            }
            status = ""
            while time.monotonic() < deadline + 10 and status != "delivered":
                status = (await http.get(f"/api/v1/messages/{message_id}")).json()["status"]
                await asyncio.sleep(0.1)
            assert status == "delivered"
            phone.sms("+4917612345678", "code 4242")
            inbox: list[dict[str, Any]] = []
            while time.monotonic() < deadline + 20 and not inbox:
                inbox = (
                    await http.get("/api/v1/messages", params={"direction": "inbound"})
                ).json()["data"]
                await asyncio.sleep(0.1)
            (gws,) = (await http.get("/api/v1/gateways")).json()["data"]
        assert (inbox[0]["from"], inbox[0]["body"]) == ("+4917612345678", "code 4242")
        assert gws["battery"] == 42  # the heartbeat perform() sent, fields flat beside action
    finally:
        phone.stop()


async def test_the_official_client_stops_on_a_wrong_key(cable_client: Path, live: Live) -> None:
    phone = NodePhone(cable_client, live.ws_url, "gw_live_" + "0" * 64)
    try:
        gone = await phone.event("disconnected")
        assert gone["reconnect"] is False  # reconnect: false in the disconnect frame
        assert phone.proc.wait(timeout=10) == 0
    finally:
        phone.stop()
