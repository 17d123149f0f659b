"""``create_app`` served by a real uvicorn on a free port inside the test's event loop: real
sockets (WebSockets included), with the app's runtime at hand for the test."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect

from simgate.config import Settings
from simgate.web.app import create_app
from simgate.web.runtime import Runtime
from tests.integration.server import free_port

IDENTIFIER = '{"channel":"GatewayChannel"}'


@dataclass
class Live:
    url: str
    app: FastAPI

    @property
    def runtime(self) -> Runtime:
        return self.app.state.runtime  # type: ignore[no-any-return]

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:]


@asynccontextmanager
async def live_server(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Live]:
    app = create_app(settings, engine=engine)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    if task.done():
        await task
    try:
        yield Live(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


class Phone:
    """A bare WebSocket client speaking Action Cable frame by frame, for tests that need
    to see (or break) every frame."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def frame(self, timeout: float = 10) -> dict[str, Any]:
        """The next frame that is not a ping."""
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
            frame = json.loads(raw)
            if frame.get("type") != "ping":
                return frame  # type: ignore[no-any-return]

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def subscribe(self) -> None:
        await self.send(command="subscribe", identifier=IDENTIFIER)
        confirm = await self.frame()
        assert confirm == {"identifier": IDENTIFIER, "type": "confirm_subscription"}, confirm

    async def perform(self, action: str, **payload: Any) -> dict[str, Any]:
        data = json.dumps({"action": action, "payload": payload})
        await self.send(command="message", identifier=IDENTIFIER, data=data)
        return await self.frame()


@asynccontextmanager
async def phone_socket(
    live: Live, key: str, *, subprotocols: list[str] | None = None, subscribe: bool = True
) -> AsyncIterator[Phone]:
    async with connect(
        f"{live.ws_url}/cable?api_key={key}",
        subprotocols=subprotocols,  # type: ignore[arg-type]
        ping_interval=None,
    ) as ws:
        phone = Phone(ws)
        welcome = await phone.frame()
        assert welcome == {"type": "welcome"}, welcome
        if subscribe:
            await phone.subscribe()
        yield phone
