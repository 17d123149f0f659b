"""One JSON error shape for every error the HTTP API answers:
``{"error": {"code", "message", "field"?, "hint"?, "request_id"?}}``."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException

from simgate.errors import RateLimited, SimgateError
from simgate.logs import request_id_var

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "timeout",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
MESSAGES = {
    404: "no such resource",
    405: "method not allowed for this path",
    413: "request body is too large",
}


def error_body(
    code: str, message: str, *, field: str | None = None, hint: str | None = None
) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        err["field"] = field
    if hint is not None:
        err["hint"] = hint
    rid = request_id_var.get()
    if rid:
        err["request_id"] = rid
    return {"error": err}


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    field: str | None = None,
    hint: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code or CODES.get(status, "error"), message, field=field, hint=hint),
        status_code=status,
        headers=dict(headers) if headers else None,
    )


GATEWAY_PREFIX = "/api/v1/gateway/"


def _respond(
    request: Request,
    status: int,
    message: str,
    *,
    code: str | None = None,
    field: str | None = None,
    hint: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The app API's error shape, or seed 003's ``{"success": false, "error": …}`` on the
    gateway protocol's paths (with its rate-limit headers, on errors too)."""
    if not request.url.path.startswith(GATEWAY_PREFIX):
        return error_response(status, message, code=code, field=field, hint=hint, headers=headers)
    body: dict[str, Any] = {"success": False, "error": message}
    if field is not None:
        body["field"] = field
    merged = dict(getattr(request.state, "rate_headers", None) or {})
    merged.update(headers or {})
    return JSONResponse(body, status_code=status, headers=merged or None)


class ApiError(HTTPException):
    """An HTTP error raised from routes or middleware with code, field and headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code or CODES.get(status, "error")
        self.field = field
        self.hint = hint


def field_path(loc: Sequence[Any]) -> str:
    """``("body", "to", 3)`` -> ``"to[3]"``; ``("query", "limit")`` -> ``"limit"``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return error_response(
            400, "request body is not valid JSON", code="invalid_json", field="body"
        )
    field = field_path(first.get("loc", ()))
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "missing":
        msg = "is required"
    elif first.get("type") == "extra_forbidden":
        msg = "is not a known field"
    more = (
        f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        if len(errors) > 1
        else ""
    )
    return error_response(422, f"{field}: {msg}{more}", field=field)


def install_error_handlers(app: FastAPI) -> None:
    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        status = exc.status_code
        if isinstance(exc, ApiError):
            return _respond(
                request,
                status,
                str(exc.detail),
                code=exc.code,
                field=exc.field,
                hint=exc.hint,
                headers=exc.headers,
            )
        detail = exc.detail if isinstance(exc.detail, str) else None
        default = MESSAGES.get(status, "request failed")
        message = (
            detail if detail and detail not in ("Not Found", "Method Not Allowed") else default
        )
        return _respond(request, status, message, headers=exc.headers)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        answer = _validation_response(exc)
        if request.url.path.startswith(GATEWAY_PREFIX):
            err = json.loads(bytes(answer.body))["error"]
            return _respond(request, answer.status_code, err["message"], field=err.get("field"))
        return answer

    async def on_simgate(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SimgateError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(exc.retry_after)}
        return _respond(
            request,
            exc.status,
            exc.message,
            code=exc.code,
            field=exc.field,
            hint=exc.hint,
            headers=headers,
        )

    async def on_database_down(request: Request, exc: Exception) -> JSONResponse:
        outage = (
            not isinstance(exc, DBAPIError)
            or isinstance(exc, OperationalError | InterfaceError)
            or exc.connection_invalidated
        )
        if not outage:
            raise exc  # a real bug, not an outage: let it be a logged 500
        log.warning(
            "database unavailable",
            extra={"path": request.url.path, "error": str(getattr(exc, "orig", exc))[:200]},
        )
        return _respond(
            request,
            503,
            "the database is unavailable; try again shortly",
            code="unavailable",
            headers={"Retry-After": "5"},
        )

    app.add_exception_handler(HTTPException, on_http)
    for kind in (OperationalError, InterfaceError, DBAPIError, ConnectionError, TimeoutError):
        app.add_exception_handler(kind, on_database_down)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(SimgateError, on_simgate)
