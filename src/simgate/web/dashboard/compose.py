"""Dashboard: compose an SMS to one number, a pasted list or a CSV file's phone column, with
the segment count and encoding shown while typing; and resend a message.

Every recipient is checked before anything is queued: bad rows are listed by line or CSV
row and nothing is sent until they are fixed or the sender ticks "skip them". Sending goes
through the same pipeline as the API (validation, limits, durable before the answer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from simgate.domain import encoding
from simgate.domain.phone import InvalidNumber, normalise
from simgate.domain.recipients import MAX_CSV_BYTES, Entry, RecipientsError, from_csv, from_text
from simgate.errors import NotFound, SimgateError
from simgate.services.apps import AppInfo, list_apps
from simgate.services.outbound import Sender, SendRequest
from simgate.store.models import Gateway, Message
from simgate.web.dashboard.core import (
    ActingDep,
    FormErrors,
    Viewer,
    ViewerDep,
    error_page,
    form_text,
    render,
    see_other,
)
from simgate.web.deps import RuntimeDep, SessionDep
from simgate.web.routing import Router
from simgate.web.runtime import Runtime

router = Router(include_in_schema=False)
SECTION = "compose"
OPERATOR = "-"  # the app choice of an admin sending as the operator (no app)
MAX_BODY = 20_000
SHOWN_BAD = 50  # bad rows listed on the page; the rest are counted


@dataclass(frozen=True, slots=True)
class Bad:
    where: str
    raw: str
    reason: str


@dataclass(slots=True)
class Checked:
    numbers: list[str]
    bad: list[Bad]
    duplicates: int


async def _apps(db: AsyncSession, viewer: Viewer) -> list[AppInfo]:
    apps = await list_apps(db, owner=viewer.owner)
    return [a for a in apps if a.is_active]


async def _gateways(db: AsyncSession) -> list[str]:
    rows = await db.scalars(select(Gateway.name).where(Gateway.is_active).order_by(Gateway.name))
    return list(rows)


def check_recipients(entries: list[Entry], *, region: str | None, allowed: str) -> Checked:
    """Each entry normalised to E.164, or named with why it cannot be sent to."""
    countries = {c.strip().upper() for c in allowed.split(",") if c.strip()}
    numbers: list[str] = []
    seen: set[str] = set()
    bad: list[Bad] = []
    duplicates = 0
    for entry in entries:
        try:
            number = normalise(entry.raw, region)
        except InvalidNumber as exc:
            bad.append(Bad(entry.where, entry.raw[:64], str(exc)))
            continue
        if countries and number.region not in countries:
            bad.append(
                Bad(
                    entry.where,
                    entry.raw[:64],
                    f"is in {number.region}; this app may send to {', '.join(sorted(countries))}",
                )
            )
            continue
        if number.e164 in seen:
            duplicates += 1
            continue
        seen.add(number.e164)
        numbers.append(number.e164)
    return Checked(numbers, bad, duplicates)


async def _page(
    request: Request,
    db: AsyncSession,
    viewer: Viewer,
    form: dict[str, Any],
    errors: FormErrors | None,
    *,
    checked: Checked | None = None,
    status: int = 200,
) -> Response:
    apps = await _apps(db, viewer)
    options = [(a.name, a.name) for a in apps]
    if viewer.is_admin:
        options.insert(0, (OPERATOR, "No app (send as the operator)"))
    info = encoding.segment_info(form["body"]) if form["body"] else None
    context = {
        "form": form,
        "errors": errors,
        "app_options": options,
        "gateways": await _gateways(db),
        "info": info,
        "checked": checked,
        "shown_bad": checked.bad[:SHOWN_BAD] if checked else [],
        "max_recipients": request.app.state.runtime.settings.max_recipients,
        "max_segments": request.app.state.runtime.settings.max_segments,
        "max_csv_mb": MAX_CSV_BYTES // 1_000_000,
    }
    return render(request, "compose.html", context, status=status, section=SECTION)


def _blank(app: str = "") -> dict[str, Any]:
    return {"app": app, "to": "", "body": "", "gateway": "", "skip_invalid": False}


@router.get("/admin/compose", response_model=None)
async def compose_page(
    request: Request, db: SessionDep, viewer: ViewerDep, to: str = "", app: str = ""
) -> Response:
    form = _blank(app[:64])
    form["to"] = to[:64]
    return await _page(request, db, viewer, form, None)


@router.post("/admin/compose", response_model=None)
async def compose_send(
    request: Request, db: SessionDep, viewer: ActingDep, runtime: RuntimeDep
) -> Response:
    raw = await request.form()
    form: dict[str, Any] = {
        "app": form_text(raw, "app", limit=64),
        "to": form_text(raw, "to", limit=200_000),
        "body": form_text(raw, "body", limit=MAX_BODY),
        "gateway": form_text(raw, "gateway", limit=64),
        "skip_invalid": form_text(raw, "skip_invalid", limit=8) in ("1", "on", "true"),
    }
    errors = FormErrors()
    apps = {a.name: a for a in await _apps(db, viewer)}
    app: AppInfo | None = None
    if form["app"] == OPERATOR and viewer.is_admin:
        app = None
    elif form["app"] in apps:
        app = apps[form["app"]]
    elif not form["app"]:
        errors.add("app", "Pick the app to send for (its limits and usage apply).")
    else:
        errors.add("app", "Pick one of your apps.")
    if form["gateway"] and form["gateway"] not in await _gateways(db):
        errors.add("gateway", "Pick an active gateway, or leave it to simgate.")
    entries = from_text(form["to"])
    upload = raw.get("csv")
    if isinstance(upload, UploadFile) and upload.filename:
        try:
            data = await upload.read(MAX_CSV_BYTES + 1)
        finally:
            await upload.close()
        try:
            rows = from_csv(data)
        except RecipientsError as exc:
            errors.add("csv", f"{upload.filename[:80]}: {exc}.")
        else:
            if not rows:
                errors.add("csv", f"{upload.filename[:80]}: no phone numbers found in it.")
            # The file's numbers join the list, so a form shown again keeps them (a browser
            # never re-sends a file); their rows are named as the file numbers them.
            entries.extend(rows)
            form["to"] = "\n".join(e.raw for e in entries)
    checked = None
    if not entries and not errors.get("csv"):
        errors.add("to", "Enter at least one phone number, or upload a CSV file.")
    elif entries:
        region = runtime.settings.default_region or None
        allowed = app.allowed_countries if app else ""
        checked = check_recipients(entries, region=region, allowed=allowed)
        if checked.bad and not form["skip_invalid"]:
            count = len(checked.bad)
            errors.add(
                "to",
                f"{count} recipient{'s' if count != 1 else ''} cannot be sent to (listed below); "
                "nothing was sent. Fix them, or tick 'Skip them' to send to the rest.",
            )
        elif not checked.numbers:
            errors.add("to", "None of these recipients can be sent to (listed below).")
        elif len(checked.numbers) > runtime.settings.max_recipients:
            errors.add(
                "to",
                f"{len(checked.numbers)} recipients: at most {runtime.settings.max_recipients} "
                "can be sent to at once; split the list.",
            )
    if not form["body"]:
        errors.add("body", "Enter the text to send.")
    if errors or checked is None:
        return await _page(request, db, viewer, form, errors, checked=checked, status=422)
    # The pipeline writes on its own connection: end this session's read first, or
    # SQLite's writer would wait for it.
    await db.rollback()
    numbers = checked.numbers
    try:
        accepted = await runtime.outbound.submit(
            sender=Sender(app.id if app else None, viewer.actor),
            req=SendRequest(
                to=numbers,
                body=form["body"],
                many=len(numbers) > 1,
                gateway=form["gateway"] or None,
            ),
        )
    except SimgateError as exc:
        await db.rollback()
        if (exc.field or "").startswith("to["):
            exc.field = "to"  # a recipient of the list: shown under the list
        errors.from_error(exc, known=("to", "body", "gateway", "app"))
        return await _page(request, db, viewer, form, errors, checked=checked, status=exc.status)
    ids = accepted.message_ids
    if len(ids) == 1:
        return see_other(f"/admin/messages/{ids[0]}?queued=1")
    skipped = len(checked.bad)
    return see_other(f"/admin/messages?queued={len(ids)}&skipped={skipped}")


@router.post("/admin/compose/segments", response_model=None)
async def compose_segments(request: Request, viewer: ActingDep) -> Response:
    """The counter under the text box, redrawn as the sender types."""
    raw = await request.form()
    body = form_text(raw, "body", limit=MAX_BODY)
    info = encoding.segment_info(body) if body else None
    context = {"info": info, "max_segments": request.app.state.runtime.settings.max_segments}
    return render(request, "_compose_segments.html", context)


async def _resend_target(db: AsyncSession, viewer: Viewer, id_: str) -> Message:
    m = await db.get(Message, id_) if len(id_) <= 32 else None
    if m is None or m.direction != "outbound":
        raise NotFound(f"no message {id_[:40]!r}")
    if not viewer.is_admin:
        mine = {a.id for a in await list_apps(db, owner=viewer.owner)}
        if m.app_id not in mine:
            raise NotFound(f"no message {id_[:40]!r}")
    return m


def _refused(request: Request, id_: str, message: str, status: int) -> Response:
    return error_page(
        request,
        "Cannot resend",
        message,
        status=status,
        back=f"/admin/messages/{id_}",
        section="messages",
    )


async def resend(
    db: AsyncSession, runtime: Runtime, viewer: Viewer, id_: str
) -> tuple[str | None, str, int]:
    """Queue a copy of an outbound message: (new id, refusal, status)."""
    m = await _resend_target(db, viewer, id_)
    if m.body_redacted is not None:
        return (
            None,
            "This message carried a one-time code, which simgate does not keep; the app "
            "must ask for a new code.",
            409,
        )
    if m.app_id is None and not viewer.is_admin:
        return None, "This message's app no longer exists.", 409
    sender = Sender(m.app_id, viewer.actor)
    req = SendRequest(
        to=[m.to_number],
        body=m.body,
        many=False,
        gateway=m.gateway_pinned,
        sim=m.sim_slot if m.gateway_pinned else None,
        metadata={**(m.meta or {}), "resend_of": m.id},
    )
    await db.rollback()
    try:
        accepted = await runtime.outbound.submit(sender=sender, req=req)
    except SimgateError as exc:
        text = exc.message[:1].upper() + exc.message[1:]
        return None, text + (f" ({exc.hint})" if exc.hint else ""), exc.status
    return accepted.message_ids[0], "", 202


@router.post("/admin/messages/{id_}/resend", response_model=None)
async def message_resend(
    request: Request, id_: str, db: SessionDep, viewer: ActingDep, runtime: RuntimeDep
) -> Response:
    try:
        new_id, refusal, status = await resend(db, runtime, viewer, id_)
    except NotFound:
        return error_page(
            request,
            "No such message",
            f"There is no message {id_[:40]!r} you can see.",
            status=404,
            back="/admin/messages",
            section="messages",
        )
    if new_id is None:
        return _refused(request, id_, refusal, status)
    return see_other(f"/admin/messages/{new_id}?resent={id_}")
