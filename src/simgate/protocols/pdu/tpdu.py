"""Decoded messages (SMS-DELIVER, SMS-SUBMIT, SMS-STATUS-REPORT) and ``decode``."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from simgate.protocols.pdu.fields import (
    Address,
    DataCoding,
    enhanced_validity,
    read_address,
    read_smsc,
    read_timestamp,
    relative_validity,
)
from simgate.protocols.pdu.primitives import PduError, Reader, parse_hex
from simgate.protocols.pdu.userdata import Concat, InformationElement, UserData, read_user_data

# First-octet bits (TS 23.040 9.2.3): the message type is in bits 0-1.
MTI_DELIVER = 0x00
MTI_SUBMIT = 0x01
MTI_STATUS_REPORT = 0x02
MMS_NO_MORE = 0x04  # TP-MMS / TP-RD / TP-VPF share bits 2-4 depending on the type
SRR = 0x20  # TP-SRR in SUBMIT, TP-SRI in DELIVER, TP-SRQ in STATUS-REPORT
UDHI = 0x40
REPLY_PATH = 0x80
VPF_NONE, VPF_ENHANCED, VPF_RELATIVE, VPF_ABSOLUTE = 0, 1, 2, 3


class DeliveryState(enum.StrEnum):
    DELIVERED = "delivered"
    PENDING = "pending"  # the service centre is still trying
    FAILED = "failed"


# TP-ST values with a meaning of their own (TS 23.040 9.2.3.15); ranges are below.
STATUS_MEANINGS = {
    0x00: "received by the recipient",
    0x01: "forwarded, delivery unconfirmed",
    0x02: "replaced by the service centre",
    0x20: "congestion",
    0x21: "recipient busy",
    0x22: "no response from recipient",
    0x23: "service rejected",
    0x24: "quality of service not available",
    0x25: "error in recipient",
    0x40: "remote procedure error",
    0x41: "incompatible destination",
    0x42: "connection rejected by recipient",
    0x43: "not obtainable",
    0x44: "quality of service not available",
    0x45: "no interworking available",
    0x46: "validity period expired",
    0x47: "deleted by the sender",
    0x48: "deleted by the service centre",
    0x49: "message does not exist",
    0x60: "congestion",
    0x61: "recipient busy",
    0x62: "no response from recipient",
    0x63: "service rejected",
    0x64: "quality of service not available",
    0x65: "error in recipient",
}


def delivery_state(status: int) -> DeliveryState:
    """Classify TP-ST: 0x00-0x1F completed, 0x20-0x3F still trying, 0x40-0x7F given up.

    Values with bit 7 set are reserved; they count as failed so that no message waits
    forever on a code that promises nothing more.
    """
    if status < 0x20:
        return DeliveryState.DELIVERED
    if status < 0x40:
        return DeliveryState.PENDING
    return DeliveryState.FAILED


def status_meaning(status: int) -> str:
    meaning = STATUS_MEANINGS.get(status)
    if meaning is not None:
        return meaning
    if status >= 0x80:
        return "reserved status value"
    group = (
        "completed",
        "temporary error, still trying",
        "permanent error",
        "temporary error, given up",
    )
    specific = "service-centre specific" if status & 0x1F >= 0x10 else "reserved"
    return f"{group[status >> 5]} ({specific})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Deliver:
    """An SMS-DELIVER: a message received from ``originator``."""

    originator: Address
    timestamp: datetime  # when the service centre received it, with its time zone
    text: str  # 8-bit data is given as upper-case hex
    dcs: DataCoding
    pid: int = 0
    concat: Concat | None = None
    other_ies: tuple[InformationElement, ...] = ()
    payload: bytes = b""
    smsc: Address | None = None
    more_messages: bool = False
    status_report_indication: bool = False
    reply_path: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Submit:
    """An SMS-SUBMIT, as sent to the network or stored on the SIM as outgoing."""

    destination: Address
    text: str
    dcs: DataCoding
    message_reference: int = 0
    validity: timedelta | datetime | None = None
    status_report_request: bool = False
    reject_duplicates: bool = False
    reply_path: bool = False
    pid: int = 0
    concat: Concat | None = None
    other_ies: tuple[InformationElement, ...] = ()
    payload: bytes = b""
    smsc: Address | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReport:
    """An SMS-STATUS-REPORT on the message sent with ``message_reference``."""

    message_reference: int
    recipient: Address
    timestamp: datetime  # when the service centre received the submitted message
    discharge_time: datetime  # when the status below was reached
    status: int
    smsc: Address | None = None
    more_messages: bool = False
    status_report_qualifier: bool = False  # set: the report is on an SMS-COMMAND
    pid: int | None = None
    dcs: DataCoding | None = None
    text: str = ""
    concat: Concat | None = None
    other_ies: tuple[InformationElement, ...] = ()
    payload: bytes = b""

    @property
    def state(self) -> DeliveryState:
        return delivery_state(self.status)

    @property
    def delivered(self) -> bool:
        return self.state is DeliveryState.DELIVERED

    @property
    def pending(self) -> bool:
        return self.state is DeliveryState.PENDING

    @property
    def failed(self) -> bool:
        return self.state is DeliveryState.FAILED

    @property
    def meaning(self) -> str:
        return status_meaning(self.status)


def decode(hex: str, *, has_smsc: bool = True) -> Deliver | StatusReport | Submit:
    """Decode a PDU as AT+CMGR/+CMGL/+CMT/+CDS give it (``has_smsc``: it starts with the
    service centre part, as 27.005 PDU mode does). Raises ``PduError`` on anything else.

    Octets after the user data are ignored: the message is complete without them.
    """
    reader = Reader(parse_hex(hex))
    smsc = read_smsc(reader) if has_smsc else None
    start = reader.pos
    first = reader.octet("first octet")
    mti = first & 0x03
    if mti == MTI_DELIVER:
        return _deliver(reader, first, smsc)
    if mti == MTI_SUBMIT:
        return _submit(reader, first, smsc)
    if mti == MTI_STATUS_REPORT:
        return _status_report(reader, first, smsc)
    raise PduError(f"first octet {first:02X} has the reserved message type 3", offset=start)


def _deliver(reader: Reader, first: int, smsc: Address | None) -> Deliver:
    originator = read_address(reader, "originator address (TP-OA)")
    pid = reader.octet("TP-PID")
    dcs = DataCoding.parse(reader.octet("TP-DCS"))
    timestamp = read_timestamp(reader, "service centre time stamp (TP-SCTS)")
    ud = read_user_data(reader, dcs, bool(first & UDHI))
    return Deliver(
        originator=originator,
        timestamp=timestamp,
        text=ud.text,
        dcs=dcs,
        pid=pid,
        concat=ud.concat,
        other_ies=ud.other_ies,
        payload=ud.payload,
        smsc=smsc,
        more_messages=not first & MMS_NO_MORE,
        status_report_indication=bool(first & SRR),
        reply_path=bool(first & REPLY_PATH),
    )


def _submit(reader: Reader, first: int, smsc: Address | None) -> Submit:
    message_reference = reader.octet("TP-MR")
    destination = read_address(reader, "destination address (TP-DA)")
    pid = reader.octet("TP-PID")
    dcs = DataCoding.parse(reader.octet("TP-DCS"))
    vpf = (first >> 3) & 0x03
    validity: timedelta | datetime | None = None
    if vpf == VPF_RELATIVE:
        validity = relative_validity(reader.octet("TP-VP (relative)"))
    elif vpf == VPF_ABSOLUTE:
        validity = read_timestamp(reader, "TP-VP (absolute)")
    elif vpf == VPF_ENHANCED:
        validity = enhanced_validity(reader.take(7, "TP-VP (enhanced)"))
    ud = read_user_data(reader, dcs, bool(first & UDHI))
    return Submit(
        destination=destination,
        text=ud.text,
        dcs=dcs,
        message_reference=message_reference,
        validity=validity,
        status_report_request=bool(first & SRR),
        reject_duplicates=bool(first & MMS_NO_MORE),
        reply_path=bool(first & REPLY_PATH),
        pid=pid,
        concat=ud.concat,
        other_ies=ud.other_ies,
        payload=ud.payload,
        smsc=smsc,
    )


def _status_report(reader: Reader, first: int, smsc: Address | None) -> StatusReport:
    message_reference = reader.octet("TP-MR")
    recipient = read_address(reader, "recipient address (TP-RA)")
    timestamp = read_timestamp(reader, "service centre time stamp (TP-SCTS)")
    discharge = read_timestamp(reader, "discharge time (TP-DT)")
    status = reader.octet("TP-ST (status)")
    pid: int | None = None
    dcs: DataCoding | None = None
    ud = UserData("")
    # TP-PI and what it announces are optional (9.2.2.3); most service centres stop here.
    if reader.remaining:
        indicator = reader.octet("TP-PI (parameter indicator)")
        extension = indicator
        while extension & 0x80:  # further indicator octets carry nothing we read
            extension = reader.octet("TP-PI extension")
        if indicator & 0x01:
            pid = reader.octet("TP-PID")
        if indicator & 0x02:
            dcs = DataCoding.parse(reader.octet("TP-DCS"))
        if indicator & 0x04:
            ud = read_user_data(reader, dcs or DataCoding.parse(0), bool(first & UDHI))
    return StatusReport(
        message_reference=message_reference,
        recipient=recipient,
        timestamp=timestamp,
        discharge_time=discharge,
        status=status,
        smsc=smsc,
        more_messages=not first & MMS_NO_MORE,
        status_report_qualifier=bool(first & SRR),
        pid=pid,
        dcs=dcs,
        text=ud.text,
        concat=ud.concat,
        other_ies=ud.other_ies,
        payload=ud.payload,
    )
