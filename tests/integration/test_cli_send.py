"""`simgate gateway …`, `simgate app limits` and `simgate send [--wait]` against a real
server process."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.server import Server, cli_env, simgate

pytestmark = pytest.mark.slow


@pytest.fixture
def env(data_dir: Path, clean_env: None) -> dict[str, str]:
    return cli_env(data_dir)


def test_gateway_commands_and_bad_input(env: dict[str, str]) -> None:
    ok = simgate(
        "gateway",
        "add",
        "fake1",
        "--kind",
        "fake",
        "--set",
        "mode=sent",
        "--rate-per-minute",
        "20",
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    for args, words in [
        (("gateway", "add", "fake1", "--kind", "fake"), "already exists"),
        (("gateway", "add", "bad name", "--kind", "fake"), "not valid"),
        (("gateway", "add", "g2", "--kind", "pigeon"), "'pigeon' is not supported"),
        (("gateway", "add", "g2", "--kind", "modem"), "modem option 'port' is required"),
        (("gateway", "add", "g2", "--kind", "fake", "--set", "mode=loud"), "fake gateway option"),
        (
            ("gateway", "add", "g2", "--kind", "fake", "--set", "colour=red"),
            "unknown fake gateway option",
        ),
        (("gateway", "add", "g2", "--kind", "fake", "--set", "novalue"), "KEY=VALUE"),
        (("gateway", "deactivate", "ghost"), "no gateway named 'ghost'"),
    ]:
        bad = simgate(*args, env=env)
        assert bad.returncode != 0, args
        assert words in bad.stderr, (args, bad.stderr)
        assert "Traceback" not in bad.stderr
    assert simgate("gateway", "deactivate", "fake1", env=env).returncode == 0
    listed = simgate("gateway", "list", env=env)
    assert "fake1" in listed.stdout
    assert "deactivated" in listed.stdout
    assert simgate("gateway", "activate", "fake1", env=env).returncode == 0
    # Without --kind, as CONTRACT.md says: an Android phone, its key on the last line.
    phone = simgate("gateway", "add", "g2", "--device-id", "pixel-1", env=env)
    assert phone.returncode == 0, phone.stderr
    assert phone.stdout.strip().splitlines()[-1].startswith("gw_live_")
    assert " android " in simgate("gateway", "list", env=env).stdout


def test_app_limits(env: dict[str, str]) -> None:
    assert simgate("app", "create", "shop", env=env).returncode == 0
    ok = simgate("app", "limits", "shop", "--per-minute", "10", "--countries", "de,at", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "10 per minute" in ok.stdout
    assert "AT,DE" in ok.stdout
    for args, words in [
        (("--per-day", "lots"), "--per-day"),
        (("--countries", "Germany"), "not a two-letter country code"),
    ]:
        bad = simgate("app", "limits", "shop", *args, env=env)
        assert bad.returncode != 0
        assert words in bad.stderr
    assert simgate("app", "limits", "ghost", "--per-day", "5", env=env).returncode != 0
    cleared = simgate("app", "limits", "shop", "--per-minute", "none", "--countries", "", env=env)
    assert "unlimited per minute" in cleared.stdout
    assert "countries: any" in cleared.stdout


def test_send_bad_input(env: dict[str, str]) -> None:
    for args, words in [
        (("12", "hi"), "to: '12'"),
        (("+4915112345678", " "), "body: must not be empty"),
        (("+4915112345678", "hi", "--gateway", "ghost"), "no gateway named 'ghost'"),
    ]:
        bad = simgate("send", *args, env=env)
        assert bad.returncode != 0
        assert words in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def test_send_and_wait_through_a_running_server(env: dict[str, str], data_dir: Path) -> None:
    assert simgate("gateway", "add", "fake1", "--kind", "fake", env=env).returncode == 0
    server = Server(data_dir, env)
    try:
        done = simgate("send", "+4915112345678", "Grüße 👋", "--wait", env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(("sent msg_", "delivered msg_"))
        assert "via fake1" in done.stdout
        queued = simgate("send", "+4915112345678", "later", env=env)
        assert queued.returncode == 0
        assert queued.stdout.startswith("queued msg_")
    finally:
        server.stop()


def test_send_wait_reports_a_failure_with_its_hint(env: dict[str, str], data_dir: Path) -> None:
    assert (
        simgate(
            "gateway", "add", "nope", "--kind", "fake", "--set", "mode=reject", env=env
        ).returncode
        == 0
    )
    server = Server(data_dir, env)
    try:
        done = simgate("send", "+4915112345678", "hi", "--wait", env=env)
    finally:
        server.stop()
    assert done.returncode != 0
    assert "failed" in done.stderr
    assert "hint:" in done.stderr


def test_send_wait_without_a_server_times_out_with_advice(env: dict[str, str]) -> None:
    done = simgate("send", "+4915112345678", "hi", "--wait", "--timeout", "1", env=env)
    assert done.returncode != 0
    assert "still queued after 1 s: waiting for a gateway: none is configured" in done.stderr
