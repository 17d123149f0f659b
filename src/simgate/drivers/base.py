"""The one small interface every gateway implements, and what it reports back."""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import Protocol

from simgate.domain.messages import MessageError, Received
from simgate.domain.retry import ErrorKind


class GatewayStatus(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class OutboundSms:
    """What a gateway is asked to send. ``message_id`` is stable across retries, so a
    gateway that sees it twice (after a crash or a lost acknowledgement) can drop the
    duplicate."""

    message_id: str
    to: str
    body: str
    encoding: str
    segments: int
    priority: int
    attempt: int
    sim_slot: int | None = None  # the SIM to send from, on a gateway with several


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """The gateway's answer to one send: accepted (``ok``) with its own reference for the
    delivery report, or refused with an error and how to treat it."""

    ok: bool
    gateway_ref: str | None = None
    error: MessageError | None = None
    kind: ErrorKind = ErrorKind.TRANSIENT

    @classmethod
    def sent(cls, gateway_ref: str | None = None) -> SendOutcome:
        return cls(ok=True, gateway_ref=gateway_ref)

    @classmethod
    def failed(
        cls, code: str, message: str, hint: str = "", kind: ErrorKind = ErrorKind.TRANSIENT
    ) -> SendOutcome:
        return cls(ok=False, error=MessageError(code, message, hint), kind=kind)


class GatewayEvents(Protocol):
    """Where a running gateway reports what happens after a send, and its health."""

    async def delivery_report(
        self,
        gateway: str,
        *,
        message_id: str | None,
        gateway_ref: str | None,
        delivered: bool,
        error: MessageError | None = None,
    ) -> None: ...

    async def sent_report(self, gateway: str, *, message_id: str) -> None:
        """The gateway says it sent a message after its send had already ended here (a late
        acknowledgement): it went out, and must not be sent again."""
        ...

    async def status_changed(self, gateway: str, status: GatewayStatus, detail: str) -> None: ...

    async def received(self, item: Received) -> None:
        """Store a received SMS; returns once it is durable (a modem may then delete it
        from the SIM)."""
        ...


class Gateway(abc.ABC):
    """A way out to the radio network. ``send`` returns once the message was handed over
    (or refused); the dispatcher bounds it with the acknowledgement timeout."""

    kind: str = "abstract"

    def __init__(self, name: str, *, max_in_flight: int = 1) -> None:
        self.name = name
        self.max_in_flight = max_in_flight
        self.status = GatewayStatus.OFFLINE
        self.status_detail = "not started"

    @abc.abstractmethod
    async def start(self, events: GatewayEvents) -> None:
        """Begin working (connect, initialise); report status changes through ``events``."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop, letting an in-flight send finish if it can."""

    @abc.abstractmethod
    async def send(self, sms: OutboundSms) -> SendOutcome:
        """Hand one message over."""

    def time_limit(self, sms: OutboundSms) -> float | None:
        """How long a send may take before the dispatcher gives up on it; None: the
        dispatcher's acknowledgement timeout. A driver that bounds its own sends says so,
        so that the message is not given to another gateway while this one may still
        send it."""
        return None

    @property
    def online(self) -> bool:
        return self.status is GatewayStatus.ONLINE

    # SIM slots the gateway has (None: unknown), and a send rate per slot (SMS a minute)
    # where each SIM has its own limit.
    sim_count: int | None = None
    sim_rates: dict[int, int] = {}

    @property
    def signal_bars(self) -> int | None:
        """Signal strength in bars (0-5, as phones show it), when the gateway knows it."""
        return None

    @property
    def own_number(self) -> str:
        """The number this gateway's SIM receives on ("" when unknown)."""
        return ""
