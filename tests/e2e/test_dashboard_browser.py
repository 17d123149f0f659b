"""The dashboard as a new admin meets it, in a real headless Chromium, with real processes:
the CLI in one "shell" (an admin, an app, a simulated modem on a pseudo-terminal),
`simgate serve` in another on a port other than the default, and the browser on top.

Every page is checked for Content-Security-Policy violations (the dashboard has no inline
script or style, so there must be none) and saved as a screenshot in
``$SIMGATE_SCREENSHOTS`` (default ``test-artifacts/screenshots``; not committed).
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.server import (
    SIMGATE,
    Server,
    cli_env,
    simgate,
    simulated_modem,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PASSWORD = "browser-pass-1"
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
SHOTS = Path(os.environ.get("SIMGATE_SCREENSHOTS", "test-artifacts/screenshots"))
PHONE_WIDTH = {"width": 390, "height": 844}


def ok(*args: str, env: dict[str, str], stdin: str | None = None) -> str:
    done = simgate(*args, env=env, stdin=stdin)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture
def env(data_dir: Path, clean_env: None) -> dict[str, str]:
    env = cli_env(data_dir)
    ok("admin", "create", "root", "--password-stdin", env=env, stdin=PASSWORD + "\n")
    ok("app", "create", "webshop", "--owner", "root", env=env)
    return env


@pytest.fixture
def simulator(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[Path, Path]]:
    with simulated_modem(tmp_path, env) as sim:
        yield sim


@pytest.fixture
def server(data_dir: Path, env: dict[str, str]) -> Iterator[Server]:
    srv = Server(data_dir, env)
    yield srv
    srv.stop()


class Watched:
    """A page whose CSP violations and script errors are collected as they happen."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))

    def _console(self, message: Any) -> None:
        text = message.text
        if message.type == "error" and ("Content Security Policy" in text or "Refused to" in text):
            self.problems.append(text)

    async def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def clean(self) -> None:
        assert self.problems == [], self.problems


async def log_in(browser: Any, server: Server, **context: Any) -> Watched:
    ctx = await browser.new_context(**context)
    watched = Watched(await ctx.new_page())
    page = watched.page
    await page.goto(server.url + "/dashboard")
    await page.get_by_label("Username").fill("root")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/dashboard")
    return watched


def db_value(data_dir: Path, query: str, *args: object) -> Any:
    with sqlite3.connect(data_dir / "simgate.db") as conn:
        row = conn.execute(query, args).fetchone()
    return row[0] if row else None


async def test_overview_and_inbox_are_live_and_show_text_as_text(
    browser: Any,
    data_dir: Path,
    env: dict[str, str],
    simulator: tuple[Path, Path],
    server: Server,
) -> None:
    link, ctl = simulator
    ok("modem", "add", "pi", "--port", str(link), "--rate-per-minute", "0", env=env)
    w = await log_in(browser, server)
    page = w.page
    await page.get_by_role("link", name="pi").first.wait_for()
    await page.locator("#overview-live .status-online").first.wait_for(timeout=30_000)
    await w.shot("overview")

    await page.get_by_role("link", name="Inbox").click()
    await page.wait_for_url("**/inbox")
    loaded = page.url
    ok("modem", "inject", str(ctl), "+4915112345678", "Hello " + XSS, env=env)
    row = page.locator("#inbox-rows tr", has_text="+4915112345678")
    await row.wait_for(timeout=30_000)  # appears by itself
    assert page.url == loaded
    assert XSS in await row.inner_text()  # the markup is shown, as text
    assert await page.evaluate("window.__xss") is None  # and never ran
    await w.shot("inbox")
    w.clean()


async def test_the_pages_fit_a_phone_and_keep_to_the_csp(
    browser: Any, data_dir: Path, server: Server
) -> None:
    w = await log_in(browser, server, viewport=PHONE_WIDTH)
    page = w.page
    menu = page.get_by_text("Menu")
    await menu.click()
    await page.get_by_role("link", name="Gateways").wait_for()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_WIDTH["width"] + 1, width
    await w.shot("overview-phone")
    resp = httpx.get(server.url + "/login")
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "same-origin"
    w.clean()


