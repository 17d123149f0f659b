"""The connect URI a phone scans: server URL and key in, the same out; bad ones named."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simgate.domain.connect import BadConnectUri, connect_uri, parse_connect_uri


def test_round_trip() -> None:
    uri = connect_uri("https://sms.example.com:8443/base/", "gw_live_abc&def")
    assert uri.startswith("simgate://connect?server=https%3A%2F%2Fsms.example.com")
    assert parse_connect_uri(uri) == ("https://sms.example.com:8443/base", "gw_live_abc&def")


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1))
def test_any_key_survives(key: str) -> None:
    assert parse_connect_uri(connect_uri("http://10.0.0.2:8000", key))[1] == key


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("https://example.com", "expected a URI"),
        ("simgate://other?server=http%3A%2F%2Fx&key=k", "expected a URI"),
        ("simgate://connect?server=ftp%3A%2F%2Fx&key=k", "not an http"),
        ("simgate://connect?key=k", "not an http"),
        ("simgate://connect?server=http%3A%2F%2Fx", "no key"),
    ],
)
def test_bad_uris_say_why(text: str, words: str) -> None:
    with pytest.raises(BadConnectUri, match=words):
        parse_connect_uri(text)
