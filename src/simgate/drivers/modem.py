"""A GSM modem on a serial port (SIM800L on a Raspberry Pi UART, Huawei USB sticks): a thin
asyncio loop around the sans-IO AT session and PDU codec.

The driver supervises itself: it waits for the port to exist (``/dev/serial/by-id/…`` paths
survive replugging), opens it, initialises the modem, and keeps watching. A modem that stops
answering, restarts by itself (``RDY``/``SMS Ready`` mid-session: its settings are gone),
vanishes from USB or loses its network is reported as ``error`` with the reason, and the
driver reconnects with backoff; messages it had in hand go back to the queue. A wrong PIN
is never retried: three wrong PINs block a SIM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from simgate.domain import phone
from simgate.domain.modem_errors import lookup
from simgate.domain.retry import ErrorKind
from simgate.drivers import modem_pdu
from simgate.drivers.base import Gateway, GatewayEvents, GatewayStatus, OutboundSms, SendOutcome
from simgate.protocols.at import NEED_DATA, AtSession, Command, Prompt, Response, TimedOut, Urc

log = logging.getLogger(__name__)
_HEX = re.compile(r"[0-9A-Fa-f]+")
REPORT_WAIT = 2 * 86400.0  # seconds; the validity period asked for is one day
STOP_WAIT = 10.0  # seconds a stop waits for the supervisor before closing the port anyway


def parse_cnum(lines: tuple[str, ...] | list[str]) -> str:
    """The number in ``+CNUM: "alpha","<number>",<type>…`` (TS 27.007 7.1), as E.164 when
    its type says international (145); "" when the SIM keeps none."""
    for line in lines:
        match = re.match(r'\+CNUM:\s*"[^"]*"\s*,\s*"([^"]*)"\s*,\s*(\d+)', line)
        if match and match.group(1):
            digits = match.group(1)
            if match.group(2) == "145" and not digits.startswith("+"):
                digits = "+" + digits
            return digits[:32]
    return ""


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


Opener = Callable[..., Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class ModemProblem(Exception):
    """Why the modem cannot work right now, in words for the dashboard."""


class WrongPin(ModemProblem):
    """Never retried automatically: the SIM would lock."""


@dataclass
class ModemConfig:
    port: str
    baud: int = 115200
    pin: str | None = None
    smsc: str | None = None
    status_reports: bool = True
    poll_interval: float = 30.0
    boot_wait: float = 15.0  # how long to wait for "SMS Ready" after opening
    send_timeout: float = 60.0  # AT+CMGS may take a minute on a weak network
    reassembly_timeout: float = 600.0
    number: str | None = None  # the SIM's own number, when the SIM does not know it

    OPTIONS = ("port", "baud", "pin", "smsc", "number", "status_reports", "poll_interval")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModemConfig:
        unknown = set(raw) - set(cls.OPTIONS)
        if unknown:
            raise ValueError(
                f"unknown modem option {sorted(unknown)[0]!r}; use {', '.join(cls.OPTIONS)}"
            )
        if not raw.get("port"):
            raise ValueError("modem option 'port' is required, e.g. /dev/ttyUSB0")
        pin = raw.get("pin")
        if pin is not None and not re.fullmatch(r"\d{4,8}", str(pin)):
            raise ValueError("modem option 'pin' must be 4 to 8 digits")
        number = raw.get("number")
        if number is not None:
            number = _e164(str(number))
        try:
            baud = int(raw.get("baud", 115200))
            poll = float(raw.get("poll_interval", 30.0))
        except (TypeError, ValueError):
            raise ValueError("modem options 'baud' and 'poll_interval' must be numbers") from None
        return cls(
            port=str(raw["port"]),
            baud=baud,
            pin=str(pin) if pin is not None else None,
            smsc=raw.get("smsc"),
            status_reports=str(raw.get("status_reports", "true")).lower()
            not in ("0", "false", "no"),
            poll_interval=poll,
            number=number,
        )

    def as_dict(self) -> dict[str, Any]:
        """The options as stored: only what differs from the defaults, besides the port."""
        out: dict[str, Any] = {"port": self.port, "baud": self.baud}
        for name in ("pin", "smsc", "number"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if not self.status_reports:
            out["status_reports"] = False
        if self.poll_interval != 30.0:
            out["poll_interval"] = self.poll_interval
        return out


def _e164(raw: str) -> str:
    """The SIM's own number: strictly international, since it names one phone line."""
    if not raw.strip().startswith("+"):
        raise ValueError(
            f"modem option 'number': {raw!r} is not in E.164 form; write it with + and "
            "the country code, e.g. +4915112345678"
        )
    try:
        return phone.normalise(raw).e164
    except phone.InvalidNumber as exc:
        raise ValueError(
            f"modem option 'number': {raw!r} {exc}; give it in E.164 form, e.g. +4915112345678"
        ) from None


