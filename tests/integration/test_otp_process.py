"""One-time passcodes as a new user meets them, with real processes: the CLI in one "shell"
(an admin, an app key, a simulated modem), `simgate serve` in another on a port other than
the default, `simgate otp send/check`, and seed 002's /send_otp and /verify_otp; the code
is read back from what the simulated modem was asked to send (`simgate modem sent`).

Also two servers on one SQLite file racing to approve one code, and two PostgreSQL nodes
that must share the OTP secret (and say so, in plain words, when they do not)."""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text as sql
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import fresh_database
from tests.integration.server import Server, cli_env, simgate, simulated_modem, wait_for

pytestmark = pytest.mark.slow
PHONE = "+4915112345678"
PHONE_2 = "+4917612345678"
CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


def ok(*args: str, env: dict[str, str], stdin: str | None = None) -> str:
    done = simgate(*args, env=env, stdin=stdin)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def sent_to(ctl: Path, number: str, env: dict[str, str], n: int = 1) -> str:
    """The text of the ``n``-th SMS the simulated modem was asked to send to ``number``."""

    def texts() -> list[str]:
        done = simgate("modem", "sent", str(ctl), "--to", number, env=env)
        return [line.split("\t", 1)[1] for line in done.stdout.splitlines() if "\t" in line]

    found = wait_for(lambda: len(texts()) >= n and texts(), f"SMS {n} to {number}")
    assert isinstance(found, list)
    return str(found[n - 1])


def code_of(text: str) -> str:
    found = CODE.search(text)
    assert found, text
    return found.group(1)


def other(code: str) -> str:
    return str((int(code) + 1) % 1_000_000).zfill(6)


@pytest.fixture
def env(data_dir: Path, clean_env: None) -> dict[str, str]:
    return cli_env(data_dir)


@pytest.fixture
def simulator(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[Path, Path]]:
    with simulated_modem(tmp_path, env) as sim:
        yield sim


def modem_online(env: dict[str, str]) -> bool:
    listed = ok("modem", "list", env=env)
    return any(" pi " in line and " online " in line for line in listed.splitlines())


def test_a_new_user_sends_and_checks_codes(
    data_dir: Path, env: dict[str, str], simulator: tuple[Path, Path]
) -> None:
    link, ctl = simulator
    ok("admin", "create", "alice", "--password-stdin", env=env, stdin="a long passphrase\n")
    key = ok("app", "create", "shop", "--owner", "alice", env=env).strip().splitlines()[-1]
    ok("modem", "add", "pi", "--port", str(link), env=env)
    server = Server(data_dir, env)
    try:
        assert server.port != 8000
        wait_for(lambda: modem_online(env), "modem pi online")

        # The CLI, on the database: the server's dispatcher sends what it queued.
        started = ok("otp", "send", PHONE, "--app", "shop", env=env)
        assert re.match(r"sent otp_\w{26} to \+4915112345678, valid until \S+Z", started), started
        text = sent_to(ctl, PHONE, env)
        code = code_of(text)
        assert text == f"Your shop code is {code}. It expires in 10 min. Do not share it."
        assert code not in started
        missed = simgate("otp", "check", PHONE, other(code), "--app", "shop", env=env)
        assert missed.returncode == 1
        assert "pending: wrong code; 4 attempts left" in missed.stderr
        assert ok("otp", "check", PHONE, code, "--app", "shop", env=env).strip() == "approved"
        twice = simgate("otp", "check", PHONE, code, "--app", "shop", env=env)
        assert twice.returncode == 1
        assert "not_found" in twice.stderr
        assert "Traceback" not in twice.stderr + missed.stderr

        # Without --app it is the operator's own verification, apart from the app's.
        ok("otp", "send", PHONE_2, "--locale", "de", env=env)
        code = code_of(sent_to(ctl, PHONE_2, env))
        via_app = simgate("otp", "check", PHONE_2, code, "--app", "shop", env=env)
        assert via_app.returncode == 1
        assert ok("otp", "check", PHONE_2, code, env=env).strip() == "approved"

        # The same through the server's API (--url/--key).
        http = ("--url", server.url, "--key", key)
        ok("otp", "send", PHONE, "--length", "8", *http, env=env)
        code = re.search(r"\d{8}", sent_to(ctl, PHONE, env, 2))
        assert code
        assert ok("otp", "check", PHONE, code.group(0), *http, env=env).strip() == "approved"

        # Seed 002's endpoints, the key in the body as its clients send it.
        with httpx.Client(base_url=server.url, timeout=60) as client:
            resp = client.post("/send_otp", json={"api_key": key, "phone": PHONE})
            assert resp.status_code == 200, resp.text
            assert resp.json()["message"] == "OTP sent successfully"
            code = code_of(sent_to(ctl, PHONE, env, 3))
            bad = client.post("/verify_otp", json={"api_key": key, "phone": PHONE, "otp": "12x"})
            assert bad.status_code == 422
            assert bad.json()["field"] == "otp"
            good = client.post("/verify_otp", json={"api_key": key, "phone": PHONE, "otp": code})
            assert good.json()["status"] == "success", good.text
            again = client.post("/verify_otp", json={"api_key": key, "phone": PHONE, "otp": code})
            assert again.json()["status"] == "error"
            listed = client.get("/api/v1/messages", headers={"Authorization": f"Bearer {key}"})
            assert code not in listed.text, "the API shows the codes' SMS masked"
        # Bad input on the command line: a clear error, exit 1.
        for args, words in (
            (("otp", "send", "12"), "phone: '12'"),
            (("otp", "send", PHONE, "--length", "3"), "length: must be 4-10"),
            (("otp", "send", PHONE, "--app", "nope"), "no app named 'nope'"),
            (("otp", "check", PHONE, "12ab"), "code: must be 4-10 digits"),
        ):
            done = simgate(*args, env=env)
            assert done.returncode == 1, (args, done.stdout)
            assert words in done.stderr, (args, done.stderr)
            assert "Traceback" not in done.stderr
        assert code not in server.log()
    finally:
        server.stop()
    log = server.log()
    for text in (code, "Traceback"):
        assert text not in log


