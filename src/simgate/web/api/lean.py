"""Lean endpoints for the API's hottest calls, answered without FastAPI's per-request
machinery (dependency resolution, parameter models, route wrappers).

``POST /api/v1/messages`` is what every sending app calls, often thousands of times a
minute. FastAPI spends more CPU resolving its dependencies and wrapping the route than
simgate spends validating and queueing the message, so this module answers it as a plain
ASGI endpoint placed before FastAPI's routes. The FastAPI route stays registered behind it:
it documents the call in the OpenAPI schema and ``/docs``, and serves as the reference for
the behaviour kept here, step by step and in the same order:

1. the body is read and parsed as JSON when the Content-Type says JSON (``application/json``
   or ``application/*+json``); malformed JSON is a 400 before the key is looked at;
2. the API key is checked, with the ``send`` scope (401/403 as everywhere else);
3. the body is validated by the same pydantic model (422 naming the field);
4. the message goes through ``Outbound.submit``: validated, normalised, durable before 202.

Errors are raised, not answered here, so the app's error handlers give them the one error
shape; the request log and metrics see the call as they see any other.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from simgate.domain.keys import Scope as KeyScope
from simgate.services.auth import Principal
from simgate.web.api.messages import SendBody, queue_send
from simgate.web.deps import require

_SEND_BODY: TypeAdapter[SendBody] = TypeAdapter(SendBody)
_MISSING = object()


def _is_json(content_type: str | None) -> bool:
    """As FastAPI decides it: ``application/json`` or ``application/<anything>+json``,
    parameters (``; charset=…``) aside; a body without a Content-Type is not JSON."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def _json_body(request: Request) -> Any:
    """The body as FastAPI hands it to validation: parsed JSON, the raw bytes when the
    Content-Type is not JSON, or ``_MISSING`` when there is none."""
    raw = await request.body()
    if not raw:
        return _MISSING
    if not _is_json(request.headers.get("content-type")):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ],
            body=exc.doc,
        ) from None
    except Exception:  # undecodable bytes (not UTF-8/16/32)
        raise HTTPException(400, "There was an error parsing the body") from None


def _validate(data: Any) -> SendBody:
    if data is _MISSING:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        return _SEND_BODY.validate_python(data, from_attributes=True)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=data) from None


class SendEndpoint:
    """``POST /api/v1/messages`` as a plain ASGI app (see the module's docstring)."""

    path = "/api/v1/messages"

    def __init__(self) -> None:
        self._principal: Callable[[Request], Awaitable[Principal]] = require(KeyScope.SEND)
        self.route: Route | None = None  # for the metrics' route label

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Called by the core middleware without going through the router: an error is
        answered by the app's handler for it, as Starlette's exception middleware would."""
        started = False

        async def sender(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self(scope, receive, sender)
        except Exception as exc:
            handlers = scope["app"].exception_handlers
            handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
            if handler is None or started:
                raise
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, sender)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self.route
        request = Request(scope, receive)
        data = await _json_body(request)
        principal = await self._principal(request)
        body = _validate(data)
        response = await queue_send(
            request.app.state.runtime, principal, body, request.headers.get("idempotency-key")
        )
        await response(scope, receive, send)


def routes() -> list[Route]:
    """The lean routes, to be placed before the app's own (the core middleware calls their
    endpoints directly; the routes serve a request the middleware leaves to the router,
    such as one under a root path)."""
    endpoint = SendEndpoint()
    route = Route(endpoint.path, endpoint, methods=["POST"], include_in_schema=False)
    endpoint.route = route
    return [route]
