"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from simgate import __version__
from simgate.errors import Unauthorized
from simgate.store.engine import describe_db_error
from simgate.store.migrate import current_revision, head_revision
from simgate.web.deps import RuntimeDep
from simgate.web.errors import ApiError
from simgate.web.routing import Router

router = Router(tags=["system"])


class Health(BaseModel):
    status: str
    version: str


class Ready(BaseModel):
    status: str
    database: str
    revision: str


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return _HEALTH


_HEALTH = Health(status="ok", version=__version__)
# The same answer, serialised once, for the lean endpoint (web/api/lean.py).
HEALTHY = _HEALTH.model_dump_json().encode()


@router.get(
    "/readyz",
    response_model=Ready,
    summary="The database is reachable and its schema is current",
    responses={503: {"description": "Not ready: the error says why"}},
)
async def readyz(runtime: RuntimeDep) -> Ready:
    try:
        async with runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        revision = await current_revision(runtime.engine)
    except (SQLAlchemyError, OSError) as exc:
        raise ApiError(
            503, f"database unreachable: {describe_db_error(exc)}", code="not_ready"
        ) from None
    head = head_revision()
    if revision != head:
        raise ApiError(
            503,
            f"database schema is at {revision or 'nothing'}, this version needs {head}",
            code="not_ready",
            hint="run 'simgate db upgrade' (simgate serve does it at start)",
        )
    return Ready(status="ready", database="ok", revision=revision)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request, runtime: RuntimeDep) -> Response:
    token = runtime.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise Unauthorized(
                "/metrics needs 'Authorization: Bearer <metrics token>'", field="authorization"
            )
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
