"""Reading a code from an SMS, as a new user would, step by step as the README shows it:
the CLI in one "shell" (an admin, an app key, a simulated modem), `simgate serve` in
another on a port other than the default, with a data directory and environment of its
own. The modem "receives" the SMS (`simgate modem inject`), and `simgate inbox wait`
prints the code, reading the database or asking the server (--url/--key)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from simgate.modem_sim.config import DEFAULT_NUMBER
from tests.integration.server import SIMGATE, Server, cli_env, simgate, simulated_modem, wait_for

pytestmark = pytest.mark.slow
SENDER = "+4917612345678"
CODE_PATTERN = r"(\d{6})"


@pytest.fixture
def env(data_dir: Path, clean_env: None) -> dict[str, str]:
    return cli_env(data_dir)


@pytest.fixture
def simulator(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[Path, Path]]:
    with simulated_modem(tmp_path, env) as sim:
        yield sim


def ok(*args: str, env: dict[str, str], stdin: str | None = None) -> str:
    done = simgate(*args, env=env, stdin=stdin)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def modem_online(env: dict[str, str]) -> bool:
    listed = ok("modem", "list", env=env)
    return any(" pi " in line and " online " in line for line in listed.splitlines())


def background(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SIMGATE, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (it got past starting up)."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.path.realpath(fd) == str(path.resolve()) for fd in fds.iterdir())
    except OSError:
        return False


def waiters_on(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    (line,) = [x for x in text.splitlines() if x.startswith("simgate_inbox_waiters ")]
    return float(line.split()[1])


def test_a_new_user_reads_a_code_from_an_sms(
    data_dir: Path, env: dict[str, str], simulator: tuple[Path, Path]
) -> None:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to see that the waiting command has started")
    link, ctl = simulator
    ok("admin", "create", "alice", "--password-stdin", env=env, stdin="a long passphrase\n")
    key = ok("app", "create", "shop", "--owner", "alice", env=env).strip().splitlines()[-1]
    assert key.startswith("sg_")
    ok("modem", "add", "pi", "--port", str(link), env=env)
    server = Server(data_dir, env)  # a free port: never the default
    try:
        assert server.port != 8000
        wait_for(lambda: modem_online(env), "modem pi online")

        # `simgate inbox wait` on the database, as the README shows it: started first, it
        # counts what arrives from then on.
        waiting = background(
            *("inbox", "wait", "--contains", "code", "--pattern", CODE_PATTERN),
            *("--timeout", "60"),
            env=env,
        )
        wait_for(
            lambda: has_open(waiting.pid, data_dir / "simgate.db") or waiting.poll() is not None,
            "simgate inbox wait reading the database",
        )
        ok("modem", "inject", str(ctl), SENDER, "Your code is 123456", env=env)
        code, out, err = finish(waiting)
        assert code == 0, err
        assert out.strip() == "123456"

        # Nothing matching: exit 1, saying so.
        timed_out = simgate("inbox", "wait", "--contains", "never", "--timeout", "1", env=env)
        assert timed_out.returncode == 1
        assert "no matching SMS arrived within 1 s" in timed_out.stderr
        assert "Traceback" not in timed_out.stderr

        # --since looks back; --json prints the whole message, with the modem's number.
        whole = json.loads(
            ok("inbox", "wait", "--since", "5m", "--contains", "CODE", "--json", env=env)
        )
        assert (whole["from"], whole["to"], whole["gateway"], whole["body"]) == (
            SENDER,
            DEFAULT_NUMBER,
            "pi",
            "Your code is 123456",
        )
        assert ok("inbox", "wait", "--since", "5m", "--from", SENDER, env=env).strip() == (
            "Your code is 123456"
        )

        # The same through the server's HTTP API.
        asking = background(
            *("inbox", "wait", "--url", server.url, "--key", key, "--contains", "code"),
            *("--pattern", CODE_PATTERN, "--timeout", "60"),
            env=env,
        )
        wait_for(
            lambda: waiters_on(server) == 1 or asking.poll() is not None, "the wait on the server"
        )
        ok("modem", "inject", str(ctl), SENDER, "Your new code is 654321", env=env)
        code, out, err = finish(asking)
        assert code == 0, err
        assert out.strip() == "654321"
        via_env = simgate(
            *("inbox", "wait", "--url", server.url, "--contains", "nothing like it"),
            *("--timeout", "1"),
            env={**env, "SIMGATE_API_KEY": key},
        )
        assert via_env.returncode == 1, via_env.stderr
        assert "no matching SMS arrived within 1 s" in via_env.stderr
        wrong_key = simgate(
            *("inbox", "wait", "--url", server.url, "--key", "sg_" + "x" * 40, "--timeout", "1"),
            env=env,
        )
        assert wrong_key.returncode == 1
        assert "answered 401" in wrong_key.stderr

        # Seed 001's /json over HTTP, newest first.
        with httpx.Client(base_url=server.url, timeout=10) as http:
            listed = http.get("/json", params={"api_key": key})
            assert listed.status_code == 200, listed.text
            assert [(m["number"], m["text"]) for m in listed.json()] == [
                (SENDER, "Your new code is 654321"),
                (SENDER, "Your code is 123456"),
            ]
            assert http.get("/json").status_code == 401
            inbox = http.get(
                "/api/v1/inbox", params={"to": DEFAULT_NUMBER}, headers={"X-API-Key": key}
            ).json()["data"]
        assert [m["body"] for m in inbox] == ["Your new code is 654321", "Your code is 123456"]
        items = json.loads(ok("inbox", "list", "--contains", "NEW CODE", "--json", env=env))
        assert [m["body"] for m in items] == ["Your new code is 654321"]
    finally:
        server.stop()
