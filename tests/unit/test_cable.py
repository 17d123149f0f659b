"""The Action Cable framing, from frames as seed 003's Android example and the official
clients send them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simgate.protocols.cable import (
    SUBPROTOCOL,
    CableConnection,
    Perform,
    Refused,
    State,
    Subscribed,
    Unsubscribed,
    choose_subprotocol,
)

IDENT = json.dumps({"channel": "GatewayChannel"})  # '{"channel": "GatewayChannel"}'
COMPACT = '{"channel":"GatewayChannel"}'  # as JSON.stringify and org.json write it


def frame(**fields: object) -> str:
    return json.dumps(fields)


def subscribed(identifier: str = COMPACT) -> CableConnection:
    conn = CableConnection()
    event = conn.receive(frame(command="subscribe", identifier=identifier))
    assert isinstance(event, Subscribed)
    conn.frames_to_send()
    return conn


def sent(conn: CableConnection) -> list[dict[str, object]]:
    return [json.loads(f) for f in conn.frames_to_send()]


def test_welcome_and_ping() -> None:
    conn = CableConnection()
    assert json.loads(conn.welcome()) == {"type": "welcome"}
    assert json.loads(conn.ping(1_700_000_000)) == {"type": "ping", "message": 1_700_000_000}


@pytest.mark.parametrize("identifier", [IDENT, COMPACT, '{"channel":"GatewayChannel","x":1}'])
def test_subscribe_is_confirmed_with_the_identifier_exactly_as_sent(identifier: str) -> None:
    conn = CableConnection()
    event = conn.receive(frame(command="subscribe", identifier=identifier))
    assert isinstance(event, Subscribed)
    assert event.channel == "GatewayChannel"
    assert sent(conn) == [{"identifier": identifier, "type": "confirm_subscription"}]
    assert conn.subscribed_to("GatewayChannel")


def test_unknown_channel_is_rejected() -> None:
    conn = CableConnection()
    identifier = '{"channel":"ChatChannel"}'
    event = conn.receive(frame(command="subscribe", identifier=identifier))
    assert isinstance(event, Refused)
    assert sent(conn) == [{"identifier": identifier, "type": "reject_subscription"}]
    assert not conn.subscribed_to("ChatChannel")


@pytest.mark.parametrize(
    "data",
    [
        # the Android example: data is a JSON string, fields in payload
        json.dumps(
            {"action": "delivery_status", "payload": {"message_id": "m1", "status": "sent"}}
        ),
        # the seed's message format: data is an object
        {"action": "delivery_status", "payload": {"message_id": "m1", "status": "sent"}},
        # what perform("delivery_status", {...}) sends: fields flat beside the action
        json.dumps({"action": "delivery_status", "message_id": "m1", "status": "sent"}),
        {"action": "delivery_status", "message_id": "m1", "status": "sent"},
        # both: payload wins
        {
            "action": "delivery_status",
            "message_id": "m0",
            "payload": {"message_id": "m1", "status": "sent"},
        },
    ],
)
def test_message_commands_in_every_shape(data: object) -> None:
    conn = subscribed()
    event = conn.receive(frame(command="message", identifier=COMPACT, data=data))
    assert isinstance(event, Perform)
    assert event.action == "delivery_status"
    assert event.fields == {"message_id": "m1", "status": "sent"}
    assert sent(conn) == []


def test_push_goes_to_every_subscription_of_the_channel_with_its_identifier() -> None:
    conn = subscribed(IDENT)
    conn.receive(frame(command="subscribe", identifier=COMPACT))
    conn.frames_to_send()
    frames = [json.loads(f) for f in conn.push("GatewayChannel", {"action": "send_sms"})]
    assert frames == [
        {"identifier": IDENT, "type": "message", "message": {"action": "send_sms"}},
        {"identifier": COMPACT, "type": "message", "message": {"action": "send_sms"}},
    ]


def test_unsubscribe() -> None:
    conn = subscribed()
    event = conn.receive(frame(command="unsubscribe", identifier=COMPACT))
    assert event == Unsubscribed(COMPACT, "GatewayChannel")
    assert conn.push("GatewayChannel", {"action": "x"}) == []


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("not json", "frame is not valid JSON"),
        ("[1, 2]", "frame must be a JSON object"),
        (frame(command="shout", identifier=COMPACT), "unknown command 'shout'"),
        (frame(identifier=COMPACT), "unknown command None"),
        (frame(command="subscribe"), "identifier must be a string"),
        (frame(command="subscribe", identifier={"channel": "GatewayChannel"}), "identifier must"),
        (frame(command="subscribe", identifier="{nope"), "identifier is not valid JSON"),
        (frame(command="message", identifier='{"channel":"Other"}', data="{}"), "not subscribed"),
        ("[" * 100_000 + "]" * 100_000, "at most"),
    ],
)
def test_broken_frames_are_answered_with_an_error_and_change_nothing(raw: str, words: str) -> None:
    conn = subscribed()
    event = conn.receive(raw)
    assert isinstance(event, Refused)
    assert words in event.reason
    (error,) = sent(conn)
    assert error["type"] == "error"
    assert words in str(error["message"])
    assert conn.subscribed_to("GatewayChannel")  # the connection goes on


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ("not json", "data is not valid JSON"),
        (json.dumps([1]), "data must be a JSON object"),
        (42, "data must be a JSON object"),
        (None, "data must be a JSON object"),
        ({"payload": {}}, "data has no action"),
        ({"action": ""}, "data has no action"),
        ({"action": "heartbeat", "payload": [1]}, "payload must be an object"),
    ],
)
def test_bad_data_is_answered_on_the_subscription(data: object, words: str) -> None:
    conn = subscribed()
    event = conn.receive(frame(command="message", identifier=COMPACT, data=data))
    assert isinstance(event, Refused)
    (error,) = sent(conn)
    assert error["identifier"] == COMPACT
    assert error["message"]["action"] == "error"  # type: ignore[index]
    assert words in error["message"]["error"]  # type: ignore[index]


def test_null_payload_is_empty() -> None:
    conn = subscribed()
    event = conn.receive(
        frame(command="message", identifier=COMPACT, data={"action": "ping", "payload": None})
    )
    assert isinstance(event, Perform)
    assert event.fields == {}


def test_disconnect_closes() -> None:
    conn = subscribed()
    assert json.loads(conn.disconnect("unauthorized")) == {
        "type": "disconnect",
        "reason": "unauthorized",
        "reconnect": False,
    }
    assert conn.state is State.CLOSED
    assert isinstance(conn.receive(frame(command="subscribe", identifier=COMPACT)), Refused)


def test_reply_and_error_on_a_perform() -> None:
    conn = subscribed()
    event = conn.receive(frame(command="message", identifier=COMPACT, data={"action": "heartbeat"}))
    assert isinstance(event, Perform)
    assert json.loads(conn.reply(event, {"action": "heartbeat_ack"}))["identifier"] == COMPACT
    error = json.loads(conn.error(event, "status: 'lost' is not one of sent, delivered"))
    assert error["message"] == {
        "action": "error",
        "error": "status: 'lost' is not one of sent, delivered",
        "for": "heartbeat",
    }


def test_subprotocol_negotiation() -> None:
    assert choose_subprotocol(["actioncable-v1-json", "actioncable-unsupported"]) == SUBPROTOCOL
    assert choose_subprotocol([]) is None
    assert choose_subprotocol(["graphql-ws"]) is None


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_any_input_never_raises(raw: str | bytes) -> None:
    conn = subscribed()
    conn.receive(raw)
    for out in conn.frames_to_send():
        json.loads(out)
