"""Properties of the PDU codec: round trips for any text and number, and nothing but
``PduError`` (or a result) for any input, however broken."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from simgate.domain.encoding import GSM7_BASIC, GSM7_EXTENSION, segment_info
from simgate.protocols.pdu import (
    Address,
    Deliver,
    PduError,
    Reassembler,
    StatusReport,
    Submit,
    decode,
    encode_deliver,
    encode_status_report,
    encode_submit,
    join_text,
)
from simgate.protocols.pdu.fields import encode_relative_validity, relative_validity
from simgate.protocols.pdu.primitives import text_to_septets
from tests.unit.test_pdu import (
    DELIVER_VECTORS,
    LOREM_PDUS,
    STATUS_REPORT_VECTORS,
    SUBMIT_DECODE_VECTORS,
)

GSM_CHARS = sorted((set(GSM7_BASIC) - {"\x1b"}) | set(GSM7_EXTENSION))
# Mostly GSM-7, with characters that force UCS-2 or take two units there.
MIXED_CHARS = [*GSM_CHARS, "😀", "\U0001f1eb", "\U0001f1f7", "中", "é", "ş", "𝄞", "\u200b", "€"]

texts = st.one_of(
    st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=700),
    st.text(alphabet=st.sampled_from(MIXED_CHARS), max_size=400),
    st.text(max_size=300),
)
alphanumeric = st.text(alphabet=st.sampled_from(GSM_CHARS), min_size=1, max_size=11).filter(
    lambda s: (
        not s.startswith("+")
        and not all(ch in "0123456789*#" for ch in s)
        and len(text_to_septets(s)) <= 11
    )
)
numbers = st.one_of(
    st.from_regex(r"\+[0-9]{1,20}", fullmatch=True),
    st.from_regex(r"[0-9*#]{1,20}", fullmatch=True),
    alphanumeric,
)
zones = st.integers(-79, 79).map(lambda q: timezone(timedelta(minutes=15 * q)))
timestamps = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2089, 12, 31), timezones=zones
).map(lambda d: d.replace(microsecond=0))

VECTORS: list[tuple[str, bool]] = [
    (p.values[0], True) for p in (*DELIVER_VECTORS, *SUBMIT_DECODE_VECTORS)
] + [(p.values[0], p.values[1]) for p in STATUS_REPORT_VECTORS]
VECTORS += [(pdu, True) for pdu in LOREM_PDUS]


def decode_or_pdu_error(pdu: str, has_smsc: bool = True) -> None:
    """Decoding either works or raises PduError; any other exception fails the test."""
    with contextlib.suppress(PduError):
        decode(pdu, has_smsc=has_smsc)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    to=numbers,
    text=texts,
    reference=st.integers(0, 255),
    message_reference=st.integers(0, 255),
    report=st.booleans(),
    validity=st.none() | st.timedeltas(timedelta(seconds=1), timedelta(weeks=63)),
    smsc=st.none() | st.from_regex(r"\+[0-9]{1,20}", fullmatch=True),
)
@example(
    to="+46708251358",
    text="😀" * 35,  # 70 units: exactly one part
    reference=0,
    message_reference=0,
    report=True,
    validity=None,
    smsc=None,
)
def test_submit_round_trip(
    to: str,
    text: str,
    reference: int,
    message_reference: int,
    report: bool,
    validity: timedelta | None,
    smsc: str | None,
) -> None:
    pdus = encode_submit(
        to,
        text,
        smsc=smsc,
        request_status_report=report,
        validity=validity,
        reference=reference,
        message_reference=message_reference,
    )
    assert len(pdus) == max(1, segment_info(text).segments)
    decoded = [decode(p.hex) for p in pdus]
    parts = [m for m in decoded if isinstance(m, Submit)]
    assert len(parts) == len(decoded)
    assert join_text(parts) == text
    for seq, (pdu, part) in enumerate(zip(pdus, parts, strict=True), 1):
        assert part.destination == Address.parse(to)
        assert part.smsc == (None if smsc is None else Address.parse(smsc))
        assert part.status_report_request is report
        assert part.message_reference == (message_reference + seq - 1) % 256
        assert pdu.tpdu_length == len(pdu.tpdu_hex) // 2
        if len(pdus) > 1:
            assert part.concat is not None
            assert (part.concat.ref, part.concat.total, part.concat.seq) == (
                reference,
                len(pdus),
                seq,
            )
        else:
            assert part.concat is None
        if validity is None:
            assert part.validity is None
        else:
            # Rounded up to the next step the format has: never shorter than asked, and
            # the step below would have been.
            assert isinstance(part.validity, timedelta)
            value = encode_relative_validity(validity)
            assert part.validity == relative_validity(value) >= validity
            assert value == 0 or relative_validity(value - 1) < validity


@settings(max_examples=100)
@given(text=texts, reference=st.integers(0, 0xFFFF))
def test_16bit_reference_round_trip(text: str, reference: int) -> None:
    pdus = encode_submit("+15551234567", text, reference=reference, ref16=True)
    assert len(pdus) >= max(1, segment_info(text).segments)
    parts = [decode(p.hex) for p in pdus]
    assert join_text(p for p in parts if isinstance(p, Submit)) == text
    if len(pdus) > 1:
        assert all(p.concat is not None and p.concat.ref16 for p in parts)


@settings(max_examples=200)
@given(
    sender=numbers,
    text=texts,
    when=timestamps,
    reference=st.integers(0, 255),
    data=st.data(),
)
def test_deliver_parts_reassemble_in_any_order(
    sender: str, text: str, when: datetime, reference: int, data: st.DataObject
) -> None:
    parts = [
        decode(p.hex) for p in encode_deliver(sender, text, timestamp=when, reference=reference)
    ]
    delivers = [p for p in parts if isinstance(p, Deliver)]
    assert len(delivers) == len(parts)
    arrivals = data.draw(st.permutations(delivers))
    arrivals += data.draw(st.lists(st.sampled_from(delivers), max_size=3))  # late duplicates
    reassembler = Reassembler()
    messages = [m for p in arrivals if (m := reassembler.add(p, when)) is not None]
    # Duplicates after completion start a new group; only the first message is whole.
    message = messages[0]
    assert message.complete
    assert message.text == text
    assert message.originator == Address.parse(sender)
    assert message.timestamp == when


@settings(max_examples=100)
@given(recipient=numbers, when=timestamps, status=st.integers(0, 255), mr=st.integers(0, 255))
def test_status_report_round_trip(recipient: str, when: datetime, status: int, mr: int) -> None:
    pdu = encode_status_report(
        message_reference=mr,
        recipient=recipient,
        timestamp=when,
        discharge_time=when,
        status=status,
    )
    report = decode(pdu.hex)
    assert isinstance(report, StatusReport)
    assert (report.message_reference, report.status, report.timestamp) == (mr, status, when)
    assert report.recipient == Address.parse(recipient)
    assert sum((report.delivered, report.pending, report.failed)) == 1


# --- nothing but PduError ---------------------------------------------------------------


@settings(max_examples=500)
@given(data=st.binary(max_size=200), has_smsc=st.booleans())
def test_arbitrary_octets_only_raise_pdu_error(data: bytes, has_smsc: bool) -> None:
    decode_or_pdu_error(data.hex(), has_smsc)


@settings(max_examples=200)
@given(text=st.text(max_size=60))
def test_arbitrary_strings_only_raise_pdu_error(text: str) -> None:
    decode_or_pdu_error(text)


@pytest.mark.parametrize(("pdu", "has_smsc"), VECTORS)
def test_every_truncation_of_a_vector_only_raises_pdu_error(pdu: str, has_smsc: bool) -> None:
    for end in range(len(pdu)):
        decode_or_pdu_error(pdu[:end], has_smsc)


@settings(max_examples=500)
@given(
    vector=st.sampled_from(VECTORS),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_corrupted_vectors_only_raise_pdu_error(
    vector: tuple[str, bool], edits: list[tuple[int, int]]
) -> None:
    pdu, has_smsc = vector
    octets = bytearray.fromhex(pdu)
    for position, value in edits:
        octets[position % len(octets)] = value
    decode_or_pdu_error(octets.hex(), has_smsc)


@settings(max_examples=100)
@given(text=texts, cut=st.integers(0, 400))
def test_truncated_encoded_parts_only_raise_pdu_error(text: str, cut: int) -> None:
    for pdu in encode_submit("+15551234567", text):
        decode_or_pdu_error(pdu.hex[: cut % (len(pdu.hex) + 1)])
