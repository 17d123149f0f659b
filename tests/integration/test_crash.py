"""Nothing accepted is lost: the server is killed (SIGKILL) while messages are in flight,
restarted, and every message it answered 202 for reaches a final state."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.server import Server, cli_env, free_port, simgate

pytestmark = pytest.mark.slow
FINAL = {"sent", "delivered", "failed", "expired", "canceled"}


def _submit_until_dead(url: str, key: str, accepted: list[str], stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=5, headers={"X-API-Key": key}) as http:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                resp = http.post(
                    "/api/v1/messages", json={"to": "+4915112345678", "body": f"crash test {i}"}
                )
            except httpx.HTTPError:
                return  # the server is gone; what it did not answer was not accepted
            if resp.status_code == 202:
                accepted.append(resp.json()["id"])


def _statuses(url: str, key: str, ids: list[str]) -> dict[str, str]:
    out = {}
    with httpx.Client(base_url=url, timeout=10, headers={"X-API-Key": key}) as http:
        for message_id in ids:
            resp = http.get(f"/api/v1/messages/{message_id}")
            out[message_id] = resp.json()["status"] if resp.status_code == 200 else "MISSING"
    return out


@pytest.mark.parametrize("round_", range(2))
def test_sigkill_while_sending_loses_nothing(data_dir: Path, clean_env: None, round_: int) -> None:
    env = cli_env(data_dir, SIMGATE_NODE_NAME="crash-node")
    created = simgate("app", "create", "crashy", env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    added = simgate(
        "gateway",
        "add",
        "slowfake",
        "--kind",
        "fake",
        "--max-in-flight",
        "4",
        "--set",
        "send_delay=0.05",
        "--set",
        "report_delay=0.2",
        env=env,
    )
    assert added.returncode == 0, added.stderr

    port = free_port()
    server = Server(data_dir, env, port=port, name="first")
    accepted: list[str] = []
    stop = threading.Event()
    submitter = threading.Thread(target=_submit_until_dead, args=(server.url, key, accepted, stop))
    submitter.start()
    deadline = time.monotonic() + 30
    while len(accepted) < 40 + 20 * round_ and time.monotonic() < deadline:
        time.sleep(0.01)
    server.stop(signal.SIGKILL)  # no shutdown, no drain: mid-send, mid-commit
    stop.set()
    submitter.join(timeout=30)
    assert len(accepted) >= 40

    again = Server(data_dir, env, port=port, name="second")
    try:
        deadline = time.monotonic() + 90
        statuses = _statuses(again.url, key, accepted)
        while time.monotonic() < deadline and not set(statuses.values()) <= FINAL:
            time.sleep(0.5)
            statuses = _statuses(again.url, key, accepted)
    finally:
        again.stop()
    lost = {i: s for i, s in statuses.items() if s == "MISSING"}
    assert lost == {}
    unfinished = {i: s for i, s in statuses.items() if s not in FINAL}
    assert unfinished == {}
    assert set(statuses.values()) <= {"sent", "delivered"}


def test_sigterm_drains_in_flight_sends(data_dir: Path, clean_env: None) -> None:
    """A clean stop lets sends already with a gateway finish and records them, so nothing
    is handed over twice after the restart."""
    env = cli_env(data_dir, SIMGATE_NODE_NAME="drain-node")
    created = simgate("app", "create", "drainy", env=env)
    key = created.stdout.strip().splitlines()[-1]
    assert (
        simgate(
            "gateway",
            "add",
            "slow",
            "--kind",
            "fake",
            "--max-in-flight",
            "8",
            "--set",
            "mode=sent",
            "--set",
            "send_delay=1.0",
            env=env,
        ).returncode
        == 0
    )
    port = free_port()
    server = Server(data_dir, env, port=port, name="first")
    ids = []
    with httpx.Client(base_url=server.url, timeout=10, headers={"X-API-Key": key}) as http:
        for i in range(8):
            resp = http.post("/api/v1/messages", json={"to": "+4915112345678", "body": f"d{i}"})
            ids.append(resp.json()["id"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait until all eight are with the gateway
            if all(http.get(f"/api/v1/messages/{i}").json()["status"] == "sending" for i in ids):
                break
            time.sleep(0.05)
    server.stop(signal.SIGTERM)
    again = Server(data_dir, env, port=port, name="second")
    try:
        with httpx.Client(base_url=again.url, timeout=10, headers={"X-API-Key": key}) as http:
            found = [http.get(f"/api/v1/messages/{i}").json() for i in ids]
    finally:
        again.stop()
    assert {m["status"] for m in found} == {"sent"}
    for m in found:
        assert [e["status"] for e in m["events"]].count("sending") == 1
