"""The message API: send, read, list, cancel; and the gateways list."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Header, Query
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.domain.keys import Scope
from simgate.domain.messages import Direction, MessageStatus, Priority
from simgate.domain.phone import InvalidNumber, normalise
from simgate.errors import Forbidden, Invalid
from simgate.services import gateways as gateway_service
from simgate.services import outbound
from simgate.services.auth import Principal
from simgate.services.outbound import Sender, SendRequest
from simgate.web.api.schemas import Strict
from simgate.web.deps import AppPrincipal, RuntimeDep, SendPrincipal, SessionDep
from simgate.web.routing import Router
from simgate.web.runtime import Runtime

router = Router(prefix="/api/v1", tags=["messages"])
MAX_BODY_CHARS = 5000
MAX_METADATA_BYTES = 4096


def _recipients(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ValueError("must be a phone number or a list of phone numbers (strings)")


class SendBody(Strict):
    to: Annotated[str | list[str], BeforeValidator(_recipients)] = Field(
        description="E.164 number (or a local one, with a default region), or a list of them.",
        examples=["+4915112345678"],
    )
    body: str = Field(max_length=MAX_BODY_CHARS, examples=["Your code is 123456"])
    gateway: str | None = Field(default=None, description="Send through this gateway only.")
    sim: Literal[1, 2] | None = Field(
        default=None, description="The SIM slot to send from, on a phone with two SIMs."
    )
    send_at: datetime | None = Field(default=None, description="ISO-8601; schedule for later.")
    ttl: int | None = Field(default=None, description="Seconds; expire instead of sending late.")
    priority: Literal["normal", "high"] = "normal"
    metadata: dict[str, Any] | None = None
    status_callback: str | None = Field(
        default=None,
        max_length=2048,
        description="An http(s) URL POSTed each status change of the message (sent, "
        "delivered, failed), signed like webhooks with the app's callback secret "
        "(`GET /api/v1/webhooks/callback-secret`).",
    )

    @field_validator("send_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # a time without zone is taken as UTC
        return value

    @field_validator("metadata")
    @classmethod
    def _small(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        try:
            size = len(json.dumps(value, allow_nan=False))
        except ValueError:
            raise ValueError("must be plain JSON (no NaN or Infinity)") from None
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes as JSON")
        return value

    def request(self) -> SendRequest:
        many = isinstance(self.to, list)
        return SendRequest(
            to=self.to if isinstance(self.to, list) else [self.to],
            body=self.body,
            many=many,
            gateway=self.gateway,
            send_at=self.send_at,
            ttl=self.ttl,
            priority=Priority.HIGH if self.priority == "high" else Priority.NORMAL,
            metadata=self.metadata,
            sim=self.sim,
            status_callback=self.status_callback or None,
        )


def _owner_filter(principal: Principal) -> int | None:
    """Apps see their own outbound messages; an admin key sees every app's."""
    return None if Scope.ADMIN in principal.scopes else principal.app_id