def test_two_servers_on_one_sqlite_file_approve_once(data_dir: Path, env: dict[str, str]) -> None:
    key = ok("app", "create", "shop", env=env).strip().splitlines()[-1]
    a = Server(data_dir, {**env, "SIMGATE_NODE_NAME": "a"}, name="a")
    try:
        b = Server(data_dir, {**env, "SIMGATE_NODE_NAME": "b"}, name="b")
        try:
            headers = {"Authorization": f"Bearer {key}"}
            started = httpx.post(f"{a.url}/api/v1/otp", json={"phone": PHONE}, headers=headers)
            assert started.status_code == 201, started.text
            vid = started.json()["id"]
            # No gateway: the SMS waits in the queue, the only place its text is kept.
            with sqlite3.connect(data_dir / "simgate.db") as db:
                (body,) = db.execute("SELECT body FROM messages WHERE status = 'queued'").fetchone()
            code = code_of(body)

            def check(url: str) -> httpx.Response:
                return httpx.post(
                    f"{url}/api/v1/otp/verify",
                    json={"id": vid, "code": code},
                    headers=headers,
                    timeout=30,
                )

            with ThreadPoolExecutor(max_workers=16) as pool:
                answers = list(pool.map(check, [a.url, b.url] * 12))
            assert [r.status_code for r in answers] == [200] * 24, [r.text for r in answers]
            assert sum(r.json()["valid"] for r in answers) == 1
        finally:
            b.stop()
    finally:
        a.stop()


@pytest.fixture
async def pg_url(tmp_path: Path) -> AsyncIterator[str]:
    async for url in fresh_database("postgresql", tmp_path):
        yield url


def queued_body(db_url: str, verification: str) -> str:
    """The text of a verification's SMS while it waits in the queue (no gateway here)."""

    async def read() -> str:
        engine = create_async_engine(db_url)
        try:
            async with engine.connect() as conn:
                found = await conn.execute(
                    sql("SELECT body FROM messages WHERE CAST(metadata AS TEXT) LIKE :v"),
                    {"v": f"%{verification}%"},
                )
                return str(found.scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_nodes_need_one_secret_and_say_so(tmp_path: Path, pg_url: str, clean_env: None) -> None:
    envs = {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        envs[name] = cli_env(tmp_path / name, SIMGATE_DATABASE_URL=pg_url, SIMGATE_NODE_NAME=name)
    key = ok("app", "create", "shop", env=envs["a"]).strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {key}"}

    def started_on(server: Server, phone: str) -> tuple[str, str]:
        resp = httpx.post(f"{server.url}/api/v1/otp", json={"phone": phone}, headers=headers)
        assert resp.status_code == 201, resp.text
        vid = resp.json()["id"]
        return vid, code_of(queued_body(pg_url, vid))

    def check_on(server: Server, vid: str, code: str) -> httpx.Response:
        return httpx.post(
            f"{server.url}/api/v1/otp/verify", json={"id": vid, "code": code}, headers=headers
        )

    # Each node made its own key file: node B cannot check node A's codes, and says why.
    a = Server(tmp_path / "a", envs["a"], name="a")
    try:
        vid, code = started_on(a, PHONE)
        b = Server(tmp_path / "b", envs["b"], name="b")
        try:
            resp = check_on(b, vid, code)
            assert resp.status_code == 503, resp.text
            assert "give every node the same SIMGATE_OTP_SECRET" in resp.json()["error"]["message"]
            wait_for(lambda: "another OTP secret" in b.log(), "node B's warning at start")
        finally:
            b.stop()
    finally:
        a.stop()
    # The same secret on both: a code sent by A is approved by B.
    secret = {"SIMGATE_OTP_SECRET": "a shared secret of more than 32 characters"}
    a = Server(tmp_path / "a", {**envs["a"], **secret}, name="a2")
    try:
        b = Server(tmp_path / "b", {**envs["b"], **secret}, name="b2")
        try:
            vid, code = started_on(a, PHONE_2)
            resp = check_on(b, vid, code)
            assert resp.json()["valid"] is True, resp.text
        finally:
            b.stop()
    finally:
        a.stop()


def test_a_started_verification_survives_a_kill(data_dir: Path, env: dict[str, str]) -> None:
    """201 means stored: after SIGKILL the verification and its SMS are there, and the code
    works on the restarted server."""
    key = ok("app", "create", "shop", env=env).strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    server = Server(data_dir, env, name="first")
    try:
        started = httpx.post(f"{server.url}/api/v1/otp", json={"phone": PHONE}, headers=headers)
        assert started.status_code == 201, started.text
    finally:
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    with sqlite3.connect(data_dir / "simgate.db") as db:
        (body,) = db.execute("SELECT body FROM messages WHERE status = 'queued'").fetchone()
    again = Server(data_dir, env, name="second")
    try:
        shown = httpx.get(f"{again.url}/api/v1/otp/{started.json()['id']}", headers=headers)
        assert shown.json()["status"] == "pending"
        assert shown.json()["message"]["status"] == "queued"
        checked = httpx.post(
            f"{again.url}/api/v1/otp/verify",
            json={"phone": PHONE, "code": code_of(body)},
            headers=headers,
        )
        assert checked.json()["valid"] is True, checked.text
    finally:
        again.stop()
