"""API key format, scopes and hashing.

An app key looks like ``sg_<10 chars>_<43 chars>``: ``sg_`` lets secret scanners spot a
leaked key, the 10-character id is the visible prefix shown in lists and used to revoke, and
the 256-bit secret makes a fast hash (SHA-256) safe to store: nothing can be guessed from it,
so argon2's slowness (right for passwords) would only cost every request.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

KEY_PREFIX = "sg_"
_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_LEN = 10
_KEY_RE = re.compile(r"^sg_([a-z0-9]{10})_([A-Za-z0-9_-]{43})$")
PREFIX_RE = re.compile(r"^sg_[a-z0-9]{10}$")


class Scope(enum.StrEnum):
    SEND = "send"
    INBOX = "inbox"
    OTP = "otp"
    ADMIN = "admin"


DEFAULT_SCOPES: frozenset[Scope] = frozenset({Scope.SEND, Scope.INBOX, Scope.OTP})


class InvalidScopes(ValueError):
    pass


def parse_scopes(text: str) -> frozenset[Scope]:
    """``"send,inbox"`` -> scopes; ``"all"`` means every scope. Unknown names are an error."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise InvalidScopes("no scopes given; choose from " + ", ".join(s.value for s in Scope))
    if names == ["all"]:
        return frozenset(Scope)
    unknown = [n for n in names if n not in Scope.__members__.values()]
    if unknown:
        raise InvalidScopes(
            f"unknown scope {unknown[0]!r}; choose from "
            + ", ".join(s.value for s in Scope)
            + " or 'all'"
        )
    return frozenset(Scope(n) for n in names)


def format_scopes(scopes: frozenset[Scope]) -> str:
    return ",".join(sorted(s.value for s in scopes))


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: ``secret`` is shown once and never stored."""

    secret: str
    prefix: str
    digest: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> NewKey:
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LEN))
    secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return NewKey(secret=secret, prefix=f"{KEY_PREFIX}{key_id}", digest=hash_key(secret))


def key_prefix(key: str) -> str | None:
    """The visible prefix of a well-formed key, or None when ``key`` is not one of ours."""
    match = _KEY_RE.match(key)
    return f"{KEY_PREFIX}{match.group(1)}" if match else None


def digests_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


# --- gateway keys and enrollment tokens ---------------------------------------------------
#
# A gateway (an Android phone) authenticates with seed 003's key format, ``gw_live_`` and 64
# hex digits (256 bits), stored only as its SHA-256 like app keys. The visible prefix is the
# first 8 hex digits. An enrollment token (``gwe_`` + 256 bits) lets one phone register itself;
# it too is stored only as a hash and is used up by the registration.

GATEWAY_KEY_PREFIX = "gw_live_"
_GATEWAY_KEY_RE = re.compile(r"^gw_live_([0-9a-f]{64})$")
ENROLL_PREFIX = "gwe_"
_ENROLL_RE = re.compile(r"^gwe_[A-Za-z0-9_-]{43}$")


def generate_gateway_key() -> NewKey:
    secret = GATEWAY_KEY_PREFIX + secrets.token_hex(32)
    return NewKey(secret=secret, prefix=secret[:16], digest=hash_key(secret))


def is_gateway_key(text: str) -> bool:
    return _GATEWAY_KEY_RE.match(text) is not None


def generate_enrollment_token() -> NewKey:
    secret = ENROLL_PREFIX + secrets.token_urlsafe(32)
    return NewKey(secret=secret, prefix=secret[:12], digest=hash_key(secret))


def is_enrollment_token(text: str) -> bool:
    return _ENROLL_RE.match(text) is not None


def looks_like_app_key(text: str) -> bool:
    return text.startswith(KEY_PREFIX)
