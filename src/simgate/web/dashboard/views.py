"""Login, logout and the dashboard home page."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlparse

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from simgate import __version__
from simgate.errors import Unauthorized
from simgate.services import accounts, inbox, sessions
from simgate.services import apps as app_service
from simgate.services.accounts import UserInfo
from simgate.services.inbound import inbox_item
from simgate.web.deps import RuntimeDep, SessionDep

COOKIE = "simgate_session"
templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")
templates.env.globals["version"] = __version__
router = APIRouter(include_in_schema=False)


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def _safe_next(target: str | None) -> str:
    """Only same-site paths: never let ?next= send a user to another site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard"


def _same_origin(request: Request) -> bool:
    """Refuse cross-site form posts (CSRF) on top of the SameSite=Lax cookie."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        referer = request.headers.get("referer")
        if referer is None:
            return origin is None
        origin = referer
    return urlparse(origin).netloc == request.headers.get("host", "")


async def current_user(request: Request, db: SessionDep) -> UserInfo | None:
    token = request.cookies.get(COOKIE)
    return await sessions.user_for(db, token) if token else None


def _login_page(
    request: Request, *, error: str = "", username: str = "", next_: str = "", status: int = 200
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "login.html",
        {"error": error, "username": username, "next": next_},
        status_code=status,
    )


@router.get("/", response_model=None)
async def root(request: Request, db: SessionDep) -> Response:
    user = await current_user(request, db)
    return RedirectResponse("/dashboard" if user else "/login", status_code=303)


@router.get("/login", response_model=None)
async def login_form(request: Request, db: SessionDep, next: str = "") -> Response:
    if await current_user(request, db):
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_page(request, next_=next)


@router.post("/login", response_model=None)
async def login(request: Request, db: SessionDep, runtime: RuntimeDep) -> Response:
    if not _same_origin(request):
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
        secure=runtime.settings.public_url.startswith("https://"),
        path="/",
    )
    return response


@router.post("/logout", response_model=None)
async def logout(request: Request, db: SessionDep) -> Response:
    token = request.cookies.get(COOKIE)
    if token and _same_origin(request):
        await sessions.close_session(db, token)
        await db.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/dashboard", response_model=None)
async def dashboard(request: Request, db: SessionDep) -> Response:
    user = await current_user(request, db)
    if user is None:
        return RedirectResponse(f"/login?next={quote('/dashboard')}", status_code=303)
    owner = None if user.role == "admin" else user.username
    apps = await app_service.list_apps(db, owner=owner)
    names = {a.name for a in apps}
    keys = [k for k in await app_service.list_keys(db) if k.app in names]
    return templates.TemplateResponse(
        request, "dashboard.html", {"user": user, "apps": apps, "keys": keys}
    )


@router.get("/inbox", response_model=None)
async def inbox_page(request: Request, db: SessionDep) -> Response:
    """Seed 001's page: the last 50 received SMS, newest first (admins: the inbox holds
    every app's SMS)."""
    user = await current_user(request, db)
    if user is None:
        return RedirectResponse(f"/login?next={quote('/inbox')}", status_code=303)
    if user.role != "admin":
        return templates.TemplateResponse(
            request,
            "dashboard.html",
            {"user": user, "apps": [], "keys": [], "notice": "The inbox is for admins."},
            status_code=403,
        )
    messages = [inbox_item(m) for m in await inbox.recent(db, 50)]
    return templates.TemplateResponse(request, "inbox.html", {"user": user, "messages": messages})
