"""Message statuses and the one table of allowed transitions."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class MessageStatus(enum.StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELED = "canceled"
    RECEIVED = "received"  # inbound messages


class Direction(enum.StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class Priority(enum.IntEnum):
    NORMAL = 0
    HIGH = 1


S = MessageStatus

# status -> statuses it may move to. Everything not listed is illegal.
TRANSITIONS: dict[MessageStatus, frozenset[MessageStatus]] = {
    S.SCHEDULED: frozenset({S.QUEUED, S.SENDING, S.CANCELED, S.EXPIRED}),
    # SENT/DELIVERED/FAILED from QUEUED: an acknowledgement or report arriving after the
    # send timed out and the message was queued for a retry (it went out: do not resend)
    S.QUEUED: frozenset({S.SENDING, S.CANCELED, S.EXPIRED, S.FAILED, S.DELIVERED, S.SENT}),
    # back to QUEUED: a retry after a transient error, or an expired lease after a crash
    S.SENDING: frozenset({S.SENT, S.DELIVERED, S.FAILED, S.QUEUED, S.EXPIRED}),
    # a delivery report may say the network gave up after accepting the message
    S.SENT: frozenset({S.DELIVERED, S.FAILED}),
    S.DELIVERED: frozenset(),
    S.FAILED: frozenset(),
    S.EXPIRED: frozenset(),
    S.CANCELED: frozenset(),
    S.RECEIVED: frozenset(),
}

FINAL: frozenset[MessageStatus] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
# Where a message is still ours to cancel: it has not been handed to a gateway.
CANCELABLE: frozenset[MessageStatus] = frozenset({S.QUEUED, S.SCHEDULED})
# Statuses the dispatcher may claim from.
CLAIMABLE: frozenset[MessageStatus] = frozenset({S.QUEUED, S.SCHEDULED})


class IllegalTransition(ValueError):
    pass


def can_move(current: MessageStatus, new: MessageStatus) -> bool:
    return new in TRANSITIONS[current]


def check_move(current: MessageStatus, new: MessageStatus) -> None:
    if not can_move(current, new):
        raise IllegalTransition(f"a {current.value} message cannot become {new.value}")


@dataclass(frozen=True, slots=True)
class MessageError:
    """What went wrong, for people: a stable code, a message and a plain-language hint."""

    code: str
    message: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class Received:
    """One received SMS, reassembled, as any gateway hands it over. ``to`` is the number
    that received it, when the gateway knows it; ``incomplete``: parts were missing when it
    had to be delivered anyway (the reassembly timeout)."""

    gateway: str
    sender: str
    body: str
    received_at: datetime
    to: str = ""
    parts: int = 1
    incomplete: bool = False
    extra: dict[str, Any] | None = None
    sim_slot: int | None = None  # which SIM of a dual-SIM phone received it
