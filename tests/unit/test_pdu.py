"""PDU codec against published vectors, field by field, and with bad input.

Vectors (data only) come from the classic PDU-mode tutorial (dreamfabric / "SMS and the
PDU format"), the test suites of python-gsmmodem, ModemManager (test-sms-part-3gpp.c) and
warthog618/sms, and a +CDS example from a public blog post; each expectation below was
checked by hand against the octets, not taken from the codec.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from simgate.protocols.pdu import (
    Address,
    Alphabet,
    Concat,
    DataCoding,
    Deliver,
    DeliveryState,
    StatusReport,
    Submit,
    TypeOfNumber,
    decode,
    delivery_state,
    encode_status_report,
    encode_submit,
)

INTL = TypeOfNumber.INTERNATIONAL


def tz(hours: float) -> timezone:
    return timezone(timedelta(hours=hours))


def intl(number: str) -> Address:
    return Address(number, INTL)


# --- SMS-DELIVER ------------------------------------------------------------------------

DELIVER_VECTORS = [
    pytest.param(
        "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37",
        {
            "smsc": intl("+27381000015"),
            # TON 4 (subscriber), NPI 8 (national): no "+". The tutorial's octets
            # 72 38 88 09 00 F1 read 27838890001.
            "originator": Address("27838890001", TypeOfNumber.SUBSCRIBER, 8),
            "timestamp": datetime(1999, 3, 29, 15, 16, 59, tzinfo=tz(2)),
            "text": "hellohello",
        },
        id="tutorial-hellohello",
    ),
    pytest.param(
        "06917228195339040B917228214365F700003130805120618005D4F29C2E03",
        {
            "smsc": intl("+2782913593"),
            "originator": intl("+27821234567"),
            "timestamp": datetime(2013, 3, 8, 15, 2, 16, tzinfo=tz(2)),
            "text": "Test2",
        },
        id="gsmmodem-test2",
    ),
    pytest.param(
        "07915892000000F0040B915892214365F700007040213252242331493A283D0795C3F33C88FE06C9CB"
        "6132885EC6D341EDF27C1E3E97E7207B3A0C0A5241E377BB1D7693E72E",
        {
            "smsc": intl("+85290000000"),
            "originator": intl("+85291234567"),
            "timestamp": datetime(2007, 4, 12, 23, 25, 42, tzinfo=tz(8)),
            "text": "It is easy to read text messages via AT commands.",
        },
        id="gsmmodem-hk",
    ),
    pytest.param(
        "06917228195339040B917228214365F70000313062315352800A800D8A5E98D337A910",
        {
            "timestamp": datetime(2013, 3, 26, 13, 35, 25, tzinfo=tz(2)),
            "text": "@{tést}!",  # '@' is septet 0, braces come from the extension table
        },
        id="gsmmodem-extension",
    ),
    pytest.param(
        "0591721891F1400781721881F800003160526104848059050003C30101916536FB1DCABEEB2074D85E"
        "064941B19CAB060319A5C522289C96D3D3ED32286C0FA7D96131BBEC024941B19CAB0603DDD36C36A8"
        "8C87A7E565D0DB0D82C55EB0DB4B068BCD5C20",
        {
            "smsc": intl("+2781191"),
            "originator": Address("2781188", TypeOfNumber.UNKNOWN, 1),
            "timestamp": datetime(2013, 6, 25, 16, 40, 48, tzinfo=tz(2)),
            "text": "Hello!You have R 19.50 FREE airtime available. "
            "R 19.50 will expire on 01/07/2013. ",
            "concat": Concat(0xC3, 1, 1),  # UDH 05 00 03 C3 01 01, then one fill bit
            "more_messages": True,
        },
        id="gsmmodem-udh-airtime",
    ),
    pytest.param(
        "07912104442961F4040B916171957291F800001120821105050A6AC8B2BC7C9A83C220F6DB7D2ECB41"
        "EDF27C1E3E97411BDE06754FD3D1A0F9BB5D0695F1F4B29B5C2683C6E8B03C3CA697E5F34D6AE303D1"
        "D1F2F7DD0D4ABB59A0797D8C0685E7A00028EC26832A960B28EC2683BE6050780EBA97D96C17",
        {
            "smsc": intl("+12404492164"),
            "originator": intl("+16175927198"),
            "timestamp": datetime(2011, 2, 28, 11, 50, 50, tzinfo=tz(-5)),  # zone octet 0A
            "text": "Here's a longer message [{with some extended characters}] "
            "thrown in, such as £ and ΩΠΨ and §¿ as well.",
        },
        id="modemmanager-pdu1-extension-negative-zone",
    ),
    pytest.param(
        "07919730071111F10414D04937BD2C7797E9D3E614000811309291024061080442043504410442",
        {
            "smsc": intl("+79037011111"),
            "originator": Address("InternetSMS", TypeOfNumber.ALPHANUMERIC, 0),
            "timestamp": datetime(2011, 3, 29, 19, 20, 4, tzinfo=tz(4)),
            "text": "тест",
        },
        id="modemmanager-pdu2-alphanumeric-ucs2",
    ),
    pytest.param(
        "07912143658709F1040B918100551512F20000111010214365000AE8329BFD4697D9EC37",
        {
            "smsc": intl("+12345678901"),
            "originator": intl("+18005551212"),
            "timestamp": datetime(2011, 1, 1, 12, 34, 56, tzinfo=UTC),
            "text": "hellohello",
        },
        id="modemmanager-pdu3",
    ),
    pytest.param(
        "07912143658709F1040B918100551512F20004111010214365000AE8329BFD4697D9EC37DE",
        {"text": "E8329BFD4697D9EC37DE", "dcs": DataCoding(0x04, Alphabet.DATA8)},
        id="modemmanager-8bit-as-hex",
    ),
    pytest.param(
        "07913306091093F0040485810000F111604231805180A049B7F90D9A1AA5A01668F8769BD3E4B29B9E"
        "2EB359A03FC85D06A9C3ED707A0EA2CBC3EE79BB4CA7CBCBA05643617DA7C76990FD4D979741EE77DD"
        "5E0ED741ED371D442E83E0E1F9BC0CD281E677D9B84C06C1DF7539E85C9097E520FB9B2E2F83C6EF36"
        "9C5E064D8D52D0BC2E07DDEF77D7DC2C7799E5A0771D040FCB41F402BB0047BFDD6550B80ECAD966",
        {
            "originator": Address("1800", TypeOfNumber.UNKNOWN, 5),
            "timestamp": datetime(2011, 6, 24, 13, 8, 15, tzinfo=tz(2)),
            "dcs": DataCoding(0xF1, Alphabet.GSM7, message_class=1),
            "text": "Info SFR - Confidentiel, à ne jamais transmettre -\r\n"
            "Voici votre nouveau mot de passe : sw2ced pour gérer "
            "votre compte SFR sur www.sfr.fr ou par téléphone au 963",
        },
        id="modemmanager-dcs-f1-160-septets",
    ),
    pytest.param(
        "07911356131313F64004850120390011609232239180A006080400100201D7327BFD6EB340E2321BF4"
        "6E83EA7790F59D1E97DBE1341B442F83C465763D3DA797E56537C81D0ECB41AB59CC1693C16031D96C"
        "064241E5656838AF03A96230982A269BCD462917C8FA4E8FCBED709A0D7ABBE9F6B0FB5C7683D27350"
        "984D4FABC9A0B33C4C4FCF5D20EBFB2D079DCB62793DBD06D9C36E50FB2D4E97D9A0B49B5E96BBCB",
        {
            "smsc": intl("+31653131316"),
            "originator": Address("1002", TypeOfNumber.UNKNOWN, 5),
            "timestamp": datetime(2011, 6, 29, 23, 32, 19, tzinfo=tz(2)),
            "concat": Concat(0x0010, 2, 1, ref16=True),  # 7-octet UDH: no fill bits
            "text": "Welkom, bel om uw Voicemail te beluisteren naar +31612001233"
            " (PrePay: *100*1233#). Voicemail ontvangen is altijd gratis."
            " Voor gebruik van mobiel interne",
        },
        id="modemmanager-kpn-16bit-ref",
    ),
]


@pytest.mark.parametrize(("pdu", "expected"), DELIVER_VECTORS)
def test_deliver_vectors(pdu: str, expected: dict[str, object]) -> None:
    message = decode(pdu)
    assert isinstance(message, Deliver)
    for name, value in expected.items():
        assert getattr(message, name) == value, name


def test_lower_case_hex_and_surrounding_whitespace_are_accepted() -> None:
    message = decode("  0006d60b911326880736f4111011719551401110117195714000\r\n")
    assert isinstance(message, StatusReport)
    assert message.message_reference == 0xD6


# --- SMS-SUBMIT -------------------------------------------------------------------------

SUBMIT_DECODE_VECTORS = [
    pytest.param(
        "0011000B916407281553F80000AA0AE8329BFD4697D9EC37",
        {
            "smsc": None,
            "destination": intl("+46708251358"),
            "validity": timedelta(days=4),  # VP AA = 170 -> 170 - 166 days
            "text": "hellohello",
        },
        id="tutorial-hellohello",
    ),
    pytest.param(
        "07911326040000F0310D0B911326880736F40000A90FF7FBDD454E87CDE1B0DB357EB701",
        {
            "smsc": intl("+31624000000"),
            "destination": intl("+31628870634"),
            "message_reference": 13,
            "status_report_request": True,
            "validity": timedelta(days=3),
            "text": "www.diafaan.com",
        },
        id="gsmmodem-diafaan",
    ),
    pytest.param(
        "07914346466554F601000B914316565811F9000806304253F68449",
        {"destination": intl("+34616585119"), "text": "あ叶葉", "validity": None},
        id="gsmmodem-ucs2",
    ),
    pytest.param(
        "0591721891F101000B917228214365F700040C48656C6C6F20776F726C6421",
        {"text": "48656C6C6F20776F726C6421", "payload": b"Hello world!"},
        id="gsmmodem-8bit",
    ),
    pytest.param(
        "0019000B917228001011F100003170013193008017D474BB3CA787DB70903DCC4E93D3F43C885E9ED301",
        {
            "validity": datetime(2013, 7, 10, 13, 39, tzinfo=tz(2)),
            "text": "Timestamp validity test",
        },
        id="gsmmodem-absolute-validity",
    ),
    pytest.param(
        "002100098136397339F70008224F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60597D"
        "4F60597D4F60",
        {"destination": Address("639337937"), "text": "你好你好你好你好你好你好你好你好你"},
        id="modemmanager-stored-submit",
    ),
]


@pytest.mark.parametrize(("pdu", "expected"), SUBMIT_DECODE_VECTORS)
def test_submit_decode_vectors(pdu: str, expected: dict[str, object]) -> None:
    message = decode(pdu)
    assert isinstance(message, Submit)
    for name, value in expected.items():
        assert getattr(message, name) == value, name


SUBMIT_ENCODE_VECTORS = [
    pytest.param(
        "+46708251358",
        "hellohello",
        {"request_status_report": False, "validity": timedelta(days=4)},
        "0011000B916407281553F80000AA0AE8329BFD4697D9EC37",
        id="tutorial-hellohello",
    ),
    pytest.param(
        "+27820001111",
        "Hello World!",
        {"request_status_report": False},
        "0001000B917228001011F100000CC8329BFD065DDF72363904",
        id="gsmmodem-no-validity",
    ),
    pytest.param(
        "+123456789",
        "世界您好\uff01",  # ends in a full-width exclamation mark
        {"request_status_report": False, "validity": timedelta(weeks=52), "smsc": "+44000000000"},
        "07914400000000F01100099121436587F90008F40A4E16754C60A8597DFF01",
        id="gsmmodem-ucs2-smsc",
    ),
    pytest.param(
        Address("0126541234", TypeOfNumber.NATIONAL),
        "Test message: local numbers",
        {
            "smsc": Address("12345", TypeOfNumber.NATIONAL),
            "validity": timedelta(days=3),
            "message_reference": 13,
        },
        "04A12143F5310D0AA110624521430000A91BD4F29C0E6A97E7F3F0B9AC03B1DFE3301BE4AEB7C565F91C",
        id="gsmmodem-national-status-report",
    ),
    pytest.param(
        "+15555551234",
        "Да здравствует король, детка!",
        {"request_status_report": False, "validity": timedelta(minutes=5), "smsc": "+19037029920"},
        "07919130079229F011000B915155551532F40008003A041404300020043704340440043004320441044204"
        "320443043504420020043A043E0440043E043B044C002C0020043404350442043A04300021",
        id="modemmanager-ucs2-smsc",
    ),
    pytest.param(
        "+15555551234",
        "Hi there...Tue 17th Jan 2012 05:30.18 pm (GMT+1) ΔΔΔΔΔ",
        {"request_status_report": False, "validity": timedelta(minutes=5)},
        "0011000B915155551532F400000036C834888E2ECBCB2E978B5A2F8362373A1AA40CBB4132584C0682D574"
        "33982B8603C1DB20D4B1495DC552200804028100",
        id="modemmanager-gsm7-no-smsc",
    ),
    pytest.param(
        "+15556661234",
        "This is really cool ΔΔΔΔΔ",  # 25 septets: the last one alone in its octet
        {"request_status_report": False, "validity": timedelta(minutes=5)},
        "0011000B915155661632F40000001954747A0E4ACF41F27298CDCE83C6EF371B0481402010",
        id="modemmanager-25-septets",
    ),
]


@pytest.mark.parametrize(("to", "text", "options", "expected"), SUBMIT_ENCODE_VECTORS)
def test_submit_encode_vectors(
    to: str | Address, text: str, options: dict[str, object], expected: str
) -> None:
    [pdu] = encode_submit(to, text, **options)
    assert pdu.hex == expected
    smsc_octets = 1 + int(expected[:2], 16)
    assert pdu.tpdu_length == len(expected) // 2 - smsc_octets
    assert pdu.tpdu_hex == expected[2 * smsc_octets :]


def test_tpdu_length_is_what_at_cmgs_needs() -> None:
    [pdu] = encode_submit("+46708251358", "hellohello", validity=timedelta(days=4))
    assert pdu.hex.startswith("00")
    assert pdu.tpdu_length == 23  # 24 octets minus the SMSC octet


# python-gsmmodem's three-part message (8-bit reference 0, TP-RD set, no status report).
LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipisicing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua.Ut enim ad minim veniam, quinostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.Duis aute irure "
    "dolor in reprehenderit in voluptate velit esse cillum doloe eu fugiat nulla pariatur."
    "Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt "
    "mollit anim id est laborum"
)
LOREM_PDUS = [
    "0045000B915121551532F40000A0050003000301986F79B90D4AC3E7F53688FC66BFE5A0799A0E0AB7CB"
    "741668FC76CFCB637A995E9783C2E4343C3D4F8FD3EE33A8CC4ED359A079990C22BF41E5747DDE7E9341"
    "F4721BFE9683D2EE719A9C26D7DD74509D0E6287C56F791954A683C86FF65B5E06B5C36777181466A7E3"
    "F5B0AB4A0795DDE936284C06B5D3EE741B642FBBD3E1360B14AFA7DD",
    "0045000B915121551532F40000A0050003000302DE73BABC4E0695F165F9384D0FD3D36F37A8CE6687DB"
    "E337881D16BFE5E939C89D9EA741753A28CC4EC7EB6938A88C0795C3A0F1BBDD7E93DFA0F1DB3D2FC7EB"
    "61BA8B584FCF41E13ABD0C4ACBEBF23288FC66BFE5A0B41B242FC3E56574D94D2ECBD37450DA0DB2BFD9"
    "75383D4C2F83EC65769A0E2ACFE765D038CD66D7DB20F29BFD2E83CA",
    "0045000B915121551532F400008C050003000303EA2073FD9C0ED341EE3A9B1D06C1C3F274985E97BB8AF8"
    "71194E2FD7E5A079DA4D07BDC7E370791CA683C675789A1CA687E920F7DB0D82CBDF6972D94D6781E675"
    "371D947683C675363C0C8AD7D3A0B7D99C1EA7C32072795E96D7DD7450FBCD66A7E9A0B03BDD06A5C9A0"
    "F29C0E6287C56F79BD0D",
]


def test_concatenated_submit_matches_published_parts_except_tp_mr() -> None:
    pdus = encode_submit("+15125551234", LOREM, request_status_report=False, reject_duplicates=True)
    assert len(pdus) == len(LOREM_PDUS)
    for i, (pdu, expected) in enumerate(zip(pdus, LOREM_PDUS, strict=True)):
        # The published parts all carry TP-MR 0; ours count up so that a service centre
        # rejecting duplicates (TP-RD is set) cannot take part 2 for a copy of part 1.
        assert pdu.hex[4:6] == f"{i:02X}"
        assert pdu.hex[:4] + pdu.hex[6:] == expected[:4] + expected[6:]


# --- SMS-STATUS-REPORT ------------------------------------------------------------------

STATUS_REPORT_VECTORS = [
    pytest.param(
        "0006D60B911326880736F4111011719551401110117195714000",
        True,
        {
            "message_reference": 214,
            "recipient": intl("+31628870634"),
            "timestamp": datetime(2011, 1, 11, 17, 59, 15, tzinfo=tz(1)),
            "discharge_time": datetime(2011, 1, 11, 17, 59, 17, tzinfo=tz(1)),
            "status": 0,
            "state": DeliveryState.DELIVERED,
        },
        id="gsmmodem-delivered",
    ),
    pytest.param(
        "06000B910221815716F2709021510121807090215101718000",  # +CDS without the SMSC part
        False,
        {
            "message_reference": 0,
            "recipient": intl("+20121875612"),
            "timestamp": datetime(2007, 9, 12, 15, 10, 12, tzinfo=tz(2)),
            "discharge_time": datetime(2007, 9, 12, 15, 10, 17, tzinfo=tz(2)),
            "delivered": True,
        },
        id="blog-cds-no-smsc",
    ),
    pytest.param(
        "07914356060013F1065A098136397339F7219011700463802190117004638030",
        True,
        {
            "smsc": intl("+34656000311"),
            "message_reference": 90,
            "recipient": Address("639337937"),
            "timestamp": datetime(2012, 9, 11, 7, 40, 36, tzinfo=tz(2)),
            "status": 0x30,  # temporary error, SC-specific: still trying
            "pending": True,
            "delivered": False,
            "failed": False,
        },
        id="modemmanager-pending",
    ),
    pytest.param(
        # Captured from a ZTE modem by python-gsmmodem: a garbled recipient, otherwise sound.
        "0297F1061C0F910B487228297020F5317062419272803170624192138000",
        True,
        {
            "message_reference": 28,
            "timestamp": datetime(2013, 7, 26, 14, 29, 27, tzinfo=tz(2)),
            "discharge_time": datetime(2013, 7, 26, 14, 29, 31, tzinfo=tz(2)),
            "delivered": True,
        },
        id="gsmmodem-zte-garbled-recipient",
    ),
]


@pytest.mark.parametrize(("pdu", "has_smsc", "expected"), STATUS_REPORT_VECTORS)
def test_status_report_vectors(pdu: str, has_smsc: bool, expected: dict[str, object]) -> None:
    report = decode(pdu, has_smsc=has_smsc)
    assert isinstance(report, StatusReport)
    for name, value in expected.items():
        assert getattr(report, name) == value, name


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (0x00, DeliveryState.DELIVERED),
        (0x02, DeliveryState.DELIVERED),
        (0x1F, DeliveryState.DELIVERED),
        (0x20, DeliveryState.PENDING),
        (0x25, DeliveryState.PENDING),
        (0x3F, DeliveryState.PENDING),
        (0x40, DeliveryState.FAILED),
        (0x46, DeliveryState.FAILED),  # validity period expired
        (0x60, DeliveryState.FAILED),  # temporary error, but the SC stopped trying
        (0x7F, DeliveryState.FAILED),
        (0x80, DeliveryState.FAILED),  # reserved
        (0xFF, DeliveryState.FAILED),
    ],
)
def test_status_classification(status: int, state: DeliveryState) -> None:
    assert delivery_state(status) is state


def test_status_report_round_trip_and_meaning() -> None:
    when = datetime(2024, 2, 29, 23, 59, 58, tzinfo=tz(-3.75))
    pdu = encode_status_report(
        message_reference=7,
        recipient="+447700900123",
        timestamp=when,
        discharge_time=when + timedelta(seconds=1),
        status=0x46,
        smsc="+447785016005",
    )
    report = decode(pdu.hex)
    assert isinstance(report, StatusReport)
    assert (report.message_reference, report.recipient.number) == (7, "+447700900123")
    assert report.timestamp == when
    assert report.failed
    assert report.meaning == "validity period expired"


def test_status_report_optional_parameters_are_read() -> None:
    base = encode_status_report(
        message_reference=1,
        recipient="+15551234567",
        timestamp=datetime(2020, 1, 1, tzinfo=UTC),
        discharge_time=datetime(2020, 1, 1, tzinfo=UTC),
        status=0,
    ).hex
    # TP-PI 07: TP-PID, TP-DCS (GSM-7) and user data "hi" follow.
    report = decode(base + "07" + "00" + "00" + "02E834")
    assert isinstance(report, StatusReport)
    assert (report.pid, report.text) == (0, "hi")
    assert report.dcs == DataCoding(0, Alphabet.GSM7)
