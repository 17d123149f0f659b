"""A real local webhook receiver for tests: HTTP/1.1 over asyncio with h11, answering each
request as scripted (a status, headers, a delay, a hang, garbage instead of HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field

import h11


@dataclass
class Reply:
    status: int = 204
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    delay: float = 0.0
    hang: bool = False  # never answer
    garbage: bool = False  # answer bytes that are not HTTP, then close


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()


class Receiver:
    """``replies`` are used in order, one per request; after them, ``default``."""

    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self.replies: deque[Reply] = deque()
        self.requests: list[Request] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._arrived = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def wait_for(self, n: int, timeout: float = 30.0) -> list[Request]:
        """Until ``n`` requests have arrived (fails the test after ``timeout``)."""
        async with asyncio.timeout(timeout):
            while len(self.requests) < n:
                self._arrived.clear()
                await self._arrived.wait()
        return self.requests

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                elif isinstance(event, h11.Request):
                    request, body = event, bytearray()
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert request is not None
                    self.requests.append(
                        Request(
                            request.method.decode(),
                            request.target.decode(),
                            {k.decode().lower(): v.decode() for k, v in request.headers},
                            bytes(body),
                            time.monotonic(),
                        )
                    )
                    self._arrived.set()
                    reply = self.replies.popleft() if self.replies else self.default
                    if reply.hang:
                        await asyncio.sleep(3600)
                    if reply.delay:
                        await asyncio.sleep(reply.delay)
                    if reply.garbage:
                        writer.write(b"\x00\xffthis is not HTTP\r\n\r\n")
                        await writer.drain()
                        return
                    headers = [*reply.headers, ("content-length", str(len(reply.body)))]
                    writer.write(conn.send(h11.Response(status_code=reply.status, headers=headers)))
                    if reply.body:
                        writer.write(conn.send(h11.Data(data=reply.body)))
                    writer.write(conn.send(h11.EndOfMessage()))
                    await writer.drain()
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except (ConnectionError, h11.ProtocolError, asyncio.CancelledError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
