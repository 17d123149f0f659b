"""An in-memory gateway, shipped so the whole pipeline can be tried and tested without a
radio: it can succeed, fail (transiently, permanently, or for this gateway only), stall,
go offline, and report delivery later."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
from dataclasses import dataclass
from typing import Any

from simgate.domain.messages import MessageError
from simgate.domain.retry import ErrorKind
from simgate.drivers.base import Gateway, GatewayEvents, GatewayStatus, OutboundSms, SendOutcome


class FakeMode(enum.StrEnum):
    DELIVER = "deliver"  # accepted, delivery report after ``report_delay``
    SENT = "sent"  # accepted, no delivery report ever
    UNDELIVERED = "undelivered"  # accepted, then a report saying it was not delivered
    FAIL = "fail"  # refused, transient (try again later)
    REJECT = "reject"  # refused, permanent (e.g. invalid number)
    GATEWAY_FAIL = "gateway_fail"  # refused by this gateway; another may take it
    STALL = "stall"  # never answers
    OFFLINE = "offline"  # not connected


@dataclass
class FakeConfig:
    mode: FakeMode = FakeMode.DELIVER
    send_delay: float = 0.0
    report_delay: float = 0.05
    fail_first: int = 0  # refuse (transiently) this many sends, then behave as ``mode``

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FakeConfig:
        known = {"mode", "send_delay", "report_delay", "fail_first"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(
                f"unknown fake gateway option {sorted(unknown)[0]!r}; "
                f"use {', '.join(sorted(known))}"
            )
        try:
            return cls(
                mode=FakeMode(raw.get("mode", FakeMode.DELIVER)),
                send_delay=float(raw.get("send_delay", 0.0)),
                report_delay=float(raw.get("report_delay", 0.05)),
                fail_first=int(raw.get("fail_first", 0)),
            )
        except ValueError as exc:
            raise ValueError(f"fake gateway option: {exc}") from None

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "send_delay": self.send_delay,
            "report_delay": self.report_delay,
            "fail_first": self.fail_first,
        }


@dataclass(frozen=True, slots=True)
class FakeDelivery:
    message_id: str
    to: str
    body: str
    gateway_ref: str


# Messages the fake network remembers, to drop a retried duplicate and for tests and demos
# to look at: a demo server runs for weeks, and memory must not grow with what it sent.
REMEMBER = 10_000


class FakeGateway(Gateway):
    kind = "fake"

    def __init__(
        self, name: str, config: FakeConfig | None = None, *, max_in_flight: int = 4
    ) -> None:
        super().__init__(name, max_in_flight=max_in_flight)
        self.config = config or FakeConfig()
        # What reached "the network", once per message: the latest REMEMBER of them.
        self.sent: list[FakeDelivery] = []
        self.attempts = 0
        self.duplicates_dropped = 0
        self._by_message: dict[str, str] = {}
        self._refs = itertools.count(1)
        self._events: GatewayEvents | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, events: GatewayEvents) -> None:
        self._events = events
        await self._apply_status()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.status = GatewayStatus.OFFLINE
        self.status_detail = "stopped"

    async def reconfigure(self, config: FakeConfig) -> None:
        """Change behaviour at run time (tests and demos)."""
        self.config = config
        await self._apply_status()

    async def _apply_status(self) -> None:
        offline = self.config.mode is FakeMode.OFFLINE
        status = GatewayStatus.OFFLINE if offline else GatewayStatus.ONLINE
        detail = "fake gateway switched off" if offline else "fake gateway ready"
        changed = status is not self.status
        self.status, self.status_detail = status, detail
        if changed and self._events is not None:
            await self._events.status_changed(self.name, status, detail)

    async def send(self, sms: OutboundSms) -> SendOutcome:
        self.attempts += 1
        cfg = self.config
        if cfg.send_delay:
            await asyncio.sleep(cfg.send_delay)
        if cfg.mode is FakeMode.STALL:
            await asyncio.Event().wait()  # never set: the dispatcher's timeout decides
        if cfg.mode is FakeMode.OFFLINE:
            return SendOutcome.failed(
                "gateway_offline", "the fake gateway is switched off", kind=ErrorKind.GATEWAY
            )
        if cfg.fail_first > 0:
            cfg.fail_first -= 1
            return SendOutcome.failed(
                "network_busy", "the fake network is busy", "it clears by itself; simgate retries"
            )
        if cfg.mode is FakeMode.FAIL:
            return SendOutcome.failed(
                "network_busy", "the fake network is busy", "it clears by itself; simgate retries"
            )
        if cfg.mode is FakeMode.REJECT:
            return SendOutcome.failed(
                "invalid_destination",
                "the network refused the destination number",
                "check the number; it will not work on retry",
                kind=ErrorKind.PERMANENT,
            )
        if cfg.mode is FakeMode.GATEWAY_FAIL:
            return SendOutcome.failed(
                "gateway_refused",
                "this gateway could not send it",
                "another gateway may",
                kind=ErrorKind.GATEWAY,
            )
        known = self._by_message.get(sms.message_id)
        if known is not None:  # sent before (a retry after a crash): do not send twice
            self.duplicates_dropped += 1
            return SendOutcome.sent(known)
        ref = f"{self.name}-{next(self._refs)}"
        self._by_message[sms.message_id] = ref
        self.sent.append(FakeDelivery(sms.message_id, sms.to, sms.body, ref))
        if len(self.sent) >= 2 * REMEMBER:  # trimmed in halves: O(1) a send on average
            del self.sent[:-REMEMBER]
            self._by_message = {d.message_id: d.gateway_ref for d in self.sent}
        if cfg.mode in (FakeMode.DELIVER, FakeMode.UNDELIVERED) and self._events is not None:
            task = asyncio.create_task(self._report(sms.message_id, ref, cfg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return SendOutcome.sent(ref)

    async def _report(self, message_id: str, ref: str, cfg: FakeConfig) -> None:
        await asyncio.sleep(cfg.report_delay)
        assert self._events is not None
        delivered = cfg.mode is FakeMode.DELIVER
        error = (
            None
            if delivered
            else MessageError(
                "undelivered",
                "the recipient's network reported the message undeliverable",
                "the phone may be off or out of coverage for too long",
            )
        )
        await self._events.delivery_report(
            self.name, message_id=message_id, gateway_ref=ref, delivered=delivered, error=error
        )
