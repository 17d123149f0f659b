"""Dashboard pages: gateways (list, detail, add a modem, activate/deactivate) and seed 003's
test page, /admin/gateways/:id/test, which sends one SMS through a gateway and shows its
progress live."""

from __future__ import annotations

import glob
import os
from typing import Any

import segno
from fastapi import Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.domain.connect import connect_uri
from simgate.domain.placement import Placement
from simgate.errors import NotFound, SimgateError
from simgate.services import gateways as gateway_service
from simgate.services import nodes, phones, samples
from simgate.services.outbound import Sender, SendRequest, get_message
from simgate.store.models import Message
from simgate.store.types import utcnow
from simgate.web.dashboard.charts import signal_chart
from simgate.web.dashboard.core import (
    ActingAdminDep,
    AdminDep,
    FormErrors,
    error_page,
    form_text,
    render,
    see_other,
    server_url,
)
from simgate.web.deps import RuntimeDep, SessionDep
from simgate.web.routing import Router
from simgate.web.runtime import Runtime

router = Router(include_in_schema=False)
SECTION = "gateways"
PORT_PATTERNS = (
    "/dev/serial/by-id/*",  # stable names that survive replugging: offered first
    "/dev/ttyUSB*",
    "/dev/ttyACM*",
    "/dev/ttyAMA*",
    "/dev/serial0",
    "/dev/ttyS0",
)
FINAL = {"sent", "delivered", "failed", "expired", "canceled"}
MODEM_FIELDS = ("name", "port", "baud", "pin", "number", "rate_per_minute")


def serial_ports() -> list[str]:
    """Serial ports on this host, /dev/serial/by-id first."""
    found: list[str] = []
    for pattern in PORT_PATTERNS:
        for path in sorted(glob.glob(pattern)):
            if path not in found and os.path.exists(path):
                found.append(path)
    return found


def _not_found(request: Request, name: str) -> Response:
    message = f"There is no gateway {name!r}."
    return error_page(
        request, "No such gateway", message, status=404, back="/admin/gateways", section=SECTION
    )


def _refused(request: Request, name: str, title: str, exc: SimgateError) -> Response:
    back = f"/admin/gateways/{name}"
    return error_page(request, title, exc.message, status=409, back=back, section=SECTION)


async def _list(db: AsyncSession, runtime: Runtime) -> list[gateway_service.GatewayInfo]:
    return await gateway_service.list_all(db, offline_after=runtime.settings.gateway_offline_after)


@router.get("/admin/gateways", response_model=None)
async def gateway_list(
    request: Request, db: SessionDep, viewer: AdminDep, runtime: RuntimeDep
) -> Response:
    return render(request, "gateways.html", {"gateways": await _list(db, runtime)}, section=SECTION)


@router.get("/admin/gateways/live", response_model=None)
async def gateway_list_live(
    request: Request, db: SessionDep, viewer: AdminDep, runtime: RuntimeDep
) -> Response:
    return render(request, "_gateways_rows.html", {"gateways": await _list(db, runtime)})


def _modem_form(
    request: Request, form: dict[str, str], errors: FormErrors | None = None, status: int = 200
) -> Response:
    return render(
        request,
        "gateways_new_modem.html",
        {"form": form, "errors": errors, "ports": serial_ports()},
        status=status,
        section=SECTION,
    )


@router.get("/admin/gateways/new/modem", response_model=None)
async def new_modem_form(request: Request, viewer: AdminDep) -> Response:
    return _modem_form(request, {"baud": "115200", "rate_per_minute": "10"})


def _whole(value: str, name: str, errors: FormErrors, *, lo: int, hi: int) -> int:
    try:
        number = int(value)
    except ValueError:
        errors.add(name, "Enter a whole number.")
        return 0
    if not lo <= number <= hi:
        errors.add(name, f"Enter a number from {lo} to {hi}.")
    return number


