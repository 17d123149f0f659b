from __future__ import annotations

import json
import logging

import pytest

from simgate.domain.keys import generate_key
from simgate.logs import ConsoleFormatter, JsonFormatter, request_id_var, scrub


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
