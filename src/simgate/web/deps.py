"""The only place with FastAPI ``Depends`` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.domain.keys import Scope, is_gateway_key
from simgate.errors import Forbidden, Unauthorized
from simgate.services.auth import Principal
from simgate.web.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs plain-def dependencies in a thread pool, which costs
    # a thread hop on every request.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with runtime.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def presented_key(request: Request) -> str:
    """The API key from ``Authorization: Bearer`` or ``X-API-Key``; Unauthorized if none."""
    headers = request.headers
    auth = headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise Unauthorized(
                "malformed Authorization header: expected 'Bearer <api key>'",
                field="authorization",
            )
        return token
    key = headers.get("x-api-key")
    if key is not None:
        key = key.strip()
        if not key:
            raise Unauthorized("X-API-Key header is empty", field="x-api-key")
        return key
    raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")


async def authenticate(request: Request, key: str) -> Principal:
    runtime: Runtime = request.app.state.runtime
    principal = await runtime.authenticator.authenticate(key)
    if principal is None:
        runtime.metrics.auth_failures.labels("invalid_key").inc()
        if is_gateway_key(key):
            raise Unauthorized(
                "this is a gateway key (gw_live_…): it is for /api/v1/gateway/* and /cable; "
                "the app API takes an app key (sg_…)"
            )
        raise Unauthorized("invalid or revoked API key")
    request.scope.setdefault("state", {})["principal"] = principal
    return principal


def require(scope: Scope) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the calling app's principal, which must hold ``scope``."""

    async def dependency(request: Request) -> Principal:
        try:
            key = presented_key(request)
        except Unauthorized:
            request.app.state.runtime.metrics.auth_failures.labels("missing_or_malformed").inc()
            raise
        principal = await authenticate(request, key)
        if not principal.allows(scope):
            raise Forbidden(
                f"this API key lacks the {scope.value!r} scope; create a key with it "
                f"('simgate key create {principal.app_name} --scopes {scope.value}')"
            )
        return principal

    return dependency


async def any_key(request: Request) -> Principal:
    return await authenticate(request, presented_key(request))


AppPrincipal = Annotated[Principal, Depends(any_key)]
AdminPrincipal = Annotated[Principal, Depends(require(Scope.ADMIN))]
SendPrincipal = Annotated[Principal, Depends(require(Scope.SEND))]