@router.post("/admin/gateways/new/modem", response_model=None)
async def new_modem(
    request: Request, db: SessionDep, viewer: ActingAdminDep, runtime: RuntimeDep
) -> Response:
    raw = await request.form()
    form = {k: form_text(raw, k, limit=255) for k in MODEM_FIELDS}
    form["port"] = form_text(raw, "port_typed", limit=255) or form["port"]
    errors = FormErrors()
    if not form["name"]:
        errors.add("name", "Give the modem a name, e.g. pi or huawei-1.")
    if not form["port"]:
        errors.add("port", "Pick a serial port or type its path.")
    elif not form["port"].startswith("/"):
        errors.add("port", "A serial port is a path such as /dev/serial/by-id/… or /dev/ttyUSB0.")
    baud = _whole(form["baud"] or "115200", "baud", errors, lo=1200, hi=4_000_000)
    rate = _whole(form["rate_per_minute"] or "0", "rate_per_minute", errors, lo=0, hi=10_000)
    if form["pin"] and not (form["pin"].isdigit() and 4 <= len(form["pin"]) <= 8):
        errors.add("pin", "A SIM PIN is 4 to 8 digits.")
    form["pin"] = ""  # never shown back
    if errors:
        return _modem_form(request, form, errors, 422)
    options: dict[str, Any] = {"port": form["port"], "baud": baud}
    if raw.get("pin"):
        options["pin"] = form_text(raw, "pin")
    if form["number"]:
        options["number"] = form["number"]
    identity = nodes.host_identity(runtime.settings)
    try:
        info = await gateway_service.create(
            db,
            name=form["name"],
            kind="modem",
            config=options,
            placement=Placement.on_host(identity.id, identity.hostname),
            rate_per_minute=rate,
            max_in_flight=1,
            actor=viewer.actor,
        )
        await db.commit()
    except SimgateError as exc:
        await db.rollback()
        known = (*MODEM_FIELDS, "config")
        errors.from_error(exc, known=known)
        return _modem_form(request, form, errors, 422)
    runtime.gateways.wake()  # start it now, not at the next heartbeat
    return see_other(f"/admin/gateways/{info.name}?added=1")


async def _detail(db: AsyncSession, runtime: Runtime, name: str) -> dict[str, Any]:
    info = await gateway_service.get(db, name, offline_after=runtime.settings.gateway_offline_after)
    failures = list(
        await db.scalars(
            select(Message)
            .where(Message.gateway == name, Message.status == "failed")
            .order_by(Message.id.desc())
            .limit(10)
        )
    )
    # At most one sample per five minutes (more on status changes): a day fits in 400.
    history = await samples.recent(db, name, limit=400)
    chart = signal_chart(history, now=utcnow(), title=f"Signal, battery and status of {name}")
    return {"g": info, "failures": failures, "samples": history[:10], "signal_chart": chart}


@router.get("/admin/gateways/{name}", response_model=None)
async def gateway_detail(
    request: Request, name: str, db: SessionDep, viewer: AdminDep, runtime: RuntimeDep
) -> Response:
    try:
        context = await _detail(db, runtime, name)
    except NotFound:
        return _not_found(request, name)
    context["added"] = request.query_params.get("added") == "1"
    return render(request, "gateway_detail.html", context, section=SECTION)


@router.get("/admin/gateways/{name}/live", response_model=None)
async def gateway_detail_live(
    request: Request, name: str, db: SessionDep, viewer: AdminDep, runtime: RuntimeDep
) -> Response:
    try:
        context = await _detail(db, runtime, name)
    except NotFound:
        return _not_found(request, name)
    return render(request, "_gateway_state.html", context)


async def _set_active(
    request: Request, name: str, db: AsyncSession, viewer: Any, runtime: Runtime, active: bool
) -> Response:
    try:
        await gateway_service.set_active(db, name=name, active=active, actor=viewer.actor)
        await db.commit()
    except NotFound:
        return _not_found(request, name)
    runtime.gateways.wake()
    return see_other(f"/admin/gateways/{name}")


@router.post("/admin/gateways/{name}/activate", response_model=None)
async def activate(
    request: Request, name: str, db: SessionDep, viewer: ActingAdminDep, runtime: RuntimeDep
) -> Response:
    return await _set_active(request, name, db, viewer, runtime, True)


@router.post("/admin/gateways/{name}/deactivate", response_model=None)
async def deactivate(
    request: Request, name: str, db: SessionDep, viewer: ActingAdminDep, runtime: RuntimeDep
) -> Response:
    return await _set_active(request, name, db, viewer, runtime, False)


