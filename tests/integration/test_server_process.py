"""The real server process: CLI and server sharing one database, logs, shutdown."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.server import SIMGATE, Server, cli_env, free_port, simgate

pytestmark = pytest.mark.slow


@pytest.fixture
def env(data_dir: Path, clean_env: None) -> dict[str, str]:
    return cli_env(data_dir)


@pytest.fixture
def server(data_dir: Path, env: dict[str, str]) -> Iterator[Server]:
    srv = Server(data_dir, env)
    yield srv
    srv.stop()


def _new_key(env: dict[str, str], app: str = "shop") -> str:
    done = simgate("app", "create", app, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_key_revoked_from_the_cli_is_refused_at_once(server: Server, env: dict[str, str]) -> None:
    key = _new_key(env)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/api/v1/me", headers=headers).status_code == 200  # now cached
        done = simgate("key", "revoke", key[:13], env=env)
        assert done.returncode == 0, done.stderr
        resp = http.get("/api/v1/me", headers=headers)
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "unauthorized"


def test_logs_carry_request_ids_and_no_secrets(server: Server, env: dict[str, str]) -> None:
    key = _new_key(env)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        http.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
        http.get(f"/api/v1/me?api_key={key}", headers={"X-Request-ID": "trace-42"})
        http.get("/api/v1/me", headers={"X-API-Key": key + "tampered"})
    server.stop()
    assert '"simgate stopped"' in server.log()
    log = server.log()
    assert key not in log
    assert key[14:] not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [e for e in lines if e.get("logger") == "simgate.access"]
    assert any(e.get("request_id") == "trace-42" and e.get("app") is None for e in access)
    assert any(e.get("app") == "shop" for e in access)
    assert all("request_id" in e for e in access)


def test_graceful_shutdown_writes_the_request_log(
    server: Server, env: dict[str, str], data_dir: Path
) -> None:
    key = _new_key(env)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for _ in range(5):
            assert http.get("/api/v1/me", headers={"X-API-Key": key}).status_code == 200
    server.stop()
    assert '"simgate stopped"' in server.log()
    again = Server(data_dir, env)
    try:
        rows = httpx.get(
            f"{again.url}/api/v1/requests", headers={"X-API-Key": key}, timeout=10
        ).json()["data"]
    finally:
        again.stop()
    assert [r["endpoint"] for r in rows].count("/api/v1/me") == 5


def test_demo_sends_and_receives_through_the_simulated_modem(
    data_dir: Path, env: dict[str, str]
) -> None:
    """What `make run` shows: serve --demo drives a simulated SIM800L with the real driver."""
    port = free_port()
    log_path = data_dir / "demo.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [SIMGATE, "serve", "--demo", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        key = ""
        while time.monotonic() < deadline and not key:
            for line in log_path.read_text().splitlines():
                if line.startswith("Demo app key"):
                    key = line.split()[-1]
            time.sleep(0.2)
        assert key, log_path.read_text()
        with httpx.Client(base_url=url, timeout=10, headers={"X-API-Key": key}) as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    gws = http.get("/api/v1/gateways").json()["data"]
                    if gws and gws[0]["status"] == "online":
                        break
                time.sleep(0.2)
            sent = http.post("/api/v1/messages", json={"to": "+4915112345678", "body": "Hi 📡"})
            assert sent.status_code == 202
            ctl = data_dir / "demo-modem.ctl"
            assert (
                simgate(
                    "modem", "inject", str(ctl), "+4917612345678", "code 4242", env=env
                ).returncode
                == 0
            )
            status, inbound = "", []
            while time.monotonic() < deadline and (status != "delivered" or not inbound):
                status = http.get(f"/api/v1/messages/{sent.json()['id']}").json()["status"]
                inbound = http.get("/api/v1/messages", params={"direction": "inbound"}).json()[
                    "data"
                ]
                time.sleep(0.3)
        assert status == "delivered"
        assert inbound[0]["body"] == "code 4242"
        assert inbound[0]["gateway"] == "demo-modem"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
