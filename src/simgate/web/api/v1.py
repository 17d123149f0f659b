"""The app API, version 1: identity, request log and (with the admin scope) apps and keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from simgate.domain.keys import DEFAULT_SCOPES, InvalidScopes, Scope, parse_scopes
from simgate.errors import Invalid
from simgate.services import apps as app_service
from simgate.services import request_log
from simgate.services.auth import Principal, touch_marker
from simgate.web.api.schemas import (
    AppCreate,
    AppCreated,
    AppLimits,
    AppList,
    AppOut,
    AppRef,
    CreatedKeyOut,
    KeyCreate,
    KeyList,
    KeyOut,
    KeyRef,
    Me,
    RequestLogItem,
    RequestLogPage,
)
from simgate.web.deps import AdminPrincipal, AppPrincipal, RuntimeDep, SessionDep
from simgate.web.routing import Router

router = Router(prefix="/api/v1", tags=["v1"])


def _scopes(values: list[str] | None) -> frozenset[Scope]:
    if values is None:
        return DEFAULT_SCOPES
    try:
        return parse_scopes(",".join(values))
    except InvalidScopes as exc:
        raise Invalid(str(exc), field="scopes") from None


def _key_out(info: app_service.KeyInfo) -> KeyOut:
    return KeyOut(
        prefix=info.prefix,
        app=info.app,
        name=info.name,
        scopes=info.scopes.split(","),
        created_at=info.created_at,
        last_used_at=info.last_used_at,
        revoked_at=info.revoked_at,
    )


def _app_out(info: app_service.AppInfo) -> AppOut:
    return AppOut(
        id=info.id,
        name=info.name,
        description=info.description,
        owner=info.owner,
        active=info.is_active,
        created_at=info.created_at,
        active_keys=info.active_keys,
        rate_per_minute=info.rate_per_minute,
        rate_per_day=info.rate_per_day,
        allowed_countries=[c for c in info.allowed_countries.split(",") if c],
    )


@router.get("/me", response_model=Me, summary="The app and key making this call")
async def me(principal: AppPrincipal) -> Me:
    return me_of(principal)


def me_of(principal: Principal) -> Me:
    """``GET /api/v1/me``'s answer: this route's and the lean endpoint's (web/api/lean.py)."""
    return Me(
        app=AppRef(id=principal.app_id, name=principal.app_name),
        key=KeyRef(prefix=principal.key_prefix, scopes=sorted(s.value for s in principal.scopes)),
    )


@router.get(
    "/requests",
    response_model=RequestLogPage,
    summary="This app's most recent API calls (the request log)",
)
async def my_requests(
    principal: AppPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> RequestLogPage:
    await session.commit()  # hand back the connection (SQLite has one) for the flush
    await runtime.request_log.flush()
    rows = await request_log.recent(session, app_id=principal.app_id, limit=limit)
    return RequestLogPage(
        data=[
            RequestLogItem(
                created_at=r.created_at,
                method=r.method,
                endpoint=r.endpoint,
                status=r.status,
                latency_ms=r.latency_ms,
                client_ip=r.client_ip,
                request_id=r.request_id,
                key_prefix=r.key_prefix,
            )
            for r in rows
        ]
    )


@router.get("/apps", response_model=AppList, summary="All apps (admin scope)")
async def list_apps(principal: AdminPrincipal, session: SessionDep) -> AppList:
    return AppList(data=[_app_out(a) for a in await app_service.list_apps(session)])


@router.post(
    "/apps",
    response_model=AppCreated,
    status_code=201,
    summary="Create an app and its first key (admin scope)",
)
async def create_app(body: AppCreate, principal: AdminPrincipal, session: SessionDep) -> AppCreated:
    info, key = await app_service.create_app(
        session,
        name=body.name,
        owner=body.owner,
        description=body.description,
        scopes=_scopes(body.scopes),
        actor=f"app:{principal.app_name}",
    )
    await session.commit()
    return AppCreated(app=_app_out(info), key=key.secret, key_info=_key_out(key.info))


@router.patch(
    "/apps/{name}", response_model=AppOut, summary="Set an app's sending limits (admin scope)"
)
async def set_limits(
    name: str, body: AppLimits, principal: AdminPrincipal, session: SessionDep, runtime: RuntimeDep
) -> AppOut:
    given = body.model_fields_set
    info = await app_service.set_limits(
        session,
        name=name,
        rate_per_minute=body.rate_per_minute if "rate_per_minute" in given else app_service.UNSET,
        rate_per_day=body.rate_per_day if "rate_per_day" in given else app_service.UNSET,
        allowed_countries=",".join(body.allowed_countries or [])
        if "allowed_countries" in given
        else app_service.UNSET,
        actor=f"app:{principal.app_name}",
    )
    await session.commit()
    runtime.outbound.forget_app(info.id)
    return _app_out(info)


@router.get("/apps/{name}/keys", response_model=KeyList, summary="An app's keys (admin scope)")
async def list_keys(name: str, principal: AdminPrincipal, session: SessionDep) -> KeyList:
    return KeyList(data=[_key_out(k) for k in await app_service.list_keys(session, app=name)])


@router.post(
    "/apps/{name}/keys",
    response_model=CreatedKeyOut,
    status_code=201,
    summary="Create another key for an app (admin scope)",
)
async def create_key(
    name: str, body: KeyCreate, principal: AdminPrincipal, session: SessionDep
) -> CreatedKeyOut:
    key = await app_service.create_key(
        session,
        app=name,
        scopes=_scopes(body.scopes),
        name=body.name,
        actor=f"app:{principal.app_name}",
    )
    await session.commit()
    return CreatedKeyOut(key=key.secret, info=_key_out(key.info))


@router.delete(
    "/keys/{prefix}",
    response_model=KeyOut,
    summary="Revoke a key by its prefix; it is refused at once (admin scope)",
)
async def revoke_key(
    prefix: str, principal: AdminPrincipal, session: SessionDep, runtime: RuntimeDep
) -> KeyOut:
    info = await app_service.revoke_key(session, prefix=prefix, actor=f"app:{principal.app_name}")
    await session.commit()
    runtime.authenticator.invalidate()
    touch_marker(runtime.settings.auth_marker_path)
    return _key_out(info)
