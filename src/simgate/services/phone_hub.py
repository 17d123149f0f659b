"""The phone sockets open on this node: who is connected, one writer per socket, one pinger
for all of them, and the drivers that send through them.

A socket's frames go through a bounded queue and its own writer task, so a phone that stops
reading can never block the dispatcher, the pinger or other phones: its queue fills, and
it is disconnected. Action Cable clients expect a ping every 3 seconds (the official ones
reconnect after 6 silent seconds); one task pings every socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simgate.protocols.cable import CableConnection
from simgate.services.phone_auth import Phone, PhoneAuthenticator
from simgate.services.phones import StatusReport, went_online

if TYPE_CHECKING:
    from simgate.drivers.android import AndroidGateway
    from simgate.services.dispatcher import Dispatcher

log = logging.getLogger(__name__)
CHANNEL = "GatewayChannel"
PING_EVERY = 3.0
QUEUE_FRAMES = 256  # a phone this far behind is not reading: it is disconnected


class Link:
    """One open phone socket. ``send`` writes a text frame; ``close`` ends the socket."""

    def __init__(
        self,
        phone: Phone,
        conn: CableConnection,
        send: Callable[[str], Awaitable[None]],
        close: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        self.phone = phone
        self.conn = conn
        self._send = send
        self._close = close
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_FRAMES)
        self._writer = asyncio.create_task(self._write(), name=f"cable-writer-{phone.name}")
        self.closed = False
        self.opened = time.monotonic()

    @property
    def name(self) -> str:
        return self.phone.name

    @property
    def ready(self) -> bool:
        """Subscribed to the gateway channel: it can take ``send_sms``."""
        return not self.closed and self.conn.subscribed_to(CHANNEL)

    def offer(self, frame: str) -> bool:
        if self.closed:
            return False
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning(
                "phone is not reading its socket; disconnecting", extra={"gateway": self.name}
            )
            self.shut()
            return False
        return True

    def push(self, message: dict[str, Any]) -> bool:
        frames = self.conn.push(CHANNEL, message)
        return bool(frames) and all(self.offer(f) for f in frames)

    def shut(self, last: str | None = None) -> None:
        """Send ``last`` (a disconnect frame), then close; never blocks."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            if last is not None:
                self._queue.put_nowait(last)
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)
        if self._queue.full():  # no room even for the end: stop writing at once
            self._writer.cancel()
            asyncio.get_running_loop().create_task(self._close())

    async def _write(self) -> None:
        try:
            while True:
                frame = await self._queue.get()
                if frame is None:
                    break
                await self._send(frame)
        except Exception:  # the socket broke: the reader side notices and detaches us
            self.closed = True
        finally:
            with contextlib.suppress(Exception):
                await self._close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._writer


