"""Seed 003's HTTP API for phone gateways: register, heartbeat, received SMS, status
reports. Errors answer in the seed's shape ``{"success": false, "error": "…"}`` (see
``web.errors``), and every answer carries the key's rate-limit headers."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from simgate.domain.keys import is_enrollment_token, looks_like_app_key
from simgate.errors import RateLimited, SimgateError, Unauthorized
from simgate.services import phones
from simgate.services.phone_auth import Phone
from simgate.web.deps import RuntimeDep
from simgate.web.routing import Router
from simgate.web.runtime import Runtime

router = Router(prefix="/api/v1/gateway", tags=["phone gateways (seed 003)"])

EXAMPLE_KEY = "Authorization: Bearer gw_live_<64 hex digits>"


class BadRequest(SimgateError):
    status = 400
    code = "bad_request"


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):
        raise BadRequest("Request body is not valid JSON", field="body") from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object", field="body")
    return data


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth is None:
        return None
    scheme, _, token = auth.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(f"Malformed Authorization header: expected '{EXAMPLE_KEY}'")
    return token.strip()


def _limit(request: Request, runtime: Runtime, kind: str, key: object) -> None:
    now = time.time()
    verdict = runtime.phone_limits[kind].hit(key, now)
    request.state.rate_headers = verdict.headers()
    if not verdict.allowed:
        raise RateLimited(
            f"Rate limit exceeded: at most {verdict.limit} {kind} requests a minute",
            retry_after=verdict.retry_after(now),
        )


async def phone_of(request: Request, runtime: Runtime, kind: str) -> Phone:
    """The calling phone; 401 for a missing or unknown key, 403 for a deactivated one."""
    key = _bearer(request)
    if key is None:
        raise Unauthorized(f"Missing API key: send '{EXAMPLE_KEY}'")
    if looks_like_app_key(key):
        raise Unauthorized(
            "Invalid API key: this is an app key (sg_…); gateways use their gw_live_ key"
        )
    phone = await runtime.phone_auth.authenticate(key)
    if phone is None:
        raise Unauthorized("Invalid API key")
    _limit(request, runtime, kind, phone.id)
    phones.refuse_inactive(phone)
    return phone


def _answer(request: Request, body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=request.state.rate_headers)


@router.post("/register", status_code=201, summary="Register a phone; answers its key once")
async def register(request: Request, runtime: RuntimeDep) -> JSONResponse:
    token = _bearer(request)
    client = request.client.host if request.client else ""
    _limit(request, runtime, "register", client)
    if token is not None and not is_enrollment_token(token):
        raise Unauthorized("Invalid enrollment token (it starts with gwe_)")
    data = await _json(request)
    async with runtime.sessionmaker.begin() as session:
        made = await phones.register(
            session,
            data=data,
            token=token,
            open_registration=runtime.settings.open_registration,
            client=client,
        )
    return _answer(
        request,
        {
            "success": True,
            "message": "Gateway registered successfully",
            "gateway": {
                "id": made.id,
                "device_id": made.device_id,
                "name": made.label,
                "gateway": made.name,  # the name sends use ("gateway": …)
                "api_key": made.key,
                "status": "offline",
                "active": True,
            },
        },
        201,
    )


@router.post("/heartbeat", summary="A phone says it is alive, with battery and signal")
async def heartbeat(request: Request, runtime: RuntimeDep) -> JSONResponse:
    phone = await phone_of(request, runtime, "heartbeat")
    data = await _json(request)
    async with runtime.sessionmaker.begin() as session:
        status = await phones.heartbeat(session, phone=phone, data=data, via="http")
    return _answer(
        request, {"success": True, "message": "Heartbeat received", "gateway_status": status}
    )


@router.post("/sms/received", status_code=201, summary="A phone hands over an SMS it received")
async def sms_received(request: Request, runtime: RuntimeDep) -> JSONResponse:
    phone = await phone_of(request, runtime, "sms_received")
    data = await _json(request)
    async with runtime.sessionmaker.begin() as session:
        message_id, _ = await phones.receive_sms(session, phone=phone, data=data)
    return _answer(
        request,
        {"success": True, "message": "SMS received and processed", "message_id": message_id},
        201,
    )


@router.post("/sms/status", summary="A phone reports what became of a message")
async def sms_status(request: Request, runtime: RuntimeDep) -> JSONResponse:
    phone = await phone_of(request, runtime, "sms_status")
    data = await _json(request)
    async with runtime.sessionmaker() as session:
        report = await phones.check_status(session, phone=phone, data=data)
    await runtime.phones.report(phone.name, report)
    return _answer(request, {"success": True, "message": "Status updated"})
