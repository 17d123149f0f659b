"""PDU fields one by one (septets, addresses, time stamps, validity, DCS, UDH), malformed
PDUs and the errors they raise, and what the encoder refuses."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from simgate.domain.encoding import segment_info
from simgate.protocols.pdu import (
    Address,
    Alphabet,
    Concat,
    DataCoding,
    Deliver,
    InformationElement,
    PduError,
    Submit,
    TypeOfNumber,
    decode,
    encode_deliver,
    encode_submit,
)
from simgate.protocols.pdu.fields import (
    encode_address,
    encode_relative_validity,
    encode_smsc,
    encode_timestamp,
    read_address,
    read_smsc,
    read_timestamp,
    relative_validity,
)
from simgate.protocols.pdu.primitives import (
    Reader,
    pack_septets,
    septets_to_text,
    text_to_septets,
    unpack_septets,
)
from simgate.protocols.pdu.userdata import parse_header


def tz(hours: float) -> timezone:
    return timezone(timedelta(hours=hours))


# Packed septets from python-gsmmodem's test suite.
@pytest.mark.parametrize(
    ("text", "packed"),
    [
        ("123", "31D90C"),
        ("123456789", "31D98C56B3DD7039"),
        ("Hello World!", "C8329BFD065DDF72363904"),
        ("[{abc}]~", "1BDE0615168F37A98D6FD303"),
        ("{åΦΓΛΩΠΨΣΘ€}", "1BD44332A1542C174C6653DEA400"),
    ],
)
def test_septet_packing(text: str, packed: str) -> None:
    septets = text_to_septets(text)
    assert pack_septets(septets).hex().upper() == packed
    assert septets_to_text(unpack_septets(bytes.fromhex(packed), len(septets))) == text


def test_undefined_escapes_fall_back_as_23038_says() -> None:
    # ESC + code missing from the extension table shows the basic character; ESC ESC and
    # a dangling ESC show a space.
    assert septets_to_text(bytes([0x1B, 0x41, 0x1B, 0x1B, 0x42, 0x1B])) == "A B "


def test_fill_bits_shift_the_text_after_the_header() -> None:
    septets = text_to_septets("hi")
    assert pack_septets(septets, 1).hex().upper() == "D069"  # one zero fill bit first
    for fill in range(7):
        packed = pack_septets(septets, fill)
        assert unpack_septets(packed, 2, fill) == septets


# --- addresses --------------------------------------------------------------------------

ADDRESS_VECTORS = [
    ("+9876543210", "0A918967452301"),
    ("+987654321", "099189674523F1"),
    ("+27829135934", "0B917228195339F4"),
    ("+19037029920", "0B919130079229F0"),
    ("9037029920", "0A810973209902"),
    ("*100#", "05811A00FB"),  # '*' and '#' are semi-octets A and B
    ("abc", "06D061F118"),
    ("FRANCOIS", "0ED04669D0397C26A7"),
    ("a[]{}€", "14D0E10D6FE3DBA036A94D19"),  # 11 septets, the longest that fits
]


@pytest.mark.parametrize(("number", "encoded"), ADDRESS_VECTORS)
def test_address_vectors(number: str, encoded: str) -> None:
    address = Address.parse(number)
    assert encode_address(address).hex().upper() == encoded
    assert read_address(Reader(bytes.fromhex(encoded)), "address") == address


def test_national_address_keeps_its_type() -> None:
    address = Address("0129998765", TypeOfNumber.NATIONAL)
    assert encode_address(address).hex().upper() == "0AA11092997856"
    assert read_address(Reader(bytes.fromhex("0AA11092997856")), "address") == address


@pytest.mark.parametrize(
    ("number", "encoded"),
    [("+19037029920", "07919130079229F0"), ("9037029920", "06810973209902"), (None, "00")],
)
def test_smsc_vectors(number: str | None, encoded: str) -> None:
    address = None if number is None else Address.parse(number)
    assert encode_smsc(address).hex().upper() == encoded
    assert read_smsc(Reader(bytes.fromhex(encoded))) == address


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty address"),
        ("+", "must be '+' and digits"),
        ("+46 70 825", "must be '+' and digits"),
        ("+" + "1" * 21, "more than 20 digits"),
        ("1" * 21, "more than 20 digits"),
    ],
)
def test_bad_numbers_are_refused(value: str, message: str) -> None:
    with pytest.raises(PduError, match=re.escape(message)):
        Address.parse(value)


def test_alphanumeric_limits() -> None:
    with pytest.raises(PduError, match="12 septets; at most 11"):
        encode_address(Address.parse("TwelveLetter"))
    with pytest.raises(PduError, match="not in the GSM 7-bit"):
        encode_address(Address.parse("Café✓"))


# --- time stamps and validity -----------------------------------------------------------


@pytest.mark.parametrize(
    ("octets", "when"),
    [
        ("51117200000000", datetime(2015, 11, 27, tzinfo=tz(0))),
        ("51117200000080", datetime(2015, 11, 27, tzinfo=tz(2))),
        ("70402132522423", datetime(2007, 4, 12, 23, 25, 42, tzinfo=tz(8))),
        ("7040213252242B", datetime(2007, 4, 12, 23, 25, 42, tzinfo=tz(-8))),
        ("99309251619580", datetime(1999, 3, 29, 15, 16, 59, tzinfo=tz(2))),
    ],
)
def test_timestamps(octets: str, when: datetime) -> None:
    assert read_timestamp(Reader(bytes.fromhex(octets)), "time") == when
    assert encode_timestamp(when).hex().upper() == octets


def test_timestamp_encoding_needs_a_zone() -> None:
    with pytest.raises(PduError, match="aware datetime"):
        encode_timestamp(datetime(2020, 1, 1))
    with pytest.raises(PduError, match="quarter hours"):
        encode_timestamp(datetime(2020, 1, 1, tzinfo=timezone(timedelta(minutes=10))))


@pytest.mark.parametrize(
    ("period", "value"),
    [
        (timedelta(minutes=5), 0),
        (timedelta(minutes=30), 5),
        (timedelta(hours=12), 143),
        (timedelta(hours=16), 151),
        (timedelta(days=1), 167),
        (timedelta(days=3), 169),
        (timedelta(days=30), 196),
        (timedelta(weeks=5), 197),
        (timedelta(weeks=52), 244),
        (timedelta(weeks=63), 255),
    ],
)
def test_relative_validity(period: timedelta, value: int) -> None:
    assert encode_relative_validity(period) == value
    assert relative_validity(value) == period


def test_relative_validity_rounds_up_and_refuses_nonsense() -> None:
    assert relative_validity(encode_relative_validity(timedelta(minutes=6))) == timedelta(
        minutes=10
    )
    assert relative_validity(encode_relative_validity(timedelta(days=31))) == timedelta(weeks=5)
    with pytest.raises(PduError, match="longer than the maximum"):
        encode_relative_validity(timedelta(weeks=64))
    with pytest.raises(PduError, match="must be positive"):
        encode_relative_validity(timedelta(0))


@pytest.mark.parametrize(
    ("value", "alphabet", "message_class", "compressed"),
    [
        (0x00, Alphabet.GSM7, None, False),
        (0x04, Alphabet.DATA8, None, False),
        (0x08, Alphabet.UCS2, None, False),
        (0x0C, Alphabet.GSM7, None, False),  # reserved alphabet: read as GSM-7
        (0x10, Alphabet.GSM7, 0, False),  # flash
        (0x18, Alphabet.UCS2, 0, False),
        (0x24, Alphabet.DATA8, None, True),  # compressed: handed on as data
        (0x48, Alphabet.UCS2, None, False),  # automatic deletion group
        (0x80, Alphabet.GSM7, None, False),  # reserved group
        (0xC8, Alphabet.GSM7, None, False),  # message waiting, discard
        (0xE0, Alphabet.UCS2, None, False),  # message waiting, UCS-2
        (0xF1, Alphabet.GSM7, 1, False),
        (0xF6, Alphabet.DATA8, 2, False),
    ],
)
def test_data_coding_scheme(
    value: int, alphabet: Alphabet, message_class: int | None, compressed: bool
) -> None:
    assert DataCoding.parse(value) == DataCoding(value, alphabet, message_class, compressed)


# --- user data header -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "concat", "others"),
    [
        ("0003170301", Concat(23, 3, 1), ()),
        ("080401800402", Concat(384, 4, 2, ref16=True), ()),
        ("04026432", None, (InformationElement(0x04, bytes.fromhex("6432")),)),
        (
            "050404D214660003170302",  # port addressing kept, concatenation found after it
            Concat(23, 3, 2),
            (InformationElement(0x05, bytes.fromhex("04D21466")),),
        ),
        ("0003170300", None, (InformationElement(0x00, bytes.fromhex("170300")),)),  # seq 0
        ("0003170004", None, (InformationElement(0x00, bytes.fromhex("170004")),)),  # total 0
        ("", None, ()),
    ],
)
def test_header_elements(
    header: str, concat: Concat | None, others: tuple[InformationElement, ...]
) -> None:
    assert parse_header(bytes.fromhex(header), 0) == (concat, others)


@pytest.mark.parametrize(
    ("header", "message"),
    [("00", "ends inside an element"), ("000317", "declares 3 octets but only 1 remain")],
)
def test_broken_header_elements(header: str, message: str) -> None:
    with pytest.raises(PduError, match=message):
        parse_header(bytes.fromhex(header), 0)


# --- malformed PDUs ---------------------------------------------------------------------

MALFORMED = [
    pytest.param("", True, "empty PDU", None, id="empty"),
    pytest.param("0011zz", True, "not a hex digit: 'z'", 2, id="not-hex"),
    pytest.param("001", True, "odd number of hex digits", None, id="odd"),
    pytest.param("0003", True, "reserved message type 3", 1, id="mti-3"),
    pytest.param("0C91", True, "SMSC length is 12 octets", 0, id="smsc-too-long"),
    # warthog618/sms: the SMSC part is cut short (their decoder reports offset 2 too).
    pytest.param("07911614220991", True, "SMSC address needs 6 octet", 2, id="warthog-smsc"),
    # warthog618/sms: TP-UDL says 11 septets, 9 of the 10 octets are there (offset 10).
    pytest.param(
        "010005912143f500000bc8329bfd06dddf7236", False, "TP-UD", 10, id="warthog-short-ud"
    ),
    # ModemManager "insufficient data": the same in an SMS-DELIVER.
    pytest.param(
        "07912143658709F1040B918100551512F20000111010214365000BE8329BFD4697D9EC37",
        True,
        "PDU ends early: TP-UD",
        27,
        id="modemmanager-insufficient-data",
    ),
    # python-gsmmodem: UCS-2 with TP-UDL 160 octets (more than an SMS holds).
    pytest.param(
        "0041010C910661345542F60008A0050003000301306F3044",
        True,
        "TP-UDL is 160 octets; at most 140 fit",
        13,
        id="gsmmodem-udl-too-long",
    ),
    pytest.param("00041591", True, "21 semi-octets; at most 20", 2, id="address-too-long"),
    pytest.param(
        "00040B916407281553F80000993192516195800A",
        True,
        "not a valid time",
        12,
        id="month-13",
    ),
    pytest.param(
        "00040B916407281553F800009A3092516195800A",
        True,
        "9A is not two decimal digits",
        12,
        id="bcd-nibble",
    ),
    pytest.param(
        "00440B916407281553F800009930925161958002050003",
        True,
        "does not fit the 2-octet user data",
        20,
        id="udh-longer-than-ud",
    ),
    pytest.param(
        "00440B916407281553F80000993092516195800100",
        True,
        "header takes 2 septets but TP-UDL is 1",
        19,
        id="udh-longer-than-udl",
    ),
    pytest.param(
        "00440B916407281553F800009930925161958000",
        True,
        "user data is empty",
        19,
        id="udhi-without-user-data",
    ),
]


@pytest.mark.parametrize(("pdu", "has_smsc", "message", "offset"), MALFORMED)
def test_malformed_pdus_say_what_and_where(
    pdu: str, has_smsc: bool, message: str, offset: int | None
) -> None:
    with pytest.raises(PduError, match=message) as caught:
        decode(pdu, has_smsc=has_smsc)
    assert caught.value.offset == offset
    if offset is not None:
        assert str(caught.value).endswith(f"(at octet {offset})")


def test_trailing_octets_after_the_user_data_are_ignored() -> None:
    message = decode("0011000B916407281553F80000AA0AE8329BFD4697D9EC37FFFF")
    assert isinstance(message, Submit)
    assert message.text == "hellohello"


# --- encoder ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"reference": 256}, "concatenation reference must be 0-255"),
        ({"reference": 65536, "ref16": True}, "concatenation reference must be 0-65535"),
        ({"message_reference": -1}, "message reference must be 0-255"),
        ({"validity": timedelta(weeks=70)}, "longer than the maximum"),
        ({"smsc": "SMSC"}, "must be a number"),
    ],
)
def test_encoder_refuses_bad_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(PduError, match=message):
        encode_submit("+15551234567", "x" * 200, **options)


def test_encoder_refuses_an_empty_destination() -> None:
    with pytest.raises(PduError, match="destination address is empty"):
        encode_submit(Address("", TypeOfNumber.UNKNOWN), "hi")


def test_empty_text_is_one_empty_part() -> None:
    [pdu] = encode_submit("+15551234567", "")
    message = decode(pdu.hex)
    assert isinstance(message, Submit)
    assert (message.text, message.concat) == ("", None)


def test_16bit_reference_parts_leave_room_for_the_longer_header() -> None:
    text = "€" + "a" * 400  # the euro sign takes two septets
    pdus = encode_submit("+15551234567", text, reference=0x1234, ref16=True)
    parts = [decode(p.hex) for p in pdus]
    assert all(isinstance(p, Submit) for p in parts)
    septets = [len(text_to_septets(p.text)) for p in parts]
    assert septets == [152, 152, 98]
    assert [p.concat for p in parts] == [Concat(0x1234, 3, i, ref16=True) for i in (1, 2, 3)]
    assert "".join(p.text for p in parts) == text


def test_emoji_never_straddle_two_parts() -> None:
    text = "a" + "😀" * 40  # 81 UTF-16 units: two parts, the first of 67 units
    pdus = encode_submit("+15551234567", text)
    assert len(pdus) == segment_info(text).segments == 2
    parts = [decode(p.hex) for p in pdus]
    assert [len(p.payload) // 2 for p in parts] == [67, 14]
    assert "".join(p.text for p in parts) == text


def test_deliver_encoder_round_trip_with_alphanumeric_sender() -> None:
    when = datetime(2026, 5, 9, 7, 35, 25, tzinfo=tz(5.5))
    [pdu] = encode_deliver("MyBank", "Code 123456 {valid 5 min}", timestamp=when, smsc="+4477")
    message = decode(pdu.hex)
    assert isinstance(message, Deliver)
    assert message.originator == Address("MyBank", TypeOfNumber.ALPHANUMERIC, 0)
    assert (message.text, message.timestamp) == ("Code 123456 {valid 5 min}", when)
    assert message.smsc == Address("+4477", TypeOfNumber.INTERNATIONAL)
