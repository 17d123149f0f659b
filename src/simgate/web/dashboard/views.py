"""Login, logout and the dashboard home page."""

from __future__ import annotations

import hmac
from datetime import timedelta

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from simgate.errors import Unauthorized
from simgate.services import accounts, inbox, sessions
from simgate.services.accounts import UserInfo
from simgate.services.inbound import inbox_item
from simgate.web.dashboard import overview
from simgate.web.dashboard.core import (
    COOKIE,
    NotAllowed,
    ViewerDep,
    csrf_token,
    render,
    same_origin,
)
from simgate.web.deps import RuntimeDep, SessionDep
from simgate.web.routing import Router

router = Router(include_in_schema=False)


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def _safe_next(target: str | None) -> str:
    """Only same-site paths: never let ?next= send a user to another site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard"


async def current_user(request: Request, db: SessionDep) -> UserInfo | None:
    token = request.cookies.get(COOKIE)
    return await sessions.user_for(db, token) if token else None


def _login_page(
    request: Request, *, error: str = "", username: str = "", next_: str = "", status: int = 200
) -> HTMLResponse:
    return render(
        request, "login.html", {"error": error, "username": username, "next": next_}, status=status
    )


@router.get("/", response_model=None)
async def root(request: Request, db: SessionDep) -> Response:
    user = await current_user(request, db)
    return RedirectResponse("/dashboard" if user else "/login", status_code=303)


@router.get("/login", response_model=None)
async def login_form(
    request: Request, db: SessionDep, next: str = "", expired: str = ""
) -> Response:
    if await current_user(request, db):
        return RedirectResponse(_safe_next(next), status_code=303)
    notice = "Your session has ended; log in again." if expired else ""
    return _login_page(request, next_=next, error=notice)


@router.post("/login", response_model=None)
async def login(request: Request, db: SessionDep, runtime: RuntimeDep) -> Response:
    if not same_origin(request):
        return _login_page(request, error="This form was sent from another site.", status=403)
    form = await request.form()
    username = str(form.get("username") or "").strip()
    password = str(form.get("password") or "")
    next_ = str(form.get("next") or "")
    if not username or not password:
        missing = "username" if not username else "password"
        return _login_page(
            request,
            error=f"Please enter your {missing}.",
            username=username,
            next_=next_,
            status=422,
        )
    ip = _client_ip(request)
    wait = runtime.login_throttle.retry_after(ip, username)
    if wait:
        throttled = _login_page(
            request,
            error=f"Too many failed logins; try again in {wait} seconds.",
            username=username,
            next_=next_,
            status=429,
        )
        throttled.headers["Retry-After"] = str(wait)
        return throttled
    try:
        user = await accounts.verify_login(db, username=username, password=password)
    except Unauthorized as exc:
        runtime.login_throttle.failed(ip, username)
        return _login_page(
            request,
            error=exc.message.capitalize() + ".",
            username=username,
            next_=next_,
            status=401,
        )
    runtime.login_throttle.succeeded(ip, username)
    ttl = timedelta(hours=runtime.settings.session_ttl_hours)
    token = await sessions.open_session(
        db,
        user=user,
        ttl=ttl,
        client_ip=ip,
        user_agent=request.headers.get("user-agent", ""),
    )
    await db.commit()
    response = RedirectResponse(_safe_next(next_), status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(ttl.total_seconds()),
        httponly=True,
        samesite="lax",
        # HTTPS here, or at a trusted proxy in front (X-Forwarded-Proto), or configured so.
        secure=request.url.scheme == "https" or runtime.settings.public_url.startswith("https://"),
        path="/",
    )
    return response


@router.post("/logout", response_model=None)
async def logout(request: Request, db: SessionDep) -> Response:
    """Ends the session when the form carries its CSRF token (a stale form from an ended
    session just lands on the login page)."""
    token = request.cookies.get(COOKIE)
    form = await request.form()
    sent = form.get("csrf_token")
    if token and isinstance(sent, str) and same_origin(request):
        if hmac.compare_digest(sent.encode(), csrf_token(token).encode()):
            await sessions.close_session(db, token)
            await db.commit()
        elif await sessions.user_for(db, token):
            return RedirectResponse("/dashboard", status_code=303)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/dashboard", response_model=None)
async def dashboard(
    request: Request, db: SessionDep, viewer: ViewerDep, runtime: RuntimeDep
) -> Response:
    context = await overview.page(db, viewer, runtime)
    return render(request, "overview.html", context, section="overview")


@router.get("/dashboard/live", response_model=None)
async def dashboard_live(
    request: Request, db: SessionDep, viewer: ViewerDep, runtime: RuntimeDep
) -> Response:
    """The overview's live part (htmx polls it)."""
    context = await overview.page(db, viewer, runtime)
    return render(request, "_overview_live.html", context)


@router.get("/admin", response_model=None)
async def admin_home() -> Response:
    return RedirectResponse("/dashboard", status_code=303)


async def _inbox(db: SessionDep, viewer: ViewerDep) -> dict[str, object]:
    if not viewer.is_admin:
        raise NotAllowed("The inbox holds every app's SMS, so it is for admins.")
    return {"messages": [inbox_item(m) for m in await inbox.recent(db, 50)]}


@router.get("/inbox", response_model=None)
async def inbox_page(request: Request, db: SessionDep, viewer: ViewerDep) -> Response:
    """Seed 001's page: the last 50 received SMS, newest first; new ones appear live."""
    return render(request, "inbox.html", await _inbox(db, viewer), section="inbox")


@router.get("/inbox/live", response_model=None)
async def inbox_live(request: Request, db: SessionDep, viewer: ViewerDep) -> Response:
    return render(request, "_inbox_rows.html", await _inbox(db, viewer))