@dataclass
class ModemHealth:
    model: str = ""
    imei: str = ""
    operator: str = ""
    registered: bool = False
    signal_dbm: int | None = None
    signal_bars: int | None = None
    number: str = ""  # the SIM's own number, as AT+CNUM reports it ("" when unknown)

    @staticmethod
    def dbm(rssi: int) -> int | None:
        """+CSQ rssi (0-31, 99 unknown) as dBm."""
        return None if rssi == 99 else -113 + 2 * rssi


@dataclass
class _Waiter:
    command: Command
    pdu: str | None
    done: asyncio.Future[Response] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


async def _open_serial(port: str, baud: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    from serial_asyncio_fast import open_serial_connection

    reader, writer = await open_serial_connection(url=port, baudrate=baud, exclusive=True)
    return reader, writer


class ModemGateway(Gateway):
    kind = "modem"
    sim_count = 1

    def __init__(self, name: str, config: ModemConfig, *, opener: Opener | None = None) -> None:
        super().__init__(name, max_in_flight=1)
        self.config = config
        self.health = ModemHealth()
        self._opener = opener
        self._events: GatewayEvents | None = None
        self._session = AtSession()
        self._writer: asyncio.StreamWriter | None = None
        self._waiter: _Waiter | None = None
        self._lock = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._broken: asyncio.Future[ModemProblem] | None = None
        # (message reference, recipient digits) -> (message id, when sent). References wrap
        # at 256, so the recipient is part of the key, and old entries are forgotten.
        self._reports: dict[tuple[int, str], tuple[str, float]] = {}
        self._parts_left: dict[str, int] = {}  # message id -> parts not yet reported delivered
        self._reassembler = modem_pdu.new_reassembler(config.reassembly_timeout)
        self._initialised = False
        self._sending: set[asyncio.Task[SendOutcome]] = set()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, events: GatewayEvents) -> None:
        self._events = events
        self._supervisor = asyncio.create_task(self._supervise(), name=f"modem-{self.name}")

    async def stop(self) -> None:
        task = self._supervisor
        if task is not None:
            # Python 3.11's wait_for drops a cancellation that arrives just as the answer it
            # waits for does, and the supervisor would poll on: cancel until it has ended.
            deadline = time.monotonic() + STOP_WAIT
            while not task.done() and time.monotonic() < deadline:
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
            if task.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            else:
                log.error(
                    "modem driver did not stop; closing its port anyway",
                    extra={"gateway": self.name},
                )
        await self._close()
        self.status, self.status_detail = GatewayStatus.OFFLINE, "stopped"

    def time_limit(self, sms: OutboundSms) -> float | None:
        # AT+CMGS may take a minute per part on a weak network, and the driver bounds each
        # itself: the dispatcher must not give up first and send the message twice.
        return sms.segments * self.config.send_timeout + 10.0

    async def probe(self) -> ModemHealth:
        """Connect and initialise once (no supervision, no retries): for 'modem probe'."""
        await self._connect()
        return self.health

    async def _set_status(self, status: GatewayStatus, detail: str) -> None:
        if (status, detail) == (self.status, self.status_detail):
            return
        self.status, self.status_detail = status, detail
        if self._events is not None:
            await self._events.status_changed(self.name, status, detail)

    async def _supervise(self) -> None:
        backoff = 1.0
        while True:
            try:
                await self._connect()
                backoff = 1.0
                problem = await self._watch()
                raise problem
            except WrongPin as exc:
                await self._set_status(GatewayStatus.ERROR, str(exc))
                await self._close()
                return  # a person must fix the PIN; retrying could block the SIM
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # ModemProblem, OSError, and anything unforeseen:
                # supervision must never die, or the gateway would look online forever
                reason = str(exc) or type(exc).__name__
                log.warning(
                    "modem problem; reconnecting",
                    extra={"gateway": self.name, "reason": reason, "retry_in": backoff},
                )
                await self._set_status(GatewayStatus.ERROR, reason)
                await self._close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _connect(self) -> None:
        port = self.config.port
        if not os.path.exists(port):  # noqa: ASYNC240 (one stat, microseconds)
            raise ModemProblem(
                f"{port} does not exist (unplugged? wrong path? prefer "
                "/dev/serial/by-id/… so replugging does not rename it)"
            )
        try:
            reader, writer = await (self._opener or _open_serial)(port, self.config.baud)
        except Exception as exc:  # serial.SerialException is not an OSError
            raise ModemProblem(
                f"cannot open {port}: {exc} (in use by another program, or "
                "no permission: add the user to the 'dialout' group)"
            ) from None
        self._session.reset()
        self._initialised = False
        self._writer = writer
        self._broken = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(reader), name=f"modem-read-{self.name}")
        await self._initialise()

    async def _close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        if self._waiter is not None and not self._waiter.done.done():
            self._waiter.done.set_exception(ModemProblem("connection closed"))
        self._waiter = None

    def _fail(self, problem: ModemProblem) -> None:
        if self._broken is not None and not self._broken.done():
            self._broken.set_result(problem)

    # --- the conversation -----------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                data = await reader.read(4096)
            except Exception as exc:  # serial.SerialException when a USB device vanishes
                self._fail(ModemProblem(f"{self.config.port} went away ({exc}): unplugged?"))
                return
            if not data:
                self._fail(ModemProblem(f"{self.config.port} closed (unplugged?)"))
                return
            self._session.receive_data(data)
            while (event := self._session.next_event()) is not NEED_DATA:
                await self._on_event(event)  # type: ignore[arg-type]

    async def _on_event(self, event: Response | Prompt | Urc | TimedOut) -> None:
        waiter = self._waiter
        if isinstance(event, Prompt) and waiter is not None and waiter.pdu is not None:
            assert self._writer is not None
            self._writer.write(self._session.send_pdu(waiter.pdu))
        elif isinstance(event, Response) and waiter is not None:
            if not waiter.done.done():
                waiter.done.set_result(event)
        elif isinstance(event, Urc):
            await self._on_urc(event)

    async def command(self, text: str, *, timeout: float = 5.0, pdu: str | None = None) -> Response:
        """Send one command and wait for its final result (one at a time)."""
        async with self._lock:
            if self._writer is None:
                raise ModemProblem("not connected")
            cmd = Command.of(text, timeout=timeout, expects_prompt=pdu is not None)
            waiter = _Waiter(cmd, pdu)
            self._waiter = waiter
            self._writer.write(self._session.send(cmd))
            try:
                return await asyncio.wait_for(asyncio.shield(waiter.done), timeout)
            except TimeoutError:
                self._session.timed_out()
                if pdu is not None:  # leave the prompt, or the next command is read as PDU
                    with contextlib.suppress(Exception):
                        self._writer.write(b"\x1b")
                problem = ModemProblem(
                    f"the modem did not answer {text.split('=')[0]!r} within {timeout:g} s"
                )
                self._fail(problem)
                raise problem from None
            except asyncio.CancelledError:
                # Abandoned by the caller (shutdown): leave the session ready for the next
                # command; a late answer is then read as stray lines.
                if self._session.current is cmd:
                    self._session.timed_out()
                    if pdu is not None and self._writer is not None:
                        with contextlib.suppress(Exception):
                            self._writer.write(b"\x1b")
                raise
            finally:
                self._waiter = None

    async def _ok(self, text: str, **kw: Any) -> Response:
        resp = await self.command(text, **kw)
        if not resp.ok:
            assert resp.error is not None
            err = lookup(
                resp.error.kind if resp.error.kind in ("CME", "CMS") else "CME",
                resp.error.code,
                resp.error.text,
            )
            raise ModemProblem(f"{text}: {err.meaning}. {err.hint}")
        return resp

    async def _initialise(self) -> None:
        # A modem left at a '> ' prompt (we went away mid-send) would take our commands as
        # PDU text: ESC leaves the prompt first.
        assert self._writer is not None
        self._writer.write(b"\x1b")
        # A modem that just powered up talks only after "SMS Ready"; one already running
        # answers AT at once. Try AT a few times rather than waiting blindly.
        for _ in range(max(1, int(self.config.boot_wait))):
            try:
                if (await self.command("AT", timeout=1.0)).ok:
                    break
            except ModemProblem:
                self._broken = asyncio.get_running_loop().create_future()
                await asyncio.sleep(0.2)
        else:
            raise ModemProblem(
                f"no answer on {self.config.port} at {self.config.baud} baud: "
                "is it a modem, powered, wired TX→RX and RX→TX?"
            )
        await self._ok("ATE0")
        await self._ok("AT+CMEE=1")
        await self._unlock_sim()
        # The last line: line noise may come before the answer.
        self.health.model = ((await self._ok("AT+CGMM")).lines or ("",))[-1]
        self.health.imei = ((await self._ok("AT+CGSN")).lines or ("",))[-1]
        await self._read_own_number()
        await self._ok("AT+CMGF=0")
        if self.config.smsc:
            await self._ok(f'AT+CSCA="{self.config.smsc}",145')
        fo = "49" if self.config.status_reports else "17"  # SMS-SUBMIT, relative VP, SRR
        await self._ok(f"AT+CSMP={int(fo)},167,0,0")
        await self._ok('AT+CPMS="SM","SM","SM"')
        await self._ok("AT+CNMI=2,1,0,1,0")
        await self._ok("AT+CREG=1")
        await self._poll()
        self._initialised = True
        await self._read_stored()

    async def _unlock_sim(self) -> None:
        lines = (await self._ok("AT+CPIN?")).lines
        # The +CPIN line, not just the first: line noise may come before it.
        state = [line for line in lines if line.startswith("+CPIN:")]
        text = state[0].split(":", 1)[-1].strip() if state else ""
        if text == "READY":
            return
        if text == "SIM PIN":
            if not self.config.pin:
                raise WrongPin("the SIM needs a PIN: set it with 'simgate modem add … --pin'")
            resp = await self.command(f"AT+CPIN={self.config.pin}", timeout=10)
            if not resp.ok:
                raise WrongPin(
                    "the SIM refused the PIN; simgate will not try again (the SIM "
                    "would lock): correct it and restart the gateway"
                )
            return
        if "PUK" in text:
            raise WrongPin("the SIM is blocked (PUK required): unblock it in a phone")
        raise ModemProblem(f"SIM not ready ({text or 'no answer'})")

    async def _read_own_number(self) -> None:
        """The SIM's number, if the SIM stores it (many do not: then --number says it)."""
        resp = await self.command("AT+CNUM")
        number = parse_cnum(resp.lines) if resp.ok else ""
        self.health.number = number

    @property
    def own_number(self) -> str:
        """The number this modem receives on: as configured, else as the SIM says."""
        return self.config.number or self.health.number

    @property
    def signal_bars(self) -> int | None:
        return self.health.signal_bars

    async def _poll(self) -> None:
        csq = await self._ok("AT+CSQ")
        match = re.search(r"\+CSQ:\s*(\d+)", " ".join(csq.lines))
        if match:
            rssi = int(match.group(1))
            self.health.signal_dbm = ModemHealth.dbm(rssi)
            self.health.signal_bars = None if rssi == 99 else min(5, rssi // 6)
        creg = await self._ok("AT+CREG?")
        stat = re.search(r"\+CREG:\s*\d+,(\d+)", " ".join(creg.lines))
        self.health.registered = bool(stat and stat.group(1) in ("1", "5"))
        cops = await self._ok("AT+COPS?")
        name = re.search(r'"([^"]*)"', " ".join(cops.lines))
        self.health.operator = name.group(1) if name else ""
        if self.health.registered:
            await self._set_status(
                GatewayStatus.ONLINE,
                f"{self.health.operator or 'network'}, signal {self.health.signal_dbm} dBm",
            )
        else:
            await self._set_status(
                GatewayStatus.ERROR,
                "not registered on a network: check "
                "the antenna, coverage and a power supply that can deliver "
                "2 A bursts",
            )

    async def _watch(self) -> ModemProblem:
        assert self._broken is not None
        while True:
            try:
                return await asyncio.wait_for(
                    asyncio.shield(self._broken), self.config.poll_interval
                )
            except TimeoutError:
                await self._poll()
                await self._sweep_partials()

    # --- sending --------------------------------------------------------------------------

    async def send(self, sms: OutboundSms) -> SendOutcome:
        # The exchange runs in its own task: a caller that stops waiting (shutdown) must
        # not cut an AT+CMGS in half, or its late answer would be taken for the next one.
        task = asyncio.create_task(self._send(sms), name=f"modem-send-{sms.message_id}")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        return await asyncio.shield(task)

    async def _send(self, sms: OutboundSms) -> SendOutcome:
        if not self.online:
            return SendOutcome.failed(
                "gateway_offline",
                f"modem {self.name} is {self.status.value}: {self.status_detail}",
                kind=ErrorKind.GATEWAY,
            )
        parts = modem_pdu.submit_parts(
            sms.to,
            sms.body,
            report=self.config.status_reports,
            reference=abs(hash(sms.message_id)) % 256,
        )
        refs = []
        if self.config.status_reports:
            # Known before the first part goes: its report may come before the last is sent.
            self._parts_left[sms.message_id] = len(parts)
        for part in parts:
            try:
                resp = await self.command(
                    f"AT+CMGS={part.tpdu_length}", pdu=part.hex, timeout=self.config.send_timeout
                )
            except ModemProblem as exc:
                return SendOutcome.failed(
                    "modem_timeout", str(exc), "simgate re-initialises the modem and retries"
                )
            if not resp.ok:
                assert resp.error is not None
                err = lookup(
                    "CMS" if resp.error.kind == "CMS" else "CME", resp.error.code, resp.error.text
                )
                return SendOutcome.failed(err.error_code, err.meaning, err.hint, kind=err.retry)
            mr = re.search(r"\+CMGS:\s*(\d+)", " ".join(resp.lines))
            if mr:
                refs.append(int(mr.group(1)))
                if self.config.status_reports:
                    key = (int(mr.group(1)), _digits(sms.to))
                    self._reports[key] = (sms.message_id, time.monotonic())
        return SendOutcome.sent(",".join(str(r) for r in refs) or None)

    # --- what the modem tells us ----------------------------------------------------------

    async def _on_urc(self, urc: Urc) -> None:
        if urc.name in ("RDY", "SMS Ready", "Call Ready") and self._initialised:
            # After initialisation these mean the modem restarted (whatever its status was):
            # its settings are gone, so initialise it again.
            self._initialised = False
            self._fail(
                ModemProblem(
                    f"the modem restarted by itself ({urc.name}): usually a "
                    "power dip; check the supply can deliver 2 A bursts"
                )
            )
        elif urc.name.startswith("UNDER-VOLTAGE") or urc.name.startswith("OVER-VOLTAGE"):
            log.warning("modem power warning", extra={"gateway": self.name, "urc": urc.name})
            await self._set_status(
                GatewayStatus.ERROR,
                f"{urc.name}: the power supply is out of range; the modem may switch off",
            )
        elif urc.name == "+CREG":
            stat = urc.value.split(",")[0].strip()
            if stat not in ("1", "5"):
                await self._set_status(
                    GatewayStatus.ERROR, f"lost its network registration (+CREG: {stat})"
                )
            else:
                await self._set_status(GatewayStatus.ONLINE, "registered again")
        elif urc.name == "+CMTI":
            index = urc.value.rsplit(",", 1)[-1].strip()
            if index.isdigit():
                asyncio.get_running_loop().create_task(self._read_index(int(index)))
        elif urc.name == "+CDS" and urc.pdu:
            await self._on_report(urc.pdu)
        elif urc.name == "+CMT" and urc.pdu:
            await self._on_deliver(urc.pdu)
        else:
            log.debug("modem says", extra={"gateway": self.name, "urc": urc.raw[:200]})

    async def _on_report(self, pdu: str) -> None:
        report = modem_pdu.status_report(pdu)
        if report is None or self._events is None:
            return
        if not report.final:
            return  # the network is still trying; a final report follows
        found = self._reports.pop((report.reference, _digits(report.recipient)), None)
        if found is None:
            return
        message_id, _ = found
        left = self._parts_left.get(message_id, 1) - 1
        # A multipart message is delivered when every part is; one failed part fails it.
        if report.delivered and left > 0:
            self._parts_left[message_id] = left
            return
        self._parts_left.pop(message_id, None)
        for key in [k for k, (mid, _) in self._reports.items() if mid == message_id]:
            del self._reports[key]
        await self._events.delivery_report(
            self.name,
            message_id=message_id,
            gateway_ref=str(report.reference),
            delivered=report.delivered,
            error=report.error,
        )

    async def _read_index(self, index: int) -> None:
        with contextlib.suppress(ModemProblem):
            resp = await self.command(f"AT+CMGR={index}")
            pdus = [line for line in resp.lines if _HEX.fullmatch(line)]
            if resp.ok and pdus:
                await self._on_deliver(pdus[-1])
                await self.command(f"AT+CMGD={index}")

    async def _read_stored(self) -> None:
        """Messages that arrived while simgate was not running."""
        resp = await self._ok("AT+CMGL=4", timeout=20)
        index: str | None = None
        for line in resp.lines:  # "+CMGL: <index>,…" then its PDU; anything else is noise
            header = re.match(r"\+CMGL:\s*(\d+)", line)
            if header:
                index = header.group(1)
            elif index is not None and _HEX.fullmatch(line):
                await self._on_deliver(line)
                await self.command(f"AT+CMGD={index}")
                index = None

    async def _on_deliver(self, pdu: str) -> None:
        for item in modem_pdu.deliver(self._reassembler, pdu, self.name, now=datetime.now(UTC)):
            if self._events is not None:
                await self._events.received(replace(item, to=self.own_number))

    def _forget_old_reports(self) -> None:
        """A report that never came (the network keeps none after the validity period)."""
        cutoff = time.monotonic() - REPORT_WAIT
        for key, (message_id, sent) in list(self._reports.items()):
            if sent < cutoff:
                del self._reports[key]
                self._parts_left.pop(message_id, None)

    async def _sweep_partials(self) -> None:
        self._forget_old_reports()
        for item in modem_pdu.expired(self._reassembler, self.name, now=datetime.now(UTC)):
            if self._events is not None:
                await self._events.received(replace(item, to=self.own_number))
