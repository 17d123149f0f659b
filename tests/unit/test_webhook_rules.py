"""Webhook rules: event filters, Standard Webhooks signatures (checked against the independent
``standardwebhooks`` package), the retry schedule, Retry-After, outcomes and excerpts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from simgate.domain import webhooks as wh
from simgate.domain.webhooks import (
    EVENT_TYPES,
    MAX_ATTEMPTS,
    SCHEDULE,
    Outcome,
    classify,
    excerpt,
    matches,
    new_secret,
    next_delay,
    parse_events,
    parse_retry_after,
    secret_key,
    sign,
    signature_header,
    verify,
)

BODY = json.dumps({"type": "message.received", "data": {"text": "héllo"}}).encode()
MSG_ID = "msg_01J0000000000000000000000A"
NOW = 1_700_000_000


# --- event filters ---------------------------------------------------------------------------


def test_event_types() -> None:
    assert EVENT_TYPES == (
        "message.received",
        "message.sent",
        "message.delivered",
        "message.failed",
        "gateway.online",
        "gateway.offline",
    )


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        (["message.received"], ["message.received"]),
        ([" message.sent ", "gateway.online"], ["message.sent", "gateway.online"]),
        (["message.failed", "message.sent", "message.failed"], ["message.failed", "message.sent"]),
        (["*"], ["*"]),
        (["message.sent", "*", "gateway.offline"], ["*"]),
        (["*", "*"], ["*"]),
        (list(EVENT_TYPES), list(EVENT_TYPES)),
    ],
    ids=["one", "stripped", "duplicates", "star", "star-collapses", "star-twice", "all"],
)
def test_parse_events_accepts(given_: list[str], expected: list[str]) -> None:
    assert parse_events(given_) == expected


def test_parse_events_unknown_names_value_and_choices() -> None:
    with pytest.raises(ValueError, match="unknown event") as info:
        parse_events(["message.sent", "message.foo"])
    message = str(info.value)
    assert "'message.foo'" in message
    assert all(name in message for name in EVENT_TYPES)
    assert "'*'" in message


def test_parse_events_empty() -> None:
    with pytest.raises(ValueError, match=r"give at least one event, or '\*' for all"):
        parse_events([])


@pytest.mark.parametrize(
    "values",
    [
        ["message.sent"] * 21,
        ["x" * 65],
        [""],
        ["MESSAGE.SENT"],
        ["message.*"],
    ],
    ids=["too-many", "too-long", "blank", "uppercase", "wildcard-prefix"],
)
def test_parse_events_refuses(values: list[str]) -> None:
    with pytest.raises(ValueError, match="event"):
        parse_events(values)


def test_parse_events_refuses_a_bare_string() -> None:
    with pytest.raises(ValueError, match="list"):
        parse_events("message.sent")


def test_matches() -> None:
    assert matches(["*"], "gateway.offline")
    assert matches(["message.sent", "message.failed"], "message.failed")
    assert not matches(["message.sent"], "message.failed")
    assert not matches([], "message.failed")


# --- secrets and signatures ------------------------------------------------------------------


def test_new_secret_shape() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert secret_key(secret) == base64.b64decode(secret[6:])
    assert new_secret() != secret


@pytest.mark.parametrize(
    "secret",
    ["", "whsec_", "abc", "whsec_!!!!", "whsec_a", "sk_" + base64.b64encode(b"k" * 32).decode()],
    ids=["empty", "prefix-only", "no-prefix", "not-base64", "bad-length", "other-prefix"],
)
def test_secret_key_refuses(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        secret_key(secret)


def test_secret_key_accepts_unpadded_base64() -> None:
    assert secret_key("whsec_" + base64.b64encode(b"12345").decode().rstrip("=")) == b"12345"


def test_sign_matches_the_specification() -> None:
    secret = new_secret()
    key = secret_key(secret)
    mac = hmac.new(key, f"{MSG_ID}.{NOW}.".encode() + BODY, hashlib.sha256).digest()
    assert sign(secret, MSG_ID, NOW, BODY) == "v1," + base64.b64encode(mac).decode()


def test_sign_refuses_a_header_breaking_id() -> None:
    with pytest.raises(ValueError, match="id"):
        sign(new_secret(), "a\r\nb", NOW, BODY)


def test_headers_shape() -> None:
    secret = new_secret()
    hdrs = wh.headers([secret], MSG_ID, NOW, BODY)
    assert hdrs == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(NOW),
        "webhook-signature": sign(secret, MSG_ID, NOW, BODY),
        "content-type": "application/json",
    }


def test_signature_header_has_one_signature_per_secret() -> None:
    old, new = new_secret(), new_secret()
    value = signature_header([old, new], MSG_ID, NOW, BODY)
    assert value == f"{sign(old, MSG_ID, NOW, BODY)} {sign(new, MSG_ID, NOW, BODY)}"
    with pytest.raises(ValueError, match="secret"):
        signature_header([], MSG_ID, NOW, BODY)


def test_round_trip() -> None:
    secret = new_secret()
    hdrs = wh.headers([secret], MSG_ID, NOW, BODY)
    assert verify(secret, hdrs, BODY, now=NOW)
    assert verify(secret, hdrs, BODY, now=NOW + 300)
    assert verify(secret, hdrs, BODY, now=NOW - 300)


def test_verify_header_names_are_case_insensitive() -> None:
    secret = new_secret()
    hdrs = {k.title(): v for k, v in wh.headers([secret], MSG_ID, NOW, BODY).items()}
    assert "Webhook-Signature" in hdrs
    assert verify(secret, hdrs, BODY, now=NOW)


def test_verify_with_rotation_accepts_either_secret() -> None:
    old, new = new_secret(), new_secret()
    hdrs = wh.headers([old, new], MSG_ID, NOW, BODY)
    assert verify(old, hdrs, BODY, now=NOW)
    assert verify(new, hdrs, BODY, now=NOW)
    assert not verify(new_secret(), hdrs, BODY, now=NOW)


def test_verify_rejects_wrong_secret() -> None:
    hdrs = wh.headers([new_secret()], MSG_ID, NOW, BODY)
    assert not verify(new_secret(), hdrs, BODY, now=NOW)


def test_verify_rejects_tampered_body_id_or_timestamp() -> None:
    secret = new_secret()
    hdrs = wh.headers([secret], MSG_ID, NOW, BODY)
    assert not verify(secret, hdrs, BODY + b" ", now=NOW)
    assert not verify(secret, {**hdrs, "webhook-id": MSG_ID + "B"}, BODY, now=NOW)
    assert not verify(secret, {**hdrs, "webhook-timestamp": str(NOW + 1)}, BODY, now=NOW)


def test_verify_rejects_old_and_future_timestamps() -> None:
    secret = new_secret()
    hdrs = wh.headers([secret], MSG_ID, NOW, BODY)
    assert not verify(secret, hdrs, BODY, now=NOW + 301)
    assert not verify(secret, hdrs, BODY, now=NOW - 301)
    assert verify(secret, hdrs, BODY, now=NOW + 3000, tolerance=3600)


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-id": ""},
        {"webhook-timestamp": ""},
        {"webhook-timestamp": "1.7e9"},
        {"webhook-timestamp": "-1"},
        {"webhook-timestamp": "\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660"},
        {"webhook-signature": ""},
        {"webhook-signature": "v2,AAAA"},
        {"webhook-signature": "v1,not base64!"},
        {"webhook-signature": "v1"},
        {"webhook-signature": "v1,ü"},
    ],
    ids=[
        "no-id",
        "no-timestamp",
        "float-timestamp",
        "negative-timestamp",
        "arabic-digits",
        "no-signature",
        "other-version",
        "garbage-signature",
        "no-comma",
        "non-ascii-signature",
    ],
)
def test_verify_rejects_malformed_headers(change: dict[str, str]) -> None:
    secret = new_secret()
    hdrs = {**wh.headers([secret], MSG_ID, NOW, BODY), **change}
    assert not verify(secret, hdrs, BODY, now=NOW)


def test_verify_rejects_missing_headers() -> None:
    secret = new_secret()
    hdrs = wh.headers([secret], MSG_ID, NOW, BODY)
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        partial = {k: v for k, v in hdrs.items() if k != name}
        assert not verify(secret, partial, BODY, now=NOW)


# --- interoperability with the standardwebhooks package --------------------------------------


def test_standardwebhooks_accepts_our_signature() -> None:
    secret = new_secret()
    now = int(time.time())
    hdrs = wh.headers([secret], MSG_ID, now, BODY)
    assert Webhook(secret).verify(BODY, hdrs) == json.loads(BODY)


def test_standardwebhooks_accepts_a_header_with_two_signatures() -> None:
    old, new = new_secret(), new_secret()
    now = int(time.time())
    hdrs = wh.headers([old, new], MSG_ID, now, BODY)
    assert " " in hdrs["webhook-signature"]
    assert Webhook(old).verify(BODY, hdrs) == json.loads(BODY)
    assert Webhook(new).verify(BODY, hdrs) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, hdrs)


def test_standardwebhooks_rejects_our_signature_over_another_body() -> None:
    secret = new_secret()
    hdrs = wh.headers([secret], MSG_ID, int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"h", b"H"), hdrs)


def test_we_accept_what_standardwebhooks_signs() -> None:
    secret = new_secret()
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    payload = BODY.decode()
    signature = Webhook(secret).sign(MSG_ID, when, payload)
    ts = int(when.timestamp())
    hdrs = {"Webhook-Id": MSG_ID, "Webhook-Timestamp": str(ts), "Webhook-Signature": signature}
    assert signature == sign(secret, MSG_ID, ts, BODY)
    assert verify(secret, hdrs, payload.encode(), now=ts + 10)
    assert not verify(new_secret(), hdrs, payload.encode(), now=ts + 10)


# --- retry schedule --------------------------------------------------------------------------


def test_schedule_covers_a_day() -> None:
    assert SCHEDULE == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert MAX_ATTEMPTS == 8
    total = sum(next_delay(n, rand=0.0) or 0.0 for n in range(1, MAX_ATTEMPTS))
    assert total >= 24 * 3600
    assert total == sum(SCHEDULE)


def test_next_delay_steps_and_gives_up() -> None:
    assert [next_delay(n, rand=0.0) for n in range(1, MAX_ATTEMPTS)] == list(SCHEDULE)
    assert next_delay(MAX_ATTEMPTS, rand=0.0) is None
    assert next_delay(MAX_ATTEMPTS + 5, rand=0.5) is None


def test_next_delay_jitter_is_upward_only() -> None:
    assert next_delay(2, rand=0.5) == pytest.approx(330.0)
    assert next_delay(2, rand=0.999999) == pytest.approx(360.0, rel=1e-5)


@given(
    attempts=st.integers(min_value=1, max_value=MAX_ATTEMPTS - 1),
    rand=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_next_delay_jitter_bounds(attempts: int, rand: float) -> None:
    delay = next_delay(attempts, rand=rand)
    base = SCHEDULE[attempts - 1]
    assert delay is not None
    assert base <= delay < base * 1.2 + 1e-9


@given(
    attempts=st.integers(min_value=1, max_value=MAX_ATTEMPTS - 1),
    rand=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    retry_after=st.floats(min_value=0.0, max_value=86400.0),
)
def test_retry_after_only_lengthens(attempts: int, rand: float, retry_after: float) -> None:
    plain = next_delay(attempts, rand=rand)
    delay = next_delay(attempts, rand=rand, retry_after=retry_after)
    assert plain is not None
    assert delay == max(plain, retry_after)


def test_retry_after_does_not_extend_the_attempts() -> None:
    assert next_delay(MAX_ATTEMPTS, rand=0.0, retry_after=10.0) is None


@pytest.mark.parametrize(("attempts", "rand"), [(0, 0.0), (-1, 0.0), (1, 1.0), (1, -0.1)], ids=str)
def test_next_delay_refuses_bad_arguments(attempts: int, rand: float) -> None:
    with pytest.raises(ValueError, match=r"attempts|rand"):
        next_delay(attempts, rand=rand)


# --- Retry-After -----------------------------------------------------------------------------

CLOCK = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("007", 7.0),
        ("86400", 86400.0),
        ("999999999999", 86400.0),
        ("Tue, 02 Jan 2024 03:05:05 GMT", 60.0),
        ("Tue, 02 Jan 2024 03:04:05 GMT", 0.0),
        ("Mon, 01 Jan 2024 00:00:00 GMT", 0.0),
        ("Sat, 01 Jan 2050 00:00:00 GMT", 86400.0),
        ("Tue, 02 Jan 2024 04:05:05 +0100", 60.0),
        (None, None),
        ("", None),
        ("   ", None),
        ("\u0661\u0662", None),
        ("1e3", None),
        ("-5", None),
        ("1.5", None),
        ("+5", None),
        ("soon", None),
        ("9" * 65, None),
        ("Tue, 02 Jan 2024 03:05:05 GMT" + " " * 40, None),
    ],
    ids=[
        "seconds",
        "padded",
        "zero",
        "leading-zeros",
        "one-day",
        "capped",
        "date-future",
        "date-now",
        "date-past",
        "date-far",
        "date-offset",
        "missing",
        "empty",
        "blank",
        "arabic-digits",
        "exponent",
        "negative",
        "fraction",
        "plus",
        "garbage",
        "overlong-digits",
        "overlong-date",
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    result = parse_retry_after(value, now=CLOCK)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_parse_retry_after_feeds_next_delay() -> None:
    retry_after = parse_retry_after("3600", now=CLOCK)
    assert next_delay(1, rand=0.0, retry_after=retry_after) == 3600.0
    assert next_delay(1, rand=0.0, retry_after=parse_retry_after("x", now=CLOCK)) == 5.0


def test_parse_retry_after_naive_now_is_utc() -> None:
    naive = CLOCK.replace(tzinfo=None)
    got = parse_retry_after("Tue, 02 Jan 2024 03:05:05 GMT", now=naive)
    assert got == pytest.approx(60.0)
    assert parse_retry_after("Tue, 02 Jan 2024 03:05:05 GMT", now=CLOCK + timedelta(hours=1)) == 0


# --- outcomes and excerpts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (201, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (299, Outcome.DELIVERED),
        (410, Outcome.GONE),
        (None, Outcome.RETRY),
        (100, Outcome.RETRY),
        (199, Outcome.RETRY),
        (301, Outcome.RETRY),
        (400, Outcome.RETRY),
        (404, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
    ],
    ids=str,
)
def test_classify(status: int | None, outcome: Outcome) -> None:
    assert classify(status) is outcome


def test_outcome_members() -> None:
    assert {o.name for o in Outcome} == {"DELIVERED", "RETRY", "GONE"}


def test_excerpt() -> None:
    assert excerpt(b"ok") == "ok"
    assert excerpt(b"line 1\nline\t2") == "line 1\nline\t2"
    assert excerpt(b"a\x00b\rc\x1bd\x7fe") == "a\ufffdb\ufffdc\ufffdd\ufffde"
    assert excerpt("caf\u00e9 \u0085".encode()) == "caf\u00e9 \ufffd"
    assert excerpt(b"bad \xff\xfe utf8") == "bad \ufffd\ufffd utf8"
    assert excerpt(b"") == ""


def test_excerpt_limits_characters_not_bytes() -> None:
    assert excerpt(b"x" * 10_000) == "x" * 512
    assert excerpt("é".encode() * 600, limit=100) == "é" * 100
    assert excerpt("😀".encode() * 600, limit=3) == "😀" * 3
    assert excerpt(b"abc", limit=0) == ""
    with pytest.raises(ValueError, match="limit"):
        excerpt(b"abc", limit=-1)


@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=600))
def test_excerpt_is_short_and_clean(body: bytes, limit: int) -> None:
    text = excerpt(body, limit)
    assert len(text) <= limit
    assert text == body.decode("utf-8", errors="replace")[:limit].translate(
        {c: "\ufffd" for c in [*range(32), *range(127, 160)] if c not in (9, 10)}
    )
