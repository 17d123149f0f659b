"""A ``SimModem`` on a real pseudo-terminal, with a control socket next to it.

``PtyModem`` opens a pty in raw mode, feeds what a serial driver writes to the slave side
into the model and writes the model's answers back, on the running asyncio loop (no
threads). ``path`` is what the driver opens, e.g. with
``serial_asyncio_fast.open_serial_connection(url=path, baudrate=115200)``::

    async with PtyModem(SimModem(), link=tmp / "modem0", control=tmp / "modem0.ctl") as sim:
        ...  # a driver talks to str(sim.path); tests steer sim.modem or the socket

With ``link`` the path is a symlink to the pty (like ``/dev/serial/by-id/…``), which
``unplug`` removes and ``replug`` recreates pointing at a fresh pty: the port vanishes
and comes back, as when a USB stick is pulled. Time for the model is ``time.time()``, so
the time stamps of received messages and reports are real.

Control protocol
----------------
A Unix stream socket at ``control``. The client writes one JSON object per line; the
simulator answers each with one JSON line, ``{"ok": true, ...}`` or
``{"ok": false, "error": "<why>"}``. Requests (``cmd``):

- ``{"cmd": "sms", "from": "+4915112345678", "text": "…", "order": [1, 0]}`` — the
  network delivers an SMS (split into parts when long; ``order``, optional, sends the
  parts in that 0-based order). Answer: ``{"ok": true, "parts": 2}``.
- ``{"cmd": "fault", "<name>": <value>, …, "clear": false}`` — change the named faults
  (``clear: true`` first resets all). Names and values as ``Faults``: ``cms_error``
  (int or null, one shot), ``cme_errors`` ({"+CSQ": 100}), ``registration`` (int or
  null; 2 or 3: not registered), ``sim_missing``, ``dead``, ``hang``,
  ``brown_out_on_send`` (bools), ``delay`` (seconds), ``garbage`` (string, latin-1),
  ``extra_urcs`` (list of lines), ``report_status`` (TP-ST), ``signal`` (rssi).
  Answer: ``{"ok": true, "faults": {…}}``.
- ``{"cmd": "brownout"}`` — UNDER-VOLTAGE WARNNING, then a reset.
- ``{"cmd": "reboot"}`` — a clean power cycle (boot URCs, settings lost).
- ``{"cmd": "unplug"}`` / ``{"cmd": "replug"}`` — the port vanishes / returns.
- ``{"cmd": "sent"}`` — what the network received: ``{"ok": true, "sent": [{"mr": 0,
  "to": "+49…", "text": "…", "pdu": "…", "at": 1.7e9, "report": true, "part": [1, 2,
  7]}]}`` (``part``: sequence, total, reference; null when not concatenated).
- ``{"cmd": "status"}`` — SIM state, registration, stored counts, faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import tty
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from simgate.modem_sim.control import MAX_LINE, ControlError, handle
from simgate.modem_sim.model import SimModem

MAX_PENDING = 1 << 16  # bytes kept while nobody reads; a real UART would lose them too


class PtyModem:
    def __init__(
        self,
        modem: SimModem | None = None,
        *,
        link: str | Path | None = None,
        control: str | Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.modem = modem if modem is not None else SimModem(now=clock(), booted=True)
        self.link = Path(link) if link is not None else None
        self.control = Path(control) if control is not None else None
        self.device = ""  # the /dev/pts/N of the current pty
        self._master = self._slave = -1
        self._pending = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def path(self) -> str:
        """What a driver opens: the link when there is one, else the pty itself."""
        return str(self.link) if self.link is not None else self.device

    async def start(self) -> PtyModem:
        self._loop = asyncio.get_running_loop()
        self._open()
        if self.control is not None:
            with contextlib.suppress(FileNotFoundError):
                self.control.unlink()  # a socket left by a simulator that was killed
            self._server = await asyncio.start_unix_server(
                self._client, str(self.control), limit=MAX_LINE
            )
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._clients):
                writer.close()  # wait_closed() waits for connected clients (3.12+)
            await self._server.wait_closed()
            self._server = None
            if self.control is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.control.unlink()
        self._shut()

    async def __aenter__(self) -> PtyModem:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- steering from the same process (tests) --------------------------------------------

    def inject_sms(self, sender: str, text: str, *, order: list[int] | None = None) -> int:
        parts = self.modem.inject_sms(sender, text, self.clock(), order=order)
        self.poke()
        return len(parts)

    def update_faults(self, **changes: Any) -> None:
        self.modem.update_faults(self.clock(), **changes)
        self.poke()

    def brown_out(self) -> None:
        self.modem.brown_out(self.clock())
        self.poke()

    def unplug(self) -> None:
        """The port vanishes: the pty closes (the driver's reads fail) and the link goes."""
        self._shut()

    def replug(self) -> None:
        """The port returns as a fresh pty (behind the same link); the modem reboots."""
        if self._master < 0:
            self._open()
            self.modem.power_cycle(self.clock())
            self.poke()

    def poke(self) -> None:
        """Write what became due and re-arm the timer; call after changing ``modem``."""
        self._flush(self.modem.tick(self.clock()))

    # --- the pty ---------------------------------------------------------------------------

    def _open(self) -> None:
        assert self._loop is not None, "start() first"
        self._master, self._slave = os.openpty()
        # Raw: no echo, no CR/LF translation, no signals; the model does the echoing. The
        # slave stays open here too, so the master never sees a hang-up while no driver
        # has the port open (a driver reopening it must find the modem still there).
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.device = os.ttyname(self._slave)
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
            self.link.symlink_to(self.device)
        self._loop.add_reader(self._master, self._readable)

    def _shut(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._master >= 0 and self._loop is not None:
            self._loop.remove_reader(self._master)
            self._loop.remove_writer(self._master)
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1
        self._pending.clear()
        if self.link is not None and self.link.is_symlink():
            self.link.unlink()

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO while no slave is open on some systems: nothing to read
        self._flush(self.modem.receive(data, self.clock()))

    def _flush(self, data: bytes) -> None:
        if self._master < 0:
            return
        self._pending += data
        if len(self._pending) > MAX_PENDING:
            del self._pending[: len(self._pending) - MAX_PENDING]
        self._write_pending()
        self._arm()

    def _write_pending(self) -> None:
        assert self._loop is not None
        while self._pending:
            try:
                written = os.write(self._master, self._pending)
            except (BlockingIOError, InterruptedError):
                self._loop.add_writer(self._master, self._writable)
                return
            del self._pending[:written]
        self._loop.remove_writer(self._master)

    def _writable(self) -> None:
        if self._master >= 0:
            self._write_pending()

    def _arm(self) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self.modem.next_due()
        if due is not None:
            delay = max(0.0, due - self.clock())
            self._timer = self._loop.call_later(delay, self.poke)

    # --- the control socket ---------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while line := await reader.readline():
                writer.write(json.dumps(self._answer(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError):
            pass  # a client that went away, or a line longer than MAX_LINE
        finally:
            self._clients.discard(writer)
            writer.close()

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            message = json.loads(line)
        except ValueError as exc:
            return {"ok": False, "error": f"not JSON: {exc}"}
        try:
            if isinstance(message, dict) and message.get("cmd") in ("unplug", "replug"):
                if message["cmd"] == "unplug":
                    self.unplug()
                else:
                    self.replug()
                return {"ok": True, "path": self.path, "device": self.device}
            answer = handle(self.modem, message, self.clock())
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
        self.poke()
        if message.get("cmd") == "status":
            answer.update(path=self.path, device=self.device, plugged=self._master >= 0)
        return answer


async def serve(
    modem: SimModem,
    *,
    link: str | Path | None = None,
    control: str | Path | None = None,
    ready: Callable[[PtyModem], None] | None = None,
) -> None:
    """Run a simulator until cancelled (``simgate modem simulate``); ``ready`` is called
    once the port and the control socket exist, e.g. to print their paths."""
    async with PtyModem(modem, link=link, control=control) as sim:
        if ready is not None:
            ready(sim)
        await asyncio.Event().wait()
