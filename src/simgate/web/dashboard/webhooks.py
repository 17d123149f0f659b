"""Dashboard pages: webhook endpoints of the viewer's apps, their secrets (shown once), the
delivery log and redelivery."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from simgate.domain import webhooks as rules
from simgate.domain.keys import DEFAULT_SCOPES, Scope
from simgate.errors import NotFound, SimgateError
from simgate.services import webhooks as service
from simgate.services.apps import AppInfo, list_apps
from simgate.web.dashboard.core import (
    ActingDep,
    FormErrors,
    RuntimeDep,
    SessionDep,
    Viewer,
    ViewerDep,
    form_text,
    render,
    see_other,
)
from simgate.web.routing import Router

router = Router(include_in_schema=False)
EVENTS = (*rules.EVENT_TYPES, rules.ALL_EVENTS)
FIELDS = ("app", "url", "events", "description")


def _scopes(viewer: Viewer) -> frozenset[Scope]:
    """What the dashboard may subscribe to for the viewer: an admin anything; a user what a
    key of their own app could (they may give it the inbox scope)."""
    return frozenset({Scope.ADMIN}) if viewer.is_admin else DEFAULT_SCOPES


def _not_found(request: Request, what: str) -> Response:
    return render(
        request,
        "error.html",
        {"title": "Not found", "message": f"There is no {what}.", "back": "/admin/webhooks"},
        status=404,
        section="webhooks",
    )


async def _list_context(db: SessionDep, viewer: Viewer, app: str) -> dict[str, Any]:
    apps = await list_apps(db, owner=viewer.owner)
    endpoints = []
    for a in apps:
        if app and a.name != app:
            continue
        for ep in await service.list_endpoints(db, a.id):
            endpoints.append({**ep, "app": a.name})
    return {"apps": apps, "endpoints": endpoints, "filter_app": app, "event_names": EVENTS}


@router.get("/admin/webhooks", response_model=None)
async def webhooks_page(request: Request, db: SessionDep, viewer: ViewerDep) -> Response:
    app = request.query_params.get("app", "")[:64]
    ctx = await _list_context(db, viewer, app)
    ctx.update(errors=FormErrors(), form={"app": app, "events": ["*"]})
    return render(request, "webhooks.html", ctx, section="webhooks")


@router.post("/admin/webhooks", response_model=None)
async def create(
    request: Request, db: SessionDep, viewer: ActingDep, runtime: RuntimeDep
) -> Response:
    form = await request.form()
    values: dict[str, Any] = {
        k: form_text(form, k, limit=2048) for k in ("app", "url", "description")
    }
    values["events"] = [str(v) for v in form.getlist("events")]
    apps = {a.name: a for a in await list_apps(db, owner=viewer.owner)}
    errors = FormErrors()
    app: AppInfo | None = apps.get(values["app"])
    if app is None:
        errors.add("app", "Choose one of your apps.")
    else:
        try:
            view, secret = await service.create_endpoint(
                db,
                app_id=app.id,
                scopes=_scopes(viewer),
                url=values["url"],
                events=values["events"],
                description=values["description"],
                settings=runtime.settings,
                resolver=runtime.webhooks.resolver,
            )
        except SimgateError as exc:
            await db.rollback()
            errors.from_error(exc, known=FIELDS)
    if errors or app is None:
        ctx = await _list_context(db, viewer, "")
        ctx.update(errors=errors, form=values)
        return render(request, "webhooks.html", ctx, status=422, section="webhooks")
    await db.commit()
    ctx = await _detail_context(db, viewer, view["id"])
    ctx.update(secret=secret)
    return render(request, "webhooks_detail.html", ctx, status=201, section="webhooks")


async def _detail_context(db: SessionDep, viewer: Viewer, ref: str) -> dict[str, Any]:
    app_id = await service.endpoint_app(db, ref)
    apps = {a.id: a for a in await list_apps(db, owner=viewer.owner)}
    if app_id not in apps:
        raise NotFound(f"no webhook endpoint {ref!r}")
    endpoint = await service.get_endpoint(db, app_id, ref)
    page = await service.list_deliveries(db, app_id, ref, status=None, limit=50, cursor=None)
    return {
        "app": apps[app_id],
        "endpoint": endpoint,
        "deliveries": page["data"],
        "notice": "",
        "errors": FormErrors(),
        "form": {
            "url": endpoint["url"],
            "events": endpoint["events"],
            "description": endpoint.get("description") or "",
            "overlap_hours": str(service.DEFAULT_OVERLAP // 3600),
        },
        "event_names": EVENTS,
        "max_overlap_hours": service.MAX_OVERLAP // 3600,
    }


@router.get("/admin/webhooks/{ref}", response_model=None)
async def detail(request: Request, ref: str, db: SessionDep, viewer: ViewerDep) -> Response:
    try:
        ctx = await _detail_context(db, viewer, ref)
    except NotFound:
        return _not_found(request, f"webhook endpoint {ref!r}")
    ctx["notice"] = request.query_params.get("done", "")[:40]
    return render(request, "webhooks_detail.html", ctx, section="webhooks")


@router.post("/admin/webhooks/{ref}/rotate", response_model=None)
async def rotate(request: Request, ref: str, db: SessionDep, viewer: ActingDep) -> Response:
    """A new signing secret, shown on this answer only; the old one keeps signing for the
    overlap asked for (a day unless told), so receivers can switch over."""
    try:
        ctx = await _detail_context(db, viewer, ref)
    except NotFound:
        return _not_found(request, f"webhook endpoint {ref!r}")
    form = await request.form()
    raw = form_text(form, "overlap_hours", limit=16)
    max_hours = service.MAX_OVERLAP // 3600
    hours = int(raw) if raw.isdigit() else (service.DEFAULT_OVERLAP // 3600 if not raw else -1)
    if not 0 <= hours <= max_hours:
        ctx["errors"].add(
            "overlap_hours",
            f"Give a whole number of hours from 0 to {max_hours}: how long the old secret "
            "keeps signing too.",
        )
        ctx["form"]["overlap_hours"] = raw
        return render(request, "webhooks_detail.html", ctx, status=422, section="webhooks")
    out = await service.rotate_secret(db, ctx["app"].id, ref, hours * 3600)
    await db.commit()
    ctx = await _detail_context(db, viewer, ref)
    ctx.update(secret=out["secret"], rotated=True, overlap_hours=hours)
    return render(request, "webhooks_detail.html", ctx, section="webhooks")


@router.post("/admin/webhooks/{ref}/edit", response_model=None)
async def edit(
    request: Request, ref: str, db: SessionDep, viewer: ActingDep, runtime: RuntimeDep
) -> Response:
    """Change the URL, the events or the description; the checks are those of creating."""
    try:
        ctx = await _detail_context(db, viewer, ref)
    except NotFound:
        return _not_found(request, f"webhook endpoint {ref!r}")
    form = await request.form()
    values: dict[str, Any] = {
        "url": form_text(form, "url", limit=2048),
        "description": form_text(form, "description", limit=2048),
        "events": [str(v) for v in form.getlist("events")],
    }
    try:
        await service.update_endpoint(
            db,
            app_id=ctx["app"].id,
            scopes=_scopes(viewer),
            ref=ref,
            changes=values,
            settings=runtime.settings,
            resolver=runtime.webhooks.resolver,
        )
    except SimgateError as exc:
        await db.rollback()
        ctx = await _detail_context(db, viewer, ref)
        ctx["errors"].from_error(exc, known=("url", "events", "description"))
        ctx["form"].update(values)
        ctx["editing"] = True
        return render(request, "webhooks_detail.html", ctx, status=422, section="webhooks")
    await db.commit()
    return see_other(f"/admin/webhooks/{ref}?done=edited")


async def _switch(
    request: Request, ref: str, db: SessionDep, viewer: Viewer, runtime: RuntimeDep, on: bool
) -> Response:
    try:
        ctx = await _detail_context(db, viewer, ref)
    except NotFound:
        return _not_found(request, f"webhook endpoint {ref!r}")
    await service.update_endpoint(
        db,
        app_id=ctx["app"].id,
        scopes=_scopes(viewer),
        ref=ref,
        changes={"is_active": on},
        settings=runtime.settings,
        resolver=runtime.webhooks.resolver,
    )
    await db.commit()
    runtime.webhooks.wake()
    return see_other(f"/admin/webhooks/{ref}?done={'enabled' if on else 'disabled'}")


@router.post("/admin/webhooks/{ref}/enable", response_model=None)
async def enable(
    request: Request, ref: str, db: SessionDep, viewer: ActingDep, runtime: RuntimeDep
) -> Response:
    return await _switch(request, ref, db, viewer, runtime, True)


@router.post("/admin/webhooks/{ref}/disable", response_model=None)
async def disable(
    request: Request, ref: str, db: SessionDep, viewer: ActingDep, runtime: RuntimeDep
) -> Response:
    return await _switch(request, ref, db, viewer, runtime, False)


@router.post("/admin/webhooks/{ref}/delete", response_model=None)
async def delete(request: Request, ref: str, db: SessionDep, viewer: ActingDep) -> Response:
    try:
        ctx = await _detail_context(db, viewer, ref)
    except NotFound:
        return _not_found(request, f"webhook endpoint {ref!r}")
    await service.delete_endpoint(db, ctx["app"].id, ref)
    await db.commit()
    return see_other("/admin/webhooks")


@router.post("/admin/webhooks/{ref}/deliveries/{delivery}/redeliver", response_model=None)
async def redeliver(
    request: Request,
    ref: str,
    delivery: str,
    db: SessionDep,
    viewer: ActingDep,
    runtime: RuntimeDep,
) -> Response:
    """Try a delivery again now (the attempt is logged as manual)."""
    try:
        ctx = await _detail_context(db, viewer, ref)
    except NotFound:
        return _not_found(request, f"webhook endpoint {ref!r}")
    await db.rollback()  # the worker uses its own transaction
    try:
        await runtime.webhooks.redeliver(ctx["app"].id, ref, delivery)
    except NotFound:
        return _not_found(request, f"delivery {delivery!r}")
    except SimgateError as exc:
        ctx = await _detail_context(db, viewer, ref)
        ctx["errors"] = FormErrors().from_error(exc)
        return render(request, "webhooks_detail.html", ctx, status=409, section="webhooks")
    return see_other(f"/admin/webhooks/{ref}?done=redelivered")
