"""The OTP rules without I/O: codes, keyed hashes bound to their verification, constant-time
matching over every code sent, templates and their placeholders, locales, verdicts."""

from __future__ import annotations

import collections

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simgate.domain import otp

KEY = b"k" * 32


@pytest.mark.parametrize("length", [4, 6, 10])
def test_codes_are_digits_of_the_length_asked(length: int) -> None:
    codes = {otp.new_code(length) for _ in range(200)}
    assert all(len(c) == length and c.isdigit() for c in codes)
    assert len(codes) > 150, "drawn at random"


def test_codes_keep_leading_zeros_and_spread_over_every_digit() -> None:
    codes = [otp.new_code(4) for _ in range(5000)]
    assert any(c.startswith("0") for c in codes)
    first = collections.Counter(c[0] for c in codes)
    assert set(first) == set("0123456789")
    assert min(first.values()) > 300, first  # about 500 each


@pytest.mark.parametrize("length", [0, 3, 11])
def test_other_lengths_are_refused(length: int) -> None:
    with pytest.raises(ValueError, match="4-10"):
        otp.new_code(length)


def test_a_hash_is_bound_to_its_key_and_verification() -> None:
    h = otp.code_hash(KEY, "otp_A", "123456")
    assert h != otp.code_hash(KEY, "otp_B", "123456")
    assert h != otp.code_hash(b"x" * 32, "otp_A", "123456")
    assert "123456" not in h
    assert otp.matches(KEY, "otp_A", "123456", [h])
    assert not otp.matches(KEY, "otp_B", "123456", [h])
    assert not otp.matches(KEY, "otp_A", "123457", [h])


def test_any_code_sent_for_the_verification_matches() -> None:
    hashes = [otp.code_hash(KEY, "otp_A", c) for c in ("111111", "222222", "333333")]
    assert all(otp.matches(KEY, "otp_A", c, hashes) for c in ("111111", "222222", "333333"))
    assert not otp.matches(KEY, "otp_A", "444444", hashes)
    assert not otp.matches(KEY, "otp_A", "111111", [])


def test_the_key_id_is_stable_and_says_nothing_of_the_key() -> None:
    assert otp.key_id(KEY) == otp.key_id(KEY)
    assert otp.key_id(KEY) != otp.key_id(b"y" * 32)
    assert len(otp.key_id(KEY)) == 16
    assert KEY.hex()[:16] != otp.key_id(KEY)


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("", "is required"),
        ("12a4", "digits (0-9)"),
        (" 1234", "digits (0-9)"),
        ("１２３４", "digits (0-9)"),  # noqa: RUF001 (full-width digits are not 0-9)
        ("123", "4-10 digits long"),
        ("12345678901", "4-10 digits long"),
        ("1" * 100, "digits (0-9)"),
    ],
)
def test_code_formats(code: str, problem: str) -> None:
    message = otp.check_code_format(code)
    assert message is not None
    assert problem in message
    assert message.startswith("code: ")
    if len(code) >= 4:
        assert code.strip() not in message, "a message never repeats the code given"


def test_well_formed_codes_pass() -> None:
    assert otp.check_code_format("0000") is None
    assert otp.check_code_format("1234567890") is None
    assert otp.check_code_format("12x", field="otp").startswith("otp: ")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("no placeholder", "must contain {code}"),
        ("{app} only", "must contain {code}"),
        ("{code} {user}", "{user} is not a placeholder"),
        ("{code} {}", "{} is not a placeholder"),
        ("{code} {0}", "{0} is not a placeholder"),
        ("{code:>8}", "{code} is not a placeholder"),
        ("{code!r}", "{code} is not a placeholder"),
        ("{code} {", "unmatched brace"),
        ("{code} }", "unmatched brace"),
        ("{code}\x00", "NUL"),
        ("{code}" + "x" * 480, "at most 480"),
    ],
)
def test_bad_templates(template: str, words: str) -> None:
    with pytest.raises(otp.TemplateError) as caught:
        otp.check_template(template)
    assert words in str(caught.value)


def test_templates_render_and_mask() -> None:
    template = otp.check_template("{{App}}: {code} for {app}, {minutes} min; again {code}")
    assert otp.render(template, code="0123", app="Shop", minutes=5) == (
        "{App}: 0123 for Shop, 5 min; again 0123"
    )
    assert otp.masked(template, length=4, app="Shop", minutes=5) == (
        "{App}: •••• for Shop, 5 min; again ••••"
    )


@given(
    st.text(alphabet=st.characters(blacklist_characters="{}\x00"), max_size=100),
    st.integers(4, 10),
)
def test_a_rendered_text_holds_the_code_and_its_mask_does_not(text: str, length: int) -> None:
    template = otp.check_template(text + "{code}")
    code = otp.new_code(length)
    assert code in otp.render(template, code=code, app="a", minutes=1)
    masked = otp.masked(template, length=length, app="a", minutes=1)
    assert masked.endswith(otp.MASK * length)


def test_every_built_in_text_is_a_valid_template_that_names_the_app() -> None:
    for language, template in otp.TEMPLATES.items():
        otp.check_template(template)
        text = otp.render(template, code="123456", app="Shop", minutes=10)
        for part in ("123456", "Shop", "10"):
            assert part in text, language


@pytest.mark.parametrize(
    ("locale", "language"),
    [("en", "en"), ("de-AT", "de"), ("pt_BR", "pt"), ("RU", "ru"), ("zh-Hant-TW", None)],
)
def test_locales(locale: str, language: str | None) -> None:
    if language is None:
        with pytest.raises(otp.TemplateError, match="no built-in text"):
            otp.language_of(locale)
    else:
        assert otp.language_of(locale) == language


@pytest.mark.parametrize("locale", ["", "x", "german", "de--AT", "12"])
def test_what_is_not_a_locale(locale: str) -> None:
    with pytest.raises(otp.TemplateError):
        otp.language_of(locale)


def test_an_approved_verification_is_not_approved_again() -> None:
    verdict = otp.ended_verdict("approved")
    assert verdict.status == "not_found"
    assert not verdict.valid
    assert otp.ended_verdict("max_attempts").attempts_left == 0
    assert otp.ended_verdict("expired").status == "expired"
    assert otp.ended_verdict("canceled").status == "canceled"
    assert otp.ended_verdict("anything").status == "not_found"