async def test_add_a_modem_and_watch_a_test_sms_turn_delivered(
    browser: Any,
    data_dir: Path,
    env: dict[str, str],
    simulator: tuple[Path, Path],
    server: Server,
) -> None:
    link, ctl = simulator
    w = await log_in(browser, server)
    page = w.page
    await page.get_by_role("link", name="Gateways").click()
    await page.get_by_role("link", name="Add a modem").first.click()
    await page.get_by_role("button", name="Add modem").click()  # empty: refused, said why
    await page.locator(".field-error", has_text="Give the modem a name").wait_for()
    await page.get_by_label("Name").fill("pi")
    await page.get_by_label("…or type its path").fill(str(link))
    await page.get_by_label("At most this many SMS a minute").fill("0")
    await page.get_by_role("button", name="Add modem").click()
    await page.wait_for_url("**/admin/gateways/pi?added=1")
    await page.locator("#gateway-state dl .status-online").wait_for(timeout=30_000)
    await w.shot("gateway")

    await page.get_by_role("link", name="Send a test SMS").click()
    await page.get_by_label("Send to").fill("+4915112345678")
    await page.get_by_label("Text").fill("Hello from the dashboard")
    await page.get_by_role("button", name="Send test SMS").click()
    await page.wait_for_url(re.compile(r".*/admin/gateways/pi/test\?message=msg_.*"))
    loaded = page.url
    status = page.locator("#test-status")
    await page.locator("#test-status", has_text="delivered").wait_for(timeout=60_000)
    assert page.url == loaded  # no reload: the status came in by itself
    assert await status.inner_text() == "delivered"
    await w.shot("gateway-test")
    sent = ok("modem", "sent", str(ctl), "--to", "+4915112345678", env=env)
    assert "Hello from the dashboard" in sent

    await page.get_by_role("link", name="Messages").click()
    await page.get_by_role("cell", name="Hello from the dashboard").wait_for()
    await w.shot("messages")
    await page.get_by_role("link", name=re.compile("^msg_")).first.click()
    await page.locator(".timeline li", has_text="delivered").wait_for()
    await w.shot("message")
    await page.get_by_role("link", name="Overview").click()
    await page.locator("svg.chart rect.s-delivered").first.wait_for()
    await page.set_viewport_size({"width": 1100, "height": 700})
    await w.shot("overview-traffic")
    w.clean()


