from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simgate.domain.modem_errors import lookup
from simgate.domain.retry import ErrorKind


@pytest.mark.parametrize(
    ("kind", "code", "text", "meaning", "words", "retry"),
    [
        # seed 000's three examples
        ("CME", None, "SIM not inserted", "SIM not inserted", "Reseat", ErrorKind.GATEWAY),
        ("CME", 30, "", "no network service", "2 A", ErrorKind.GATEWAY),
        ("CMS", 500, "", "unknown error", "UART", ErrorKind.TRANSIENT),
        ("CMS", 330, "", "SMS centre address unknown", "--smsc", ErrorKind.GATEWAY),
        ("CMS", 1, "", "unassigned (unallocated) number", "number", ErrorKind.PERMANENT),
        ("CMS", 42, "", "congestion", "retries", ErrorKind.TRANSIENT),
        ("CME", 16, "", "incorrect password", "stopped trying", ErrorKind.GATEWAY),
        ("CME", 12, "", "SIM PUK required", "PUK", ErrorKind.GATEWAY),
        ("cms", None, "SIM NOT INSERTED", "SIM not inserted", "Reseat", ErrorKind.GATEWAY),
    ],
)
def test_known_errors(
    kind: str, code: int | None, text: str, meaning: str, words: str, retry: ErrorKind
) -> None:
    err = lookup(kind, code, text)
    assert err.meaning == meaning
    assert words in err.hint
    assert err.retry is retry
    assert err.error_code.startswith(kind.lower() + "_")


def test_vendor_and_unknown_codes_have_a_hint() -> None:
    assert "manufacturer" in lookup("CMS", 532).hint
    assert lookup("CMS", 64).retry is ErrorKind.TRANSIENT
    weird = lookup("CME", None, "Something new")
    assert weird.meaning == "Something new"
    assert weird.hint


@given(
    st.sampled_from(["CME", "CMS"]),
    st.one_of(st.none(), st.integers(-5, 70000)),
    st.text(max_size=40),
)
def test_lookup_never_fails(kind: str, code: int | None, text: str) -> None:
    err = lookup(kind, code, text)
    assert err.meaning
    assert err.hint
