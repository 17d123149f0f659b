"""The AT command conversation (sans-IO): bytes in, events out; commands out as bytes."""

from __future__ import annotations

from simgate.protocols.at.session import (
    CTRL_Z,
    NEED_DATA,
    AtSession,
    Command,
    Event,
    FinalError,
    LocalProtocolError,
    Prompt,
    Response,
    State,
    TimedOut,
    Urc,
)

__all__ = [
    "CTRL_Z",
    "NEED_DATA",
    "AtSession",
    "Command",
    "Event",
    "FinalError",
    "LocalProtocolError",
    "Prompt",
    "Response",
    "State",
    "TimedOut",
    "Urc",
]