class PhoneHub:
    def __init__(
        self,
        auth: PhoneAuthenticator,
        events: Dispatcher,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        on_change: Callable[[], None] = lambda: None,
        notify: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._auth = auth
        self._events = events
        self.on_change = on_change
        self._notify = notify
        self.links: dict[str, Link] = {}
        self._drivers: dict[str, AndroidGateway] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._online: dict[int, str] = {}  # phones connected since the last presence write
        self._online_wake = asyncio.Event()
        self._sessionmaker = sessionmaker

    # --- what drivers see (drivers.android.PhoneLinks) ---------------------------------

    def connected(self, name: str) -> bool:
        link = self.links.get(name)
        return link is not None and link.ready

    def push(self, name: str, message: dict[str, Any]) -> bool:
        link = self.links.get(name)
        return link is not None and link.ready and link.push(message)

    def attach_driver(self, name: str, driver: AndroidGateway) -> None:
        self._drivers[name] = driver

    def detach_driver(self, name: str, driver: AndroidGateway) -> None:
        if self._drivers.get(name) is driver:
            del self._drivers[name]

    def driver(self, name: str) -> AndroidGateway | None:
        return self._drivers.get(name)

    # --- what the cable endpoint does -------------------------------------------------

    async def attach(self, link: Link) -> None:
        """A phone connected. A second socket for the same phone replaces the first (the
        phone reconnected before the old socket timed out)."""
        old = self.links.get(link.name)
        self.links[link.name] = link
        if old is not None and old is not link:
            # reconnect: true, in case the old socket is the one the phone still uses
            old.shut(old.conn.disconnect("replaced", reconnect=True))
        await self.changed(link.name)

    async def detach(self, link: Link) -> None:
        if self.links.get(link.name) is link:
            del self.links[link.name]
        await self.changed(link.name)

    async def changed(self, name: str) -> None:
        """The socket of ``name`` opened, subscribed or closed: tell its driver and the
        gateway manager (which starts or stops drivers where sockets are)."""
        driver = self._drivers.get(name)
        if driver is not None:
            await driver.link_changed()
        self.on_change()

    # --- status reports -----------------------------------------------------------------

    async def report(self, gateway: str, report: StatusReport) -> None:
        """A phone's ``delivery_status``, from its socket or over HTTP on any node. The
        driver that sent the message decides when it runs here; otherwise the report is
        recorded here and the node that runs the phone is told (PostgreSQL NOTIFY), so
        that it stops waiting for the answer."""
        driver = self._drivers.get(gateway)
        if driver is not None:
            await driver.on_status(report.message_id, report.status, report.error)
            return
        if report.status == "sent":
            await self._events.sent_report(gateway, message_id=report.message_id)
        elif report.status == "delivered":
            await self._events.delivery_report(
                gateway, message_id=report.message_id, gateway_ref=report.message_id, delivered=True
            )
        elif report.status == "failed":
            await self._events.failed_after_sent(
                gateway, message_id=report.message_id, error=report.error
            )
        if self._notify is not None:
            await self._notify(
                json.dumps(
                    {"g": gateway, "m": report.message_id, "s": report.status, "e": report.error}
                )
            )

    async def notified(self, payload: str) -> None:
        """Another node recorded a report for a phone that may run here."""
        if not payload:
            return
        try:
            data = json.loads(payload)
            gateway, message_id, status = data["g"], data["m"], data["s"]
        except (ValueError, KeyError, TypeError):
            return
        driver = self._drivers.get(gateway)
        if driver is not None:
            await driver.on_status(message_id, status, data.get("e") or "")

    # --- presence ------------------------------------------------------------------------

    def online(self, phone: Phone) -> None:
        """A phone connected: recorded (with ``gateway.online`` if it was offline) by the
        presence writer, many in one transaction, so a thousand phones connecting at once
        do not queue a thousand transactions before their sockets are served."""
        self._online[phone.id] = phone.name
        self._online_wake.set()

    async def presence_forever(self) -> None:
        while True:
            await self._online_wake.wait()
            self._online_wake.clear()
            await asyncio.sleep(0.05)  # let the ones connecting together come together
            pending, self._online = self._online, {}
            if not pending:
                continue
            try:
                async with self._sessionmaker.begin() as session:
                    for gateway_id, name in pending.items():
                        await went_online(session, gateway_id=gateway_id, name=name, via="cable")
            except Exception as exc:  # the database is away: try again with the next ones
                for gateway_id, name in pending.items():
                    self._online.setdefault(gateway_id, name)
                log.warning("could not record phones online", extra={"error": str(exc)})
                await asyncio.sleep(1.0)
                self._online_wake.set()

    # --- background ---------------------------------------------------------------------

    async def ping_forever(self) -> None:
        while True:
            await asyncio.sleep(PING_EVERY)
            frame = CableConnection().ping(int(time.time()))
            for link in list(self.links.values()):
                link.offer(frame)

    def keys_changed(self) -> None:
        """Keys were rotated or gateways deactivated somewhere: re-check the open sockets."""
        self._auth.invalidate()
        try:
            task = asyncio.get_running_loop().create_task(self.recheck())
        except RuntimeError:
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def recheck(self) -> None:
        links = list(self.links.values())
        try:
            now = await self._auth.still_valid([link.phone for link in links])
        except Exception as exc:  # the database is away: keep the sockets, check later
            log.warning("could not re-check the phones' keys", extra={"error": str(exc)})
            return
        for link in links:
            phone = now.get(link.phone.id)
            if phone is None or not phone.active:
                error = "Invalid API key" if phone is None else "Gateway inactive"
                link.shut(link.conn.disconnect("unauthorized", reconnect=False, error=error))

    async def close_all(self) -> None:
        for link in list(self.links.values()):
            link.shut(link.conn.disconnect("server_restart", reconnect=True))
        for link in list(self.links.values()):
            await link.wait_closed()
