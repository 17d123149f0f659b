"""Action Cable framing as Android gateways (seed 003) and the official clients speak it,
without I/O: frames in, events out; the server's frames built as text."""

from __future__ import annotations

from simgate.protocols.cable.connection import (
    MAX_FRAME,
    SUBPROTOCOL,
    CableConnection,
    CableError,
    Event,
    Perform,
    Refused,
    State,
    Subscribed,
    Unsubscribed,
    choose_subprotocol,
)

__all__ = [
    "MAX_FRAME",
    "SUBPROTOCOL",
    "CableConnection",
    "CableError",
    "Event",
    "Perform",
    "Refused",
    "State",
    "Subscribed",
    "Unsubscribed",
    "choose_subprotocol",
]
