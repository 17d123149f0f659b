"""Dashboard pages: apps and their API keys, per-app limits and usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from simgate.domain.keys import DEFAULT_SCOPES, Scope
from simgate.errors import Invalid, NotFound, SimgateError
from simgate.services import apps as app_service
from simgate.services import stats
from simgate.services.accounts import list_users
from simgate.services.auth import touch_marker
from simgate.web.dashboard.charts import bar_chart, legend
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
DAYS = 14


def _not_found(request: Request, name: str) -> Response:
    return render(
        request,
        "error.html",
        {
            "title": "No such app",
            "message": f"There is no app named {name!r}.",
            "back": "/admin/apps",
        },
        status=404,
        section="apps",
    )


def _scopes_for(viewer: Viewer) -> list[str]:
    return [s.value for s in Scope if viewer.is_admin or s is not Scope.ADMIN]


async def _list_context(db: SessionDep, viewer: Viewer) -> dict[str, Any]:
    apps = await app_service.list_apps(db, owner=viewer.owner)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    usage = await app_service.usage_since(db, since=today, app_ids=[a.id for a in apps])
    users = [u.username for u in await list_users(db)] if viewer.is_admin else []
    return {"apps": apps, "usage": usage, "users": users}


@router.get("/admin/apps", response_model=None)
async def apps_page(request: Request, db: SessionDep, viewer: ViewerDep) -> Response:
    ctx = await _list_context(db, viewer)
    ctx.update(errors=FormErrors(), form={"owner": viewer.user.username})
    return render(request, "apps.html", ctx, section="apps")


@router.post("/admin/apps", response_model=None)
async def create_app(request: Request, db: SessionDep, viewer: ActingDep) -> Response:
    """Create an app (users own theirs; admins pick the owner) and show its first key."""
    form = await request.form()
    values = {k: form_text(form, k) for k in ("name", "description", "owner")}
    owner = values["owner"] if viewer.is_admin and values["owner"] else viewer.user.username
    errors = FormErrors()
    try:
        info, key = await app_service.create_app(
            db,
            name=values["name"],
            owner=owner,
            description=values["description"],
            actor=viewer.actor,
        )
    except SimgateError as exc:
        await db.rollback()
        errors.from_error(exc, known=("name", "description", "owner"))
        ctx = await _list_context(db, viewer)
        ctx.update(errors=errors, form=values)
        return render(request, "apps.html", ctx, status=422, section="apps")
    await db.commit()
    ctx = await _detail_context(db, viewer, info.name)
    ctx.update(secret=key.secret, created=True)
    return render(request, "apps_detail.html", ctx, status=201, section="apps")


async def _detail_context(db: SessionDep, viewer: Viewer, name: str) -> dict[str, Any]:
    info = await app_service.find_app(db, name, owner=viewer.owner)
    keys = await app_service.list_keys(db, app=info.name)
    day0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=DAYS - 1
    )
    daily = await stats.series(
        db, start=day0, step=timedelta(days=1), count=DAYS, app_ids=[info.id]
    )
    return {
        "app": info,
        "keys": keys,
        "scopes": _scopes_for(viewer),
        "default_scopes": {s.value for s in DEFAULT_SCOPES},
        "chart": bar_chart(
            daily,
            [t.strftime("%d %b") for t in daily.edges()],
            title=f"Messages per day of {info.name}, last {DAYS} days (UTC)",
        ),
        "legend": legend(),
        "errors": FormErrors(),
        "key_errors": FormErrors(),
        "limits": {
            "rate_per_minute": info.rate_per_minute or "",
            "rate_per_day": info.rate_per_day or "",
            "allowed_countries": info.allowed_countries,
        },
        "key_form": {"name": ""},
        "chosen": {s.value for s in DEFAULT_SCOPES},
    }


@router.get("/admin/apps/{name}", response_model=None)
async def app_page(request: Request, name: str, db: SessionDep, viewer: ViewerDep) -> Response:
    try:
        ctx = await _detail_context(db, viewer, name)
    except NotFound:
        return _not_found(request, name)
    ctx["notice"] = request.query_params.get("done", "")[:80]
    return render(request, "apps_detail.html", ctx, section="apps")


@router.post("/admin/apps/{name}/keys", response_model=None)
async def create_key(request: Request, name: str, db: SessionDep, viewer: ActingDep) -> Response:
    """A new key, its secret shown on this answer only."""
    try:
        ctx = await _detail_context(db, viewer, name)
    except NotFound:
        return _not_found(request, name)
    form = await request.form()
    chosen = {str(v) for v in form.getlist("scopes")}
    key_name = form_text(form, "name")
    errors = FormErrors()
    allowed = set(_scopes_for(viewer))
    if not chosen:
        errors.add("scopes", "Choose at least one scope.")
    elif not chosen <= allowed:
        errors.add("scopes", "Only admins may give a key the admin scope.")
    if not errors:
        try:
            key = await app_service.create_key(
                db,
                app=name,
                scopes=frozenset(Scope(s) for s in chosen),
                name=key_name,
                actor=viewer.actor,
            )
        except SimgateError as exc:
            await db.rollback()
            errors.from_error(exc, known=("name", "scopes"))
    if errors:
        ctx.update(key_errors=errors, key_form={"name": key_name}, chosen=chosen)
        return render(request, "apps_detail.html", ctx, status=422, section="apps")
    await db.commit()
    ctx = await _detail_context(db, viewer, name)
    ctx.update(secret=key.secret)
    return render(request, "apps_detail.html", ctx, status=201, section="apps")


@router.post("/admin/apps/{name}/keys/{prefix}/revoke", response_model=None)
async def revoke_key(
    request: Request,
    name: str,
    prefix: str,
    db: SessionDep,
    viewer: ActingDep,
    runtime: RuntimeDep,
) -> Response:
    try:
        await app_service.find_app(db, name, owner=viewer.owner)
        keys = {k.prefix for k in await app_service.list_keys(db, app=name)}
        if prefix not in keys:
            raise NotFound(f"no key {prefix!r}")
    except NotFound:
        return _not_found(request, name)
    await app_service.revoke_key(db, prefix=prefix, actor=viewer.actor)
    await db.commit()
    runtime.authenticator.invalidate()
    touch_marker(runtime.settings.auth_marker_path)
    return see_other(f"/admin/apps/{name}?done=revoked")


def _limit(value: str, field: str, errors: FormErrors) -> int | None:
    if not value:
        return None
    if not value.isdigit() or len(value) > 9:
        errors.add(field, "Give a whole number, or leave it empty for no limit.")
        return None
    return int(value)


@router.post("/admin/apps/{name}/limits", response_model=None)
async def set_limits(
    request: Request, name: str, db: SessionDep, viewer: ActingDep, runtime: RuntimeDep
) -> Response:
    try:
        ctx = await _detail_context(db, viewer, name)
    except NotFound:
        return _not_found(request, name)
    form = await request.form()
    values = {
        k: form_text(form, k) for k in ("rate_per_minute", "rate_per_day", "allowed_countries")
    }
    errors = FormErrors()
    minute = _limit(values["rate_per_minute"], "rate_per_minute", errors)
    day = _limit(values["rate_per_day"], "rate_per_day", errors)
    if not errors:
        try:
            info = await app_service.set_limits(
                db,
                name=name,
                rate_per_minute=minute,
                rate_per_day=day,
                allowed_countries=values["allowed_countries"],
                actor=viewer.actor,
            )
        except Invalid as exc:
            await db.rollback()
            errors.from_error(exc, known=tuple(values))
    if errors:
        ctx.update(errors=errors, limits=values)
        return render(request, "apps_detail.html", ctx, status=422, section="apps")
    await db.commit()
    runtime.outbound.forget_app(info.id)
    return see_other(f"/admin/apps/{name}?done=limits")
