"""Where modems run, tried as a new user would: the CLI in one "shell", `simgate serve` in
another on a port other than the default, with nothing the other tests share.

The first test is the session that once left a modem offline forever ("not started yet")
because `modem add` and `serve` disagreed on the node name.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from simgate.modem_sim.config import DEFAULT_NUMBER
from tests.integration.server import (
    Server,
    can_rename_host,
    cli_env,
    simgate,
    simulated_modem,
    wait_for,
)

pytestmark = pytest.mark.slow
TO = "+4915112345678"


@pytest.fixture
def env(data_dir: Path, clean_env: None) -> dict[str, str]:
    return cli_env(data_dir)


@pytest.fixture
def simulator(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[Path, Path]]:
    with simulated_modem(tmp_path, env) as sim:
        yield sim


def ok(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = simgate(*args, env=env)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def new_key(env: dict[str, str], *scopes: str) -> str:
    made = ok("app", "create", "shop", *(("--scopes", ",".join(scopes)) if scopes else ()), env=env)
    return made.stdout.strip().splitlines()[-1]


def modem_row(env: dict[str, str], name: str = "pi") -> str:
    listed = ok("modem", "list", env=env).stdout
    return next((line for line in listed.splitlines() if f" {name} " in line), "")


def modem_online(env: dict[str, str], name: str = "pi") -> str:
    row = modem_row(env, name)
    return row if " online " in row else ""


def test_modem_add_then_serve_on_another_port(
    data_dir: Path, env: dict[str, str], simulator: tuple[Path, Path]
) -> None:
    link, ctl = simulator
    added = ok("modem", "add", "pi", "--port", str(link), env=env)
    assert "run by any server on this host" in added.stdout
    key = new_key(env)
    server = Server(data_dir, env)  # a free port: never the default
    try:
        assert server.port != 8000
        row = wait_for(lambda: modem_online(env), "modem pi online in 'simgate modem list'")
        assert DEFAULT_NUMBER in str(row)  # the SIM's own number, read with AT+CNUM
        sent = ok("send", TO, "hello from a new user", "--wait", env=env)
        assert sent.stdout.startswith(("sent msg_", "delivered msg_")), sent.stdout
        assert sent.stdout.strip().endswith("via pi")

        ok("modem", "inject", str(ctl), "+4917612345678", "Your code is 4242", env=env)
        with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=10) as http:
            inbox = wait_for(
                lambda: http.get("/api/v1/messages", params={"direction": "inbound"}).json()[
                    "data"
                ],
                "the received SMS in the inbox",
            )
            gws = http.get("/api/v1/gateways").json()["data"]
        assert isinstance(inbox, list)
        assert inbox[0]["to"] == DEFAULT_NUMBER
        assert (inbox[0]["from"], inbox[0]["body"]) == ("+4917612345678", "Your code is 4242")
        (gw,) = gws
        assert (gw["number"], gw["status"], gw["node"]) == (
            DEFAULT_NUMBER,
            "online",
            gw["node"],
        )
        assert gw["node"].endswith(f":{server.port}")
        assert gw["placement"]["kind"] == "host"
        nodes = ok("node", "list", env=env).stdout
        assert f":{server.port}" in nodes
        assert "running" in nodes
    finally:
        server.stop()


def test_the_modem_follows_its_host_through_a_rename_a_crash_and_another_port(
    data_dir: Path, env: dict[str, str], simulator: tuple[Path, Path]
) -> None:
    """`modem add` in a shell with another SIMGATE_NODE_NAME; the server then runs under
    one hostname, is killed, and comes back under another hostname on another port. The
    claim left by the killed server is taken over at once (its process is gone), not after
    GATEWAY_OFFLINE_AFTER, which is set far beyond the waits here."""
    problem = can_rename_host()
    if problem:
        pytest.skip(problem)
    link, _ = simulator
    ok("modem", "add", "pi", "--port", str(link), env={**env, "SIMGATE_NODE_NAME": "my-shell"})
    serve_env = {**env, "SIMGATE_GATEWAY_OFFLINE_AFTER": "900"}
    first = Server(data_dir, serve_env, hostname="raspberrypi", name="first")
    try:
        row = wait_for(lambda: modem_online(env), "pi online on the first server")
        assert f"raspberrypi:{first.port}" in str(row)
    finally:
        first.stop(signal.SIGKILL)
    second = Server(data_dir, serve_env, hostname="garden-pi", name="second")
    try:
        row = wait_for(lambda: modem_online(env), "pi online after the rename", timeout=45)
        assert f"garden-pi:{second.port}" in str(row)
        sent = ok("send", TO, "after the rename", "--wait", env=env)
        assert sent.stdout.strip().endswith("via pi")
    finally:
        second.stop()


def test_a_modem_that_cannot_run_says_why(data_dir: Path, env: dict[str, str]) -> None:
    missing = "/dev/serial/by-id/usb-simgate-test-not-plugged-in"
    added = simgate("modem", "add", "pi", "--port", missing, env=env)
    assert added.returncode == 0, added.stderr
    assert f"{missing} does not exist on this host (yet)" in added.stderr
    assert "placed on host" in modem_row(env)  # no server runs at all yet

    for bad, words in (
        (("--number", "0151 12345678"), "'0151 12345678' is not in E.164 form"),
        (("--number", "+4912"), "'+4912' is a local number"),
        (("--number", "call me"), "'call me' is not in E.164 form"),
        (("--node", "a", "--any-node"), "choose one of --node, --any-node"),
    ):
        refused = simgate("modem", "add", "other", "--port", "/dev/x", *bad, env=env)
        assert refused.returncode == 1, bad
        assert words in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    assert "other" not in ok("modem", "list", env=env).stdout

    key = new_key(env, "all")  # the admin scope sees messages sent from the command line
    server = Server(data_dir, env)
    try:
        wait_for(lambda: missing in modem_row(env).split("│")[-2], "the port as the reason")
        assert " error " in modem_row(env)
        waited = simgate(
            "send", TO, "to pi", "--gateway", "pi", "--wait", "--timeout", "4", env=env
        )
        assert waited.returncode == 1
        expected = f"waiting: waiting for gateway 'pi', which is in error: {missing} does not"
        assert expected in waited.stderr, waited.stderr
        assert "Task was destroyed" not in waited.stderr
        assert "still queued after 4 s: waiting for gateway 'pi'" in waited.stderr
        last = waited.stderr.strip().splitlines()[-1]
        assert last.startswith("error: msg_"), last
        message_id = last.split()[1]
        with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=10) as http:
            detail = http.get(f"/api/v1/messages/{message_id}").json()
            assert detail["status"] == "queued"
            assert f"{missing} does not exist" in detail["status_detail"]

            moved = simgate("modem", "move", "pi", "--node", "typo", env=env)
            assert moved.returncode == 0, moved.stderr
            assert "no server named 'typo' has run recently" in moved.stderr
            assert f":{server.port} (host " in moved.stderr  # the nodes that did run
            wait_for(
                lambda: "pinned to node 'typo', which has not run recently" in modem_row(env),
                "the pin to a node that never ran as the reason",
            )
            ok("gateway", "deactivate", "pi", env=env)
            detail = http.get(f"/api/v1/messages/{message_id}").json()
            assert detail["status_detail"] == (
                "waiting for gateway 'pi', which does not run: deactivated by cli"
            )
            (gw,) = http.get("/api/v1/gateways").json()["data"]
            assert (gw["status"], gw["status_detail"]) == ("offline", "deactivated by cli")
            # Nothing stored was harmed by any of it.
            assert http.post(f"/api/v1/messages/{message_id}/cancel").status_code == 200
        refused = simgate("modem", "move", "pi", env=env)
        assert refused.returncode == 1
        assert "--node NODE, --any-node or --this-host" in refused.stderr
        refused = simgate("modem", "move", "nobody", "--any-node", env=env)
        assert refused.returncode == 1
        assert "no gateway named 'nobody'" in refused.stderr
    finally:
        with contextlib.suppress(Exception):
            server.stop()
