"""Octet-level building blocks: the error type, hex parsing, a bounds-checked reader,
GSM 7-bit septet packing (TS 23.038 6.1.2.1) and semi-octet digits (TS 23.040 9.1.2.3).

Every failure while reading raises ``PduError`` naming the field and the octet offset, so a
truncated or garbled PDU never surfaces as an IndexError from deep inside the codec.
"""

from __future__ import annotations

from simgate.domain.encoding import GSM7_BASIC, GSM7_CODE, GSM7_EXTENSION

ESCAPE = 0x1B
# Reverse of the extension table: code after the escape -> character.
_EXTENSION_CHAR = {code: ch for ch, code in GSM7_EXTENSION.items()}
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
# Semi-octet values 0xA-0xE in address fields (TS 23.040 9.1.2.3); 0xF is the filler.
_DIGIT_CHARS = "0123456789*#abc"
_DIGIT_VALUE = {ch: i for i, ch in enumerate(_DIGIT_CHARS)}


class PduError(ValueError):
    """A PDU that cannot be decoded, or a value that cannot be encoded into one.

    ``offset`` is the 0-based octet index in the whole PDU (SMSC part included) where the
    problem was found, when there is one.
    """

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at octet {offset})")
        self.offset = offset


def parse_hex(text: str) -> bytes:
    digits = text.strip()
    if not digits:
        raise PduError("empty PDU: no hex digits")
    for i, ch in enumerate(digits):
        if ch not in _HEX_DIGITS:
            raise PduError(f"not a hex digit: {ch!r} at character {i}", offset=i // 2)
    if len(digits) % 2:
        raise PduError(f"odd number of hex digits ({len(digits)}): a PDU is whole octets")
    return bytes.fromhex(digits)


class Reader:
    """A cursor over the PDU octets that refuses to read past the end."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def octet(self, what: str) -> int:
        return self.take(1, what)[0]

    def take(self, count: int, what: str) -> bytes:
        if count > self.remaining:
            raise PduError(
                f"PDU ends early: {what} needs {count} octet(s) but only {self.remaining} remain",
                offset=self.pos,
            )
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk


# --- GSM 7-bit default alphabet ---------------------------------------------------------


def text_to_septets(text: str) -> bytes:
    """Septet values (one per byte) for ``text``; extension characters become escape + code."""
    out = bytearray()
    for ch in text:
        code = GSM7_CODE.get(ch)
        if code is not None:
            out.append(code)
            continue
        ext = GSM7_EXTENSION.get(ch)
        if ext is None:
            raise PduError(f"{ch!r} is not in the GSM 7-bit default alphabet")
        out += bytes((ESCAPE, ext))
    return bytes(out)


def septets_to_text(septets: bytes) -> str:
    chars: list[str] = []
    i, n = 0, len(septets)
    while i < n:
        code = septets[i] & 0x7F
        i += 1
        if code != ESCAPE:
            chars.append(GSM7_BASIC[code])
            continue
        if i == n:
            # A dangling escape (sender split escape and code across parts, or garbage):
            # TS 23.038 has receivers show a space for escape codes they cannot resolve.
            chars.append(" ")
            break
        follow = septets[i] & 0x7F
        i += 1
        if follow == ESCAPE:
            chars.append(" ")  # escape to a further table, not defined: a space (23.038)
        else:
            # Codes undefined in the extension table show the basic character (23.038 6.2.1.1).
            chars.append(_EXTENSION_CHAR.get(follow, GSM7_BASIC[follow]))
    return "".join(chars)


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack septets LSB-first, after ``fill_bits`` zero bits (the fill that aligns text
    after a user data header on a septet boundary, TS 23.040 9.2.3.24)."""
    total_bits = fill_bits + 7 * len(septets)
    value = 0
    for i, septet in enumerate(septets):
        value |= (septet & 0x7F) << (fill_bits + 7 * i)
    return value.to_bytes((total_bits + 7) // 8, "little")


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> bytes:
    """The inverse of ``pack_septets``; the caller guarantees ``data`` holds the bits."""
    value = int.from_bytes(data, "little")
    return bytes((value >> (fill_bits + 7 * i)) & 0x7F for i in range(count))


# --- semi-octets ------------------------------------------------------------------------


def encode_digits(digits: str) -> bytes:
    """Semi-octet digits, low nibble first, padded with 0xF to whole octets."""
    values = []
    for ch in digits:
        value = _DIGIT_VALUE.get(ch)
        if value is None:
            raise PduError(f"{ch!r} cannot be sent as an address digit in {digits!r}")
        values.append(value)
    if len(values) % 2:
        values.append(0xF)
    return bytes(values[i] | values[i + 1] << 4 for i in range(0, len(values), 2))


def decode_digits(data: bytes, count: int) -> str:
    """The first ``count`` semi-octets of ``data`` as digits; fillers (0xF) are skipped
    because some networks leave them inside the counted length."""
    chars = []
    for i in range(min(count, 2 * len(data))):
        nibble = (data[i // 2] >> (4 * (i % 2))) & 0x0F
        if nibble != 0xF:
            chars.append(_DIGIT_CHARS[nibble])
    return "".join(chars)


def bcd_value(octet: int) -> int | None:
    """A swapped-nibble BCD octet (``0x21`` is 12) or None when a nibble is not a digit."""
    low, high = octet & 0x0F, octet >> 4
    if low > 9 or high > 9:
        return None
    return low * 10 + high


def bcd_octet(value: int) -> int:
    return (value % 10) << 4 | (value // 10)
