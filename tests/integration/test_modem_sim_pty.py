"""The simulator on a real pseudo-terminal, opened the way the modem driver opens a serial
port (pyserial-asyncio-fast), and steered through its control socket."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from serial_asyncio_fast import open_serial_connection

from simgate.modem_sim import ControlError, PtyModem, SimModem, Timings, request, serve
from simgate.protocols.at import (
    NEED_DATA,
    AtSession,
    Command,
    Event,
    Prompt,
    Response,
    TimedOut,
    Urc,
)
from simgate.protocols.pdu import Deliver, StatusReport, decode, encode_submit

TO = "+491701234567"


class Port:
    """Our AT session over a real serial connection to the simulator."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.session = AtSession()
        self.urcs: list[Urc] = []
        self._events: list[Event] = []

    @classmethod
    async def open(cls, path: str) -> Port:
        reader, writer = await open_serial_connection(url=path, baudrate=115200)
        return cls(reader, writer)

    async def close(self) -> None:
        self.writer.close()

    async def event(self, timeout: float = 2.0) -> Event:
        """The next command event (URCs are collected on the side)."""

        async def read() -> Event:
            while True:
                while (event := self.session.next_event()) is not NEED_DATA:
                    if isinstance(event, Urc):
                        self.urcs.append(event)
                    elif isinstance(event, Response | Prompt | TimedOut):
                        return event
                data = await self.reader.read(4096)
                if not data:
                    raise EOFError("the port closed")
                self.session.receive_data(data)

        return await asyncio.wait_for(read(), timeout)

    async def urc(self, name: str, timeout: float = 2.0) -> Urc:
        async def wait() -> Urc:
            while True:
                for urc in self.urcs:
                    if urc.name == name:
                        self.urcs.remove(urc)
                        return urc
                data = await self.reader.read(4096)
                self.session.receive_data(data)
                while (event := self.session.next_event()) is not NEED_DATA:
                    assert isinstance(event, Urc), event
                    self.urcs.append(event)

        return await asyncio.wait_for(wait(), timeout)

    async def cmd(self, text: str, *, pdu: str | None = None) -> Response:
        command = Command.of(text, expects_prompt=pdu is not None)
        self.writer.write(self.session.send(command))
        event = await self.event()
        if pdu is not None:
            assert isinstance(event, Prompt), event
            self.writer.write(self.session.send_pdu(pdu))
            event = await self.event()
        assert isinstance(event, Response), event
        return event


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[PtyModem]:
    modem = SimModem(timings=Timings(report=0.2), now=time.time(), booted=True)
    async with PtyModem(modem, link=tmp_path / "modem0", control=tmp_path / "ctl") as running:
        yield running


@pytest.fixture
async def port(sim: PtyModem) -> AsyncIterator[Port]:
    opened = await Port.open(sim.path)
    yield opened
    await opened.close()


async def test_short_exchange_send_and_report(sim: PtyModem, port: Port) -> None:
    assert Path(sim.path).is_symlink()
    assert os.readlink(sim.path) == sim.device
    assert (await port.cmd("ATE0")).ok
    assert (await port.cmd("AT+CGMM")).lines == ("SIMCOM_SIM800L",)
    assert (await port.cmd("AT+CNMI=2,1,0,1,0")).ok
    part = encode_submit(TO, "über die pty 😀")[0]
    resp = await port.cmd(f"AT+CMGS={part.tpdu_length}", pdu=part.hex)
    assert resp.lines == ("+CMGS: 0",)
    urc = await port.urc("+CDS")
    report = decode(urc.pdu or "")
    assert isinstance(report, StatusReport)
    assert (report.message_reference, report.delivered) == (0, True)
    sent = await request(sim.control or "", {"cmd": "sent"})
    assert [(s["to"], s["text"], s["mr"]) for s in sent["sent"]] == [(TO, "über die pty 😀", 0)]


