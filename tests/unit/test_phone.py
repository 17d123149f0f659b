"""E.164 normalisation: valid numbers in many spellings, and plain-language reasons for
invalid ones. Numbers are checked against the installed ``phonenumbers`` metadata."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simgate.domain.phone import InvalidNumber, PhoneNumber, normalise

E164_RE = re.compile(r"^\+[1-9][0-9]{1,14}$")  # ITU-T E.164: at most 15 digits
# phonenumbers' metadata accepts some longer national numbers (DE fixed lines up to 15
# national digits, JP/ID up to 17); normalise() refuses what E.164 cannot carry.
SHAPE_RE = E164_RE
REGION_RE = re.compile(r"^(?:[A-Z]{2}|001)$")
REGIONS = [None, "DE", "US", "GB", "IN", "MM"]


# --- valid numbers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "e164", "number_region"),
    [
        # Germany
        ("+4915112345678", None, "+4915112345678", "DE"),
        ("+49 151 12345678", None, "+4915112345678", "DE"),
        ("0151 1234 5678", "DE", "+4915112345678", "DE"),
        ("0151-1234-5678", "DE", "+4915112345678", "DE"),
        ("(0151) 1234-5678", "DE", "+4915112345678", "DE"),
        ("+49 (0)151 12345678", None, "+4915112345678", "DE"),
        ("+49.151.12345678", None, "+4915112345678", "DE"),
        ("030 12345678", "DE", "+493012345678", "DE"),
        ("0049 151 12345678", "DE", "+4915112345678", "DE"),
        # United States
        ("+1 (650) 253-0000", None, "+16502530000", "US"),
        ("650-253-0000", "US", "+16502530000", "US"),
        ("(201) 555-0123", "US", "+12015550123", "US"),
        ("212 555 0100", "US", "+12125550100", "US"),
        ("1 212 555 0100", "US", "+12125550100", "US"),
        # United Kingdom
        ("+44 20 7946 0958", None, "+442079460958", "GB"),
        ("020 7946 0958", "GB", "+442079460958", "GB"),
        ("07400 123456", "GB", "+447400123456", "GB"),
        ("+44 (0)7400 123456", None, "+447400123456", "GB"),
        # India
        ("+91 98765 43210", None, "+919876543210", "IN"),
        ("98765 43210", "IN", "+919876543210", "IN"),
        ("098765 43210", "IN", "+919876543210", "IN"),
        # Myanmar (+959123456789 from the seed document is not valid in the current
        # numbering plan, so a real mobile range is used instead)
        ("+959250123456", None, "+959250123456", "MM"),
        ("+95 9 250 123 456", None, "+959250123456", "MM"),
        ("09 250 123 456", "MM", "+959250123456", "MM"),
        ("09250123456", "MM", "+959250123456", "MM"),
        # Non-geographic (international freephone)
        ("+800 1234 5678", None, "+80012345678", "001"),
        # Surrounding whitespace is ignored
        ("\t +49 151 12345678 \n", None, "+4915112345678", "DE"),
    ],
)
def test_valid_numbers(raw: str, region: str | None, e164: str, number_region: str) -> None:
    assert normalise(raw, region) == PhoneNumber(e164, number_region)


@pytest.mark.parametrize("region", ["DE", "US", "GB", "IN", "MM", None])
def test_an_international_number_ignores_the_default_region(region: str | None) -> None:
    assert normalise("+49 151 12345678", region) == PhoneNumber("+4915112345678", "DE")
    assert normalise("+959250123456", region) == PhoneNumber("+959250123456", "MM")


def test_the_region_comes_from_the_number_not_the_default() -> None:
    assert normalise("+44 20 7946 0958", "DE").region == "GB"


def test_an_empty_default_region_means_none() -> None:
    assert normalise("+4915112345678", "") == PhoneNumber("+4915112345678", "DE")
    with pytest.raises(InvalidNumber, match=r"^needs a country code"):
        normalise("0151 1234 5678", "")


def test_the_seed_document_myanmar_number_is_rejected_by_current_metadata() -> None:
    # Documents the substitution above: +95 9 123... is not an allocated mobile range.
    with pytest.raises(InvalidNumber, match=r"^is not a valid number in its numbering plan$"):
        normalise("+959123456789")


def test_length_guard_applies_after_stripping() -> None:
    padded = " " * 100 + "+4915112345678" + " " * 100
    assert normalise(padded) == PhoneNumber("+4915112345678", "DE")


def test_result_is_a_frozen_value() -> None:
    number = normalise("+4915112345678")
    with pytest.raises(AttributeError):
        number.e164 = "+1"  # type: ignore[misc]
    assert number == PhoneNumber("+4915112345678", "DE")
    assert hash(number) == hash(PhoneNumber("+4915112345678", "DE"))


# --- invalid numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("", None, "is empty"),
        ("   ", "DE", "is empty"),
        ("\t\n", None, "is empty"),
        ("+999 123456", None, "has an unknown country code"),
        ("+999 123456", "DE", "has an unknown country code"),
        ("hello", None, "is not a phone number"),
        ("x1", "DE", "is not a phone number"),
        ("+", "DE", "is not a phone number"),
        ("+49", "DE", "is not a phone number"),
        ("+49 1", None, "is too short"),
        ("+49 3", None, "is too short"),
        ("0049 1", "DE", "is too short"),
        ("011 1", "US", "is too short"),
        ("+49 151 123456789012345", None, "is too long"),
        ("+4915112345678901234", None, "is too long"),
        ("+1 650 253 00000", None, "is too long"),
        ("+44 7400 1234567", None, "is too long"),
        ("1" * 65, "DE", "is too long"),  # the length guard, before parsing
        ("+" + "4" * 64, None, "is too long"),
        ("0151 1234 5678", None, "needs a country code (start it with +) or a configured "),
        ("650-253-0000", None, "needs a country code"),
        ("+49 999 99999999", None, "is not a valid number in its numbering plan"),
        ("+49 151 1234567", None, "is not a valid number in its numbering plan"),
        ("+44 7400 12345", None, "is not a valid number in its numbering plan"),
        ("+959123456789", None, "is not a valid number in its numbering plan"),
        ("+712222222222", None, "has an impossible length for its country"),
        ("555-0100", "US", "is a local number without its area code"),
        ("+49 30 1", None, "is a local number without its area code"),
    ],
)
def test_invalid_numbers_say_why(raw: str, region: str | None, reason: str) -> None:
    with pytest.raises(InvalidNumber) as excinfo:
        normalise(raw, region)
    assert str(excinfo.value).startswith(reason)


def test_a_15_digit_number_is_accepted() -> None:
    number = normalise("+492011234567890")
    assert number == PhoneNumber("+492011234567890", "DE")
    assert E164_RE.fullmatch(number.e164)


@pytest.mark.parametrize(
    ("raw", "region"), [("+4920100000000000", None), ("020100000000000", "DE")]
)
def test_numbers_over_15_digits_are_too_long(raw: str, region: str | None) -> None:
    with pytest.raises(InvalidNumber, match=r"^is too long$"):
        normalise(raw, region)


def test_needs_a_country_code_message_in_full() -> None:
    with pytest.raises(InvalidNumber) as excinfo:
        normalise("0151 1234 5678")
    assert str(excinfo.value) == (
        "needs a country code (start it with +) or a configured default region"
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "is empty"),
        ("+999 123456", "has an unknown country code"),
        ("hello", "is not a phone number"),
        ("+49 1", "is too short"),
        ("+49 151 123456789012345", "is too long"),
        ("+49 999 99999999", "is not a valid number in its numbering plan"),
    ],
)
def test_reasons_are_exactly_the_words(raw: str, reason: str) -> None:
    with pytest.raises(InvalidNumber) as excinfo:
        normalise(raw)
    assert excinfo.value.args == (reason,)


def test_invalid_number_is_a_value_error_without_a_chained_cause() -> None:
    assert issubclass(InvalidNumber, ValueError)
    with pytest.raises(InvalidNumber) as excinfo:
        normalise("hello")
    # ``from None``: phonenumbers' own exception is not shown to users.
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__suppress_context__


# --- properties --------------------------------------------------------------------------

regions = st.sampled_from([*REGIONS, "XX", "001"])
phone_like = st.text(alphabet="0123456789+-() .#*xX\t/", max_size=40)
digits_with_plus = st.from_regex(r"\A\+?[0-9]{0,20}\Z", fullmatch=True)


def _check(raw: str, region: str | None) -> None:
    number: PhoneNumber | None = None
    reason = ""
    try:
        number = normalise(raw, region)
    except InvalidNumber as exc:
        reason = str(exc)
    if number is None:
        assert reason, "every rejection says why"
        return
    assert SHAPE_RE.fullmatch(number.e164)
    assert REGION_RE.fullmatch(number.region)
    # Normalising the result again is a no-op, whatever the default region.
    assert normalise(number.e164, region) == number
    assert normalise(number.e164) == number
    parsed = phonenumbers.parse(number.e164)
    assert phonenumbers.is_valid_number(parsed)


@settings(max_examples=500)
@given(st.text(max_size=80), regions)
def test_arbitrary_text_never_raises_anything_else(raw: str, region: str | None) -> None:
    _check(raw, region)


@settings(max_examples=500)
@given(phone_like, regions)
def test_phone_like_text_never_raises_anything_else(raw: str, region: str | None) -> None:
    _check(raw, region)


@settings(max_examples=500)
@given(digits_with_plus, regions)
def test_digit_strings_never_raise_anything_else(raw: str, region: str | None) -> None:
    _check(raw, region)


@given(
    st.sampled_from(
        ["+4915112345678", "+16502530000", "+442079460958", "+919876543210", "+959250123456"]
    ),
    st.sampled_from(["", " ", "-", ".", "  "]),
    st.text(alphabet=" \t\n", max_size=3),
)
def test_separators_and_padding_are_tolerated(e164: str, sep: str, pad: str) -> None:
    # "+49" then groups of digits joined with the separator.
    digits = e164[1:]
    spelled = "+" + sep.join(digits[i : i + 3] for i in range(0, len(digits), 3))
    expected = normalise(e164)
    assert normalise(pad + spelled + pad) == expected


def test_answers_are_cached_wrong_ones_too_and_still_raise() -> None:
    from simgate.domain import phone

    phone._check.cache_clear()
    first = normalise("+49 151 12345678")
    assert normalise(" +49 151 12345678 ") is first  # the same text once stripped
    assert normalise("015112345678", "DE") == first
    for _ in range(2):
        with pytest.raises(InvalidNumber, match="is too short") as excinfo:
            normalise("+49 1")
        assert excinfo.value.__cause__ is None
    info = phone._check.cache_info()
    assert info.hits == 2
    assert info.maxsize == phone.CACHE_SIZE
