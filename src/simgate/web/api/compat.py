"""Compatibility with the documents simgate was born from. These answer in the seeds'
own JSON shapes (``{"status": "success"|"error", "message": …}``), not the v1 error shape,
because clients written against them parse exactly that."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from simgate.domain.keys import Scope
from simgate.domain.messages import MessageStatus
from simgate.errors import RateLimited, SimgateError, Unauthorized
from simgate.services import gateways as gateway_service
from simgate.services import inbox
from simgate.services.auth import Principal
from simgate.services.outbound import Sender, SendRequest
from simgate.store.models import App
from simgate.web.deps import authenticate, presented_key
from simgate.web.routing import Router
from simgate.web.runtime import Runtime

router = Router(tags=["compatibility"])
S = MessageStatus
DONE = {S.SENT.value, S.DELIVERED.value, S.FAILED.value, S.EXPIRED.value, S.CANCELED.value}


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message, **extra}, status_code=status)


async def _body_key_principal(
    request: Request, data: dict[str, Any], scope: Scope
) -> Principal | JSONResponse:
    """Seed 000's and 002's key: `Authorization: Bearer`, `X-API-Key` or `api_key` in the
    JSON body; the caller if it holds ``scope``, else the error in the seeds' shape."""
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
    if not principal.allows(scope):
        return _error(403, f"this API key lacks the {scope.value!r} scope")
    return principal


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
    principal = await _body_key_principal(request, data, Scope.SEND)
    if isinstance(principal, JSONResponse):
        return principal
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


# --- seed 002: one-time passcodes ------------------------------------------------------------


async def _otp_caller(
    request: Request, runtime: Runtime, data: dict[str, Any]
) -> tuple[int, str, bool] | JSONResponse:
    """(app id, app name, open) for a seed 002 call, or the error to answer. Without a key,
    callers on SIMGATE_OTP_OPEN_NETWORKS count as the open app, as on the seed's LAN."""
    has_key = "authorization" in request.headers or "x-api-key" in request.headers
    if not has_key and not (isinstance(data.get("api_key"), str) and data["api_key"]):
        peer = _peer(request)
        if peer is not None and any(peer in net for net in runtime.settings.otp_networks):
            found = await _open_app(runtime)
            if found is None:
                return _error(
                    503,
                    "open OTP requests need an app to count as: create one with 'simgate app "
                    "create NAME' (or set SIMGATE_OTP_OPEN_APP to an existing app)",
                )
            return found[0], found[1], True
    principal = await _body_key_principal(request, data, Scope.OTP)
    if isinstance(principal, JSONResponse):
        return principal
    return principal.app_id, principal.app_name, False


def _peer(request: Request) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


async def _open_app(runtime: Runtime) -> tuple[int, str] | None:
    wanted = runtime.settings.otp_open_app
    async with runtime.sessionmaker() as session:
        stmt = select(App.id, App.name).where(App.is_active.is_(True))
        stmt = stmt.where(App.name == wanted) if wanted else stmt.order_by(App.id).limit(1)
        row = (await session.execute(stmt)).first()
    return (int(row[0]), str(row[1])) if row else None


async def _json_object(request: Request, fields: str) -> dict[str, Any] | JSONResponse:
    try:
        data = json.loads(await request.body() or b"null")
    except (ValueError, RecursionError):
        return _error(400, "request body is not valid JSON", field="body")
    if not isinstance(data, dict):
        return _error(400, f"request body must be a JSON object with {fields}", field="body")
    return data


async def _otp_request(
    request: Request, runtime: Runtime, fields: str
) -> tuple[dict[str, Any], tuple[int, str, bool]] | JSONResponse:
    """The JSON body and the caller of a seed 002 request, or the error to answer."""
    data = await _json_object(request, fields)
    if isinstance(data, JSONResponse):
        return data
    caller = await _otp_caller(request, runtime, data)
    if isinstance(caller, JSONResponse):
        return caller
    return data, caller


def _seed_error(exc: SimgateError, renames: dict[str, str]) -> JSONResponse:
    field = renames.get(exc.field or "", exc.field)
    message = exc.message
    for old, new in renames.items():
        message = message.replace(f"{old}: ", f"{new}: ", 1)
    response = _error(exc.status, message, **({"field": field} if field else {}))
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


