"""The AT session against exchanges as a SIM800L and a Huawei E173 send them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simgate.protocols.at import (
    CTRL_Z,
    NEED_DATA,
    AtSession,
    Command,
    Event,
    FinalError,
    LocalProtocolError,
    Prompt,
    Response,
    State,
    TimedOut,
    Urc,
)

DELIVER = "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37"
REPORT = "0006D60B911326880736F4111011719551401110117195714000"


def events(session: AtSession) -> list[Event]:
    out = []
    while (event := session.next_event()) is not NEED_DATA:
        assert not isinstance(event, type(NEED_DATA))
        out.append(event)
    return out


def feed(session: AtSession, data: bytes) -> list[Event]:
    session.receive_data(data)
    return events(session)


def test_command_bytes_and_ok() -> None:
    s = AtSession()
    assert s.send(Command.of("AT")) == b"AT\r"
    assert s.state is State.WAITING
    (resp,) = feed(s, b"\r\nOK\r\n")
    assert isinstance(resp, Response)
    assert resp.ok
    assert resp.lines == ()
    assert s.state is State.IDLE


def test_echo_before_ate0_is_dropped() -> None:
    s = AtSession()
    s.send(Command.of("AT+CSQ"))
    (resp,) = feed(s, b"AT+CSQ\r\r\n+CSQ: 18,0\r\n\r\nOK\r\n")
    assert isinstance(resp, Response)
    assert resp.lines == ("+CSQ: 18,0",)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
def test_any_chunking_gives_the_same_events(chunk: int) -> None:
    data = b'\r\n+CSQ: 18,0\r\n\r\n+CMTI: "SM",3\r\n\r\nOK\r\n'
    s = AtSession()
    s.send(Command.of("AT+CSQ"))
    got: list[Event] = []
    for i in range(0, len(data), chunk):
        got += feed(s, data[i : i + chunk])
    assert got == [
        Urc("+CMTI", '"SM",3', '+CMTI: "SM",3'),
        Response(Command.of("AT+CSQ"), ("+CSQ: 18,0",)),
    ]


def test_urc_interleaved_inside_a_response() -> None:
    s = AtSession()
    s.send(Command.of("AT+COPS?"))
    got = feed(s, b'\r\n+COPS: 0,0,"Telekom.de"\r\n\r\nRING\r\n\r\nOK\r\n')
    assert got[0] == Urc("RING", "", "RING")
    assert isinstance(got[1], Response)
    assert got[1].lines == ('+COPS: 0,0,"Telekom.de"',)


def test_creg_is_an_answer_when_asked_and_a_urc_otherwise() -> None:
    s = AtSession()
    s.send(Command.of("AT+CREG?"))
    (resp,) = feed(s, b"\r\n+CREG: 0,1\r\n\r\nOK\r\n")
    assert isinstance(resp, Response)
    assert resp.lines == ("+CREG: 0,1",)
    (urc,) = feed(s, b"\r\n+CREG: 5\r\n")
    assert urc == Urc("+CREG", "5", "+CREG: 5")


def test_boot_urcs_of_a_sim800l() -> None:
    s = AtSession()
    got = feed(
        s, b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\nCall Ready\r\n\r\nSMS Ready\r\n"
    )
    assert [e.name for e in got if isinstance(e, Urc)] == [
        "RDY",
        "+CFUN",
        "+CPIN",
        "Call Ready",
        "SMS Ready",
    ]


def test_brown_out_warning_is_a_urc() -> None:
    s = AtSession()
    (w,) = feed(s, b"\r\nUNDER-VOLTAGE WARNNING\r\n")
    assert isinstance(w, Urc)
    assert w.name == "UNDER-VOLTAGE WARNNING"


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"ERROR", FinalError("ERROR")),
        (b"+CME ERROR: 10", FinalError("CME", 10)),
        (b"+CME ERROR: SIM not inserted", FinalError("CME", None, "SIM not inserted")),
        (b"+CMS ERROR: 500", FinalError("CMS", 500)),
        (b"+CMS ERROR: unknown error", FinalError("CMS", None, "unknown error")),
        (b"COMMAND NOT SUPPORT", FinalError("NOT_SUPPORTED")),
        (b"NO CARRIER", FinalError("NO_CARRIER")),
    ],
)
def test_final_errors(line: bytes, error: FinalError) -> None:
    s = AtSession()
    s.send(Command.of("AT+CPIN?"))
    (resp,) = feed(s, b"\r\n" + line + b"\r\n")
    assert isinstance(resp, Response)
    assert not resp.ok
    assert resp.error == error


def test_cmgs_prompt_then_pdu_then_message_reference() -> None:
    s = AtSession()
    cmd = Command.of("AT+CMGS=23", timeout=60, expects_prompt=True)
    assert s.send(cmd) == b"AT+CMGS=23\r"
    (prompt,) = feed(s, b"\r\n> ")
    assert prompt == Prompt(cmd)
    assert s.state is State.PROMPT
    pdu = "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"
    assert s.send_pdu(pdu) == pdu.encode() + CTRL_Z
    (resp,) = feed(s, b"\r\n+CMGS: 42\r\n\r\nOK\r\n")
    assert isinstance(resp, Response)
    assert resp.lines == ("+CMGS: 42",)


def test_pdu_echo_is_dropped() -> None:
    s = AtSession()
    s.send(Command.of("AT+CMGS=23", expects_prompt=True))
    feed(s, b"AT+CMGS=23\r\r\n> ")
    pdu = "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"
    s.send_pdu(pdu)
    (resp,) = feed(s, pdu.encode() + b"\x1a\r\n+CMGS: 7\r\n\r\nOK\r\n")
    assert isinstance(resp, Response)
    assert resp.lines == ("+CMGS: 7",)


def test_cmt_and_cds_carry_the_next_line_as_pdu() -> None:
    s = AtSession()
    got = feed(s, f"\r\n+CMT: ,24\r\n{DELIVER}\r\n\r\n+CDS: 25\r\n{REPORT}\r\n".encode())
    assert [(e.name, e.value, e.pdu) for e in got if isinstance(e, Urc)] == [
        ("+CMT", ",24", DELIVER),
        ("+CDS", "25", REPORT),
    ]


def test_cmgl_listing_keeps_pdu_lines() -> None:
    s = AtSession()
    s.send(Command.of("AT+CMGL=4"))
    (resp,) = feed(s, f"\r\n+CMGL: 1,0,,24\r\n{DELIVER}\r\n\r\nOK\r\n".encode())
    assert isinstance(resp, Response)
    assert len(resp.lines) == 2


def test_bare_answer_lines_without_prefix() -> None:
    s = AtSession()
    s.send(Command.of("AT+CGSN"))
    (resp,) = feed(s, b"\r\n864298040123456\r\n\r\nOK\r\n")
    assert isinstance(resp, Response)
    assert resp.lines == ("864298040123456",)


def test_unknown_lines_when_idle_are_kept_not_fatal() -> None:
    s = AtSession()
    got = feed(s, b"\r\n^WEIRD: 1\r\ngarbage \xff\xfe\r\n")
    assert all(isinstance(e, Urc) and e.name == "unknown" for e in got)
    assert len(got) == 2


def test_timeout_then_late_answer() -> None:
    s = AtSession()
    s.send(Command.of("AT+COPS=?", timeout=1))
    feed(s, b'\r\n+COPS: (2,"Tele')
    out = s.timed_out()
    assert isinstance(out, TimedOut)
    assert s.state is State.IDLE
    s.send(Command.of("AT"))
    got = feed(s, b'kom")\r\n\r\nOK\r\n')
    assert isinstance(got[-1], Response)


def test_misuse_is_a_local_error() -> None:
    s = AtSession()
    s.send(Command.of("AT"))
    with pytest.raises(LocalProtocolError, match="still waiting"):
        s.send(Command.of("AT"))
    with pytest.raises(LocalProtocolError):
        s.send_pdu("00")
    s.reset()
    with pytest.raises(LocalProtocolError):
        s.timed_out()


def test_bare_cr_line_ends() -> None:
    s = AtSession()
    s.send(Command.of("AT"))
    (resp,) = feed(s, b"\rOK\r")
    assert isinstance(resp, Response)


@given(st.binary(max_size=300))
def test_any_bytes_never_raise(data: bytes) -> None:
    s = AtSession()
    s.send(Command.of("AT+CSQ"))
    s.receive_data(data)
    for event in events(s):
        assert isinstance(event, Response | Urc | Prompt)
