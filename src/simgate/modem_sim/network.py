"""The network side of the simulator: messages arriving for the SIM and status reports.

They are built with the codec's own ``encode_deliver`` / ``encode_status_report`` and then
routed as AT+CNMI says: stored in the memory with a ``+CMTI``/``+CDSI`` notice, or shown
directly as ``+CMT``/``+CDS`` with the PDU on the next line, or (mode 0) stored silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from simgate.modem_sim.commands import ModemState
from simgate.modem_sim.sms import Submitted, text_out
from simgate.modem_sim.storage import Stat, Stored
from simgate.protocols.pdu import EncodedPdu, encode_deliver, encode_status_report, split_text

Urc = tuple[str, ...]  # the lines of one unsolicited result (a +CMT has two)


@dataclass(frozen=True, slots=True)
class Incoming:
    """One SMS-DELIVER part on its way to the modem."""

    sender: str
    text: str  # this part's text
    pdu: EncodedPdu
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Report:
    """An SMS-STATUS-REPORT on ``sent``."""

    sent: Submitted
    pdu: EncodedPdu
    timestamp: datetime
    discharge: datetime
    status: int


def network_time(state: ModemState, now: float) -> datetime:
    """``now`` (Unix seconds) in the network's time zone, whole seconds as SMS carry."""
    zone = timezone(timedelta(minutes=state.config.tz_minutes))
    return datetime.fromtimestamp(int(now), UTC).astimezone(zone)


def incoming(
    state: ModemState, sender: str, text: str, now: float, reference: int
) -> list[Incoming]:
    """The parts the network delivers for ``text`` (one unless it is long), in order."""
    when = network_time(state, now)
    pdus = encode_deliver(
        sender, text, timestamp=when, smsc=state.smsc or None, reference=reference
    )
    _, texts = split_text(text)
    return [Incoming(sender, part, pdu, when) for part, pdu in zip(texts, pdus, strict=True)]


def report(state: ModemState, sent: Submitted, now: float) -> Report:
    when = network_time(state, now)
    status = state.faults.report_status
    submitted = network_time(state, sent.at)
    pdu = encode_status_report(
        message_reference=sent.mr,
        recipient=sent.to,
        timestamp=submitted,
        discharge_time=when,
        status=status,
        smsc=state.smsc or None,
    )
    return Report(sent, pdu, submitted, when, status)


def text_time(when: datetime) -> str:
    """A time stamp as text mode shows it: ``yy/MM/dd,hh:mm:ss±zz`` (zz in quarter hours)."""
    offset = when.utcoffset() or timedelta(0)
    quarters = int(offset.total_seconds()) // 900
    return when.strftime("%y/%m/%d,%H:%M:%S") + f"{quarters:+03d}"


def _toa(number: str) -> int:
    return 145 if number.startswith("+") else 129


def route_incoming(state: ModemState, part: Incoming) -> Urc | None:
    """Store or show one part. Returns the URC to write (empty when stored silently), or
    None when the memory is full and the network must keep the part and try again."""
    mode, mt = state.profile.cnmi[0], state.profile.cnmi[1]
    header = f'"{part.sender}","","{text_time(part.timestamp)}"'
    if mt == 2 and mode != 0:
        if state.profile.cmgf == 1:
            return (f"+CMT: {header}", text_out(state, part.text))
        return (f"+CMT: ,{part.pdu.tpdu_length}", part.pdu.hex)
    name = state.profile.cpms[2]
    item = Stored(Stat.REC_UNREAD, part.pdu.hex, part.pdu.tpdu_length, header, part.text)
    index = state.memories[name].store(item)
    if index is None:
        return None
    return (f'+CMTI: "{name}",{index}',) if mt in (1, 3) and mode != 0 else ()


def route_report(state: ModemState, rep: Report) -> Urc | None:
    """Like ``route_incoming`` for a status report; ds=0 drops it (the network sent it)."""
    mode, ds = state.profile.cnmi[0], state.profile.cnmi[3]
    sent = rep.sent
    header = (
        f'6,{sent.mr},"{sent.to}",{_toa(sent.to)},"{text_time(rep.timestamp)}",'
        f'"{text_time(rep.discharge)}",{rep.status}'
    )
    if ds == 0 or mode == 0:
        return ()
    if ds == 1:
        if state.profile.cmgf == 1:
            return (f"+CDS: {header}",)
        return (f"+CDS: {rep.pdu.tpdu_length}", rep.pdu.hex)
    name = state.profile.cpms[2]
    item = Stored(Stat.REC_UNREAD, rep.pdu.hex, rep.pdu.tpdu_length, header, "", True)
    index = state.memories[name].store(item)
    return None if index is None else (f'+CDSI: "{name}",{index}',)
