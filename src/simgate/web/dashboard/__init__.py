"""The admin dashboard: server-rendered pages (Jinja2 + htmx), one module per section."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from simgate.web.dashboard import (
    admin,
    apps,
    compose,
    core,
    gateways,
    messages,
    otp,
    views,
    webhooks,
)


def install(app: FastAPI) -> None:
    core.install(app)
    for module in (views, gateways, messages, compose, apps, webhooks, otp, admin):
        router: APIRouter = module.router
        app.include_router(router)
