"""Dashboard pages: outbound and inbound messages (filters, detail with the status
timeline and the error's hint, cancel). Users see their own apps' messages only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.domain.ids import MESSAGE_ID_RE
from simgate.domain.messages import Direction, MessageStatus
from simgate.domain.phone import InvalidNumber, normalise
from simgate.errors import Conflict, NotFound
from simgate.services import outbound
from simgate.services.apps import list_apps
from simgate.store.models import Gateway, Message
from simgate.web.dashboard.core import (
    ActingDep,
    FormErrors,
    Viewer,
    ViewerDep,
    error_page,
    render,
    see_other,
)
from simgate.web.deps import SessionDep
from simgate.web.routing import Router

router = Router(include_in_schema=False)
SECTION = "messages"
STATUSES = [s.value for s in MessageStatus]


async def _app_ids(db: AsyncSession, viewer: Viewer) -> list[int] | None:
    if viewer.is_admin:
        return None
    return [a.id for a in await list_apps(db, owner=viewer.owner)]


def _day(value: str) -> datetime | None:
    """``YYYY-MM-DD`` as midnight UTC (what a date input sends), or None when it is not one."""
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None


FILTERS = ("direction", "status", "phone", "app", "gateway", "q", "since", "until")


async def _listing(
    request: Request, db: AsyncSession, viewer: Viewer
) -> tuple[dict[str, Any], int]:
    q = request.query_params
    filters = {name: q.get(name, "").strip()[:200] for name in FILTERS}
    filters["direction"] = filters["direction"] or "outbound"
    filters["cursor"] = q.get("cursor", "")[:40]
    errors = FormErrors()
    if filters["direction"] not in ("outbound", "inbound"):
        errors.add("direction", "Pick outbound or inbound.")
    if filters["status"] and filters["status"] not in STATUSES:
        errors.add("status", f"Pick one of: {', '.join(STATUSES)}.")
    phone = None
    if filters["phone"]:
        try:
            phone = normalise(filters["phone"]).e164
        except InvalidNumber as exc:
            errors.add("phone", f"This number {exc}.")
    apps = await list_apps(db, owner=viewer.owner)
    app_ids: list[int] | None = None if viewer.is_admin else [a.id for a in apps]
    if filters["app"]:
        chosen = [a.id for a in apps if a.name == filters["app"]]
        if not chosen:
            errors.add("app", "Pick one of the apps listed.")
        elif filters["direction"] == "inbound":
            errors.add("app", "Received SMS belong to no app; clear this filter.")
        app_ids = chosen
    since = until = None
    if filters["since"]:
        since = _day(filters["since"])
        if since is None:
            errors.add("since", "Give a date as YYYY-MM-DD.")
    if filters["until"]:
        day = _day(filters["until"])
        if day is None:
            errors.add("until", "Give a date as YYYY-MM-DD.")
        else:
            until = day + timedelta(days=1)  # the whole of that day
            if since is not None and until <= since:
                errors.add("until", "Must not be before the 'from' date.")
    messages: list[dict[str, Any]] = []
    more = None
    if not errors:
        direction = Direction(filters["direction"])
        if direction is Direction.INBOUND and not viewer.is_admin:
            errors.add(None, "Received SMS are shown to admins (they belong to every app).")
        else:
            messages, more = await outbound.list_messages(
                db,
                app_id=None,
                app_ids=app_ids,
                directions={direction},
                status=filters["status"] or None,
                phone_number=phone,
                gateway=filters["gateway"] or None,
                search=filters["q"] or None,
                since=since,
                until=until,
                cursor=filters["cursor"] or None,
            )
    context = {
        "messages": messages,
        "filters": filters,
        "errors": errors,
        "statuses": STATUSES,
        "apps": [a.name for a in apps],
        "gateways": list(await db.scalars(select(Gateway.name).order_by(Gateway.name))),
        "more": more,
        "older": urlencode({**{k: filters[k] for k in FILTERS if filters[k]}, "cursor": more})
        if more
        else "",
    }
    return context, 422 if errors.fields else 200


@router.get("/admin/messages", response_model=None)
async def message_list(request: Request, db: SessionDep, viewer: ViewerDep) -> Response:
    context, status = await _listing(request, db, viewer)
    context["query"] = request.url.query
    q = request.query_params
    context["queued"] = q.get("queued", "")[:6] if q.get("queued", "").isdigit() else ""
    context["skipped"] = q.get("skipped", "")[:6] if q.get("skipped", "").isdigit() else ""
    return render(request, "messages.html", context, status=status, section=SECTION)


@router.get("/admin/messages/live", response_model=None)
async def message_list_live(request: Request, db: SessionDep, viewer: ViewerDep) -> Response:
    context, status = await _listing(request, db, viewer)
    return render(request, "_messages_rows.html", context, status=status)


async def _one(db: AsyncSession, viewer: Viewer, id_: str) -> dict[str, Any]:
    """The message, if this viewer may see it (users: their apps' outbound messages)."""
    message = await outbound.get_message(db, id_, app_id=None)
    app_ids = await _app_ids(db, viewer)
    if app_ids is not None:
        row = await db.get(Message, id_)
        if row is None or row.direction == "inbound" or row.app_id not in app_ids:
            raise NotFound(f"no message {id_!r}")
    return message


def _missing(request: Request, id_: str) -> Response:
    message = f"There is no message {id_[:40]!r} you can see."
    return error_page(
        request, "No such message", message, status=404, back="/admin/messages", section=SECTION
    )


@router.get("/admin/messages/{id_}", response_model=None)
async def message_detail(request: Request, id_: str, db: SessionDep, viewer: ViewerDep) -> Response:
    try:
        message = await _one(db, viewer, id_)
    except NotFound:
        return _missing(request, id_)
    q = request.query_params
    resent = q.get("resent", "")
    context = {
        "m": message,
        "canceled": q.get("canceled") == "1",
        "queued": q.get("queued") == "1",
        "resent": resent if MESSAGE_ID_RE.match(resent) else "",
        "error": "",
    }
    return render(request, "message_detail.html", context, section=SECTION)


@router.get("/admin/messages/{id_}/live", response_model=None)
async def message_detail_live(
    request: Request, id_: str, db: SessionDep, viewer: ViewerDep
) -> Response:
    try:
        message = await _one(db, viewer, id_)
    except NotFound:
        return _missing(request, id_)
    return render(request, "_message_state.html", {"m": message})


@router.post("/admin/messages/{id_}/cancel", response_model=None)
async def message_cancel(request: Request, id_: str, db: SessionDep, viewer: ActingDep) -> Response:
    try:
        await _one(db, viewer, id_)
        await outbound.cancel(db, id_, app_id=None, by=viewer.actor)
        await db.commit()
    except NotFound:
        return _missing(request, id_)
    except Conflict as exc:
        await db.rollback()
        message = await _one(db, viewer, id_)
        return render(
            request,
            "message_detail.html",
            {"m": message, "canceled": False, "error": exc.message[:1].upper() + exc.message[1:]},
            status=409,
            section=SECTION,
        )
    return see_other(f"/admin/messages/{id_}?canceled=1")