@router.post(
    "/send_otp",
    summary="Seed 002: send a one-time code to a phone",
    description='Body `{"phone"}` (and `api_key`, unless given as `Authorization: Bearer` or '
    '`X-API-Key`, or the caller is on `SIMGATE_OTP_OPEN_NETWORKS`). Answers `{"status": '
    '"success", "message", "id", "expires_at"}` once a gateway sent the SMS (waiting a bounded '
    'time), or `{"status": "error", "message"}`.',
)
async def send_otp(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    opened = await _otp_request(request, runtime, "phone")
    if isinstance(opened, JSONResponse):
        return opened
    data, (app_id, app_name, open_) = opened
    if not isinstance(data.get("phone"), str) or not data["phone"].strip():
        return _error(422, "phone is required", field="phone")
    unknown = sorted(set(data) - {"api_key", "phone"})
    if unknown:
        return _error(422, f"{unknown[0]} is not a known field", field=unknown[0])
    peer = _peer(request)
    try:
        started = await runtime.otp.start(
            sender=Sender(app_id, f"app:{app_name}"),
            phone=data["phone"],
            # The open network's callers are the end users themselves: limit each address.
            client_ip=str(peer) if open_ and peer is not None else None,
        )
    except SimgateError as exc:
        return _seed_error(exc, {})
    message_id = started["message"]["id"]
    status = await runtime.waiters.wait(message_id, DONE, runtime.settings.sendsms_wait)
    answer = {"id": started["id"], "expires_at": started["expires_at"]}
    if status in (S.SENT.value, S.DELIVERED.value):
        return JSONResponse({"status": "success", "message": "OTP sent successfully", **answer})
    if status is None or status not in DONE:
        return JSONResponse(
            {
                "status": "success",
                "message": "OTP accepted; no gateway has sent it yet (it will be sent while "
                "the code is valid)",
                "queued": True,
                **answer,
            },
            status_code=202,
        )
    async with runtime.sessionmaker() as session:
        detail = await gateway_service.message_status(
            session, message_id, app_id=app_id, offline_after=runtime.settings.gateway_offline_after
        )
    error = detail.get("error") or {}
    return _error(
        502,
        error.get("message") or f"the OTP SMS {status}",
        id=started["id"],
        hint=error.get("hint") or "check the gateway in simgate's dashboard",
    )


@router.post(
    "/verify_otp",
    summary="Seed 002: check a one-time code",
    description='Body `{"phone", "otp"}` (authenticated as `/send_otp`). Answers `{"status": '
    '"success", "message": "OTP verified successfully"}` once per code, else `{"status": '
    '"error", "message"}` saying why (wrong, expired, too many attempts, none pending).',
)
async def verify_otp(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    opened = await _otp_request(request, runtime, "phone and otp")
    if isinstance(opened, JSONResponse):
        return opened
    data, (app_id, _, _) = opened
    for name in ("phone", "otp"):
        value = data.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and name == "otp":
            data[name] = str(value)
        elif not isinstance(value, str) or not value.strip():
            return _error(422, f"{name} is required", field=name)
    unknown = sorted(set(data) - {"api_key", "phone", "otp"})
    if unknown:
        return _error(422, f"{unknown[0]} is not a known field", field=unknown[0])
    try:
        vid, verdict = await runtime.otp.check(
            app_id=app_id, code=data["otp"].strip(), phone=data["phone"], code_field="otp"
        )
    except SimgateError as exc:
        return _seed_error(exc, {})
    if verdict.valid:
        return JSONResponse(
            {"status": "success", "message": "OTP verified successfully", "id": vid}
        )
    messages = {
        "pending": "invalid OTP",
        "max_attempts": "too many wrong attempts; request a new OTP",
        "expired": "OTP expired; request a new one",
    }
    text = messages.get(verdict.status, "no OTP pending for this phone; request one first")
    extra: dict[str, Any] = {"reason": verdict.status}
    if verdict.attempts_left is not None:
        extra["attempts_left"] = verdict.attempts_left
    if verdict.status == "pending":
        left = verdict.attempts_left
        text = f"invalid OTP; {left} attempt{'s' if left != 1 else ''} left"
    return _error(400, text, **extra)
