from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simgate.domain.keys import generate_key
from simgate.logs import _SECRET_PATTERNS, ConsoleFormatter, JsonFormatter, request_id_var, scrub


@pytest.mark.parametrize(
    "secret",
    [
        generate_key().secret,
        "gw_live_" + "ab" * 32,
        "whsec_c2VjcmV0c2VjcmV0c2VjcmV0",
    ],
)
def test_credentials_are_scrubbed(secret: str) -> None:
    assert secret not in scrub(f"got {secret} from client")


@pytest.mark.parametrize(
    ("line", "leak"),
    [
        ("GET /json?api_key=topsecret123&x=1", "topsecret123"),
        ('{"password": "hunter22"}', "hunter22"),
        ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop"),
        ("postgresql+asyncpg://user:pa55word@db/simgate", "pa55word"),
        ('{"otp": "123456"}', "123456"),
    ],
)
def test_secret_fields_are_scrubbed(line: str, leak: str) -> None:
    assert leak not in scrub(line)


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": msg})
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def test_json_lines_carry_request_id_and_extras() -> None:
    token = request_id_var.set("req-1")
    try:
        key = generate_key().secret
        line = JsonFormatter().format(_record("hello %s", client="1.2.3.4", key=key))
    finally:
        request_id_var.reset(token)
    entry = json.loads(line)
    assert entry["request_id"] == "req-1"
    assert entry["client"] == "1.2.3.4"
    assert key not in line


def test_console_format_scrubs_too() -> None:
    key = generate_key().secret
    line = ConsoleFormatter().format(_record(f"key {key}"))
    assert key not in line


def _every_substitution(text: str) -> str:
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


_FRAGMENTS = [
    "sg_",
    "abcdefghij",
    "_",
    "SECRETVALUE1234",
    "gw_live_",
    "0123abcdef",
    "whsec_",
    "api_key",
    "Api_Key",
    "password",
    "PASSWD",
    "token",
    "Secret",
    "otp",
    "code",
    "=",
    '"',
    ": ",
    "Bearer ",
    "bEaReR ",
    "://",
    "user:pw@",
    "@",
    " ",
    "&",
    "/api/v1/otp/verify",
    "status_code",
    "\u017fecret",  # long s: "(?i)s" matches it
    "to\u212aen",  # Kelvin sign: "(?i)k" matches it
    "pa\u017f\u017fword",
    "\u0131",  # dotless i
    "ü",
]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=12).map("".join))
def test_the_quick_check_scrubs_exactly_what_every_pattern_would(text: str) -> None:
    """A line the substring check lets through unchanged holds nothing any pattern would
    have replaced."""
    assert scrub(text) == _every_substitution(text)


def test_a_plain_access_line_is_left_alone() -> None:
    line = JsonFormatter().format(_record("GET /api/v1/me 200", client="127.0.0.1", app="shop"))
    assert scrub(line) == line
    assert json.loads(line)["msg"] == "GET /api/v1/me 200"