async def test_control_socket_delivers_sms_and_faults(sim: PtyModem, port: Port) -> None:
    control = sim.control or ""
    assert (await port.cmd("ATE0")).ok
    answer = await request(control, {"cmd": "sms", "from": "+4915112345678", "text": "hi"})
    assert answer == {"ok": True, "parts": 1}
    urc = await port.urc("+CMTI")
    assert urc.value == '"SM",1'
    _, hex_pdu = (await port.cmd("AT+CMGR=1")).lines
    message = decode(hex_pdu)
    assert isinstance(message, Deliver)
    assert message.text == "hi"

    await request(control, {"cmd": "fault", "dead": True})
    port.writer.write(port.session.send(Command.of("AT")))
    with pytest.raises(TimeoutError):
        await port.event(timeout=0.3)
    port.session.timed_out()
    await request(control, {"cmd": "fault", "clear": True})
    assert (await port.cmd("AT")).ok

    await request(control, {"cmd": "brownout"})
    await port.urc("UNDER-VOLTAGE WARNNING")
    await port.urc("SMS Ready")
    resp = await port.cmd("AT")  # echo is back on; the session drops it
    assert resp.ok

    status = await request(control, {"cmd": "status"})
    assert (status["sim"], status["echo"], status["plugged"]) == ("READY", True, True)
    with pytest.raises(ControlError, match="unknown fault 'deaf'"):
        await request(control, {"cmd": "fault", "deaf": True})


async def test_unplug_and_replug(sim: PtyModem, port: Port) -> None:
    old_device = sim.device
    assert (await port.cmd("AT")).ok
    await request(sim.control or "", {"cmd": "unplug"})
    assert not Path(sim.path).exists()
    with pytest.raises((EOFError, OSError)):
        await port.event(timeout=2.0)
    await port.close()
    answer = await request(sim.control or "", {"cmd": "replug"})
    assert Path(sim.path).is_symlink()
    assert answer["device"] == sim.device
    assert old_device
    again = await Port.open(sim.path)
    try:
        assert (await again.cmd("AT")).ok
    finally:
        await again.close()


async def test_inject_from_the_same_process(sim: PtyModem, port: Port) -> None:
    assert (await port.cmd("ATE0")).ok
    assert sim.inject_sms("ACME", "x" * 300, order=[1, 0]) == 2
    await port.urc("+CMTI")
    await port.urc("+CMTI")
    lines = (await port.cmd("AT+CMGL=4")).lines
    parts = [decode(h) for h in lines[1::2]]
    assert [p.concat.seq for p in parts if isinstance(p, Deliver) and p.concat] == [2, 1]
    sim.update_faults(delay=0.3)
    started = time.monotonic()
    assert (await port.cmd("AT")).ok
    assert time.monotonic() - started >= 0.25


async def test_control_socket_answers_bad_lines(sim: PtyModem) -> None:
    reader, writer = await asyncio.open_unix_connection(str(sim.control))
    try:
        writer.write(b"{not json\n")
        writer.write(b'{"cmd": "sms", "from": "+49"}\n')
        writer.write(b'{"cmd": "fault", "registration": 3}\n')
        answers = [json.loads(await reader.readline()) for _ in range(3)]
    finally:
        writer.close()
        await writer.wait_closed()
    assert answers[0]["ok"] is False
    assert answers[0]["error"].startswith("not JSON")
    assert answers[1] == {
        "ok": False,
        "error": '"sms" needs "from" (a number or name) and "text" (strings)',
    }
    assert answers[2]["faults"]["registration"] == 3


async def test_serve_runs_until_cancelled(tmp_path: Path) -> None:
    started: asyncio.Future[PtyModem] = asyncio.get_running_loop().create_future()
    modem = SimModem(now=time.time())
    task = asyncio.create_task(
        serve(modem, link=tmp_path / "m", control=tmp_path / "c", ready=started.set_result)
    )
    sim = await asyncio.wait_for(started, 2)
    port = await Port.open(sim.path)
    try:
        assert (await port.cmd("AT+CGSN")).lines == ("866262037741234",)
    finally:
        await port.close()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not (tmp_path / "m").exists()
    assert not (tmp_path / "c").exists()
