"""User data: the header with its information elements (TS 23.040 9.2.3.24) and the text
in GSM-7 (with fill bits after a header), UCS-2 (UTF-16-BE) or 8-bit data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from simgate.protocols.pdu.fields import Alphabet, DataCoding
from simgate.protocols.pdu.primitives import (
    PduError,
    Reader,
    pack_septets,
    septets_to_text,
    text_to_septets,
    unpack_septets,
)

IEI_CONCAT_8 = 0x00  # concatenated short messages, 8-bit reference
IEI_CONCAT_16 = 0x08  # concatenated short messages, 16-bit reference
MAX_SEPTETS = 160
MAX_OCTETS = 140


@dataclass(frozen=True, slots=True)
class InformationElement:
    iei: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Concat:
    """Where a part belongs: parts numbered ``seq`` 1..``total`` share ``ref``."""

    ref: int
    total: int
    seq: int
    ref16: bool = False

    def header(self) -> bytes:
        """The whole user data header (its length octet first) carrying this element."""
        if self.ref16:
            return bytes(
                (6, IEI_CONCAT_16, 4, self.ref >> 8, self.ref & 0xFF, self.total, self.seq)
            )
        return bytes((5, IEI_CONCAT_8, 3, self.ref, self.total, self.seq))


@dataclass(frozen=True, slots=True)
class UserData:
    text: str
    # The text's code units after the header: septet values (one per byte) for GSM-7,
    # UTF-16-BE octets for UCS-2, raw octets for 8-bit data. Reassembly joins these, so
    # an escape or a surrogate pair a sender split across two parts still comes out whole.
    payload: bytes = b""
    concat: Concat | None = None
    other_ies: tuple[InformationElement, ...] = ()


def payload_text(payload: bytes, alphabet: Alphabet) -> str:
    if alphabet is Alphabet.GSM7:
        return septets_to_text(payload)
    if alphabet is Alphabet.UCS2:
        # "replace": an odd octet or an unpaired surrogate must not make a message unreadable.
        return payload.decode("utf-16-be", "replace")
    return payload.hex().upper()


def _concat(iei: int, data: bytes) -> Concat | None:
    if iei == IEI_CONCAT_8 and len(data) == 3:
        ref, total, seq = data[0], data[1], data[2]
    elif iei == IEI_CONCAT_16 and len(data) == 4:
        ref, total, seq = data[0] << 8 | data[1], data[2], data[3]
    else:
        return None
    # TS 23.040 9.2.3.24.1: a zero total or a sequence number past it voids the element.
    if total == 0 or not 1 <= seq <= total:
        return None
    return Concat(ref, total, seq, ref16=iei == IEI_CONCAT_16)


def parse_header(
    header: bytes, offset: int
) -> tuple[Concat | None, tuple[InformationElement, ...]]:
    """Split a user data header (without its length octet) into elements.

    ``offset`` is where ``header`` starts in the PDU, for error messages. Elements other
    than a valid concatenation element are kept as they are.
    """
    concat: Concat | None = None
    others: list[InformationElement] = []
    i = 0
    while i < len(header):
        if i + 2 > len(header):
            raise PduError(
                "user data header ends inside an element's identifier", offset=offset + i
            )
        iei, length = header[i], header[i + 1]
        if i + 2 + length > len(header):
            raise PduError(
                f"user data header element {iei:#04x} declares {length} octets but only "
                f"{len(header) - i - 2} remain in the header",
                offset=offset + i,
            )
        data = bytes(header[i + 2 : i + 2 + length])
        found = _concat(iei, data) if concat is None else None
        if found is not None:
            concat = found
        else:
            others.append(InformationElement(iei, data))
        i += 2 + length
    return concat, tuple(others)


def read_user_data(reader: Reader, dcs: DataCoding, has_header: bool) -> UserData:
    """TP-UDL and TP-UD; the length counts septets for GSM-7 and octets otherwise."""
    start = reader.pos
    length = reader.octet("TP-UDL (user data length)")
    gsm7 = dcs.alphabet is Alphabet.GSM7
    limit = MAX_SEPTETS if gsm7 else MAX_OCTETS
    if length > limit:
        unit = "septets" if gsm7 else "octets"
        raise PduError(f"TP-UDL is {length} {unit}; at most {limit} fit", offset=start)
    octets = (length * 7 + 7) // 8 if gsm7 else length
    ud_start = reader.pos
    ud = reader.take(octets, f"TP-UD ({length} {'septets' if gsm7 else 'octets'} by TP-UDL)")
    concat: Concat | None = None
    others: tuple[InformationElement, ...] = ()
    header_octets = 0
    if has_header:
        if not ud:
            raise PduError("TP-UDHI says a header follows but the user data is empty", offset=start)
        header_octets = ud[0] + 1
        if header_octets > len(ud):
            raise PduError(
                f"user data header of {ud[0]} octets does not fit the {len(ud)}-octet user data",
                offset=ud_start,
            )
        concat, others = parse_header(ud[1:header_octets], ud_start + 1)
    if gsm7:
        # The text starts on the septet boundary after the header (fill bits in between).
        header_septets = (header_octets * 8 + 6) // 7
        if header_septets > length:
            raise PduError(
                f"user data header takes {header_septets} septets but TP-UDL is {length}",
                offset=start,
            )
        fill = header_septets * 7 - header_octets * 8
        payload = unpack_septets(ud[header_octets:], length - header_septets, fill)
    else:
        payload = bytes(ud[header_octets:])
    return UserData(payload_text(payload, dcs.alphabet), payload, concat, others)


def encode_user_data(text: str, alphabet: Alphabet, header: bytes = b"") -> tuple[int, bytes]:
    """(TP-UDL, TP-UD) for ``text`` after ``header`` (length octet included, or empty)."""
    if alphabet is Alphabet.GSM7:
        septets = text_to_septets(text)
        header_septets = (len(header) * 8 + 6) // 7
        fill = header_septets * 7 - len(header) * 8
        length = header_septets + len(septets)
        if length > MAX_SEPTETS:
            raise PduError(f"{length} septets do not fit one part (at most {MAX_SEPTETS})")
        return length, header + pack_septets(septets, fill)
    if alphabet is Alphabet.UCS2:
        # surrogatepass: a lone surrogate from the caller is sent as the code unit it is.
        body = text.encode("utf-16-be", "surrogatepass")
    else:
        try:
            body = bytes.fromhex(text)
        except ValueError:
            raise PduError(f"8-bit data must be given as hex, got {text!r}") from None
    length = len(header) + len(body)
    if length > MAX_OCTETS:
        raise PduError(f"{length} octets do not fit one part (at most {MAX_OCTETS})")
    return length, header + body


def join_payloads(payloads: Iterable[bytes], alphabet: Alphabet) -> str:
    return payload_text(b"".join(payloads), alphabet)
