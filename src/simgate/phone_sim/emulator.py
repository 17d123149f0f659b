"""A reference phone gateway: speaks seed 003's protocol the way its Android app does, so
simgate can be demonstrated, tested and benchmarked without a phone.

It connects to ``/cable?api_key=…`` (no subprotocol, as OkHttp does; ``subprotocol=True``
offers ``actioncable-v1-json`` like the official clients), subscribes to ``GatewayChannel``,
sends a heartbeat every minute, and answers each ``send_sms`` with ``delivery_status``
``sent`` and, ``deliver_after`` seconds later, ``delivered`` (or ``failed`` for a share of
``fail_rate``). It drops a ``message_id`` it has already sent (a retry) after reporting it
again. Inbound SMS are injected with ``receive`` (or through the control socket) and go up
as ``sms_received``. ``http_only`` makes it use the HTTP endpoints for everything it sends
(it still needs the socket to be given messages). It reconnects with backoff, and treats a
connection without pings for 6 seconds as dead, like the official clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

log = logging.getLogger(__name__)
IDENTIFIER = json.dumps({"channel": "GatewayChannel"}, separators=(",", ":"))
STALE_AFTER = 6.0  # seconds without a ping: the official clients reconnect then


@dataclass
class EmulatorConfig:
    url: str  # the server, e.g. http://127.0.0.1:8000
    key: str
    deliver_after: float = 2.0
    sent_after: float = 0.05
    fail_rate: float = 0.0
    sims: int = 1
    numbers: tuple[str, ...] = ()  # the SIMs' own numbers, by slot
    heartbeat_every: float = 60.0
    http_only: bool = False
    subprotocol: bool = False
    reconnect: bool = True
    battery: int = 87
    signal: int = 4


@dataclass
class Stats:
    connected: int = 0
    send_requests: int = 0
    duplicates: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    received: int = 0
    heartbeats: int = 0
    acks: int = 0  # the server's answers to what the phone sent over the socket
    refused: str = ""  # why the server refused the connection for good
    requests: list[dict[str, Any]] = field(default_factory=list)  # every send_sms payload


class Refused(Exception):
    """The server said not to reconnect (wrong key, deactivated gateway)."""


class PhoneEmulator:
    def __init__(
        self, config: EmulatorConfig, *, on_send: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.config = config
        self.stats = Stats()
        self._on_send = on_send
        self._ws: ClientConnection | None = None
        self._seen: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.subscribed = asyncio.Event()
        self._http: httpx.AsyncClient | None = None
        self._random = random.Random()

    # --- the connection -------------------------------------------------------------------

    @property
    def cable_url(self) -> str:
        base = self.config.url.rstrip("/")
        base = "ws" + base[4:] if base.startswith("http") else base
        return f"{base}/cable?api_key={self.config.key}"

    async def run(self) -> None:
        """Stay connected until cancelled or refused for good (raises ``Refused``)."""
        delay = 0.5
        try:
            while True:
                try:
                    await self._session()
                    delay = 0.5
                except Refused:
                    raise
                except InvalidStatus as exc:
                    if exc.response.status_code in (401, 403):
                        self.stats.refused = f"HTTP {exc.response.status_code}"
                        raise Refused(self.stats.refused) from None
                    log.info("phone emulator: refused (%s); reconnecting", exc)
                except Exception as exc:  # whatever broke the connection, a phone retries
                    log.info("phone emulator: connection lost (%r); reconnecting", exc)
                if not self.config.reconnect:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._http is not None:
                await self._http.aclose()

    async def _session(self) -> None:
        protocols = (
            ["actioncable-v1-json", "actioncable-unsupported"] if self.config.subprotocol else None
        )
        async with connect(
            self.cable_url,
            subprotocols=protocols,  # type: ignore[arg-type]
            ping_interval=None,
            compression=None,
        ) as ws:
            self._ws = ws
            self.subscribed.clear()
            try:
                await ws.send(json.dumps({"command": "subscribe", "identifier": IDENTIFIER}))
                beat = self._spawn(self._heartbeats())
                try:
                    await self._read(ws)
                finally:
                    beat.cancel()
            finally:
                self._ws = None
                self.subscribed.clear()

    async def _read(self, ws: ClientConnection) -> None:
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), STALE_AFTER)
            except TimeoutError:
                log.info("phone emulator: no ping for %s s; reconnecting", STALE_AFTER)
                return
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "disconnect":
                if not frame.get("reconnect", True):
                    self.stats.refused = str(frame.get("error") or frame.get("reason"))
                    raise Refused(self.stats.refused)
                return
            if kind == "confirm_subscription":
                self.stats.connected += 1
                self.subscribed.set()
            elif kind == "reject_subscription":
                raise Refused("subscription rejected")
            elif kind in ("welcome", "ping"):
                pass
            elif isinstance(frame.get("message"), dict):
                if frame["message"].get("action") == "ack":
                    self.stats.acks += 1
                await self._on_message(frame["message"])

    async def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("action") != "send_sms":
            return
        payload = message.get("payload") or {}
        message_id = str(payload.get("message_id", ""))
        self.stats.send_requests += 1
        self.stats.requests.append(payload)
        if self._on_send is not None:
            self._on_send(payload)
        if message_id in self._seen:  # a retry: it went out already; say so again
            self.stats.duplicates += 1
            self._spawn(self._report(message_id, "sent"))
            return
        self._seen.add(message_id)
        self._spawn(self._deliver(message_id))

    async def _deliver(self, message_id: str) -> None:
        await asyncio.sleep(self.config.sent_after)
        if self._random.random() < self.config.fail_rate:
            self.stats.failed += 1
            await self._report(message_id, "failed", "RESULT_ERROR_GENERIC_FAILURE")
            return
        self.stats.sent += 1
        await self._report(message_id, "sent")
        await asyncio.sleep(self.config.deliver_after)
        self.stats.delivered += 1
        await self._report(message_id, "delivered")

    # --- what the phone sends ---------------------------------------------------------------

    async def _perform(self, action: str, payload: dict[str, Any], http_path: str) -> None:
        if self.config.http_only or self._ws is None:
            if self._http is None:  # made when needed: thousands of phones may share a process
                self._http = httpx.AsyncClient(
                    base_url=self.config.url.rstrip("/"),
                    headers={"Authorization": f"Bearer {self.config.key}"},
                    timeout=10,
                )
            await self._http.post(http_path, json=payload)
            return
        data = json.dumps({"action": action, "payload": payload})
        with contextlib.suppress(WebSocketException):
            await self._ws.send(
                json.dumps({"command": "message", "identifier": IDENTIFIER, "data": data})
            )

    async def _report(self, message_id: str, status: str, error: str = "") -> None:
        payload: dict[str, Any] = {"message_id": message_id, "status": status}
        if error:
            payload["error_message"] = error
        await self._perform("delivery_status", payload, "/api/v1/gateway/sms/status")

    def heartbeat_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "status": "online",
            "battery_level": self.config.battery,
            "signal_strength": self.config.signal,
            "messages_sent": self.stats.sent,
            "messages_received": self.stats.received,
        }
        if self.config.sims > 1 or self.config.numbers:
            payload["sims"] = [
                {"slot": slot, **({"number": n} if (n := self._number(slot)) else {})}
                for slot in range(1, self.config.sims + 1)
            ]
        return payload

    def _number(self, slot: int) -> str:
        numbers = self.config.numbers
        return numbers[slot - 1] if len(numbers) >= slot else ""

    async def heartbeat(self) -> None:
        self.stats.heartbeats += 1
        await self._perform("heartbeat", self.heartbeat_payload(), "/api/v1/gateway/heartbeat")

    async def _heartbeats(self) -> None:
        await self.subscribed.wait()
        while True:
            await self.heartbeat()
            await asyncio.sleep(self.config.heartbeat_every)

    async def receive(self, sender: str, text: str, *, sim: int = 1) -> None:
        """The phone received an SMS: hand it to the server."""
        self.stats.received += 1
        payload = {
            "phone_number": sender,
            "message_body": text,
            "received_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "sim_slot": sim,
        }
        await self._perform("sms_received", payload, "/api/v1/gateway/sms/received")

    async def drop(self) -> None:
        """Lose the connection (as a phone changing networks does); it reconnects."""
        if self._ws is not None:
            await self._ws.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- control socket ------------------------------------------------------------------

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "sms":
            sender, text, sim = request.get("from"), request.get("text"), request.get("sim", 1)
            if not isinstance(sender, str) or not sender or not isinstance(text, str):
                raise ValueError('"sms" needs "from" and "text" (strings)')
            if not isinstance(sim, int) or not 1 <= sim <= max(1, self.config.sims):
                raise ValueError(f'"sim" must be 1 to {self.config.sims}, not {sim!r}')
            await self.receive(sender, text, sim=sim)
            return {"ok": True}
        if cmd == "status":
            stats = {k: v for k, v in vars(self.stats).items() if k != "requests"}
            return {"ok": True, "subscribed": self.subscribed.is_set(), **stats}
        if cmd == "drop":
            await self.drop()
            return {"ok": True}
        if cmd == "set":
            for name in ("deliver_after", "fail_rate", "sent_after"):
                if name in request:
                    setattr(self.config, name, float(request[name]))
            return {"ok": True}
        raise ValueError(f"unknown cmd {cmd!r}; known: sms, status, drop, set")


async def serve_control(emulator: PhoneEmulator, path: str) -> asyncio.AbstractServer:
    """The control socket: one JSON request a line, one answer a line."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer = await emulator.handle(json.loads(line))
                except (ValueError, TypeError) as exc:
                    answer = {"ok": False, "error": str(exc)}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_unix_server(client, path=path)
