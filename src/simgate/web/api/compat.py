"""Compatibility with the documents simgate was born from. These answer in the seeds'
own JSON shapes (``{"status": "success"|"error", "message": …}``), not the v1 error shape,
because clients written against them parse exactly that."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from simgate.domain.keys import Scope
from simgate.domain.messages import MessageStatus
from simgate.errors import SimgateError, Unauthorized
from simgate.services import gateways as gateway_service
from simgate.services import inbox
from simgate.services.outbound import Sender, SendRequest
from simgate.web.deps import authenticate, presented_key
from simgate.web.runtime import Runtime

router = APIRouter(tags=["compatibility"])
S = MessageStatus
DONE = {S.SENT.value, S.DELIVERED.value, S.FAILED.value, S.EXPIRED.value, S.CANCELED.value}


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message, **extra}, status_code=status)


@router.post(
    "/api/sendsms",
    summary="Seed 000: send one SMS and wait (bounded) for the gateway's answer",
    description='Body `{"api_key"?, "phone", "message"}`; the key may also come in '
    '`Authorization: Bearer` or `X-API-Key`. Answers `{"status": "success", "message": '
    '"SMS sent successfully", "id"}` once a gateway took the SMS, or `{"status": '
    '"error", "message", "hint"}`.',
)
async def sendsms(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    try:
        data = json.loads(await request.body() or b"null")
    except (ValueError, RecursionError):
        return _error(400, "request body is not valid JSON", field="body")
    if not isinstance(data, dict):
        return _error(
            400, "request body must be a JSON object with phone and message", field="body"
        )
    try:
        if "authorization" in request.headers or "x-api-key" in request.headers:
            key = presented_key(request)
        elif isinstance(data.get("api_key"), str) and data["api_key"]:
            key = data["api_key"]
        else:
            raise Unauthorized("missing api_key")
        principal = await authenticate(request, key)
    except Unauthorized as exc:
        return _error(
            401,
            "invalid API key" if "missing" not in exc.message else "missing api_key",
            **({"field": exc.field} if exc.field else {}),
        )
    if not principal.allows(Scope.SEND):
        return _error(403, "this API key lacks the 'send' scope")
    for name in ("phone", "message"):
        if not isinstance(data.get(name), str) or not data[name].strip():
            return _error(422, f"{name} is required", field=name)
    unknown = sorted(set(data) - {"api_key", "phone", "message"})
    if unknown:
        return _error(422, f"{unknown[0]} is not a known field", field=unknown[0])
    try:
        accepted = await runtime.outbound.submit(
            sender=Sender(principal.app_id, f"app:{principal.app_name}"),
            req=SendRequest(to=[data["phone"]], body=data["message"], many=False),
        )
    except SimgateError as exc:
        field = (
            "phone"
            if (exc.field or "").startswith("to")
            else ("message" if exc.field == "body" else exc.field)
        )
        message = exc.message.replace("to: ", "phone: ").replace("body: ", "message: ")
        headers = {"Retry-After": str(exc.retry_after)} if hasattr(exc, "retry_after") else None
        response = _error(exc.status, message, **({"field": field} if field else {}))
        if headers:
            response.headers.update(headers)
        return response
    message_id = accepted.message_ids[0]
    status = await runtime.waiters.wait(message_id, DONE, runtime.settings.sendsms_wait)
    if status in (S.SENT.value, S.DELIVERED.value):
        return JSONResponse(
            {"status": "success", "message": "SMS sent successfully", "id": message_id}
        )
    async with runtime.sessionmaker() as session:
        detail = await gateway_service.message_status(
            session,
            message_id,
            app_id=principal.app_id,
            offline_after=runtime.settings.gateway_offline_after,
        )
    if status is None or status not in DONE:
        return JSONResponse(
            {
                "status": "queued",
                "id": message_id,
                "message": "SMS accepted and queued; no gateway has sent it yet",
                "hint": detail.get("status_detail")
                or "see GET /api/v1/messages/" + message_id + " for its progress",
            },
            status_code=202,
        )
    error = detail.get("error") or {}
    return _error(
        502,
        error.get("message") or f"SMS {status}",
        id=message_id,
        hint=error.get("hint") or "check the gateway in simgate's dashboard",
        code=error.get("code") or status,
    )


@router.get(
    "/json",
    summary="Seed 001: the last 50 received SMS, newest first",
    description='Answers `[{"number", "text", "timestamp"}]` (ISO-8601). Takes an app key with '
    "the inbox scope as `Authorization: Bearer`, `X-API-Key` or `?api_key=` (for polling "
    "clients like seed 001's), unless an admin made the inbox public "
    "(`SIMGATE_INBOX_PUBLIC=true`).",
)
async def seed_json(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    if not runtime.settings.inbox_public:
        try:
            if "authorization" in request.headers or "x-api-key" in request.headers:
                key = presented_key(request)
            elif request.query_params.get("api_key"):
                key = request.query_params["api_key"]
            else:
                raise Unauthorized("missing api_key")
            principal = await authenticate(request, key)
        except Unauthorized as exc:
            return _error(
                401,
                "missing api_key" if "missing" in exc.message else "invalid API key",
                **({"field": exc.field} if exc.field else {}),
            )
        if not principal.allows(Scope.INBOX):
            return _error(403, "this API key lacks the 'inbox' scope")
    async with runtime.sessionmaker() as session:
        rows = await inbox.recent(session, 50)
    return JSONResponse(
        [
            {
                "number": m.from_number,
                "text": m.body,
                "timestamp": m.created_at.isoformat().replace("+00:00", "Z"),
            }
            for m in rows
        ]
    )
