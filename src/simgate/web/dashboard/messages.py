"""Dashboard pages: outbound and inbound messages (filters, detail with the status
timeline and the error's hint, cancel). Users see their own apps' messages only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.domain.messages import Direction, MessageStatus
from simgate.domain.phone import InvalidNumber, normalise
from simgate.errors import Conflict, NotFound
from simgate.services import outbound
from simgate.services.apps import list_apps
from simgate.store.models import Message
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

router = APIRouter(include_in_schema=False)
SECTION = "messages"
STATUSES = [s.value for s in MessageStatus]


async def _app_ids(db: AsyncSession, viewer: Viewer) -> list[int] | None:
    if viewer.is_admin:
        return None
    return [a.id for a in await list_apps(db, owner=viewer.owner)]


async def _listing(
    request: Request, db: AsyncSession, viewer: Viewer
) -> tuple[dict[str, Any], int]:
    q = request.query_params
    filters = {
        "direction": q.get("direction", "outbound"),
        "status": q.get("status", ""),
        "phone": q.get("phone", "").strip(),
        "cursor": q.get("cursor", ""),
    }
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
    messages: list[dict[str, Any]] = []
    more = None
    if not errors:
        app_ids = await _app_ids(db, viewer)
        direction = Direction(filters["direction"])
        if direction is Direction.INBOUND and app_ids is not None:
            errors.add(None, "Received SMS are shown to admins (they belong to every app).")
        elif app_ids is not None and not app_ids:
            messages = []
        else:
            # A user with several apps sees each app's messages, newest first.
            targets: list[int | None] = [None] if app_ids is None else list(app_ids)
            for app_id in targets:
                found, next_cursor = await outbound.list_messages(
                    db,
                    app_id=app_id,
                    directions={direction},
                    status=filters["status"] or None,
                    phone_number=phone,
                    cursor=filters["cursor"] or None,
                )
                messages.extend(found)
                more = more or next_cursor
            messages.sort(key=lambda m: m["id"], reverse=True)
            messages = messages[:50]
    context = {
        "messages": messages,
        "filters": filters,
        "errors": errors,
        "statuses": STATUSES,
        "more": more,
    }
    return context, 422 if errors.fields else 200


@router.get("/admin/messages", response_model=None)
async def message_list(request: Request, db: SessionDep, viewer: ViewerDep) -> Response:
    context, status = await _listing(request, db, viewer)
    context["query"] = request.url.query
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
    notice = request.query_params.get("canceled") == "1"
    return render(
        request,
        "message_detail.html",
        {"m": message, "canceled": notice, "error": ""},
        section=SECTION,
    )


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
