"""The application factory: ``create_app(settings, engine=...)``; nothing module-level."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate import __version__
from simgate.config import Settings
from simgate.services import (
    audit,
    inbox,
    nodes,
    outbound,
    request_log,
    samples,
    sessions,
    webhooks,
)
from simgate.services.apps import AUTH_CHANNEL
from simgate.services.changes import CHANNEL as CHANGES_CHANNEL
from simgate.services.notify import listen_forever
from simgate.services.outbound import NOTIFY_CHANNEL
from simgate.store.engine import describe_db_error, make_engine
from simgate.store.migrate import current_revision, head_revision
from simgate.store.sqlite_inline import Checkpointer
from simgate.web import dashboard
from simgate.web.api import compat, gateway_api, lean, messages, system, v1
from simgate.web.api import inbox as inbox_api
from simgate.web.api import otp as otp_api
from simgate.web.api import webhooks as webhooks_api
from simgate.web.cable import cable
from simgate.web.errors import install_error_handlers
from simgate.web.middleware import CoreMiddleware
from simgate.web.runtime import PHONE_CHANNEL, Runtime

log = logging.getLogger(__name__)
DOCS_ASSETS = Path(fastapi_offline.__file__).with_name("static")
STATIC_DIR = Path(__file__).with_name("static")
PRUNE_EVERY = 3600.0
PRUNE_CHUNK = 5000

DESCRIPTION = """\
simgate turns SIM cards into an SMS API. Authenticate with an app key:
`Authorization: Bearer <key>` or `X-API-Key: <key>`.

