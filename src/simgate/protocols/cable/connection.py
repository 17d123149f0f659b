"""The server side of one Action Cable connection, without I/O (in the style of h11).

Feed each text frame the client sent to ``receive``; it answers the events it found and
queues the frames to send back (``frames_to_send``). Build the server's own frames with
``welcome``, ``ping``, ``push`` and ``disconnect``. The endpoint around it only moves
frames between this object and the WebSocket.

What the wire looks like (Action Cable's ``actioncable-v1-json``), every frame one JSON object:

- server → client: ``{"type": "welcome"}`` once; ``{"type": "ping", "message": <unix time>}``
  every few seconds; ``{"identifier": <id>, "type": "confirm_subscription"}`` or
  ``"reject_subscription"``; ``{"identifier": <id>, "message": {...}}`` for what a channel
  pushes (the identifier exactly as the client sent it: the official clients look a
  subscription up by that string); ``{"type": "disconnect", "reason": …, "reconnect": …}``.
- client → server: ``{"command": "subscribe"|"unsubscribe", "identifier": <id>}`` and
  ``{"command": "message", "identifier": <id>, "data": <data>}``. ``<id>`` is a JSON string
  such as ``"{\\"channel\\":\\"GatewayChannel\\"}"``. ``<data>`` is a JSON string (what
  ``perform(action, data)`` and the OkHttp example send) or an object (as seed 003's message
  format shows); it holds ``action`` and the action's fields, flat beside it or in
  ``payload``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

SUBPROTOCOL = "actioncable-v1-json"
MAX_FRAME = 64 * 1024  # bytes; the largest SMS body with its fields is far below this


class CableError(ValueError):
    """A frame the client sent breaks the protocol; the message says how."""


class State(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Subscribed:
    identifier: str
    channel: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    identifier: str
    channel: str


@dataclass(frozen=True, slots=True)
class Perform:
    """A ``message`` command: ``action`` with its fields (``payload`` merged over the flat
    ones)."""

    identifier: str
    channel: str
    action: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Refused:
    """A frame that was answered with an error (or a rejection) and otherwise ignored."""

    reason: str


Event = Subscribed | Unsubscribed | Perform | Refused


def _dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def _object(raw: str | bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise CableError(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise CableError(f"{what} must be a JSON object")
    return value


@dataclass
class CableConnection:
    channels: frozenset[str] = frozenset({"GatewayChannel"})
    max_frame: int = MAX_FRAME
    state: State = State.OPEN
    subscriptions: dict[str, str] = field(default_factory=dict)  # identifier -> channel
    _out: list[str] = field(default_factory=list)

    # --- what the server says ---------------------------------------------------------

    def welcome(self) -> str:
        return _dumps({"type": "welcome"})

    def ping(self, now: int) -> str:
        return _dumps({"type": "ping", "message": now})

    def push(self, channel: str, message: dict[str, Any]) -> list[str]:
        """Frames carrying ``message`` to every subscription of ``channel``."""
        return [
            _dumps({"identifier": ident, "type": "message", "message": message})
            for ident, ch in self.subscriptions.items()
            if ch == channel
        ]

    def disconnect(self, reason: str, *, reconnect: bool = False, **extra: Any) -> str:
        self.state = State.CLOSED
        self.subscriptions.clear()
        return _dumps({"type": "disconnect", "reason": reason, "reconnect": reconnect, **extra})

    def frames_to_send(self) -> list[str]:
        out, self._out = self._out, []
        return out

    def subscribed_to(self, channel: str) -> bool:
        return channel in self.subscriptions.values()

    # --- what the client says ---------------------------------------------------------

    def receive(self, frame: str | bytes) -> Event:
        """One frame from the client. Frames that break the protocol are answered with an
        error frame (queued) and come back as ``Refused``; they never raise."""
        if self.state is State.CLOSED:
            return Refused("the connection is closed")
        try:
            return self._receive(frame)
        except CableError as exc:
            self._out.append(_dumps({"type": "error", "message": str(exc)}))
            return Refused(str(exc))

    def _receive(self, frame: str | bytes) -> Event:
        if len(frame) > self.max_frame:
            raise CableError(f"frame of {len(frame)} bytes; at most {self.max_frame} are allowed")
        msg = _object(frame, "frame")
        command = msg.get("command")
        identifier = msg.get("identifier")
        if command not in ("subscribe", "unsubscribe", "message"):
            raise CableError(f"unknown command {command!r}; use subscribe, unsubscribe or message")
        if not isinstance(identifier, str):
            raise CableError(
                "identifier must be a string holding JSON, e.g. "
                '"{\\"channel\\":\\"GatewayChannel\\"}"'
            )
        params = _object(identifier, "identifier")
        channel = params.get("channel")
        if command == "subscribe":
            return self._subscribe(identifier, channel, params)
        if identifier not in self.subscriptions:
            raise CableError(f"not subscribed to {identifier}; subscribe first")
        if command == "unsubscribe":
            return Unsubscribed(identifier, self.subscriptions.pop(identifier))
        return self._perform(identifier, msg.get("data"))

    def _subscribe(self, identifier: str, channel: Any, params: dict[str, Any]) -> Event:
        if not isinstance(channel, str) or channel not in self.channels:
            self._out.append(_dumps({"identifier": identifier, "type": "reject_subscription"}))
            return Refused(f"no channel {channel!r}")
        self.subscriptions[identifier] = channel
        self._out.append(_dumps({"identifier": identifier, "type": "confirm_subscription"}))
        return Subscribed(identifier, channel, {k: v for k, v in params.items() if k != "channel"})

    def _perform(self, identifier: str, raw: Any) -> Event:
        channel = self.subscriptions[identifier]
        try:
            data = _object(raw, "data") if isinstance(raw, str | bytes) else raw
            if not isinstance(data, dict):
                raise CableError("data must be a JSON object or a string holding one")
            action = data.get("action")
            if not isinstance(action, str) or not action:
                raise CableError("data has no action")
            payload = data.get("payload", {})
            if payload is None:
                payload = {}
            if not isinstance(payload, dict):
                raise CableError("payload must be an object")
        except CableError as exc:
            # Said on the subscription, where the client's own code will see it.
            self._out.append(self._error_on(identifier, str(exc)))
            return Refused(str(exc))
        flat = {k: v for k, v in data.items() if k not in ("action", "payload")}
        return Perform(identifier, channel, action, {**flat, **payload})

    def _error_on(self, identifier: str, error: str, action: str | None = None) -> str:
        message: dict[str, Any] = {"action": "error", "error": error}
        if action:
            message["for"] = action
        return _dumps({"identifier": identifier, "type": "message", "message": message})

    def reply(self, event: Perform, message: dict[str, Any]) -> str:
        """A frame answering ``event`` on its own subscription."""
        return _dumps({"identifier": event.identifier, "type": "message", "message": message})

    def error(self, event: Perform, error: str) -> str:
        """A frame saying why ``event`` was refused, on its own subscription."""
        return self._error_on(event.identifier, error, event.action)


def choose_subprotocol(offered: Iterable[str]) -> str | None:
    """``actioncable-v1-json`` when the client offers it (the official clients refuse a
    connection that does not select it); None for clients that offer none (OkHttp)."""
    return SUBPROTOCOL if SUBPROTOCOL in offered else None