async def test_register_an_android_phone_from_its_qr_code(
    browser: Any, data_dir: Path, env: dict[str, str], server: Server, tmp_path: Path
) -> None:
    w = await log_in(browser, server)
    page = w.page
    await page.goto(server.url + "/admin/gateways")
    await page.get_by_role("link", name="Add an Android phone").click()
    await page.get_by_label("Phone name").fill("Shop " + XSS)
    await page.get_by_label("Gateway name (optional)").fill("shop-phone")
    await page.get_by_role("button", name="Add phone").click()
    await page.locator(".qr svg").wait_for()
    payload = (await page.locator("#qr-payload").inner_text()).strip()
    key = (await page.locator("#secret-value").inner_text()).strip()
    assert payload.startswith("simgate://connect?server=")
    assert key.startswith("gw_live_")
    await w.shot("android-added")

    with (tmp_path / "phone.log").open("w") as log:
        phone = subprocess.Popen(
            [SIMGATE, "gateway", "emulate", "--qr", payload, "--heartbeat", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            await page.goto(server.url + "/admin/gateways/shop-phone")
            await page.locator("#gateway-state dl .status-online").wait_for(timeout=30_000)
            assert XSS in await page.locator("#gateway-state").inner_text()  # shown as text
            await page.goto(server.url + "/admin/gateways")
            await page.get_by_text("Shop " + XSS).wait_for()
            assert await page.evaluate("window.__xss") is None
            await w.shot("gateways")
        finally:
            phone.terminate()
            phone.wait(timeout=10)
    w.clean()


async def test_create_a_key_use_it_and_revoke_it(
    browser: Any, data_dir: Path, server: Server
) -> None:
    w = await log_in(browser, server)
    page = w.page
    await page.get_by_role("link", name="Apps & keys").click()
    await page.get_by_role("link", name="webshop").first.click()
    await page.wait_for_url("**/admin/apps/webshop")
    await page.get_by_label("Key name").fill("browser <b>key</b>")
    await page.get_by_role("button", name="Create key").click()
    secret = (await page.locator("#secret-value").inner_text()).strip()
    assert secret.startswith("sg_")
    me = httpx.get(server.url + "/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200
    await w.shot("app-key-created")

    await page.goto(server.url + "/admin/apps/webshop")
    assert secret not in await page.content()  # shown once, then never again
    row = page.locator("tr", has_text="browser <b>key</b>")
    page.once("dialog", lambda dialog: dialog.accept())
    await row.get_by_role("button", name="Revoke").click()
    await page.locator("tr.revoked", has_text="browser <b>key</b>").wait_for()
    refused = httpx.get(server.url + "/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401
    for path, name in (
        ("/admin/apps", "apps"),
        ("/admin/webhooks", "webhooks"),
        ("/admin/otp", "otp"),
        ("/admin/logs", "logs"),
        ("/admin/users", "users"),
        ("/admin/account", "account"),
        ("/admin/api", "api"),
    ):
        await page.goto(server.url + path)
        await page.locator("h1").first.wait_for()
        await w.shot(name)
    w.clean()


async def test_compose_counts_segments_while_typing_and_names_bad_csv_rows(
    browser: Any,
    data_dir: Path,
    env: dict[str, str],
    simulator: tuple[Path, Path],
    server: Server,
    tmp_path: Path,
) -> None:
    link, _ctl = simulator
    ok("modem", "add", "pi", "--port", str(link), "--rate-per-minute", "0", env=env)
    w = await log_in(browser, server)
    page = w.page
    await page.get_by_role("link", name="Send", exact=True).click()
    await page.wait_for_url("**/admin/compose")
    await page.get_by_label("Send for the app").select_option("webshop")
    text = page.get_by_label("Text")
    counter = page.locator("#segment-count")
    await text.fill("x" * 161)
    await page.locator("#segment-count", has_text="2 SMS parts").wait_for()  # while typing
    await text.fill("Grüße aus Köln — Привет " + XSS)
    await page.locator("#segment-count", has_text="UCS2").wait_for()
    assert "2 SMS parts (39 left" in await counter.inner_text()
    csv = tmp_path / "customers.csv"
    csv.write_text("name,phone\nAnna,+4915112345678\nBen,0000\nCem,+4915112345679\n")
    await page.get_by_label("…or a CSV file").set_input_files(str(csv))
    await page.get_by_role("button", name="Send", exact=True).click()
    bad = page.locator("#bad-recipients")
    await bad.wait_for()
    assert "row 3" in await bad.inner_text()
    assert db_value(data_dir, "SELECT count(*) FROM messages") == 0  # nothing sent yet
    await w.shot("compose-bad-rows")
    await page.get_by_label(re.compile("Skip them")).check()
    await page.get_by_role("button", name="Send", exact=True).click()
    await page.wait_for_url("**/admin/messages?queued=2&skipped=1")
    rows = page.locator("#message-rows tr", has_text="Привет")
    await page.locator("#message-rows tr .status-delivered").nth(1).wait_for(timeout=60_000)
    assert await rows.count() == 2
    assert XSS in await rows.first.inner_text()
    assert await page.evaluate("window.__xss") is None
    await w.shot("messages-sent")
    await rows.first.get_by_role("link").click()
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Resend").click()
    await page.get_by_text("Queued again as a new message").wait_for()
    await page.locator("#message-state .status-delivered").first.wait_for(timeout=60_000)
    assert db_value(data_dir, "SELECT count(*) FROM messages") == 3
    w.clean()


def _first(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    assert found, text
    return found.group(1)


__all__ = ["_first", "db_value", "wait_for"]
