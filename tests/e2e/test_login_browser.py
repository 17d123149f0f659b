"""A person logs in to the dashboard in a real browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server import Server, cli_env, simgate

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def server(data_dir: Path, clean_env: None) -> Iterator[Server]:
    env = cli_env(data_dir)
    assert (
        simgate(
            "admin", "create", "root", "--password-stdin", env=env, stdin="browser-pass-1\n"
        ).returncode
        == 0
    )
    assert simgate("app", "create", "webshop", env=env).returncode == 0
    srv = Server(data_dir, env)
    yield srv
    srv.stop()


async def test_login_wrong_then_right_then_logout(
    browser: Any, server: Server, tmp_path: Path
) -> None:
    page = await browser.new_page()
    await page.goto(server.url + "/")
    assert page.url.endswith("/login")
    await page.get_by_label("Username").fill("root")
    await page.get_by_label("Password").fill("wrong-password")
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_role("alert").wait_for()
    assert "Wrong username or password" in await page.get_by_role("alert").inner_text()
    assert await page.get_by_label("Username").input_value() == "root"

    await page.get_by_label("Password").fill("browser-pass-1")
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/dashboard")
    await page.get_by_text("webshop").first.wait_for()
    await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_url("**/login")
    await page.goto(server.url + "/dashboard")
    assert "/login" in page.url
    await page.close()
