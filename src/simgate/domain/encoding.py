"""GSM-7 / UCS-2 detection, exact segment counts and splitting (3GPP TS 23.038, 23.040).

A single SMS carries 160 GSM-7 septets or 70 UCS-2 code units. Concatenated messages spend
6 octets on the UDH, leaving 153 septets or 67 units per part. Characters from the GSM-7
extension table take two septets (escape + code) and never straddle two parts; characters
outside the Basic Multilingual Plane take two UCS-2 units (a surrogate pair) and never
straddle two parts either.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# The GSM 03.38 default alphabet, in code order (0x00-0x7F). 0x1B is the escape to the
# extension table and is not a character of its own.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: character -> code after the escape.
GSM7_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
GSM7_CODE = {ch: i for i, ch in enumerate(GSM7_BASIC) if ch != "\x1b"}

SINGLE_GSM7 = 160
MULTI_GSM7 = 153
SINGLE_UCS2 = 70
MULTI_UCS2 = 67


class Encoding(enum.StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    encoding: Encoding
    segments: int
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    per_segment: int  # capacity of each part as sent
    last_units: int = 0  # units in the last part (a part may end short of full)

    @property
    def remaining(self) -> int:
        """Units left in the last part before another part is needed."""
        return self.per_segment - self.last_units if self.segments else 0


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_CODE or ch in GSM7_EXTENSION for ch in text)


def detect(text: str) -> Encoding:
    return Encoding.GSM7 if is_gsm7(text) else Encoding.UCS2


def _unit_lengths(text: str, encoding: Encoding) -> list[int]:
    if encoding is Encoding.GSM7:
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _limits(encoding: Encoding) -> tuple[int, int]:
    if encoding is Encoding.GSM7:
        return SINGLE_GSM7, MULTI_GSM7
    return SINGLE_UCS2, MULTI_UCS2


def split(text: str, encoding: Encoding | None = None) -> list[str]:
    """The parts the text is sent as; joining them gives back the text exactly."""
    enc = encoding or detect(text)
    lengths = _unit_lengths(text, enc)
    single, multi = _limits(enc)
    if sum(lengths) <= single:
        return [text] if text else []
    parts: list[str] = []
    start = 0
    used = 0
    for i, n in enumerate(lengths):
        if used + n > multi:
            parts.append(text[start:i])
            start, used = i, 0
        used += n
    parts.append(text[start:])
    return parts


def segment_info(text: str) -> SegmentInfo:
    enc = detect(text)
    units = sum(_unit_lengths(text, enc))
    single, multi = _limits(enc)
    if units <= single:
        return SegmentInfo(enc, 1 if text else 0, units, single, units)
    parts = split(text, enc)
    return SegmentInfo(enc, len(parts), units, multi, sum(_unit_lengths(parts[-1], enc)))
