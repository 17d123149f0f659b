"""The simulated SIM800L, driven by our own AT session and PDU codec: if these two
understand the simulator, the driver built on them can be tested against it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from simgate.modem_sim import Faults, ModemConfig, SimModem, Timings
from simgate.modem_sim.control import ControlError, handle
from simgate.modem_sim.storage import Memory, Stat, Stored
from simgate.protocols.at import (
    NEED_DATA,
    AtSession,
    Command,
    Event,
    FinalError,
    Prompt,
    Response,
    TimedOut,
    Urc,
)
from simgate.protocols.pdu import (
    Deliver,
    EncodedPdu,
    Reassembler,
    StatusReport,
    decode,
    encode_deliver,
    encode_submit,
)

NOW = 1_700_000_000.0
TO = "+491701234567"
SENDER = "+4915112345678"


@dataclass
class Line:
    """A serial line between our AT session and the simulated modem, with a fake clock."""

    modem: SimModem = field(default_factory=lambda: SimModem(now=NOW, booted=True))
    session: AtSession = field(default_factory=AtSession)
    now: float = NOW
    urcs: list[Urc] = field(default_factory=list)

    def feed(self, data: bytes) -> list[Event]:
        self.session.receive_data(data)
        out: list[Event] = []
        while (event := self.session.next_event()) is not NEED_DATA:
            if isinstance(event, Urc):
                self.urcs.append(event)
            elif isinstance(event, Response | Prompt | TimedOut):
                out.append(event)
        return out

    def advance(self, seconds: float) -> list[Event]:
        self.now += seconds
        return self.feed(self.modem.tick(self.now))

    def cmd(self, text: str) -> Response:
        events = self.feed(self.modem.receive(self.session.send(Command.of(text)), self.now))
        assert len(events) == 1, events
        assert isinstance(events[0], Response)
        return events[0]

    def ok(self, text: str) -> tuple[str, ...]:
        resp = self.cmd(text)
        assert resp.ok, (text, resp.error)
        return resp.lines

    def send(self, pdu: EncodedPdu) -> Response:
        command = Command.of(f"AT+CMGS={pdu.tpdu_length}", expects_prompt=True, timeout=60)
        (prompt,) = self.feed(self.modem.receive(self.session.send(command), self.now))
        assert isinstance(prompt, Prompt)
        events = self.feed(self.modem.receive(self.session.send_pdu(pdu.hex), self.now))
        events += self.advance(self.modem.timings.send)
        assert len(events) == 1, events
        assert isinstance(events[0], Response)
        return events[0]

    def urc_names(self) -> list[str]:
        names = [u.name for u in self.urcs]
        self.urcs.clear()
        return names


def error_of(resp: Response) -> tuple[str, int | None]:
    assert resp.error is not None
    return resp.error.kind, resp.error.code


def pdu(text: str = "hello", *, report: bool = True) -> EncodedPdu:
    return encode_submit(TO, text, request_status_report=report)[0]


# --- boot, echo, framing ---------------------------------------------------------------


def test_boot_urcs_in_order_and_echo_on() -> None:
    modem = SimModem(now=NOW)
    line = Line(modem)
    line.feed(modem.tick(NOW))
    assert line.urc_names() == ["RDY", "+CFUN", "+CPIN", "Call Ready", "SMS Ready"]
    assert modem.receive(b"AT\r", NOW) == b"AT\r\r\nOK\r\n"
    assert modem.receive(b"ATE0\r", NOW) == b"ATE0\r\r\nOK\r\n"
    assert modem.receive(b"AT\r", NOW) == b"\r\nOK\r\n"


def test_boot_takes_its_time_and_sms_waits_for_sms_ready() -> None:
    line = Line(SimModem(timings=Timings(boot=4.0), now=NOW))
    line.advance(0)
    assert line.urc_names() == ["RDY"]
    assert line.ok("AT") == ()
    assert error_of(line.cmd("AT+CPIN?")) == ("ERROR", None)  # SIM busy, CMEE=0
    assert error_of(line.cmd("AT+CMGL=4")) == ("ERROR", None)
    line.ok("AT+CMEE=1")
    assert error_of(line.cmd("AT+CPIN?")) == ("CME", 14)
    line.advance(2.0)
    assert line.urc_names() == ["+CFUN", "+CPIN"]
    assert error_of(line.cmd("AT+CMGL=4")) == ("CMS", 302)
    line.advance(2.0)
    assert line.urc_names() == ["Call Ready", "SMS Ready"]
    line.ok("AT+CMGL=4")


def test_driver_init_sequence() -> None:
    line = Line()
    line.ok("ATE0")
    line.ok("AT+CMEE=1")
    assert line.ok("ATI") == ("SIM800 R14.18",)
    assert line.ok("AT+CGMM") == ("SIMCOM_SIM800L",)
    assert line.ok("AT+CGSN") == ("866262037741234",)
    assert line.ok("AT+CIMI") == ("262011234567890",)
    assert line.ok("AT+CCID") == ("89490200001234567890",)
    assert line.ok("AT+CPIN?") == ("+CPIN: READY",)
    line.ok("AT+CMGF=0")
    assert line.ok("AT+CMGF?") == ("+CMGF: 0",)
    line.ok('AT+CSCA="+491710760000",145')
    assert line.ok("AT+CSCA?") == ('+CSCA: "+491710760000",145',)
    line.ok("AT+CSMP=49,167,0,0")
    assert line.ok("AT+CSMP?") == ("+CSMP: 49,167,0,0",)
    assert line.ok('AT+CPMS="SM","SM","SM"') == ("+CPMS: 0,30,0,30,0,30",)
    assert line.ok("AT+CPMS?") == ('+CPMS: "SM",0,30,"SM",0,30,"SM",0,30',)
    line.ok("AT+CNMI=2,1,0,1,0")
    assert line.ok("AT+CNMI?") == ("+CNMI: 2,1,0,1,0",)
    line.ok("AT+CREG=1")
    assert line.ok("AT+CREG?") == ("+CREG: 1,1",)
    assert line.ok("AT+CSQ") == ("+CSQ: 18,0",)
    assert line.ok("AT+COPS?") == ('+COPS: 0,0,"Telekom.de"',)
    assert line.ok("AT+CFUN?") == ("+CFUN: 1",)
    line.ok("AT&W")
    assert line.urcs == []


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (b"at\r", b"\r\nOK\r\n"),  # case does not matter
        (b"AT+NOPE\r", b"\r\nERROR\r\n"),
        (b"ATX9\r", b"\r\nERROR\r\n"),
        (b"\xff\xfe noise\r", b""),  # no "AT": ignored, as a module does
        (b"AT+CMGF=7\r", b"\r\nERROR\r\n"),
        (b"AT+CSQ=?\r", b"\r\nOK\r\n"),
        (b"ATT\x08\r", b"\r\nOK\r\n"),  # backspace
        (b"\nAT\r\n", b"\r\nOK\r\n"),
    ],
)
def test_line_handling(text: bytes, answer: bytes) -> None:
    modem = SimModem(now=NOW, booted=True)
    modem.receive(b"ATE0\r", NOW)
    assert modem.receive(text, NOW) == answer


@pytest.mark.parametrize(
    ("cmee", "expected"),
    [(0, "ERROR"), (1, "+CME ERROR: 10"), (2, "+CME ERROR: SIM not inserted")],
)
def test_cmee_modes(cmee: int, expected: str) -> None:
    modem = SimModem(faults=Faults(sim_missing=True), now=NOW, booted=True)
    modem.receive(f"ATE0\rAT+CMEE={cmee}\r".encode(), NOW)
    assert modem.receive(b"AT+CIMI\r", NOW) == f"\r\n{expected}\r\n".encode()
    line = Line(modem)
    resp = line.cmd("AT+CIMI")
    assert (
        resp.error
        == {
            0: FinalError("ERROR"),
            1: FinalError("CME", 10),
            2: FinalError("CME", None, "SIM not inserted"),
        }[cmee]
    )


@pytest.mark.parametrize(
    ("commands", "last"),
    [
        (["AT+CMEE=1", 'AT+CPMS="ME","ME","ME"'], ("+CPMS: 0,50,0,50,0,50",)),
        (["AT+CMEE=1", 'AT+CPMS="XX"'], ("CMS", 302)),
        (['AT+CSCS="UCS2"', "AT+CSCS?"], ('+CSCS: "UCS2"',)),
        (['AT+CSCS="KOI8"'], ("ERROR", None)),
        (["AT+CFUN=7"], ("ERROR", None)),
        (["AT+CMEE=2", "AT&W", "AT+CMEE=0", "ATZ", "AT+CMEE?"], ("+CMEE: 2",)),
        (["AT+CMEE=2", "AT&W", "AT&F", "AT+CMEE?"], ("+CMEE: 0",)),
        (["AT+CGMI", "AT+CGMR"], ("Revision:1418B04SIM800L24",)),
        (["AT+IPR=115200", "AT+IPR?"], ("+IPR: 0",)),
        (['AT+CSCA="+4917"', "AT+CSCA?"], ('+CSCA: "+4917",145',)),
        (["AT+CSCA=abc"], ("ERROR", None)),
        (["AT+CSMP=49", "AT+CSMP?"], ("+CSMP: 49,167,0,0",)),
        (["AT+CNMI=2,1,0,3"], ("ERROR", None)),
        (["AT+CMGD=1,9"], ("ERROR", None)),
        (["AT+CNUM"], ('+CNUM: "","+491701234567",145,7,4',)),
    ],
)
def test_settings_and_queries(commands: list[str], last: object) -> None:
    line = Line()
    for command in commands[:-1]:
        line.ok(command)
    resp = line.cmd(commands[-1])
    assert (resp.lines if resp.ok else error_of(resp)) == last


def test_a_sim_without_its_own_number_answers_cnum_with_ok_alone() -> None:
    line = Line(SimModem(ModemConfig(number=None), now=NOW, booted=True))
    assert line.ok("AT+CNUM") == ()


def test_cmgr_can_leave_a_message_unread() -> None:
    line = Line()
    line.modem.inject_sms(SENDER, "peek", line.now)
    assert line.ok("AT+CMGR=1,1")[0].startswith("+CMGR: 0,,")
    assert line.ok("AT+CMGR=1")[0].startswith("+CMGR: 0,,")
    assert line.ok("AT+CMGR=1")[0].startswith("+CMGR: 1,,")


def test_realistic_timings_are_slower() -> None:
    realistic = Timings.realistic()
    assert realistic.send > Timings().send
    assert realistic.boot > 0


# --- SIM PIN -----------------------------------------------------------------------------


def test_pin_unlocks_and_sms_ready_follows() -> None:
    line = Line(SimModem(ModemConfig(pin="1234"), now=NOW))
    line.advance(0)
    assert [u.raw for u in line.urcs][-1] == "+CPIN: SIM PIN"
    assert "SMS Ready" not in line.urc_names()
    line.ok("AT+CMEE=1")
    assert line.ok("AT+CPIN?") == ("+CPIN: SIM PIN",)
    assert error_of(line.cmd("AT+CMGL=4")) == ("CMS", 311)
    assert error_of(line.cmd("AT+CIMI")) == ("CME", 11)
    line.ok("AT+CPIN=1234")
    line.advance(0)
    assert line.urc_names() == ["+CPIN", "Call Ready", "SMS Ready"]
    line.ok("AT+CMGL=4")
    assert error_of(line.cmd("AT+CPIN=1234")) == ("CME", 3)  # no PIN asked for now


def test_three_wrong_pins_block_the_sim_until_the_puk() -> None:
    line = Line(SimModem(ModemConfig(pin="1234"), now=NOW, booted=True))
    line.ok("AT+CMEE=1")
    for _ in range(2):
        assert error_of(line.cmd('AT+CPIN="0000"')) == ("CME", 16)
        assert line.ok("AT+CPIN?") == ("+CPIN: SIM PIN",)
    assert error_of(line.cmd('AT+CPIN="0000"')) == ("CME", 16)
    assert [u.raw for u in line.urcs] == ["+CPIN: SIM PUK"]
    assert line.ok("AT+CPIN?") == ("+CPIN: SIM PUK",)
    assert error_of(line.cmd("AT+CPIN=1234")) == ("CME", 16)  # the PIN no longer helps
    assert error_of(line.cmd("AT+CIMI")) == ("CME", 12)
    line.ok('AT+CPIN="12345678","1234"')
    assert line.ok("AT+CPIN?") == ("+CPIN: READY",)


# --- registration ------------------------------------------------------------------------


@pytest.mark.parametrize("stat", [0, 2, 3])
def test_no_registration(stat: int) -> None:
    line = Line(SimModem(faults=Faults(registration=stat), now=NOW, booted=True))
    line.ok("AT+CMEE=1")
    assert line.ok("AT+CREG?") == (f"+CREG: 0,{stat}",)
    assert line.ok("AT+COPS?") == ("+COPS: 0",)
    assert error_of(line.send(pdu())) == ("CMS", 331)
    assert line.modem.sent == []


def test_creg_urcs_follow_registration_changes() -> None:
    line = Line()
    line.ok("AT+CREG=2")
    line.modem.update_faults(line.now, registration=2)
    line.advance(0)
    assert [u.raw for u in line.urcs] == ["+CREG: 2"]
    line.modem.update_faults(line.now, registration=None)
    line.advance(0)
    assert [u.raw for u in line.urcs][-1] == '+CREG: 1,"1A2B","3C4D"'
    line.ok("AT+CFUN=0")
    assert line.ok("AT+CREG?") == ("+CREG: 2,0",)
    line.ok("AT+CFUN=1")
    assert line.ok("AT+COPS?") == ('+COPS: 0,0,"Telekom.de"',)


# --- sending -----------------------------------------------------------------------------


def test_send_pdu_counts_message_references_and_wraps() -> None:
    line = Line()
    line.ok("AT+CNMI=2,1,0,1,0")
    assert line.send(pdu("hello")).lines == ("+CMGS: 0",)
    assert line.send(pdu("again")).lines == ("+CMGS: 1",)
    line.modem.state.mr = 254
    assert line.send(pdu()).lines == ("+CMGS: 255",)
    assert line.send(pdu()).lines == ("+CMGS: 0",)
    first = line.modem.sent[0]
    assert (first.mr, first.to, first.text, first.report) == (0, TO, "hello", True)


def test_a_long_running_simulator_keeps_the_latest_sent_and_counts_them_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("simgate.modem_sim.model.SENT_KEPT", 3)
    line = Line()
    for i in range(8):
        assert line.send(pdu(f"n{i}", report=False)).ok
    assert len(line.modem.sent) < 6  # trimmed to the latest 3 once it reached 6
    assert [s.text for s in line.modem.sent][-3:] == ["n5", "n6", "n7"]
    assert line.modem.sent_count == 8
    assert handle(line.modem, {"cmd": "status"}, line.now)["sent"] == 8


def test_send_with_echo_on_still_parses() -> None:
    line = Line()
    resp = line.send(pdu("echoed"))
    assert resp.lines == ("+CMGS: 0",)


def test_status_report_arrives_as_cds_after_the_delay() -> None:
    line = Line(SimModem(timings=Timings(send=2.0, report=5.0), now=NOW, booted=True))
    line.ok("ATE0")
    line.ok("AT+CNMI=2,1,0,1,0")
    resp = line.send(pdu("report me"))
    mr = int(resp.lines[0].split(": ")[1])
    line.advance(4.9)
    assert line.urcs == []
    line.advance(0.1)
    (urc,) = line.urcs
    assert urc.name == "+CDS"
    assert urc.pdu is not None
    report = decode(urc.pdu)
    assert isinstance(report, StatusReport)
    assert report.message_reference == mr
    assert report.delivered
    assert report.recipient.number == TO
    assert report.discharge_time == datetime.fromtimestamp(line.now, UTC)


def test_failed_report_and_no_report_when_not_requested() -> None:
    line = Line(SimModem(faults=Faults(report_status=0x46), now=NOW, booted=True))
    line.ok("AT+CNMI=2,1,0,1,0")
    line.send(pdu(report=False))
    line.advance(10)
    assert line.urcs == []
    line.send(pdu(report=True))
    line.advance(10)
    (urc,) = line.urcs
    report = decode(urc.pdu or "")
    assert isinstance(report, StatusReport)
    assert report.failed


def test_status_report_stored_with_cdsi() -> None:
    line = Line()
    line.ok("AT+CNMI=2,1,0,2,0")
    line.send(pdu())
    line.advance(1)
    (urc,) = line.urcs
    assert urc.raw == '+CDSI: "SM",1'
    header, hex_pdu = line.ok("AT+CMGR=1")
    assert header.startswith("+CMGR: 0,,")
    assert isinstance(decode(hex_pdu), StatusReport)


def test_multipart_send() -> None:
    line = Line()
    parts = encode_submit(TO, "ж" * 100, reference=42)
    for part in parts:
        assert line.send(part).ok
    assert [s.concat.seq if s.concat else 0 for s in line.modem.sent] == [1, 2]
    assert "".join(s.text for s in line.modem.sent) == "ж" * 100


def test_bad_pdus_are_refused_like_a_modem_does() -> None:
    line = Line()
    line.ok("AT+CMEE=1")
    good = pdu()
    wrong_length = EncodedPdu(good.hex, good.tpdu_length + 1)
    assert error_of(line.send(wrong_length)) == ("CMS", 304)
    assert error_of(line.send(EncodedPdu("00ZZ", 1))) == ("CMS", 304)
    deliver = encode_deliver(SENDER, "hi", timestamp=datetime.now(UTC))[0]
    assert error_of(line.send(deliver)) == ("CMS", 304)  # not an SMS-SUBMIT
    assert error_of(line.cmd("AT+CMGS=0")) == ("CMS", 304)
    assert line.modem.sent == []


def test_escape_abandons_the_send() -> None:
    line = Line()
    command = Command.of("AT+CMGS=10", expects_prompt=True)
    (prompt,) = line.feed(line.modem.receive(line.session.send(command), line.now))
    assert isinstance(prompt, Prompt)
    (resp,) = line.feed(line.modem.receive(line.session.cancel_prompt(), line.now))
    assert isinstance(resp, Response)
    assert resp.ok
    assert line.modem.sent == []


def test_no_smsc_anywhere() -> None:
    line = Line(SimModem(ModemConfig(smsc=""), now=NOW, booted=True))
    line.ok("AT+CMEE=1")
    assert line.ok("AT+CSCA?") == ('+CSCA: "",129',)
    assert error_of(line.send(pdu())) == ("CMS", 330)
    with_smsc = encode_submit(TO, "x", smsc="+491710760000")[0]
    assert line.send(with_smsc).ok


def test_text_mode_send_and_read() -> None:
    line = Line()
    line.ok("ATE0")
    line.ok("AT+CMGF=1")
    line.ok("AT+CSMP=49,167,0,0")
    modem = line.modem
    assert modem.receive(f'AT+CMGS="{TO}"\r'.encode(), line.now) == b"\r\n> "
    assert modem.receive(b"two\rlines\x1a", line.now) == b"\r\n> \r\n+CMGS: 0\r\n\r\nOK\r\n"
    sent = modem.sent[0]
    assert (sent.text, sent.report, sent.pdu) == ("two\nlines", True, None)
    modem.inject_sms(SENDER, "Grüße", line.now)
    header, body = line.ok("AT+CMGR=1")
    assert header == f'+CMGR: "REC UNREAD","{SENDER}","","23/11/14,23:13:20+04"'
    assert body == "Gr??e"  # text mode here is plain ASCII ...
    line.ok('AT+CSCS="UCS2"')
    header, body = line.ok('AT+CMGL="ALL"')
    assert header.startswith('+CMGL: 1,"REC READ",')
    assert bytes.fromhex(body).decode("utf-16-be") == "Grüße"  # ... or hex UTF-16


# --- receiving ---------------------------------------------------------------------------


def test_inbound_cmti_cmgr_cmgd() -> None:
    line = Line()
    line.ok("AT+CMEE=1")
    line.modem.inject_sms(SENDER, "Hello there", line.now)
    line.advance(0)
    (urc,) = line.urcs
    assert (urc.name, urc.value) == ("+CMTI", '"SM",1')
    header, hex_pdu = line.ok("AT+CMGR=1")
    assert header == f"+CMGR: 0,,{len(hex_pdu) // 2 - 8}"
    message = decode(hex_pdu)
    assert isinstance(message, Deliver)
    assert (message.originator.number, message.text) == (SENDER, "Hello there")
    assert message.timestamp == datetime.fromtimestamp(NOW, UTC)
    assert line.ok("AT+CMGR=1")[0].startswith("+CMGR: 1,,")  # now read
    line.ok("AT+CMGD=1")
    assert line.ok("AT+CMGR=1") == ()  # empty slot: just OK
    assert error_of(line.cmd("AT+CMGR=31")) == ("CMS", 321)
    assert error_of(line.cmd("AT+CMGD=0")) == ("CMS", 321)


@pytest.mark.parametrize("text", ["x" * 400, "Emoji 😀 " * 15])
def test_multipart_inbound_out_of_order(text: str) -> None:
    line = Line()
    parts = line.modem.inject_sms(SENDER, text, line.now, order=[2, 0, 1])
    assert len(parts) == 3
    line.advance(0)
    assert [u.value for u in line.urcs] == ['"SM",1', '"SM",2', '"SM",3']
    lines = line.ok("AT+CMGL=4")
    delivers = [decode(h) for h in lines[1::2]]
    assert all(isinstance(d, Deliver) for d in delivers)
    assert [d.concat.seq for d in delivers if isinstance(d, Deliver) and d.concat] == [3, 1, 2]
    reassembler = Reassembler()
    results = [reassembler.add(d, datetime.now(UTC)) for d in delivers if isinstance(d, Deliver)]
    assert results[-1] is not None
    assert results[-1].text == text


def test_alphanumeric_sender_and_parts_spaced_in_time() -> None:
    line = Line(SimModem(timings=Timings(part_gap=1.0), now=NOW, booted=True))
    line.modem.inject_sms("ACME Bank", "y" * 200, line.now)
    line.advance(0)
    assert len(line.urcs) == 1
    line.advance(1.0)
    assert len(line.urcs) == 2
    message = decode(line.ok("AT+CMGR=2")[1])
    assert isinstance(message, Deliver)
    assert message.originator.number == "ACME Bank"


def test_cnmi_direct_delivery_with_cmt() -> None:
    line = Line()
    line.ok("AT+CNMI=2,2,0,0,0")
    line.modem.inject_sms(SENDER, "direct", line.now)
    line.advance(0)
    (urc,) = line.urcs
    assert urc.name == "+CMT"
    message = decode(urc.pdu or "")
    assert isinstance(message, Deliver)
    assert message.text == "direct"
    assert line.ok("AT+CMGL=4") == ()  # shown, not stored


def test_full_memory_holds_messages_in_the_network() -> None:
    line = Line(SimModem(ModemConfig(capacity=2), now=NOW, booted=True))
    for i in range(3):
        line.modem.inject_sms(SENDER, f"m{i}", line.now)
    line.advance(0)
    assert [u.value for u in line.urcs] == ['"SM",1', '"SM",2']
    line.urcs.clear()
    assert line.ok("AT+CPMS?") == ('+CPMS: "SM",2,2,"SM",2,2,"SM",2,2',)
    line.ok("AT+CMGD=1")
    line.advance(0)
    assert [u.value for u in line.urcs] == ['"SM",1']
    message = decode(line.ok("AT+CMGR=1")[1])
    assert isinstance(message, Deliver)
    assert message.text == "m2"


def test_cmgl_filters_and_cmgd_flags() -> None:
    line = Line()
    for i in range(3):
        line.modem.inject_sms(SENDER, f"m{i}", line.now)
    line.ok("AT+CMGR=1")
    assert len(line.ok("AT+CMGL=0")) == 4  # two unread (and now they are read)
    assert line.ok("AT+CMGL=0") == ()
    line.modem.inject_sms(SENDER, "new", line.now)
    line.ok("AT+CMGD=1,1")  # every read message
    lines = line.ok("AT+CMGL=4")
    assert [x.split(",")[1] for x in lines[::2]] == ["0"]
    assert error_of(line.cmd('AT+CMGL="ALL"')) == ("ERROR", None)  # text arg in PDU mode
    line.ok("AT+CMGD=1,4")
    assert line.ok("AT+CMGL=4") == ()


def test_memory_slots() -> None:
    memory = Memory("SM", 2)
    item = Stored(Stat.STO_SENT, "00", 0, "", "")
    assert memory.store(item) == 1
    assert memory.store(item) == 2
    assert memory.store(item) is None
    memory.delete(0, 2)
    assert memory.used == 0
    with pytest.raises(ValueError, match="at least one slot"):
        Memory("SM", 0)


# --- faults ------------------------------------------------------------------------------


def test_cms_error_is_one_shot() -> None:
    line = Line(SimModem(faults=Faults(cms_error=500), now=NOW, booted=True))
    assert error_of(line.send(pdu())) == ("CMS", 500)
    assert line.send(pdu()).lines == ("+CMGS: 0",)
    line.ok("AT+CMEE=2")
    line.modem.update_faults(line.now, cms_error=331)
    assert line.send(pdu()).error == FinalError("CMS", None, "no network service")


def test_cme_error_on_chosen_commands() -> None:
    line = Line(SimModem(faults=Faults(cme_errors={"+CSQ": 100}), now=NOW, booted=True))
    line.ok("AT+CMEE=1")
    assert error_of(line.cmd("AT+CSQ")) == ("CME", 100)
    line.ok("AT+CREG?")


def test_sim_missing_everywhere_and_hot_plug() -> None:
    line = Line(SimModem(faults=Faults(sim_missing=True), now=NOW))
    line.advance(0)
    assert [u.raw for u in line.urcs][-1] == "+CPIN: NOT INSERTED"
    assert "SMS Ready" not in line.urc_names()
    line.ok("AT+CMEE=1")
    for command in ("AT+CPIN?", "AT+CIMI", "AT+CMGL=4", "AT+CPMS?", "AT+CMGS=20"):
        assert error_of(line.cmd(command)) == ("CME", 10), command
    assert line.ok("AT+CREG?") == ("+CREG: 0,0",)
    line.modem.update_faults(line.now, sim_missing=False)
    line.advance(0)
    assert line.urc_names() == ["+CPIN", "Call Ready", "SMS Ready"]
    line.modem.update_faults(line.now, sim_missing=True)
    line.advance(0)
    assert [u.raw for u in line.urcs] == ["+CPIN: NOT INSERTED"]


def test_brown_out_resets_settings_unless_saved() -> None:
    modem = SimModem(timings=Timings(reboot=1.0), now=NOW, booted=True)
    line = Line(modem)
    line.ok("ATE0")
    line.ok("AT+CMEE=1")
    line.ok("AT+CNMI=2,1,0,1,0")
    modem.brown_out(line.now)
    line.advance(0)
    assert line.urc_names() == ["UNDER-VOLTAGE WARNNING"]
    assert modem.receive(b"AT\r", line.now + 0.5) == b""  # off while it restarts
    line.advance(1.0)
    assert line.urc_names() == ["RDY", "+CFUN", "+CPIN", "Call Ready", "SMS Ready"]
    assert modem.receive(b"AT+CIMI=5\r", line.now) == b"AT+CIMI=5\r\r\nERROR\r\n"  # echo, CMEE=0
    assert modem.receive(b"AT+CNMI?\r", line.now).endswith(b"+CNMI: 2,1,0,0,0\r\n\r\nOK\r\n")
    modem.receive(b"ATE0\rAT&W\r", line.now)
    modem.power_cycle(line.now)
    answer = modem.receive(b"AT\r", line.now)  # saved: no echo after this reset
    assert answer.startswith(b"\r\nRDY\r\n")
    assert answer.endswith(b"\r\nSMS Ready\r\n\r\nOK\r\n")


def test_brown_out_on_send_loses_the_answer() -> None:
    line = Line(SimModem(faults=Faults(brown_out_on_send=True), now=NOW, booted=True))
    command = Command.of(f"AT+CMGS={pdu().tpdu_length}", expects_prompt=True)
    line.feed(line.modem.receive(line.session.send(command), line.now))
    assert line.feed(line.modem.receive(line.session.send_pdu(pdu().hex), line.now)) == []
    line.advance(1)
    assert line.urc_names()[:2] == ["UNDER-VOLTAGE WARNNING", "RDY"]
    assert line.session.timed_out().command is command
    assert line.modem.sent == []


def test_reset_by_cfun() -> None:
    line = Line()
    line.ok("ATE0")
    line.ok("AT+CFUN=1,1")
    line.advance(1)
    assert line.urc_names() == ["RDY", "+CFUN", "+CPIN", "Call Ready", "SMS Ready"]
    assert line.modem.state.profile.echo


def test_slow_replies() -> None:
    modem = SimModem(faults=Faults(delay=3.0), now=NOW, booted=True)
    assert modem.receive(b"AT\r", NOW) == b"AT\r"  # the echo is immediate
    assert modem.next_due() == NOW + 3.0
    assert modem.tick(NOW + 2.9) == b""
    assert modem.tick(NOW + 3.0) == b"\r\nOK\r\n"
    assert modem.next_due() is None


def test_dead_modem_says_nothing_but_stores_messages() -> None:
    line = Line(SimModem(faults=Faults(dead=True), now=NOW, booted=True))
    assert line.modem.receive(b"AT\r", NOW) == b""
    line.modem.inject_sms(SENDER, "while you were out", NOW)
    assert line.modem.tick(NOW + 10) == b""
    line.modem.update_faults(NOW, dead=False)
    line.ok("ATE0")
    assert len(line.ok("AT+CMGL=4")) == 2


def test_hang_mid_command() -> None:
    modem = SimModem(faults=Faults(hang=True), now=NOW, booted=True)
    assert modem.receive(b"AT+CSQ\r", NOW) == b"AT+CSQ\r"
    assert modem.receive(b"AT\r", NOW) == b""
    assert modem.tick(NOW + 60) == b""
    modem.update_faults(NOW + 60, hang=False)
    assert modem.receive(b"AT\r", NOW + 60) == b"AT\r\r\nOK\r\n"


def test_hang_after_the_pdu() -> None:
    modem = SimModem(now=NOW, booted=True)
    modem.receive(b"ATE0\r", NOW)
    assert modem.receive(f"AT+CMGS={pdu().tpdu_length}\r".encode(), NOW) == b"\r\n> "
    modem.update_faults(NOW, hang=True)
    assert modem.receive(pdu().hex.encode() + b"\x1a", NOW) == b""
    assert modem.sent == []


def test_garbage_and_extra_urcs_between_answers() -> None:
    faults = Faults(garbage=b"\xff\x00\xfe", extra_urcs=("+CREG: 1", "*PSUTTZ: 23,11,14"))
    line = Line(SimModem(faults=faults, now=NOW, booted=True))
    resp = line.cmd("AT+CSQ")
    assert resp.ok
    assert "+CSQ: 18,0" in resp.lines
    assert [u.name for u in line.urcs] == ["+CREG", "*PSUTTZ"]
    assert line.send(pdu()).ok


# --- fault values and the control requests ----------------------------------------------


def test_faults_updated_from_json_values() -> None:
    faults = Faults().updated(
        {"garbage": "\xff", "extra_urcs": ["RING"], "cme_errors": {"+csq": 3}, "delay": 1}
    )
    assert faults == Faults(
        garbage=b"\xff", extra_urcs=("RING",), cme_errors={"+CSQ": 3}, delay=1.0
    )
    with pytest.raises(ValueError, match="unknown fault 'deaf'"):
        Faults().updated({"deaf": True})
    with pytest.raises(ValueError, match="dead must be true or false"):
        Faults().updated({"dead": "yes"})
    with pytest.raises(ValueError, match="cms_error must be an integer"):
        Faults().updated({"cms_error": True})


def test_control_requests() -> None:
    modem = SimModem(now=NOW, booted=True)
    assert handle(modem, {"cmd": "sms", "from": SENDER, "text": "z" * 170}, NOW) == {
        "ok": True,
        "parts": 2,
    }
    answer = handle(modem, {"cmd": "fault", "dead": True, "signal": 5}, NOW)
    assert answer["faults"]["dead"] is True
    assert modem.faults.signal == 5
    handle(modem, {"cmd": "fault", "clear": True, "cms_error": 42}, NOW)
    assert modem.faults == Faults(cms_error=42)
    status = handle(modem, {"cmd": "status"}, NOW)
    assert (status["sim"], status["stored"]["SM"], status["registration"]) == ("READY", 2, 1)
    assert handle(modem, {"cmd": "sent"}, NOW) == {"ok": True, "sent": []}
    handle(modem, {"cmd": "brownout"}, NOW)
    assert modem.tick(NOW).endswith(b'"SM",2\r\n\r\nUNDER-VOLTAGE WARNNING\r\n')


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ([], "must be a JSON object"),
        ({"cmd": "fly"}, "unknown cmd 'fly'"),
        ({"cmd": "sms", "text": "x"}, '"sms" needs "from"'),
        ({"cmd": "sms", "from": "+49", "text": "x", "order": [5]}, "not a permutation"),
        ({"cmd": "sms", "from": "+49", "text": "x", "order": "1"}, '"order" must be a list'),
        ({"cmd": "fault", "deaf": True}, "unknown fault"),
    ],
)
def test_bad_control_requests(request_: object, message: str) -> None:
    with pytest.raises(ControlError, match=message):
        handle(SimModem(now=NOW, booted=True), request_, NOW)
