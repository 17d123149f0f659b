"""Outgoing webhooks: event filters, Standard Webhooks signing and the retry rules.

Signing follows https://www.standardwebhooks.com/: the ``webhook-signature`` header holds
``v1,<base64 HMAC-SHA256>`` over ``"{id}.{timestamp}.{body}"``, keyed with the base64 part of a
``whsec_`` secret. Several signatures, separated by spaces, let a receiver accept the old and the
new secret while one is being rotated.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from secrets import token_bytes

EVENT_TYPES: tuple[str, ...] = (
    "message.received",
    "message.sent",
    "message.delivered",
    "message.failed",
    "gateway.online",
    "gateway.offline",
)
ALL_EVENTS = "*"
MAX_EVENTS = 20
MAX_EVENT_LEN = 64

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES = 32

# Delay before attempt 2, 3, ... in seconds: about 27.6 hours in all, so a receiver that is
# down for a day still gets every event.
SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_ATTEMPTS = len(SCHEDULE) + 1
JITTER = 0.2
MAX_RETRY_AFTER = 86400.0
_MAX_RETRY_AFTER_LEN = 64

_DIGITS = re.compile(r"[0-9]+")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _allowed_list() -> str:
    return f"{', '.join(EVENT_TYPES)}, or '*'"


def parse_events(values: Sequence[str]) -> list[str]:
    """Validate an endpoint's event filter: known event types, or ``"*"`` for all."""
    if isinstance(values, str):
        raise ValueError("give the events as a list, not a single string")
    if len(values) == 0:
        raise ValueError("give at least one event, or '*' for all")
    if len(values) > MAX_EVENTS:
        raise ValueError(f"give at most {MAX_EVENTS} events")
    out: list[str] = []
    for raw in values:
        if not isinstance(raw, str):
            raise ValueError(f"events must be strings, not {type(raw).__name__}")
        value = raw.strip()
        if len(value) > MAX_EVENT_LEN:
            raise ValueError(f"event names are at most {MAX_EVENT_LEN} characters")
        if value != ALL_EVENTS and value not in EVENT_TYPES:
            raise ValueError(f"unknown event {value!r}; use one of {_allowed_list()}")
        if value not in out:
            out.append(value)
    if ALL_EVENTS in out:
        return [ALL_EVENTS]
    return out


def matches(filter_: Sequence[str], event_type: str) -> bool:
    """Whether an endpoint with this event filter wants this event."""
    return ALL_EVENTS in filter_ or event_type in filter_


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (the base64 part, decoded)."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"webhook secrets start with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    encoded += "=" * (-len(encoded) % 4)  # accept unpadded base64, as other libraries do
    if not _B64.fullmatch(encoded):
        raise ValueError("webhook secret is not valid base64")
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError("webhook secret is not valid base64") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def _signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    return hmac.new(key, _signed_content(msg_id, timestamp, body), hashlib.sha256).digest()


def _check_id(msg_id: str) -> None:
    if not msg_id or any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in msg_id):
        raise ValueError("webhook message id must be non-empty, without spaces or controls")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of a message."""
    _check_id(msg_id)
    digest = _digest(secret_key(secret), msg_id, timestamp, body)
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, joined by a space."""
    if len(secrets) == 0:
        raise ValueError("need at least one webhook secret")
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The request headers of one delivery attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = 300,
) -> bool:
    """Whether a received webhook is signed with ``secret`` and recent enough.

    Raises ValueError only when ``secret`` itself is malformed.
    """
    key = secret_key(secret)
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    ts_text = lowered.get("webhook-timestamp")
    sig_text = lowered.get("webhook-signature")
    if not msg_id or not ts_text or not sig_text:
        return False
    ts_text = ts_text.strip()
    if not _DIGITS.fullmatch(ts_text) or len(ts_text) > 20:
        return False
    timestamp = int(ts_text)
    if abs(now - timestamp) > tolerance:
        return False
    expected = _digest(key, msg_id, timestamp, body)
    found = False
    for candidate in sig_text.split():
        version, sep, encoded = candidate.partition(",")
        if version != "v1" or not sep or not _B64.fullmatch(encoded):
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        # Check every candidate, so the time taken does not tell which one matched.
        found = hmac.compare_digest(expected, given) or found
    return found


def next_delay(
    attempts_made: int, *, rand: float, retry_after: float | None = None
) -> float | None:
    """Seconds to wait before the next attempt, or None to give up.

    ``rand`` in [0, 1) adds 0-20% upward jitter; a receiver's ``Retry-After`` can only
    lengthen the wait.
    """
    if attempts_made < 1:
        raise ValueError("attempts_made counts attempts already made, so it starts at 1")
    if not 0.0 <= rand < 1.0:
        raise ValueError("rand must be in [0, 1)")
    if attempts_made >= MAX_ATTEMPTS:
        return None
    delay = SCHEDULE[attempts_made - 1] * (1 + JITTER * rand)
    if retry_after is not None and retry_after > delay:
        return float(retry_after)
    return delay


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """A ``Retry-After`` header in seconds from ``now`` (capped at a day), or None."""
    if value is None or len(value) > _MAX_RETRY_AFTER_LEN:
        return None
    text = value.strip(" \t")
    if not text:
        return None
    if _DIGITS.fullmatch(text):
        return min(float(int(text)), MAX_RETRY_AFTER)
    if not text.isascii():
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GONE = "gone"


def classify(status: int | None) -> Outcome:
    """2xx is delivered, 410 disables the endpoint, anything else (or no response) retries."""
    if status is None:
        return Outcome.RETRY
    if 200 <= status <= 299:
        return Outcome.DELIVERED
    if status == 410:
        return Outcome.GONE
    return Outcome.RETRY


def excerpt(body: bytes, limit: int = 512) -> str:
    """A response body excerpt safe to store and show: text, short, no control characters."""
    if limit < 0:
        raise ValueError("limit must not be negative")
    # A character takes at most 4 bytes, so this many bytes hold the first `limit` of them.
    text = body[: 4 * limit + 4].decode("utf-8", errors="replace")[:limit]
    return "".join(
        "\ufffd" if unicodedata.category(ch) == "Cc" and ch not in "\n\t" else ch for ch in text
    )
