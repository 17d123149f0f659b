"""Phones as a new user meets them: `simgate gateway add` in one shell, `simgate serve` in
another on a free port, `simgate gateway emulate` as the phone, the CLI to send and
inject, and an enrollment token for a phone that registers itself."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.server import SIMGATE, Server, cli_env, simgate, wait_for

pytestmark = pytest.mark.slow
TO = "+4915112345678"


@pytest.fixture
def env(data_dir: Path, clean_env: None) -> dict[str, str]:
    return cli_env(data_dir)


def ok(*args: str, env: dict[str, str]) -> str:
    done = simgate(*args, env=env)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@contextlib.contextmanager
def emulator(
    url: str, key: str, ctl: Path, log: Path, env: dict[str, str], *extra: str
) -> Iterator[subprocess.Popen[str]]:
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                SIMGATE,
                "gateway",
                "emulate",
                "--url",
                url,
                "--key",
                key,
                "--control",
                str(ctl),
                *extra,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=10)


def row(env: dict[str, str], name: str) -> str:
    return next(
        (line for line in ok("gateway", "list", env=env).splitlines() if f" {name} " in line), ""
    )


def test_a_phone_from_add_to_delivered(data_dir: Path, env: dict[str, str], tmp_path: Path) -> None:
    added = ok("gateway", "add", "shop-phone", "--label", "Shop phone", env=env)
    key = added.strip().splitlines()[-1]
    assert key.startswith("gw_live_")
    assert "gateway emulate --url" in added
    for bad, words in (
        (("gateway", "add", "shop-phone"), "already exists"),
        (("gateway", "add", "bad name"), "not valid"),
        (
            ("gateway", "add", "f", "--kind", "fake", "--device-id", "x"),
            "--device-id and --label are for phones",
        ),
        (("gateway", "add", "p2", "--set", "sim_rates=lots"), "sim_rates"),
        (("gateway", "rotate-key", "nobody"), "no gateway named 'nobody'"),
        (("gateway", "enroll-token", "--ttl", "0"), "the token may last"),
    ):
        refused = simgate(*bad, env=env)
        assert refused.returncode == 1, bad
        assert words in refused.stderr, (bad, refused.stderr)
    app_key = ok("app", "create", "shop", "--scopes", "all", env=env).strip().splitlines()[-1]
    server = Server(data_dir, env)
    ctl = tmp_path / "phone.ctl"
    try:
        with emulator(
            server.url, key, ctl, tmp_path / "phone.log", env, "--deliver-after", "0.3"
        ) as phone:
            wait_for(
                lambda: (
                    " online " in row(env, "shop-phone") and "WebSocket" in row(env, "shop-phone")
                ),
                "the phone online",
            )
            sent = ok(
                "send",
                TO,
                "from the shell to the phone",
                "--gateway",
                "shop-phone",
                "--wait",
                env=env,
            )
            assert sent.strip().endswith("via shop-phone")
            ok("gateway", "inject", str(ctl), "+4917612345678", "Your code is 4242", env=env)
            with httpx.Client(
                base_url=server.url, headers={"X-API-Key": app_key}, timeout=10
            ) as http:
                inbox = wait_for(
                    lambda: http.get("/api/v1/messages", params={"direction": "inbound"}).json()[
                        "data"
                    ],
                    "the SMS the phone received",
                )
                assert isinstance(inbox, list)
                assert (inbox[0]["from"], inbox[0]["body"], inbox[0]["gateway"]) == (
                    "+4917612345678",
                    "Your code is 4242",
                    "shop-phone",
                )
                (gw,) = http.get("/api/v1/gateways").json()["data"]
                assert (gw["label"], gw["battery"]) == ("Shop phone", 87)
            # Deactivated from the shell: the running server closes the phone's socket at
            # once, and the emulator stops (the server said not to reconnect).
            ok("gateway", "deactivate", "shop-phone", env=env)
            assert phone.wait(timeout=20) == 1
        assert (
            "the server refused the phone: Gateway inactive" in (tmp_path / "phone.log").read_text()
        )
        ok("gateway", "activate", "shop-phone", env=env)
        new_key = ok("gateway", "rotate-key", "shop-phone", env=env).strip().splitlines()[-1]
        with emulator(server.url, key, ctl, tmp_path / "old.log", env) as old:
            assert old.wait(timeout=20) == 1  # the old key: refused
        assert "Invalid API key" in (tmp_path / "old.log").read_text()
        with emulator(server.url, new_key, ctl, tmp_path / "new.log", env):
            wait_for(lambda: "WebSocket" in row(env, "shop-phone"), "the phone with its new key")
    finally:
        server.stop()


def test_a_phone_registers_itself_with_an_enrollment_token(
    data_dir: Path, env: dict[str, str]
) -> None:
    token = ok("gateway", "enroll-token", "--label", "shop 2", env=env).strip().splitlines()[-1]
    assert token.startswith("gwe_")
    server = Server(data_dir, env)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            body = {
                "device_id": "pixel-8-a1",
                "name": "Pixel 8",
                "device_info": {"model": "Pixel 8"},
            }
            made = http.post(
                "/api/v1/gateway/register", json=body, headers={"Authorization": f"Bearer {token}"}
            )
            assert made.status_code == 201, made.text
            again = http.post(
                "/api/v1/gateway/register",
                json={**body, "device_id": "pixel-8-a2"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert again.status_code == 401
            assert again.json() == {
                "success": False,
                "error": "Invalid, used or expired enrollment token",
            }
            without = http.post("/api/v1/gateway/register", json=body)
            assert without.status_code == 401
        assert "pixel-8" in ok("gateway", "list", env=env)
    finally:
        server.stop()
