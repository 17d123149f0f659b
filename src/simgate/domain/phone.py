"""E.164 normalisation of phone numbers with ``phonenumbers``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country code",
    ValidationResult.TOO_SHORT: "is too short",
    ValidationResult.TOO_LONG: "is too long",
    ValidationResult.INVALID_LENGTH: "has an impossible length for its country",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "is a local number without its area code",
}
_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "needs a country code (start it with +) or a "
    "configured default region",
    NumberParseException.NOT_A_NUMBER: "is not a phone number",
    NumberParseException.TOO_SHORT_NSN: "is too short",
    NumberParseException.TOO_SHORT_AFTER_IDD: "is too short",
    NumberParseException.TOO_LONG: "is too long",
}


# Parsing and validating costs tens of microseconds a number; senders repeat numbers (OTP
# resends, campaigns to the same list), so answers are kept for this many (text, region)
# pairs, wrong ones included. Pure function of its input: nothing to invalidate.
CACHE_SIZE = 16_384


class InvalidNumber(ValueError):
    """The message says what is wrong with the number, in words a user understands."""


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    e164: str
    region: str  # ISO 3166 alpha-2, e.g. "DE"; "001" for non-geographic numbers


def normalise(raw: str, default_region: str | None = None) -> PhoneNumber:
    """``"0151 1234 5678"`` (region DE) or ``"+49 151 12345678"`` -> ``+4915112345678``."""
    text = raw.strip()
    if not text:
        raise InvalidNumber("is empty")
    if len(text) > 64:
        raise InvalidNumber("is too long")
    checked = _check(text, default_region or None)
    if isinstance(checked, str):
        raise InvalidNumber(checked) from None
    return checked


@lru_cache(maxsize=CACHE_SIZE)
def _check(text: str, region: str | None) -> PhoneNumber | str:
    """The number, or why it is not one."""
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE and text.startswith("+"):
            return "has an unknown country code"
        return _PARSE_REASONS.get(exc.error_type, "is not a phone number")
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible not in (ValidationResult.IS_POSSIBLE,):
        return _REASONS.get(possible, "is not a possible number")
    if not phonenumbers.is_valid_number(number):
        return "is not a valid number in its numbering plan"
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if len(e164) - 1 > 15:  # E.164 caps numbers at 15 digits; some national plans allow more
        return "is too long"
    region_code = phonenumbers.region_code_for_number(number) or "001"
    return PhoneNumber(e164, region_code)