# ---------------------------------------------------------------------------- Android
def qr_svg(text: str) -> Markup:
    """``text`` as a QR code in inline SVG (drawn here: no script, no image service)."""
    code = segno.make(text, error="m")
    svg = code.svg_inline(scale=1, omitsize=True, svgclass="qr-code", title="QR code")
    return Markup(svg)  # noqa: S704 - segno's own SVG; the text is encoded as modules


def _android_form(
    request: Request, form: dict[str, str], errors: FormErrors | None = None, status: int = 200
) -> Response:
    return render(
        request,
        "gateways_new_android.html",
        {"form": form, "errors": errors, "made": None},
        status=status,
        section=SECTION,
    )


@router.get("/admin/gateways/new/android", response_model=None)
async def new_android_form(request: Request, viewer: AdminDep) -> Response:
    return _android_form(request, {"label": "", "name": "", "rate_per_minute": "0"})


@router.post("/admin/gateways/new/android", response_model=None)
async def new_android(
    request: Request, db: SessionDep, viewer: ActingAdminDep, runtime: RuntimeDep
) -> Response:
    """Creates the phone gateway and shows its key once, as text and as a QR code holding
    this server's URL with the key (``domain.connect``)."""
    raw = await request.form()
    form = {k: form_text(raw, k, limit=255) for k in ("label", "name", "rate_per_minute")}
    errors = FormErrors()
    if not form["label"]:
        errors.add("label", "Give the phone a name people recognise, e.g. Shop phone.")
    elif len(form["label"]) > 128:
        errors.add("label", "At most 128 characters.")
    rate = _whole(form["rate_per_minute"] or "0", "rate_per_minute", errors, lo=0, hi=10_000)
    if errors:
        return _android_form(request, form, errors, 422)
    try:
        if form["name"]:
            gateway_service.check_name(form["name"])
        made = await phones.create(
            db,
            label=form["label"],
            device_id=None,
            name=form["name"] or None,
            rate_per_minute=rate,
            actor=viewer.actor,
        )
        await db.commit()
    except SimgateError as exc:
        await db.rollback()
        errors.from_error(exc, known=("label", "name", "rate_per_minute"))
        return _android_form(request, form, errors, 422)
    runtime.gateways.wake()
    server = server_url(request)
    uri = connect_uri(server, made.key)
    return render(
        request,
        "gateways_new_android.html",
        {
            "form": form,
            "errors": None,
            "made": made,
            "server": server,
            "uri": uri,
            "qr": qr_svg(uri),
        },
        status=201,
        section=SECTION,
    )


@router.post("/admin/gateways/{name}/rotate-key", response_model=None)
async def rotate_key(
    request: Request, name: str, db: SessionDep, viewer: ActingAdminDep, runtime: RuntimeDep
) -> Response:
    """A phone's new key, shown once with its QR code; the old key is refused at once."""
    try:
        key = await phones.rotate_key(db, name=name, actor=viewer.actor)
        await db.commit()
    except NotFound:
        return _not_found(request, name)
    except SimgateError as exc:
        await db.rollback()
        return _refused(request, name, "Cannot rotate", exc)
    runtime.authenticator.invalidate()
    server = server_url(request)
    uri = connect_uri(server, key)
    return render(
        request,
        "gateways_new_android.html",
        {
            "form": {},
            "errors": None,
            "made": {"name": name, "key": key},
            "server": server,
            "uri": uri,
            "qr": qr_svg(uri),
            "rotated": True,
        },
        section=SECTION,
    )


@router.post("/admin/gateways/{name}/remove", response_model=None)
async def remove(
    request: Request, name: str, db: SessionDep, viewer: ActingAdminDep, runtime: RuntimeDep
) -> Response:
    try:
        await gateway_service.remove(db, name=name, actor=viewer.actor)
        await db.commit()
    except NotFound:
        return _not_found(request, name)
    except SimgateError as exc:
        await db.rollback()
        return _refused(request, name, "Cannot remove", exc)
    runtime.gateways.wake()
    return see_other("/admin/gateways")


def _enroll_page(
    request: Request,
    tokens: list[Any],
    form: dict[str, str],
    errors: FormErrors | None,
    made: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "gateways_enroll.html",
        {
            "tokens": tokens,
            "form": form,
            "errors": errors,
            "made": made,
            "server": server_url(request),
        },
        status=status,
        section=SECTION,
    )


