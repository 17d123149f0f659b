"""Reassembly of concatenated messages: any order, duplicates, timeouts, split units."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from simgate.protocols.pdu import (
    Address,
    Alphabet,
    Concat,
    DataCoding,
    Deliver,
    Message,
    Reassembler,
    Submit,
    TypeOfNumber,
    decode,
    encode_deliver,
    encode_submit,
    join_text,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SENDER = Address("+15551230000", TypeOfNumber.INTERNATIONAL)

# ModemManager's two-part message (8-bit reference 0x4C, time zone -04:00).
MM_PART_1 = (
    "07912160130320F5440B916171056429F5000021405291650569A00500034C0201A9E8F41C949E83C2207B"
    "599E07B1DFEE33885E9ED341E4F23C7D7697C920FA1B54C697E5E3F4BC0C6AD7D9F434081E96D341E3303C"
    "2C4EB3D3F4BC0B94A483E6E8779D4D06CDD1EF3BA80E0785E7A0B7BB0C6A97E7F3F0B9CC02B9DF7450780E"
    "A2DFDF2C50780EA2A3CBA0BA9B5C96B3F369F71954768FDFE4B4FB0C9297E1F2F2BCECA6CF41"
)
MM_PART_2 = (
    "07912160130320F6440B916171056429F5000021405291651569320500034C0202E9E8301D44479741F0B0"
    "9C3E0785E56590BCCC0ED3CB6410FD0D7ABBCBA0B0FB4D4797E52E10"
)
MM_TEXT = (
    "This is a very long test designed to exercise multi part capability. It should "
    "show up as one message, not as two, as the underlying encoding represents "
    "that the parts are related to one another. "
)


def deliver(pdu: str) -> Deliver:
    message = decode(pdu)
    assert isinstance(message, Deliver)
    return message


def parts(text: str, *, sender: Address = SENDER, reference: int = 7) -> list[Deliver]:
    return [deliver(p.hex) for p in encode_deliver(sender, text, timestamp=T0, reference=reference)]


def raw_part(payload: bytes, seq: int, total: int, alphabet: Alphabet = Alphabet.GSM7) -> Deliver:
    dcs = DataCoding(0x08 if alphabet is Alphabet.UCS2 else 0x00, alphabet)
    return Deliver(
        originator=SENDER,
        timestamp=T0,
        text="",
        dcs=dcs,
        payload=payload,
        concat=Concat(1, total, seq),
    )


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_published_two_part_message_in_either_order(order: tuple[int, int]) -> None:
    pieces = [deliver(MM_PART_1), deliver(MM_PART_2)]
    reassembler = Reassembler()
    first, second = (pieces[i] for i in order)
    assert reassembler.add(first, T0) is None
    assert len(reassembler) == 1
    message = reassembler.add(second, T0)
    assert message is not None
    assert message.text == MM_TEXT
    assert message.complete
    assert (message.reference, message.total, message.received) == (0x4C, 2, (1, 2))
    assert message.originator.number == "+16175046925"
    assert message.timestamp == pieces[0].timestamp  # the first part's time stamp
    assert len(reassembler) == 0


def test_single_messages_come_straight_through() -> None:
    [part] = parts("hello")
    message = Reassembler().add(part, T0)
    assert message == Message(originator=SENDER, text="hello", timestamp=T0)
    assert message.complete


def test_duplicates_are_ignored() -> None:
    one, two, three = parts("x" * 400)
    reassembler = Reassembler()
    assert reassembler.add(two, T0) is None
    assert reassembler.add(two, T0) is None
    assert reassembler.add(one, T0) is None
    message = reassembler.add(three, T0)
    assert message is not None
    assert message.text == "x" * 400


def test_same_reference_from_two_senders_is_two_messages() -> None:
    other = Address("+15559990000", TypeOfNumber.INTERNATIONAL)
    ours, theirs = parts("a" * 200), parts("b" * 200, sender=other)
    reassembler = Reassembler()
    for part in (ours[0], theirs[1], theirs[0]):
        result = reassembler.add(part, T0)
    assert result is not None
    assert result.text == "b" * 200
    assert len(reassembler) == 1


def test_expire_hands_over_what_arrived_with_markers() -> None:
    text = "".join(str(i % 10) for i in range(700))  # five parts of 153 septets
    pieces = parts(text)
    assert len(pieces) == 5
    first, third = pieces[0], pieces[2]
    reassembler = Reassembler(timeout=timedelta(minutes=10))
    reassembler.add(third, T0)
    reassembler.add(first, T0 + timedelta(minutes=1))
    assert reassembler.expire(T0 + timedelta(minutes=9, seconds=59)) == []
    [message] = reassembler.expire(T0 + timedelta(minutes=10))
    assert not message.complete
    assert message.missing == (2, 4, 5)
    assert message.received == (1, 3)
    assert message.text == (
        first.text + "[part 2 of 5 missing]" + third.text + "[parts 4-5 of 5 missing]"
    )
    assert len(reassembler) == 0
    assert reassembler.expire(T0 + timedelta(days=1)) == []


def test_expire_returns_oldest_first_and_keeps_younger_ones() -> None:
    a = parts("a" * 200, reference=1)
    b = parts("b" * 200, reference=2)
    c = parts("c" * 200, reference=3)
    reassembler = Reassembler(timeout=timedelta(minutes=5))
    reassembler.add(b[0], T0 + timedelta(minutes=1))
    reassembler.add(a[0], T0)
    reassembler.add(c[0], T0 + timedelta(minutes=4))
    expired = reassembler.expire(T0 + timedelta(minutes=6))
    assert [m.reference for m in expired] == [1, 2]
    assert len(reassembler) == 1


def test_join_text_marks_leading_gaps() -> None:
    one, two, three, four = (raw_part(b"x", seq, 4) for seq in (1, 2, 3, 4))
    assert join_text([four, three], 4) == "[parts 1-2 of 4 missing]xx"
    assert join_text([one, three], 4) == "x[part 2 of 4 missing]x[part 4 of 4 missing]"
    assert join_text([two, one]) == "xx"


def test_escape_split_across_parts_is_rejoined() -> None:
    # Some phones cut between the escape and its code; joining septets repairs it.
    first = raw_part(b"ab\x1b", 1, 2)
    second = raw_part(b"\x65cd", 2, 2)
    reassembler = Reassembler()
    reassembler.add(second, T0)
    message = reassembler.add(first, T0)
    assert message is not None
    assert message.text == "ab€cd"


def test_surrogate_pair_split_across_parts_is_rejoined() -> None:
    units = "a😀b".encode("utf-16-be")  # a, D83D, DE00, b
    first = raw_part(units[:4], 1, 2, Alphabet.UCS2)
    second = raw_part(units[4:], 2, 2, Alphabet.UCS2)
    assert join_text([first, second]) == "a😀b"
    assert join_text([first]) == "a\ufffd"  # alone, the half pair is replaced, not raised


def test_parts_in_different_alphabets_are_decoded_separately() -> None:
    gsm = raw_part(b"\x48\x69", 1, 2)
    ucs2 = raw_part("✓".encode("utf-16-be"), 2, 2, Alphabet.UCS2)
    assert join_text([ucs2, gsm]) == "Hi✓"


def test_submits_join_like_delivers() -> None:
    pdus = encode_submit("+15551234567", "é" * 300)
    decoded = [decode(p.hex) for p in pdus]
    assert all(isinstance(m, Submit) for m in decoded)
    assert join_text(m for m in decoded if isinstance(m, Submit)) == "é" * 300