@router.post(
    "/messages",
    status_code=202,
    summary="Queue an SMS to one or more recipients",
    responses={202: {"description": "Stored durably and queued (or scheduled)."}},
)
async def send(
    body: SendBody,
    principal: SendPrincipal,
    runtime: RuntimeDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    return await queue_send(runtime, principal, body, idempotency_key)


async def queue_send(
    runtime: Runtime, principal: Principal, body: SendBody, idempotency_key: str | None
) -> JSONResponse:
    """The send itself, once the key and body are checked: this route's and the lean
    endpoint's (web/api/lean.py)."""
    accepted = await runtime.outbound.submit(
        sender=Sender(principal.app_id, f"app:{principal.app_name}"),
        req=body.request(),
        idempotency_key=idempotency_key,
    )
    headers = {"Idempotent-Replayed": "true"} if accepted.replayed else None
    return JSONResponse(accepted.body, status_code=accepted.status_code, headers=headers)


@router.get("/messages/{message_id}", summary="One message with its status history")
async def get_message(
    message_id: str, principal: AppPrincipal, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    return await read_message(runtime, session, principal, message_id)


async def read_message(
    runtime: Runtime, session: AsyncSession, principal: Principal, message_id: str
) -> dict[str, Any]:
    """One message as this route answers it: this route's and the lean endpoint's."""
    found = await gateway_service.message_status(
        session,
        message_id,
        app_id=_owner_filter(principal),
        offline_after=runtime.settings.gateway_offline_after,
    )
    needed = Scope.INBOX if found["direction"] == "inbound" else Scope.SEND
    if not principal.allows(needed):
        raise Forbidden(
            f"this API key lacks the {needed.value!r} scope for {found['direction']} messages"
        )
    return found


@router.get("/messages", summary="Messages, newest first, with cursor pagination")
async def list_messages(
    principal: AppPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    direction: Literal["inbound", "outbound"] | None = None,
    status: Annotated[str | None, Query(description="e.g. queued, sent, delivered")] = None,
    phone: Annotated[str | None, Query(description="E.164 number, to or from")] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    allowed = set()
    if principal.allows(Scope.SEND):
        allowed.add(Direction.OUTBOUND)
    if principal.allows(Scope.INBOX):
        allowed.add(Direction.INBOUND)
    wanted = {Direction(direction)} if direction else allowed
    if not wanted & allowed:
        scope = "inbox" if direction == "inbound" else "send"
        raise Forbidden(f"this API key lacks the {scope!r} scope for {direction} messages")
    if status is not None and status not in {s.value for s in MessageStatus}:
        raise Invalid(f"status: {status!r} is not a message status", field="status")
    if phone is not None:
        try:
            phone = normalise(phone, runtime.settings.default_region or None).e164
        except InvalidNumber as exc:
            raise Invalid(
                f"phone: {phone!r} {exc} (write + as %2B in a URL)", field="phone"
            ) from None
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    data, next_cursor = await outbound.list_messages(
        session,
        app_id=_owner_filter(principal),
        directions=wanted & allowed,
        status=status,
        phone_number=phone,
        since=since,
        limit=limit,
        cursor=cursor,
    )
    return {"data": data, "next_cursor": next_cursor}


@router.post("/messages/{message_id}/cancel", summary="Cancel a message still in the queue")
async def cancel_message(
    message_id: str, principal: SendPrincipal, session: SessionDep
) -> dict[str, Any]:
    item = await outbound.cancel(
        session, message_id, app_id=_owner_filter(principal), by=f"app:{principal.app_name}"
    )
    await session.commit()
    return item


@router.get("/gateways", summary="Gateways with their status, signal and counters")
async def list_gateways(
    principal: AppPrincipal, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    infos = await gateway_service.list_all(
        session, offline_after=runtime.settings.gateway_offline_after
    )
    return {"data": [gateway_out(g) for g in infos]}


def gateway_out(g: gateway_service.GatewayInfo) -> dict[str, Any]:
    return {
        "name": g.name,
        "kind": g.kind,
        "active": g.active,
        "status": g.status,
        "status_detail": g.status_detail,
        "node": g.node,
        "placement": {
            "kind": g.placement.kind.value,
            "host": g.placement.host_name or None,
            "node": g.placement.node,
        },
        "number": g.number,
        "last_seen": g.last_seen_at.isoformat().replace("+00:00", "Z") if g.last_seen_at else None,
        "signal": g.signal,
        "battery": g.battery,
        "counters": {"sent": g.sent, "failed": g.failed, "received": g.received},
        "rate_per_minute": g.rate_per_minute,
        "max_in_flight": g.max_in_flight,
        **(
            {
                "label": g.label,
                "device_id": g.device_id,
                "device_info": g.device_info or {},
                "app_version": g.app_version or None,
                "sims": g.sims or [],
                "last_heartbeat": _iso(g.last_heartbeat_at),
            }
            if g.kind == "android"
            else {}
        ),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
