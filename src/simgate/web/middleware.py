"""The one ASGI middleware around every HTTP request.

Pure ASGI (no BaseHTTPMiddleware) because it runs on every request: it assigns the request
id, enforces the body size limit, times the request for metrics and the access log, and
hands authenticated calls to the API request log.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simgate.logs import request_id_var
from simgate.services.request_log import RequestEntry
from simgate.store.types import utcnow
from simgate.web.errors import ApiError, error_body

if TYPE_CHECKING:
    from simgate.web.runtime import Runtime

access_log = logging.getLogger("simgate.access")
log = logging.getLogger(__name__)
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Every response: no inline script anywhere (the dashboard and /docs load scripts from
# this server only), no framing, no sniffing, no full URLs in Referer to other sites.
SECURITY_HEADERS = [
    (b"content-security-policy", _CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
]
# Swagger UI sets style attributes in its markup.
DOCS_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        _CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'").encode(),
    ),
    *SECURITY_HEADERS[1:],
]


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"request body is larger than {limit} bytes", code="payload_too_large"
        )


class CoreMiddleware:
    def __init__(self, app: ASGIApp, runtime: Runtime, lean: Sequence[Route] = ()) -> None:
        self.app = app
        self.runtime = runtime
        # Endpoints answered here rather than through the router (web/api/lean.py): by
        # method and path, or by their routes' own matching for paths with parameters.
        self.lean: dict[tuple[str, str], Any] = {
            (method, route.path): route.app
            for route in lean
            if not route.param_convertors
            for method in route.methods or ()
        }
        self.lean_patterns = [route for route in lean if route.param_convertors]
        self.limit = runtime.settings.max_body_bytes
        self.access_log = runtime.settings.access_log
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = ""
        content_length: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                if _REQUEST_ID_RE.match(text):
                    request_id = text
            elif name == b"content-length":
                content_length = value
        if not request_id:
            # 32 random hex digits, as uuid4().hex gives them without building a UUID (a
            # quarter of the cost): unguessable, so no client can send the id another
            # request is about to get
            request_id = os.urandom(16).hex()
        token = request_id_var.set(request_id)
        status = 500
        started = False
        rid_header = (b"x-request-id", request_id.encode("ascii"))
        extra = DOCS_SECURITY_HEADERS if scope["path"].startswith("/docs") else SECURITY_HEADERS

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], rid_header, *extra]
            await send(message)

        try:
            if content_length is not None:
                try:
                    declared = int(content_length)
                except ValueError:
                    declared = -1
                if declared < 0:
                    status = 400
                    await _send_json(
                        send,
                        400,
                        error_body(
                            "bad_request",
                            "Content-Length header is not a number",
                            field="content-length",
                        ),
                        rid_header,
                    )
                    return
                if declared > self.limit:
                    status = 413
                    await _send_json(
                        send,
                        413,
                        error_body(
                            "payload_too_large", f"request body is larger than {self.limit} bytes"
                        ),
                        rid_header,
                    )
                    return
            received = 0
            limit = self.limit

            async def receive_wrapper() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise BodyTooLarge(limit)
                return message

            lean = None if scope.get("root_path") else self._lean(scope)
            try:
                if lean is not None:
                    await lean.answer(scope, receive_wrapper, send_wrapper)
                else:
                    await self.app(scope, receive_wrapper, send_wrapper)
            except Exception:
                # Handled here rather than by Starlette's ServerErrorMiddleware, which
                # re-raises so the server logs the same traceback a second time.
                status = 500
                log.exception(
                    "unhandled error", extra={"method": scope["method"], "path": scope["path"]}
                )
                if not started:
                    await _send_json(
                        send,
                        500,
                        error_body(
                            "internal_error", "internal error; the request id is in the server log"
                        ),
                        rid_header,
                    )
        finally:
            self._done(scope, status, time.perf_counter() - start, request_id)
            request_id_var.reset(token)

    def _lean(self, scope: Scope) -> Any:
        """The lean endpoint for this request, if one answers it (with its path parameters
        set in the scope, as the router would set them)."""
        endpoint = self.lean.get((scope["method"], scope["path"]))
        if endpoint is not None:
            return endpoint
        for route in self.lean_patterns:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:  # path and method (PARTIAL: another method)
                scope.update(child_scope)
                return route.app
        return None

    def _done(self, scope: Scope, status: int, elapsed: float, request_id: str) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "<unmatched>"
        key = (scope["method"], path, status)
        children = self._children.get(key)
        if children is None:  # labels() costs a lock and a tuple hash per call: cache it
            metrics = self.runtime.metrics
            children = (
                metrics.http_requests.labels(scope["method"], path, str(status)),
                metrics.http_latency.labels(path),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)
        client = scope.get("client")
        ip = client[0] if client else ""
        state: dict[str, Any] = scope.get("state") or {}
        principal = state.get("principal")
        if principal is not None:
            self.runtime.request_log.record(
                RequestEntry(
                    created_at=utcnow(),
                    app_id=principal.app_id,
                    key_prefix=principal.key_prefix,
                    method=scope["method"],
                    endpoint=path[:255],
                    status=status,
                    latency_ms=round(elapsed * 1000, 3),
                    client_ip=ip,
                    request_id=request_id,
                )
            )
        if self.access_log:
            access_log.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "ms": round(elapsed * 1000, 2),
                    "client": ip,
                    "app": principal.app_name if principal is not None else None,
                },
            )


async def _send_json(
    send: Send, status: int, body: dict[str, Any], rid_header: tuple[bytes, bytes]
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
                rid_header,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
