"""The API documentation renders in a real browser with no request leaving the machine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.integration.server import Server, cli_env

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def server(data_dir: Path, clean_env: None) -> Iterator[Server]:
    srv = Server(data_dir, cli_env(data_dir))
    yield srv
    srv.stop()


async def test_docs_render_offline(browser: Any, server: Server, tmp_path: Path) -> None:
    outside: list[str] = []
    page = await browser.new_page()

    async def guard(route: Any) -> None:
        url = route.request.url
        if urlparse(url).hostname in ("127.0.0.1", "localhost") or url.startswith("data:"):
            await route.continue_()
        else:
            outside.append(url)
            await route.abort()

    await page.route("**/*", guard)
    await page.goto(server.url + "/docs")
    await page.get_by_text("/api/v1/me").first.wait_for(timeout=20_000)
    await page.get_by_role("button", name="Authorize").first.wait_for(timeout=5_000)
    await page.screenshot(path=str(tmp_path / "docs.png"))
    await page.close()
    assert outside == []
