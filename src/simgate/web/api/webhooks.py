"""Webhook endpoints per app, their delivery log, redelivery, and the payloads (documented
under ``webhooks`` in the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Response
from pydantic import BaseModel, Field, create_model

from simgate.domain import webhooks as rules
from simgate.services import webhooks
from simgate.web.deps import AppPrincipal, RuntimeDep, SessionDep
from simgate.web.routing import Router

router = Router(prefix="/api/v1/webhooks", tags=["webhooks"])

EventName = Literal[
    "message.received",
    "message.sent",
    "message.delivered",
    "message.failed",
    "gateway.online",
    "gateway.offline",
    "*",
]


class CreateWebhook(BaseModel):
    url: str = Field(
        max_length=2048,
        description="The http(s) URL to POST events to. Loopback, private and link-local "
        "targets are refused unless SIMGATE_WEBHOOK_ALLOW_PRIVATE=true.",
    )
    events: list[str] = Field(
        description="Event types to send, or ['*'] for all: " + ", ".join(rules.EVENT_TYPES),
    )
    description: str | None = Field(default=None, max_length=255)


class UpdateWebhook(BaseModel):
    url: str | None = Field(default=None, max_length=2048)
    events: list[str] | None = None
    description: str | None = Field(default=None, max_length=255)
    is_active: bool | None = Field(
        default=None,
        description="false switches the endpoint off (pending deliveries are canceled); "
        "true switches it on again and sends what was canceled.",
    )


class Rotate(BaseModel):
    overlap_seconds: int | None = Field(
        default=None,
        description="How long the old secret keeps signing too (default a day, 0 to 604800).",
    )


class Webhook(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str
    is_active: bool
    disabled_reason: str | None = Field(description="Why it was switched off, when it was.")
    disabled_at: str | None
    failing_since: str | None = Field(description="Since when every delivery failed.")
    previous_secret_expires_at: str | None = Field(
        description="During a rotation: until when the old secret signs too."
    )
    created_at: str | None
    updated_at: str | None


class CreatedWebhook(Webhook):
    secret: str = Field(description="The signing secret (whsec_…), shown only now.")


class WebhookList(BaseModel):
    data: list[Webhook]


class Attempt(BaseModel):
    at: str | None
    status_code: int | None
    latency_ms: float
    error: str | None
    response: str = Field(description="The start of the receiver's answer.")
    manual: bool


class Delivery(BaseModel):
    id: str
    event_id: str = Field(description="The webhook-id header of every attempt.")
    type: str | None
    url: str
    status: Literal["pending", "delivered", "failed", "canceled"]
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str | None
    delivered_at: str | None
    log: list[Attempt]


class DeliveryPage(BaseModel):
    data: list[Delivery]
    next_cursor: str | None


class CallbackSecret(BaseModel):
    secret: str = Field(description="Signs every status_callback of this app; shown only now.")
    previous_secret_expires_at: str | None


@router.post("", status_code=201, response_model=CreatedWebhook)
async def create(
    body: CreateWebhook, principal: AppPrincipal, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """Register an endpoint. The answer holds its secret, shown only this once."""
    view, secret = await webhooks.create_endpoint(
        session,
        app_id=principal.app_id,
        scopes=principal.scopes,
        url=body.url,
        events=body.events,
        description=body.description,
        settings=runtime.settings,
        resolver=runtime.webhooks.resolver,
    )
    await session.commit()
    return {**view, "secret": secret}


@router.get("", response_model=WebhookList)
async def list_(principal: AppPrincipal, session: SessionDep) -> dict[str, Any]:
    return {"data": await webhooks.list_endpoints(session, principal.app_id)}


@router.post("/callback-secret", response_model=CallbackSecret)
async def callback_secret(
    principal: AppPrincipal, session: SessionDep, body: Rotate | None = None
) -> dict[str, Any]:
    """A new secret for this app's per-message ``status_callback`` deliveries (shown once);
    the previous one keeps signing during the overlap."""
    out = await webhooks.rotate_callback_secret(
        session, principal.app_id, body.overlap_seconds if body else None
    )
    await session.commit()
    return out


@router.get("/{webhook_id}", response_model=Webhook)
async def get(webhook_id: str, principal: AppPrincipal, session: SessionDep) -> dict[str, Any]:
    return await webhooks.get_endpoint(session, principal.app_id, webhook_id)


@router.patch("/{webhook_id}", response_model=Webhook)
async def patch(
    webhook_id: str,
    body: UpdateWebhook,
    principal: AppPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    view = await webhooks.update_endpoint(
        session,
        app_id=principal.app_id,
        scopes=principal.scopes,
        ref=webhook_id,
        changes=body.model_dump(exclude_unset=True),
        settings=runtime.settings,
        resolver=runtime.webhooks.resolver,
    )
    await session.commit()
    runtime.webhooks.wake()
    return view


@router.delete("/{webhook_id}", status_code=204)
async def delete(webhook_id: str, principal: AppPrincipal, session: SessionDep) -> Response:
    """Delete the endpoint and its delivery log."""
    await webhooks.delete_endpoint(session, principal.app_id, webhook_id)
    await session.commit()
    return Response(status_code=204)


@router.post("/{webhook_id}/rotate-secret", response_model=CreatedWebhook)
async def rotate(
    webhook_id: str, principal: AppPrincipal, session: SessionDep, body: Rotate | None = None
) -> dict[str, Any]:
    """A new secret, shown once; deliveries carry both signatures during the overlap."""
    out = await webhooks.rotate_secret(
        session, principal.app_id, webhook_id, body.overlap_seconds if body else None
    )
    await session.commit()
    return out


@router.get("/{webhook_id}/deliveries", response_model=DeliveryPage)
async def deliveries(
    webhook_id: str,
    principal: AppPrincipal,
    session: SessionDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> dict[str, Any]:
    """Deliveries to this endpoint, newest first, each with its attempts."""
    return await webhooks.list_deliveries(
        session, principal.app_id, webhook_id, status=status, limit=limit, cursor=cursor
    )


@router.post("/{webhook_id}/deliveries/{delivery_id}/redeliver", response_model=Delivery)
async def redeliver(
    webhook_id: str, delivery_id: str, principal: AppPrincipal, runtime: RuntimeDep
) -> dict[str, Any]:
    """Try a delivery again now, whatever its status; answers with the new attempt logged."""
    return await runtime.webhooks.redeliver(principal.app_id, webhook_id, delivery_id)


# -- the payloads, for the OpenAPI document ----------------------------------------------


class MessageError(BaseModel):
    code: str
    message: str
    hint: str


class MessageStatusData(BaseModel):
    id: str
    to: str
    status: Literal["sent", "delivered", "failed", "expired"]
    gateway: str | None
    segments: int
    at: str
    error: MessageError | None = None
    metadata: dict[str, Any] | None = None


class ReceivedData(BaseModel):
    id: str
    direction: Literal["inbound"]
    from_: str = Field(alias="from")
    to: str | None
    body: str
    received_at: str | None
    gateway: str | None
    sim_slot: int | None
    segments: int
    read_at: str | None
    incomplete: bool | None = None


class GatewayData(BaseModel):
    gateway: str
    status: str = Field(description="online, offline or error")
    at: str
    reason: str | None = None


def _payload(name: str, data: type[BaseModel]) -> type[BaseModel]:
    fields: dict[str, Any] = {
        "type": (Literal[name], ...),
        "timestamp": (str, Field(description="When it happened (ISO-8601).")),
        "data": (data, ...),
    }
    model: type[BaseModel] = create_model(
        name.replace(".", "_").title().replace("_", "") + "Payload", **fields
    )
    return model


SIGNING = (
    "Signed per Standard Webhooks: headers `webhook-id` (`evt_…`, the same on every retry), "
    "`webhook-timestamp` and `webhook-signature` (`v1,<base64 HMAC-SHA256>` of "
    "`id.timestamp.body`, one per valid secret). Answer 2xx within the timeout; 410 "
    "switches the endpoint off; anything else is retried with backoff for about a day."
)


def declare_payloads(app: FastAPI) -> None:
    kinds: dict[str, tuple[type[BaseModel], str]] = {
        "message.received": (ReceivedData, "An SMS arrived on any gateway."),
        "message.sent": (MessageStatusData, "A gateway handed your message to the network."),
        "message.delivered": (MessageStatusData, "The network confirmed delivery."),
        "message.failed": (MessageStatusData, "Your message failed or expired."),
        "gateway.online": (GatewayData, "A gateway came online."),
        "gateway.offline": (GatewayData, "A gateway went offline or into error."),
    }
    for name, (data, summary) in kinds.items():
        model = _payload(name, data)

        async def receiver(body: Any) -> None:
            return None

        # Set the real type here: the module's postponed annotations would leave a name.
        receiver.__annotations__ = {"body": model, "return": None}
        app.webhooks.add_api_route(
            name, receiver, methods=["POST"], summary=summary, description=SIGNING
        )
