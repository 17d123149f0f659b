"""A modem's stored options: checked with errors that name the option and the value, and
the SIM's own number read from AT+CNUM."""

from __future__ import annotations

import re

import pytest

from simgate.drivers.modem import ModemConfig, parse_cnum


def test_options_round_trip_and_keep_only_what_differs() -> None:
    raw = {"port": "/dev/ttyUSB0", "baud": "9600", "pin": "1234", "number": "+49 170 1234567"}
    config = ModemConfig.from_dict(raw)
    assert config.number == "+491701234567"
    assert config.as_dict() == {
        "port": "/dev/ttyUSB0",
        "baud": 9600,
        "pin": "1234",
        "number": "+491701234567",
    }
    assert ModemConfig.from_dict(config.as_dict()) == config


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({}, "'port' is required"),
        ({"port": "/dev/x", "colour": "red"}, "unknown modem option 'colour'"),
        ({"port": "/dev/x", "node": "a:1"}, "unknown modem option 'node'"),  # a placement now
        ({"port": "/dev/x", "pin": "12"}, "'pin' must be 4 to 8 digits"),
        ({"port": "/dev/x", "baud": "fast"}, "must be numbers"),
        ({"port": "/dev/x", "number": "12"}, "'number': '12' is not in E.164 form"),
        ({"port": "/dev/x", "number": "+4912"}, "'number': '+4912' is a local number"),
        ({"port": "/dev/x", "number": "not a number"}, "'number': 'not a number'"),
        ({"port": "/dev/x", "number": "01701234567"}, "'number': '01701234567'"),
        ({"port": "/dev/x", "number": "+999123"}, "unknown country code"),
    ],
)
def test_bad_options_are_named(raw: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        ModemConfig.from_dict(raw)


@pytest.mark.parametrize(
    ("lines", "number"),
    [
        (('+CNUM: "","+491701234567",145,7,4',), "+491701234567"),
        (('+CNUM: "Own","491701234567",145',), "+491701234567"),  # international without +
        (('+CNUM: "","01701234567",129',), "01701234567"),  # national: kept as the SIM says
        (('+CNUM: "","",129',), ""),
        ((), ""),
        (("garbage", '+CNUM: "x","+4930123456",145'), "+4930123456"),
    ],
)
def test_cnum(lines: tuple[str, ...], number: str) -> None:
    assert parse_cnum(lines) == number