@router.get("/admin/gateways/new/enroll", response_model=None)
async def enroll_page(request: Request, db: SessionDep, viewer: AdminDep) -> Response:
    tokens = await phones.list_enrollment_tokens(db)
    return _enroll_page(request, tokens, {"label": "", "hours": "24"}, None)


@router.post("/admin/gateways/new/enroll", response_model=None)
async def enroll(request: Request, db: SessionDep, viewer: ActingAdminDep) -> Response:
    """An enrollment token, shown once: a phone registers itself with it
    (``POST /api/v1/gateway/register``), and it is used up."""
    raw = await request.form()
    form = {"label": form_text(raw, "label", limit=128), "hours": form_text(raw, "hours")}
    errors = FormErrors()
    try:
        hours = float(form["hours"] or "24")
    except ValueError:
        errors.add("hours", "Enter a number of hours, e.g. 24.")
        hours = 0.0
    if not errors:
        try:
            token, expires = await phones.enrollment_token(
                db, hours=hours, label=form["label"], actor=viewer.actor
            )
            await db.commit()
        except SimgateError as exc:
            await db.rollback()
            errors.add("hours", exc.message[:1].upper() + exc.message[1:] + ".")
        else:
            tokens = await phones.list_enrollment_tokens(db)
            made = {"token": token, "expires": expires}
            return _enroll_page(request, tokens, form, None, made, status=201)
    tokens = await phones.list_enrollment_tokens(db)
    return _enroll_page(request, tokens, form, errors, status=422)


# ---------------------------------------------------------------------------- test send
async def _test_context(
    db: AsyncSession, runtime: Runtime, name: str, message_id: str
) -> dict[str, Any]:
    info = await gateway_service.get(db, name, offline_after=runtime.settings.gateway_offline_after)
    message = None
    if message_id:
        try:
            message = await get_message(db, message_id, app_id=None)
        except NotFound:
            message = None
    return {
        "g": info,
        "message": message,
        "final": bool(message and message["status"] in FINAL - {"sent"}),
    }


@router.get("/admin/gateways/{name}/test", response_model=None)
async def try_page(
    request: Request,
    name: str,
    db: SessionDep,
    viewer: AdminDep,
    runtime: RuntimeDep,
    message: str = "",
) -> Response:
    try:
        context = await _test_context(db, runtime, name, message)
    except NotFound:
        return _not_found(request, name)
    context.update({"form": {"to": "", "body": "simgate test message"}, "errors": None})
    return render(request, "gateway_test.html", context, section=SECTION)


@router.get("/admin/gateways/{name}/test/status", response_model=None)
async def try_status(
    request: Request,
    name: str,
    db: SessionDep,
    viewer: AdminDep,
    runtime: RuntimeDep,
    message: str = "",
) -> Response:
    try:
        context = await _test_context(db, runtime, name, message)
    except NotFound:
        return _not_found(request, name)
    # 286 tells htmx to stop polling: the message has reached its end.
    return render(
        request, "_gateway_test_status.html", context, status=286 if context["final"] else 200
    )


@router.post("/admin/gateways/{name}/test", response_model=None)
async def try_send(
    request: Request, name: str, db: SessionDep, viewer: ActingAdminDep, runtime: RuntimeDep
) -> Response:
    try:
        context = await _test_context(db, runtime, name, "")
    except NotFound:
        return _not_found(request, name)
    raw = await request.form()
    form = {"to": form_text(raw, "to", limit=64), "body": form_text(raw, "body", limit=2000)}
    errors = FormErrors()
    if not form["to"]:
        errors.add("to", "Enter the number to send the test to, e.g. +4915112345678.")
    if not form["body"]:
        errors.add("body", "Enter a text.")
    if not errors:
        # The pipeline writes on its own connection: end this session's read first, or
        # SQLite's writer would wait for it.
        await db.rollback()
        try:
            accepted = await runtime.outbound.submit(
                sender=Sender(None, viewer.actor),
                req=SendRequest(to=[form["to"]], body=form["body"], many=False, gateway=name),
            )
        except SimgateError as exc:
            errors.from_error(exc, known=("to", "body"))
        else:
            return see_other(f"/admin/gateways/{name}/test?message={accepted.message_ids[0]}")
    context.update({"form": form, "errors": errors})
    return render(request, "gateway_test.html", context, status=422, section=SECTION)
