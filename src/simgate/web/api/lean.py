"""Lean endpoints for the API's hottest calls, answered without FastAPI's per-request
machinery (dependency resolution, parameter models, response-model validation, route
wrappers).

FastAPI spends more CPU resolving a route's dependencies and wrapping it than simgate spends
on the hottest calls themselves: about 40 µs of a keyed ``GET /api/v1/me``, against some 10
for the key check it wraps. So the calls apps and monitors make most often are answered here
as plain ASGI endpoints, which the core middleware calls before the router:

- ``POST /api/v1/messages``, what every sending app calls, often thousands of times a minute;
- ``GET /api/v1/messages/{message_id}``, the status poll of apps without a webhook;
- ``GET /api/v1/me``, which client libraries call to check their key;
- ``GET /healthz``, what load balancers and container health checks poll.

Each FastAPI route stays registered behind its lean endpoint: it documents the call in the
OpenAPI schema and ``/docs``, and serves as the reference for the behaviour kept here, step
by step and in the same order (``tests/integration/test_lean_routes.py`` compares the two
answers for each case). For the send:

1. the body is read and parsed as JSON when the Content-Type says JSON (``application/json``
   or ``application/*+json``); malformed JSON is a 400 before the key is looked at;
2. the API key is checked, with the ``send`` scope (401/403 as everywhere else);
3. the body is validated by the same pydantic model (422 naming the field);
4. the message goes through ``Outbound.submit``: validated, normalised, durable before 202.

The keyed GET endpoints check the key (any scope; a message's direction decides the scope
it needs) and answer what the route's own function answers, serialised as FastAPI (0.130
and later) serialises a route's return value: by pydantic, to JSON.

Errors are raised, not answered here, so the app's error handlers give them the one error
shape; the request log and metrics see the call as they see any other.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from simgate.domain.keys import Scope as KeyScope
from simgate.services.auth import Principal
from simgate.web.api.messages import SendBody, queue_send, read_message
from simgate.web.api.schemas import Me
from simgate.web.api.system import HEALTHY
from simgate.web.api.v1 import me_of
from simgate.web.deps import any_key, require
from simgate.web.runtime import Runtime

_SEND_BODY: TypeAdapter[SendBody] = TypeAdapter(SendBody)
_dump_message = TypeAdapter(dict[str, Any]).dump_json
_dump_me = TypeAdapter(Me).dump_json
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


class LeanEndpoint(ABC):
    """One lean endpoint: ``method`` and ``path`` (a Starlette path, ``{name}`` for a
    segment) as the FastAPI route behind it has them; ``respond`` makes the answer."""

    method: str
    path: str

    def __init__(self) -> None:
        self.route: Route | None = None  # for the metrics' route label

    @abstractmethod
    async def respond(self, request: Request) -> Response:
        """The answer to ``request``; errors are raised for the app's handlers."""

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
        response = await self.respond(Request(scope, receive))
        await response(scope, receive, send)


def _json(content: bytes) -> Response:
    return Response(content, media_type="application/json")


class SendEndpoint(LeanEndpoint):
    """``POST /api/v1/messages`` (see the module's docstring)."""

    method = "POST"
    path = "/api/v1/messages"

    def __init__(self) -> None:
        super().__init__()
        self._principal: Callable[[Request], Awaitable[Principal]] = require(KeyScope.SEND)

    async def respond(self, request: Request) -> Response:
        data = await _json_body(request)
        principal = await self._principal(request)
        body = _validate(data)
        return await queue_send(
            request.app.state.runtime, principal, body, request.headers.get("idempotency-key")
        )


class MessageEndpoint(LeanEndpoint):
    """``GET /api/v1/messages/{message_id}``: one message with its status history."""

    method = "GET"
    path = "/api/v1/messages/{message_id}"

    async def respond(self, request: Request) -> Response:
        principal = await any_key(request)
        runtime: Runtime = request.app.state.runtime
        async with runtime.sessionmaker() as session:
            found = await read_message(
                runtime, session, principal, request.path_params["message_id"]
            )
        return _json(_dump_message(found))


class MeEndpoint(LeanEndpoint):
    """``GET /api/v1/me``: the app and key making the call."""

    method = "GET"
    path = "/api/v1/me"

    async def respond(self, request: Request) -> Response:
        return _json(_dump_me(me_of(await any_key(request))))


class HealthEndpoint(LeanEndpoint):
    """``GET /healthz``: the process is alive (the answer never changes)."""

    method = "GET"
    path = "/healthz"

    async def respond(self, request: Request) -> Response:
        return _json(HEALTHY)


def routes() -> list[Route]:
    """The lean routes, to be placed before the app's own (the core middleware calls their
    endpoints directly; the routes serve a request the middleware leaves to the router,
    such as one under a root path)."""
    out = []
    for endpoint in (SendEndpoint(), MessageEndpoint(), MeEndpoint(), HealthEndpoint()):
        route = Route(endpoint.path, endpoint, methods=[endpoint.method], include_in_schema=False)
        route.methods = {endpoint.method}  # not HEAD as well, which Starlette adds to GET
        endpoint.route = route
        out.append(route)
    return out
