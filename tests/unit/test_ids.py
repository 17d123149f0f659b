"""Time-ordered message ids: ``msg_`` + 10 characters of milliseconds + 16 random ones, in
Crockford base32, so that sorting ids sorts by creation time."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simgate.domain.ids import MESSAGE_ID_RE, message_id, new_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
MAX_MS = 2**48 - 1
millis = st.integers(0, MAX_MS)


def decode(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 32 + CROCKFORD.index(ch)
    return value


def test_alphabet_is_sorted_and_unambiguous() -> None:
    assert list(CROCKFORD) == sorted(CROCKFORD)
    assert not set("ILOU") & set(CROCKFORD)


def test_message_id_shape() -> None:
    mid = message_id()
    assert MESSAGE_ID_RE.fullmatch(mid)
    assert mid.startswith("msg_")
    assert len(mid) == 4 + 26


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "msg_",
        "msg_" + "0" * 25,
        "msg_" + "0" * 27,
        "msg_" + "I" * 26,
        "msg_" + "L" * 26,
        "msg_" + "O" * 26,
        "msg_" + "U" * 26,
        "msg_" + "a" * 26,
        "gw_" + "0" * 26,
        "MSG_" + "0" * 26,
        " msg_" + "0" * 26,
        "msg_" + "0" * 26 + " ",
    ],
)
def test_message_id_re_rejects(bad: str) -> None:
    assert not MESSAGE_ID_RE.match(bad)


def test_message_id_re_rejects_a_trailing_newline() -> None:
    assert not MESSAGE_ID_RE.match("msg_" + "0" * 26 + "\n")


@given(millis)
def test_format_for_any_time(ms: int) -> None:
    mid = new_id("msg", now_ms=ms)
    assert MESSAGE_ID_RE.fullmatch(mid)
    assert all(ch in CROCKFORD for ch in mid[4:])


@given(millis)
def test_the_first_ten_characters_are_the_milliseconds(ms: int) -> None:
    assert decode(new_id("msg", now_ms=ms)[4:14]) == ms


def test_time_part_bounds() -> None:
    assert new_id("msg", now_ms=0)[4:14] == "0000000000"
    assert new_id("msg", now_ms=1)[4:14] == "0000000001"
    assert new_id("msg", now_ms=32)[4:14] == "0000000010"
    assert new_id("msg", now_ms=MAX_MS)[4:14] == "7ZZZZZZZZZ"
    # Published ULID examples (same 48-bit time, same Crockford base32).
    assert new_id("msg", now_ms=1469918176385)[4:14] == "01ARYZ6S41"
    assert new_id("msg", now_ms=1698075890563)[4:14] == "01HDEKBMW3"


def test_other_prefixes() -> None:
    gid = new_id("gw", now_ms=5)
    assert gid.startswith("gw_000000000")
    assert len(gid) == 3 + 26
    assert not MESSAGE_ID_RE.match(gid)


@given(millis, millis)
def test_later_ids_sort_after_earlier_ones(a: int, b: int) -> None:
    ia, ib = new_id("msg", now_ms=a), new_id("msg", now_ms=b)
    if a < b:
        assert ia < ib
    elif a > b:
        assert ia > ib
    else:
        assert ia[:14] == ib[:14]


@given(st.lists(millis, min_size=2, max_size=50, unique=True))
def test_sorting_ids_sorts_by_time(times: list[int]) -> None:
    ids = [new_id("msg", now_ms=ms) for ms in times]
    assert sorted(ids) == [new_id_time[1] for new_id_time in sorted(zip(times, ids, strict=True))]


def test_increasing_times_give_increasing_ids() -> None:
    start = 1_700_000_000_000
    ids = [new_id("msg", now_ms=start + i) for i in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_in_the_same_millisecond_are_unique() -> None:
    ids = {new_id("msg", now_ms=1_700_000_000_000) for _ in range(10_000)}
    assert len(ids) == 10_000
    assert len({i[14:] for i in ids}) == 10_000


def test_message_ids_are_unique() -> None:
    ids = [message_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(MESSAGE_ID_RE.fullmatch(i) for i in ids)


def test_message_id_uses_the_current_time() -> None:
    before = int(time.time() * 1000)
    mid = message_id()
    after = int(time.time() * 1000)
    assert before <= decode(mid[4:14]) <= after


def test_random_part_uses_all_80_bits() -> None:
    # 16 characters of 5 bits; the first random character takes any value over many ids.
    firsts = {new_id("msg", now_ms=0)[14] for _ in range(2000)}
    assert firsts == set(CROCKFORD)


@given(st.integers(min_value=0, max_value=(1 << 140)), st.integers(min_value=1, max_value=27))
def test_encoding_two_characters_a_step_matches_one_at_a_time(value: int, length: int) -> None:
    from simgate.domain.ids import _ALPHABET, _encode

    digits = []
    rest = value
    for _ in range(length):
        rest, rem = divmod(rest, 32)
        digits.append(_ALPHABET[rem])
    assert _encode(value, length) == "".join(reversed(digits))
