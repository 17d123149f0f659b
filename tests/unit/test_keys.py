from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simgate.domain.keys import (
    DEFAULT_SCOPES,
    InvalidScopes,
    Scope,
    digests_equal,
    format_scopes,
    generate_key,
    hash_key,
    key_prefix,
    parse_scopes,
)


def test_generated_key_shape_prefix_and_hash() -> None:
    new = generate_key()
    assert new.secret.startswith(new.prefix + "_")
    assert len(new.prefix) == 13
    assert key_prefix(new.secret) == new.prefix
    assert new.digest == hash_key(new.secret)
    assert new.secret not in new.digest


def test_keys_are_unique() -> None:
    assert len({generate_key().secret for _ in range(200)}) == 200


@given(st.text(max_size=80))
def test_random_text_is_never_mistaken_for_a_key(text: str) -> None:
    prefix = key_prefix(text)
    if prefix is not None:
        assert text.startswith(prefix)


@pytest.mark.parametrize(
    "text", ["", "sg_", "sg_ABCDEFGHIJ_" + "a" * 43, "gw_live_" + "0" * 64, "sg_abcdefghij_short"]
)
def test_malformed_keys_have_no_prefix(text: str) -> None:
    assert key_prefix(text) is None


def test_scopes_parse_and_format() -> None:
    assert parse_scopes("send, inbox") == {Scope.SEND, Scope.INBOX}
    assert parse_scopes("all") == set(Scope)
    assert format_scopes(DEFAULT_SCOPES) == "inbox,otp,send"


@pytest.mark.parametrize(("text", "words"), [("", "no scopes"), ("send,fly", "'fly'")])
def test_bad_scopes_are_named(text: str, words: str) -> None:
    with pytest.raises(InvalidScopes, match=words):
        parse_scopes(text)


def test_digest_comparison() -> None:
    a = hash_key("x")
    assert digests_equal(a, hash_key("x"))
    assert not digests_equal(a, hash_key("y"))
