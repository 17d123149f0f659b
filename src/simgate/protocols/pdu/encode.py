"""Encoders: SMS-SUBMIT for sending, and SMS-DELIVER / SMS-STATUS-REPORT for the modem
simulator and tests. Long texts are split where ``simgate.domain.encoding.split`` says,
so the parts sent are exactly the parts counted and priced."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from simgate.domain.encoding import (
    GSM7_EXTENSION,
    MULTI_GSM7,
    MULTI_UCS2,
    Encoding,
    detect,
    split,
)
from simgate.protocols.pdu.fields import (
    Address,
    Alphabet,
    encode_address,
    encode_relative_validity,
    encode_smsc,
    encode_timestamp,
)
from simgate.protocols.pdu.primitives import PduError
from simgate.protocols.pdu.tpdu import (
    MMS_NO_MORE,
    MTI_DELIVER,
    MTI_STATUS_REPORT,
    MTI_SUBMIT,
    SRR,
    UDHI,
    VPF_RELATIVE,
)
from simgate.protocols.pdu.userdata import Concat, encode_user_data

PID_DEFAULT = 0x00
DCS_GSM7 = 0x00
DCS_UCS2 = 0x08


@dataclass(frozen=True, slots=True)
class EncodedPdu:
    """One PDU as AT+CMGS / AT+CMGW take it, and as the modem shows it in +CMT / +CDS."""

    hex: str  # upper-case hex, starting with the SMSC part (``00``: the SIM's SMSC)
    tpdu_length: int  # the <length> argument: octets after the SMSC part

    @property
    def tpdu_hex(self) -> str:
        """The PDU without its SMSC part (as a modem without SMSC support wants it)."""
        return self.hex[2 + 2 * int(self.hex[:2], 16) :]


SubmitPdu = EncodedPdu  # the name the modem driver uses for what it sends


def _address(value: str | Address) -> Address:
    return value if isinstance(value, Address) else Address.parse(value)


def _check_range(name: str, value: int, high: int) -> None:
    if not 0 <= value <= high:
        raise PduError(f"{name} must be 0-{high}, got {value!r}")


def _split_16bit_ref(text: str, encoding: Encoding) -> list[str]:
    """Parts for a 16-bit reference: its 7-octet header leaves one septet (GSM-7) or one
    UCS-2 unit less per part than the 6-octet header ``encoding.split`` assumes."""
    limit = (MULTI_GSM7 if encoding is Encoding.GSM7 else MULTI_UCS2) - 1
    parts: list[str] = []
    start = used = 0
    for i, ch in enumerate(text):
        if encoding is Encoding.GSM7:
            units = 2 if ch in GSM7_EXTENSION else 1
        else:
            units = 2 if ord(ch) > 0xFFFF else 1
        if used + units > limit:
            parts.append(text[start:i])
            start, used = i, 0
        used += units
    parts.append(text[start:])
    return parts


def split_text(text: str, *, ref16: bool = False) -> tuple[Alphabet, list[str]]:
    """The alphabet and the parts ``text`` is sent as (one empty part for empty text)."""
    encoding = detect(text)
    parts = split(text, encoding) or [""]
    if ref16 and len(parts) > 1:
        parts = _split_16bit_ref(text, encoding)
    return (Alphabet.GSM7 if encoding is Encoding.GSM7 else Alphabet.UCS2), parts


def _user_data_parts(
    text: str, reference: int, ref16: bool
) -> tuple[Alphabet, list[tuple[int, bytes]]]:
    _check_range("concatenation reference", reference, 0xFFFF if ref16 else 0xFF)
    alphabet, parts = split_text(text, ref16=ref16)
    if len(parts) > 255:
        raise PduError(f"text needs {len(parts)} parts; at most 255 can be concatenated")
    encoded = []
    for seq, part in enumerate(parts, 1):
        header = Concat(reference, len(parts), seq, ref16).header() if len(parts) > 1 else b""
        encoded.append(encode_user_data(part, alphabet, header))
    return alphabet, encoded


def encode_submit(
    to: str | Address,
    text: str,
    *,
    smsc: str | Address | None = None,
    request_status_report: bool = True,
    validity: timedelta | None = None,
    reference: int = 0,
    ref16: bool = False,
    message_reference: int = 0,
    reject_duplicates: bool = False,
) -> list[SubmitPdu]:
    """SMS-SUBMIT PDUs for ``text`` to ``to``, one per part, in order.

    ``reference`` identifies the parts of this text (choose a fresh one per message and
    recipient); ``message_reference`` is TP-MR of the first part, counted up per part so
    that a service centre rejecting duplicates never takes part 2 for a copy of part 1.
    Most modems put their own TP-MR in and report it in ``+CMGS: <mr>``.
    """
    destination = _address(to)
    if not destination.number.removeprefix("+"):
        raise PduError("destination address is empty")
    _check_range("message reference", message_reference, 0xFF)
    sca = encode_smsc(None if smsc is None else _address(smsc))
    alphabet, parts = _user_data_parts(text, reference, ref16)
    first = MTI_SUBMIT
    first |= MMS_NO_MORE if reject_duplicates else 0  # bit 2 is TP-RD in a SUBMIT
    first |= SRR if request_status_report else 0
    first |= UDHI if len(parts) > 1 else 0
    vp = b""
    if validity is not None:
        first |= VPF_RELATIVE << 3
        vp = bytes((encode_relative_validity(validity),))
    da = encode_address(destination)
    dcs = DCS_GSM7 if alphabet is Alphabet.GSM7 else DCS_UCS2
    pdus = []
    for i, (length, ud) in enumerate(parts):
        mr = (message_reference + i) % 256
        tpdu = bytes((first, mr)) + da + bytes((PID_DEFAULT, dcs)) + vp + bytes((length,)) + ud
        pdus.append(EncodedPdu((sca + tpdu).hex().upper(), len(tpdu)))
    return pdus


def encode_deliver(
    originator: str | Address,
    text: str,
    *,
    timestamp: datetime,
    smsc: str | Address | None = None,
    reference: int = 0,
    ref16: bool = False,
    status_report_indication: bool = False,
) -> list[EncodedPdu]:
    """SMS-DELIVER PDUs as a network would deliver ``text`` from ``originator``."""
    sender = _address(originator)
    sca = encode_smsc(None if smsc is None else _address(smsc))
    alphabet, parts = _user_data_parts(text, reference, ref16)
    first = MTI_DELIVER | MMS_NO_MORE
    first |= SRR if status_report_indication else 0
    first |= UDHI if len(parts) > 1 else 0
    oa = encode_address(sender)
    dcs = DCS_GSM7 if alphabet is Alphabet.GSM7 else DCS_UCS2
    scts = encode_timestamp(timestamp)
    pdus = []
    for length, ud in parts:
        tpdu = bytes((first,)) + oa + bytes((PID_DEFAULT, dcs)) + scts + bytes((length,)) + ud
        pdus.append(EncodedPdu((sca + tpdu).hex().upper(), len(tpdu)))
    return pdus


def encode_status_report(
    *,
    message_reference: int,
    recipient: str | Address,
    timestamp: datetime,
    discharge_time: datetime,
    status: int,
    smsc: str | Address | None = None,
) -> EncodedPdu:
    """An SMS-STATUS-REPORT without the optional parameters, as most networks send it."""
    _check_range("message reference", message_reference, 0xFF)
    _check_range("status", status, 0xFF)
    sca = encode_smsc(None if smsc is None else _address(smsc))
    tpdu = (
        bytes((MTI_STATUS_REPORT | MMS_NO_MORE, message_reference))
        + encode_address(_address(recipient))
        + encode_timestamp(timestamp)
        + encode_timestamp(discharge_time)
        + bytes((status,))
    )
    return EncodedPdu((sca + tpdu).hex().upper(), len(tpdu))
