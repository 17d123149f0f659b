"""Time-ordered identifiers: ``msg_`` + 26 Crockford base32 characters (48-bit milliseconds
+ 80 random bits, as in ULID). Sorting by id sorts by creation time, which makes cursor
pagination a plain ``id < cursor``."""

from __future__ import annotations

import re
import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
MESSAGE_ID_RE = re.compile(r"\Amsg_[0-9A-HJKMNP-TV-Z]{26}\Z")


# Two characters (10 bits) per step: an id is made for every message accepted.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def _encode(value: int, length: int) -> str:
    """The low ``5 * length`` bits of ``value`` as ``length`` characters, most significant
    first."""
    out = []
    for _ in range(length >> 1):
        out.append(_PAIRS[value & 1023])
        value >>= 10
    if length & 1:
        out.append(_ALPHABET[value & 31])
    return "".join(reversed(out))


def new_id(prefix: str, now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{prefix}_{_encode(ms, 10)}{_encode(secrets.randbits(80), 16)}"


class MonotonicIds:
    """Ids that sort in the order they were made, even within one millisecond (the
    random part counts up), so the recipients of one request go out in the order given."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._last_ms = -1
        self._last_rand = 0

    def __call__(self) -> str:
        ms = int(time.time() * 1000)
        if ms <= self._last_ms:
            ms = self._last_ms
            rand = (self._last_rand + 1) % (1 << 80)
        else:
            rand = secrets.randbits(79)  # headroom so counting up never wraps in practice
        self._last_ms, self._last_rand = ms, rand
        return f"{self._prefix}_{_encode(ms, 10)}{_encode(rand, 16)}"


message_id = MonotonicIds("msg")


def floor_id(prefix: str, ms: int) -> str:
    """The smallest id made at ``ms`` (milliseconds since the epoch): every id made later
    sorts above it, so "arrived after t" is ``id > floor_id(prefix, t)``."""
    return f"{prefix}_{_encode(max(ms, 0), 10)}{'0' * 16}"
