"""Routers that turn away paths outside their shared start answer exactly as FastAPI's own:
the same matches, 404s, 405s, trailing-slash redirects, and the same under a root path."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from starlette.routing import Match

from simgate.web.routing import Router


def build(kind: type[APIRouter] = Router) -> FastAPI:
    otp = kind(prefix="/api/v1/otp")
    inbox = kind(prefix="/api/v1/inbox")
    pages = kind()  # "/" and "/login": no shared start to skip by

    @otp.post("")
    async def start() -> dict[str, str]:
        return {"r": "otp start"}

    @otp.post("/verify")
    async def verify() -> dict[str, str]:
        return {"r": "otp verify"}

    @otp.get("/{vid}")
    async def one(vid: str) -> dict[str, str]:
        return {"r": f"otp {vid}"}

    @inbox.get("/wait")
    async def wait() -> dict[str, str]:
        return {"r": "inbox wait"}

    @pages.get("/")
    async def home() -> dict[str, str]:
        return {"r": "home"}

    @pages.get("/login")
    async def login() -> dict[str, str]:
        return {"r": "login"}

    app = FastAPI()
    for router in (otp, inbox, pages):
        app.include_router(router)
    return app


def test_the_shared_start_of_a_routers_paths() -> None:
    app = build()
    otp, inbox, pages = (r.original_router for r in app.router.routes[-3:])  # type: ignore[attr-defined]
    assert isinstance(otp, Router)
    assert isinstance(inbox, Router)
    assert isinstance(pages, Router)
    assert otp.shared_prefix() == "/api/v1/otp"
    assert inbox.shared_prefix() == "/api/v1/inbox/wait"
    assert pages.shared_prefix() == "/"
    scope = {"type": "http", "path": "/api/v1/inbox/wait", "root_path": "", "method": "GET"}
    assert otp.matches(scope) == (Match.NONE, {})


@pytest.mark.parametrize("root_path", ["", "/sms"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/otp"),
        ("POST", "/api/v1/otp/verify"),
        ("GET", "/api/v1/otp/abc"),
        ("GET", "/api/v1/otp/verify"),  # the path parameter route
        ("GET", "/api/v1/inbox/wait"),
        ("GET", "/api/v1/inbox/wait/"),  # redirected
        ("GET", "/login"),
        ("GET", "/"),
        ("DELETE", "/api/v1/otp/verify"),  # 405
        ("POST", "/api/v1/inbox/wait"),
        ("GET", "/api/v1/otpx"),  # 404
        ("GET", "/api/v1/inbox"),
        ("GET", "/nowhere"),
    ],
)
async def test_answers_are_fastapis(root_path: str, method: str, path: str) -> None:
    answers = []
    for kind in (Router, APIRouter):
        transport = httpx.ASGITransport(app=build(kind), root_path=root_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            resp = await client.request(method, root_path + path)
        answers.append((resp.status_code, resp.headers.get("location"), resp.content))
    assert answers[0] == answers[1]
    if not root_path:  # the reference answers as expected too (not all 404s)
        assert answers[0][0] in {200, 307, 404, 405}


async def test_a_trailing_slash_still_redirects() -> None:
    transport = httpx.ASGITransport(app=build())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        resp = await client.get("/api/v1/inbox/wait/")
    assert resp.status_code == 307
    assert resp.headers["location"].endswith("/api/v1/inbox/wait")
