"""An Android phone as a gateway (seed 003): messages go to it as ``send_sms`` over its own
WebSocket, and it answers with ``delivery_status``. No push service is involved: a phone
that has no open connection simply is not online here, and says so.

The driver runs on the node that holds the phone's socket (``domain.placement``). It pushes
through ``PhoneLinks`` (the node's registry of open sockets) and waits for the phone's
``sent`` (or ``failed``/``error``); ``delivered`` and late ``failed`` reports become delivery
reports. A phone that reports ``delivered`` without ``sent`` first has sent it too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from simgate.domain.messages import MessageError
from simgate.domain.retry import ErrorKind
from simgate.drivers.base import Gateway, GatewayEvents, GatewayStatus, OutboundSms, SendOutcome


class PhoneLinks(Protocol):
    """The open phone sockets of this node."""

    def connected(self, name: str) -> bool: ...

    def push(self, name: str, message: dict[str, Any]) -> bool:
        """Queue a frame for the phone's socket; False when it has none."""
        ...

    def attach_driver(self, name: str, driver: AndroidGateway) -> None: ...

    def detach_driver(self, name: str, driver: AndroidGateway) -> None: ...


@dataclass
class AndroidConfig:
    """Per-SIM send rates (SMS a minute, by slot) for phones with two SIMs."""

    sim_rates: dict[int, int]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AndroidConfig:
        unknown = set(raw) - {"sim_rates"}
        if unknown:
            raise ValueError(f"unknown phone option {sorted(unknown)[0]!r}; use sim_rates")
        rates = raw.get("sim_rates") or {}
        if isinstance(rates, str):  # "1:10,2:5" from the command line
            try:
                rates = dict(part.split(":", 1) for part in rates.split(",") if part.strip())
            except ValueError:
                raise ValueError("phone option 'sim_rates' looks like 1:10,2:5") from None
        if not isinstance(rates, dict):
            raise ValueError("phone option 'sim_rates' looks like 1:10,2:5")
        try:
            checked = {int(k): int(v) for k, v in rates.items()}
        except (TypeError, ValueError):
            raise ValueError("phone option 'sim_rates' looks like 1:10,2:5") from None
        if any(not 1 <= k <= 4 or v < 0 for k, v in checked.items()):
            raise ValueError("phone option 'sim_rates': SIM slots are 1-4, rates 0 or more")
        return cls(checked)

    def as_dict(self) -> dict[str, Any]:
        return (
            {"sim_rates": {str(k): v for k, v in self.sim_rates.items()}} if self.sim_rates else {}
        )


class AndroidGateway(Gateway):
    kind = "android"

    def __init__(
        self,
        name: str,
        config: AndroidConfig,
        links: PhoneLinks,
        *,
        max_in_flight: int = 4,
        sims: int | None = None,
    ) -> None:
        super().__init__(name, max_in_flight=max_in_flight)
        self.config = config
        self.sim_count = sims
        self.sim_rates = dict(config.sim_rates)
        self._links = links
        self._events: GatewayEvents | None = None
        self._pending: dict[str, asyncio.Future[SendOutcome]] = {}

    async def start(self, events: GatewayEvents) -> None:
        self._events = events
        self._links.attach_driver(self.name, self)
        await self.link_changed()

    async def stop(self) -> None:
        self._links.detach_driver(self.name, self)
        self._fail_pending("the phone's connection to this node ended")
        self.status, self.status_detail = GatewayStatus.OFFLINE, "stopped"

    async def link_changed(self) -> None:
        """The phone's socket opened, subscribed or closed."""
        if self._links.connected(self.name):
            status, detail = GatewayStatus.ONLINE, "connected over WebSocket"
        else:
            status, detail = GatewayStatus.OFFLINE, "the phone's WebSocket closed"
            self._fail_pending(detail)
        if (status, detail) != (self.status, self.status_detail):
            self.status, self.status_detail = status, detail
            if self._events is not None:
                await self._events.status_changed(self.name, status, detail)

    def _fail_pending(self, why: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_result(
                    SendOutcome.failed(
                        "gateway_disconnected",
                        f"{why} before it acknowledged the message",
                        "simgate sends it again when the phone (or another gateway) is back; "
                        "the phone sees the same message_id and can drop a duplicate",
                    )
                )
        self._pending.clear()

    async def send(self, sms: OutboundSms) -> SendOutcome:
        payload: dict[str, Any] = {
            "message_id": sms.message_id,
            "phone_number": sms.to,
            "message_body": sms.body,
            "priority": "high" if sms.priority > 0 else "normal",
        }
        if sms.sim_slot is not None:
            payload["sim_slot"] = sms.sim_slot
        future: asyncio.Future[SendOutcome] = asyncio.get_running_loop().create_future()
        self._pending[sms.message_id] = future
        try:
            if not self._links.push(self.name, {"action": "send_sms", "payload": payload}):
                return SendOutcome.failed(
                    "gateway_offline",
                    f"phone {self.name} has no open connection",
                    "the phone app must be running and connected to /cable",
                    kind=ErrorKind.GATEWAY,
                )
            return await future
        finally:
            if self._pending.get(sms.message_id) is future:
                del self._pending[sms.message_id]

    async def on_status(self, message_id: str, status: str, error: str = "") -> None:
        """A ``delivery_status`` from the phone (over its socket, or over HTTP on any node)."""
        future = self._pending.get(message_id)
        waiting = future is not None and not future.done()
        if status in ("sent", "delivered") and waiting:
            assert future is not None
            future.set_result(SendOutcome.sent(message_id))
        elif status == "failed" and waiting:
            assert future is not None
            future.set_result(
                SendOutcome.failed(
                    "phone_failed",
                    error or "the phone could not send it",
                    "see the phone (SIM, signal, SMS permission); simgate may try another gateway",
                    kind=ErrorKind.GATEWAY,
                )
            )
            return
        elif status == "error" and waiting:
            assert future is not None
            future.set_result(
                SendOutcome.failed("phone_error", error or "the phone reported an error")
            )
            return
        events = self._events
        if events is None:
            return
        if status == "sent" and not waiting:
            await events.sent_report(self.name, message_id=message_id)
        elif status in ("delivered", "failed"):
            await events.delivery_report(
                self.name,
                message_id=message_id,
                gateway_ref=message_id,
                delivered=status == "delivered",
                error=None
                if status == "delivered"
                else MessageError("undelivered", error or "the phone reported it failed"),
            )