Every error answers `{"error": {"code", "message", "field"?}}` with a fitting status."""


def _background(work: Callable[[str], Coroutine[Any, Any, None]]) -> Callable[[str], None]:
    """A sync callback that runs ``work`` as a task (keeping a reference until it ends)."""
    tasks: set[asyncio.Task[None]] = set()

    def start(payload: str) -> None:
        task = asyncio.get_running_loop().create_task(work(payload))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return start


async def _prune_forever(runtime: Runtime) -> None:
    settings = runtime.settings
    while True:
        try:
            n = 0
            while True:  # the request log can be large: delete it in short transactions
                async with runtime.sessionmaker.begin() as session:
                    chunk = await request_log.prune(
                        session,
                        older_than_days=settings.request_log_retention_days,
                        limit=PRUNE_CHUNK,
                    )
                n += chunk
                if chunk < PRUNE_CHUNK:
                    break
                await asyncio.sleep(0.05)
            received = 0
            while True:  # so can the inbox
                async with runtime.sessionmaker.begin() as session:
                    chunk = await inbox.prune(
                        session, older_than_days=settings.inbox_retention_days, limit=PRUNE_CHUNK
                    )
                received += chunk
                if chunk < PRUNE_CHUNK:
                    break
                await asyncio.sleep(0.05)
            hooks = 0
            while True:  # and the webhook delivery log
                async with runtime.sessionmaker.begin() as session:
                    chunk = await webhooks.prune(
                        session, older_than_days=settings.event_retention_days, limit=PRUNE_CHUNK
                    )
                hooks += chunk
                if chunk < PRUNE_CHUNK:
                    break
                await asyncio.sleep(0.05)
            async with runtime.sessionmaker.begin() as session:
                m = await audit.prune(session, older_than_days=settings.audit_log_retention_days)
                k = await sessions.prune(session)
                i = await outbound.prune(session, idempotency_hours=settings.idempotency_ttl_hours)
                i += await nodes.prune(session)
                g = await samples.prune(session)
            if n or m or k or i or g or received or hooks:
                log.info(
                    "pruned old rows",
                    extra={
                        "api_requests": n,
                        "inbox": received,
                        "webhook_log": hooks,
                        "audit_events": m,
                        "sessions": k,
                        "idempotency_usage_nodes": i,
                        "gateway_samples": g,
                    },
                )
        except (SQLAlchemyError, OSError) as exc:
            log.warning("pruning failed", extra={"error": describe_db_error(exc)})
        await asyncio.sleep(PRUNE_EVERY)


def create_app(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    companions: Sequence[Callable[[], AbstractAsyncContextManager[Any]]] = (),
) -> FastAPI:
    """Build the app. Pass ``engine`` to share one; otherwise the app owns its own.
    ``companions`` run for the app's lifetime, started before its gateways (the demo's
    simulated modem is one)."""
    owns_engine = engine is None
    runtime = Runtime.build(settings, engine or make_engine(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for companion in companions:
                await stack.enter_async_context(companion())
            async with _running(app):
                yield

    @asynccontextmanager
    async def _running(app: FastAPI) -> AsyncIterator[None]:
        try:
            revision = await current_revision(runtime.engine)
            if revision != head_revision():
                log.warning(
                    "database schema is not current; /readyz answers 503",
                    extra={"revision": revision, "needed": head_revision()},
                )
        except (SQLAlchemyError, OSError) as exc:
            log.warning("database unreachable at start", extra={"error": describe_db_error(exc)})
        tasks: list[asyncio.Task[None]] = []

        def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
            tasks.append(asyncio.create_task(coro, name=name))

        try:
            await runtime.gateways.sync()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not start gateways yet", extra={"error": describe_db_error(exc)})
        if runtime.engine.url.get_backend_name() == "sqlite":
            spawn(Checkpointer(runtime.engine).run(), "sqlite-checkpoints")
        runtime.dispatcher.start()
        spawn(runtime.gateways.run(), "gateways")
        if runtime.engine.url.get_backend_name() == "postgresql":
            phones_told = _background(runtime.phones.notified)

            def wake_for_others(payload: str) -> None:
                # This process's own sends woke the dispatcher when they committed; woken
                # again by their NOTIFY, it would claim once more and find nothing.
                if payload != runtime.outbound.token:
                    runtime.dispatcher.wake()

            channels: dict[str, Callable[[str], None]] = {
                NOTIFY_CHANNEL: wake_for_others,
                AUTH_CHANNEL: lambda _: runtime.authenticator.invalidate(),
                PHONE_CHANNEL: phones_told,
                CHANGES_CHANNEL: runtime.feed.remote,
            }
            spawn(listen_forever(settings.effective_database_url, channels), "wake-listener")
        spawn(runtime.phones.ping_forever(), "cable-pings")
        spawn(runtime.phones.presence_forever(), "phone-presence")
        spawn(runtime.request_log.run(), "request-log")
        spawn(runtime.authenticator.sync_forever(), "auth-sync")
        spawn(runtime.webhooks.run(), "webhooks")
        spawn(runtime.otp.run(), "otp")
        spawn(_prune_forever(runtime), "prune")
        log.info(
            "simgate started",
            extra={"version": __version__, "database": runtime.engine.url.get_backend_name()},
        )
        try:
            yield
        finally:
            # Drain: in-flight sends finish (or keep their lease for the next start).
            await runtime.dispatcher.stop(drain=min(10.0, settings.gateway_ack_timeout))
            await runtime.gateways.release()
            await runtime.phones.close_all()
            await runtime.outbound.close()
            await runtime.otp.close()
            await runtime.webhooks.stop()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if owns_engine:
                await runtime.engine.dispose()
            log.info("simgate stopped")

    app = FastAPI(
        title="simgate",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    lean_routes = lean.routes()
    app.add_middleware(CoreMiddleware, runtime=runtime, lean=lean_routes)
    app.include_router(system.router)
    app.include_router(v1.router)
    app.include_router(messages.router)
    app.include_router(inbox_api.router)
    app.include_router(webhooks_api.router)
    app.include_router(otp_api.router)
    webhooks_api.declare_payloads(app)
    app.include_router(compat.router)
    app.include_router(gateway_api.router)
    app.add_api_websocket_route("/cable", cable)
    dashboard.install(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _install_docs(app)
    _declare_security(app)
    # The hottest calls (the send, the status poll, /api/v1/me, /healthz) skip FastAPI's
    # per-request work (see web/api/lean.py): the core middleware answers them, or else these
    # routes, matched first; the FastAPI routes behind them still document the calls.
    app.router.routes[0:0] = lean_routes
    return app


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "An app API key."},
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An app API key.",
    },
}


def _declare_security(app: FastAPI) -> None:
    """Describe the API-key schemes in the OpenAPI document (so /docs offers Authorize)
    without adding FastAPI security dependencies to every request's hot path."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                webhooks=app.webhooks.routes,
            )
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            for path, operations in schema["paths"].items():
                if path.startswith("/api/v1/"):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}, {"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _install_docs(app: FastAPI) -> None:
    """Swagger UI from files shipped with a dependency: no CDN, works offline. (ReDoc is
    left out: its standalone bundle fetches a logo from its vendor's CDN.)"""
    app.mount("/docs/assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        root = html.escape(request.scope.get("root_path", ""), quote=True)
        return HTMLResponse(
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="stylesheet" href="{root}/docs/assets/swagger-ui.css">'
            f'<link rel="icon" href="{root}/docs/assets/favicon.png">'
            "<title>simgate API</title></head><body>"
            f'<div id="swagger-ui" data-openapi="{root}/openapi.json"></div>'
            f'<script src="{root}/docs/assets/swagger-ui-bundle.js"></script>'
            f'<script src="{root}/static/swagger-init.js"></script>'
            "</body></html>"
        )
