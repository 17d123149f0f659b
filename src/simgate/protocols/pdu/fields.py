"""TPDU fields: addresses (TS 23.040 9.1.2.5), service-centre time stamps (9.2.3.11),
validity periods (9.2.3.12) and the data coding scheme (TS 23.038 4)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from simgate.protocols.pdu.primitives import (
    PduError,
    Reader,
    bcd_octet,
    bcd_value,
    decode_digits,
    encode_digits,
    pack_septets,
    septets_to_text,
    text_to_septets,
    unpack_septets,
)

MAX_ADDRESS_DIGITS = 20  # a TP address holds at most 10 octets of digits
MAX_ALPHANUMERIC_SEPTETS = 11  # 77 bits: what fits in those 10 octets
NPI_ISDN = 1  # E.164 numbering plan
_NUMERIC = frozenset("0123456789*#")


class TypeOfNumber(enum.IntEnum):
    UNKNOWN = 0
    INTERNATIONAL = 1
    NATIONAL = 2
    NETWORK_SPECIFIC = 3
    SUBSCRIBER = 4
    ALPHANUMERIC = 5
    ABBREVIATED = 6
    RESERVED = 7


@dataclass(frozen=True, slots=True)
class Address:
    """A phone number (``+`` first when international) or an alphanumeric sender name."""

    number: str
    ton: TypeOfNumber = TypeOfNumber.UNKNOWN
    npi: int = NPI_ISDN

    def __str__(self) -> str:
        return self.number

    @classmethod
    def parse(cls, value: str) -> Address:
        """``+E.164`` is international; digits (and ``*#``) are of unknown type, which
        the network reads with national prefixes; anything else is an alphanumeric name."""
        if value.startswith("+"):
            digits = value[1:]
            if not digits.isdigit() or not digits.isascii():
                raise PduError(f"international number must be '+' and digits: {value!r}")
            if len(digits) > MAX_ADDRESS_DIGITS:
                raise PduError(f"number has more than {MAX_ADDRESS_DIGITS} digits: {value!r}")
            return cls(value, TypeOfNumber.INTERNATIONAL)
        if value and all(ch in _NUMERIC for ch in value):
            if len(value) > MAX_ADDRESS_DIGITS:
                raise PduError(f"number has more than {MAX_ADDRESS_DIGITS} digits: {value!r}")
            return cls(value, TypeOfNumber.UNKNOWN)
        if not value:
            raise PduError("empty address")
        return cls(value, TypeOfNumber.ALPHANUMERIC, 0)


def _toa(address: Address) -> int:
    if not 0 <= address.npi <= 0x0F:
        raise PduError(f"numbering plan must be 0-15, got {address.npi!r}")
    return 0x80 | address.ton << 4 | address.npi


def encode_address(address: Address) -> bytes:
    """TP-DA / TP-OA / TP-RA: length in useful semi-octets, type of address, value."""
    if address.ton is TypeOfNumber.ALPHANUMERIC:
        septets = text_to_septets(address.number)
        if len(septets) > MAX_ALPHANUMERIC_SEPTETS:
            raise PduError(
                f"alphanumeric address {address.number!r} is {len(septets)} septets; "
                f"at most {MAX_ALPHANUMERIC_SEPTETS} fit"
            )
        semi_octets = math.ceil(len(septets) * 7 / 4)
        return bytes((semi_octets, _toa(address))) + pack_septets(septets)
    digits = address.number.removeprefix("+")
    if len(digits) > MAX_ADDRESS_DIGITS:
        raise PduError(f"number has more than {MAX_ADDRESS_DIGITS} digits: {address.number!r}")
    return bytes((len(digits), _toa(address))) + encode_digits(digits)


def _address_value(toa: int, body: bytes, semi_octets: int) -> Address:
    ton = TypeOfNumber((toa >> 4) & 0x07)
    npi = toa & 0x0F
    if ton is TypeOfNumber.ALPHANUMERIC:
        septets = unpack_septets(body, semi_octets * 4 // 7)
        return Address(septets_to_text(septets), ton, npi)
    digits = decode_digits(body, semi_octets)
    return Address("+" + digits if ton is TypeOfNumber.INTERNATIONAL else digits, ton, npi)


def read_address(reader: Reader, what: str) -> Address:
    start = reader.pos
    semi_octets = reader.octet(f"{what} length")
    if semi_octets > MAX_ADDRESS_DIGITS:
        raise PduError(
            f"{what} length is {semi_octets} semi-octets; at most {MAX_ADDRESS_DIGITS} fit",
            offset=start,
        )
    toa = reader.octet(f"{what} type of address")
    body = reader.take((semi_octets + 1) // 2, what)
    return _address_value(toa, body, semi_octets)


def encode_smsc(smsc: Address | None) -> bytes:
    """The SMSC part that AT+CMGS expects first; ``00`` means "use the SIM's SMSC"."""
    if smsc is None:
        return b"\x00"
    if smsc.ton is TypeOfNumber.ALPHANUMERIC:
        raise PduError(f"a service centre address must be a number, not {smsc.number!r}")
    digits = smsc.number.removeprefix("+")
    if not digits or len(digits) > MAX_ADDRESS_DIGITS:
        raise PduError(f"service centre number must have 1-20 digits: {smsc.number!r}")
    value = encode_digits(digits)
    # Unlike TP addresses, the SMSC length counts octets, type-of-address included.
    return bytes((1 + len(value), _toa(smsc))) + value


def read_smsc(reader: Reader) -> Address | None:
    start = reader.pos
    length = reader.octet("SMSC length")
    if length == 0:
        return None
    if length > 11:
        raise PduError(f"SMSC length is {length} octets; at most 11 fit", offset=start)
    toa = reader.octet("SMSC type of address")
    body = reader.take(length - 1, "SMSC address")
    return _address_value(toa, body, 2 * len(body))


# --- time stamps and validity -----------------------------------------------------------


def read_timestamp(reader: Reader, what: str) -> datetime:
    """Seven semi-octet fields: year, month, day, hour, minute, second, zone in quarters."""
    start = reader.pos
    raw = reader.take(7, what)
    fields: list[int] = []
    for i, octet in enumerate(raw[:6]):
        value = bcd_value(octet)
        if value is None:
            raise PduError(f"{what}: {octet:02X} is not two decimal digits", offset=start + i)
        fields.append(value)
    zone = raw[6]
    quarters = bcd_value(zone & 0xF7)  # bit 3 is the sign, not part of the tens digit
    if quarters is None:
        raise PduError(f"{what}: time zone {zone:02X} is not decimal", offset=start + 6)
    offset = timedelta(minutes=15 * quarters) * (-1 if zone & 0x08 else 1)
    year, month, day, hour, minute, second = fields
    # Two-digit years: GSM began in the 1990s, so 90-99 are 199x and the rest 20xx.
    year += 1900 if year >= 90 else 2000
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError as exc:
        raise PduError(
            f"{what} {raw.hex().upper()} is not a valid time: {exc}", offset=start
        ) from None


def encode_timestamp(when: datetime) -> bytes:
    offset = when.utcoffset()
    if offset is None:
        raise PduError(f"time stamp needs a time zone (an aware datetime), got {when!r}")
    quarters, rest = divmod(abs(int(offset.total_seconds())), 15 * 60)
    if rest or quarters > 79:
        raise PduError(f"time zone offset {offset} is not a whole number of quarter hours")
    if not 1990 <= when.year <= 2089:
        raise PduError(f"year {when.year} does not fit a two-digit SMS time stamp")
    fields = (when.year % 100, when.month, when.day, when.hour, when.minute, when.second)
    zone = bcd_octet(quarters) | (0x08 if offset < timedelta(0) else 0)
    return bytes(bcd_octet(v) for v in fields) + bytes((zone,))


def encode_relative_validity(period: timedelta) -> int:
    """TP-VP relative format; rounds up, so the message lives at least as long as asked."""
    if period <= timedelta(0):
        raise PduError(f"validity period must be positive, got {period}")
    minutes = math.ceil(period.total_seconds() / 60)
    if minutes <= 12 * 60:
        return max(0, math.ceil(minutes / 5) - 1)
    if minutes <= 24 * 60:
        return 143 + math.ceil((minutes - 12 * 60) / 30)
    days = math.ceil(minutes / (24 * 60))
    if days <= 30:
        return 166 + days
    weeks = math.ceil(days / 7)
    if weeks <= 63:
        return 192 + max(weeks, 5)
    raise PduError(f"validity period {period} is longer than the maximum of 63 weeks")


def relative_validity(value: int) -> timedelta:
    if value <= 143:
        return timedelta(minutes=5 * (value + 1))
    if value <= 167:
        return timedelta(hours=12, minutes=30 * (value - 143))
    if value <= 196:
        return timedelta(days=value - 166)
    return timedelta(weeks=value - 192)


def enhanced_validity(raw: bytes) -> timedelta | None:
    """TP-VP enhanced format (9.2.3.12.3); None when absent, reserved or extended."""
    indicator = raw[0]
    if indicator & 0x80:
        return None  # extension octets shift the value; no known sender uses them
    kind = indicator & 0x07
    if kind == 1:
        return relative_validity(raw[1])
    if kind == 2:
        return timedelta(seconds=raw[1])
    if kind == 3:
        parts = [bcd_value(octet) for octet in raw[1:4]]
        if any(part is None for part in parts):
            return None
        hours, minutes, seconds = (part or 0 for part in parts)
        return timedelta(hours=hours, minutes=minutes, seconds=seconds)
    return None


# --- data coding scheme -----------------------------------------------------------------


class Alphabet(enum.StrEnum):
    GSM7 = "gsm7"
    DATA8 = "8bit"
    UCS2 = "ucs2"


_GENERAL_ALPHABETS = (Alphabet.GSM7, Alphabet.DATA8, Alphabet.UCS2, Alphabet.GSM7)


@dataclass(frozen=True, slots=True)
class DataCoding:
    value: int
    alphabet: Alphabet
    message_class: int | None = None  # 0 is a "flash" message
    compressed: bool = False

    @classmethod
    def parse(cls, value: int) -> DataCoding:
        group = value >> 4
        if group <= 0x07:  # general data coding, with or without automatic deletion
            message_class = value & 0x03 if value & 0x10 else None
            if value & 0x20:
                # TS 23.042 compression is not implemented by any phone we know of; the
                # payload is passed on as data rather than shown as garbled text.
                return cls(value, Alphabet.DATA8, message_class, compressed=True)
            # The reserved alphabet value 11 is read as the default alphabet (23.038 4).
            return cls(value, _GENERAL_ALPHABETS[(value >> 2) & 0x03], message_class)
        if group == 0x0E:  # message waiting indication, UCS-2 text
            return cls(value, Alphabet.UCS2)
        if group == 0x0F:  # data coding / message class
            alphabet = Alphabet.DATA8 if value & 0x04 else Alphabet.GSM7
            return cls(value, alphabet, value & 0x03)
        # Reserved groups and message-waiting groups with GSM-7 text.
        return cls(value, Alphabet.GSM7)
