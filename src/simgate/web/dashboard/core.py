"""What every dashboard page shares: the signed-in viewer, CSRF tokens, rendering, and how
service errors become messages next to form fields.

Pages are server-rendered; htmx (served from /static/vendor) swaps fragments for live
parts. A page works without JavaScript: forms post and the server answers with a page.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from simgate import __version__
from simgate.errors import SimgateError
from simgate.services import sessions
from simgate.services.accounts import UserInfo
from simgate.web.deps import RuntimeDep, SessionDep

COOKIE = "simgate_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
TEMPLATES_DIR = Path(__file__).parent.parent / "templates"

templates = Jinja2Templates(directory=TEMPLATES_DIR)
templates.env.globals["version"] = __version__


# ---------------------------------------------------------------------------- formatting
def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def when(value: datetime | str | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A stored time as UTC text (a dash when there is none)."""
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    return _aware(value).astimezone(UTC).strftime(fmt)


def ago(value: datetime | str | None, now: datetime | None = None) -> str:
    """'12 s ago', '3 min ago', '2 h ago', '4 d ago' ('never' when there is none)."""
    if value is None or value == "":
        return "never"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    seconds = ((now or datetime.now(UTC)) - _aware(value)).total_seconds()
    if seconds < 0:
        return "just now" if seconds > -5 else when(value)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{math.floor(seconds / size)} {unit} ago"
    return f"{int(seconds)} s ago"


def bars(signal: int | None) -> Markup:
    """Signal strength (0-5 bars, as modems and phones report it, or None) as five bars in
    SVG (attributes, no inline style, so the page's Content-Security-Policy holds)."""
    if signal is None:
        lit, label = 0, "no signal reading"
    else:
        lit = max(0, min(5, int(signal)))
        label = f"signal {lit} of 5 bars"
    parts = [
        f'<svg class="bars" viewBox="0 0 25 16" width="25" height="16" role="img" '
        f'aria-label="{label}"><title>{label}</title>'
    ]
    for i in range(5):
        h = 4 + i * 3
        cls = "on" if i < lit else "off"
        parts.append(f'<rect class="{cls}" x="{i * 5}" y="{16 - h}" width="4" height="{h}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers only


def status_badge(value: str | None) -> Markup:
    """A status as a coloured pill (its class is derived from the status, its text escaped)."""
    text = str(value or "unknown")
    css = "".join(c if c.isalnum() else "-" for c in text.lower())
    return Markup('<span class="status status-{}">{}</span>').format(css, text.replace("_", " "))


def detail(value: object) -> str:
    """An event's detail as 'key value · key value' (plain text; escaped by the template)."""
    if isinstance(value, dict):
        return " · ".join(f"{k.replace('_', ' ')} {v}" for k, v in value.items())
    return "" if value is None else str(value)


templates.env.filters["when"] = when
templates.env.filters["detail"] = detail
templates.env.globals["status_badge"] = status_badge
templates.env.filters["ago"] = ago
templates.env.globals["bars"] = bars


# ---------------------------------------------------------------------------- viewer, CSRF
@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in user of this request, and the CSRF token their forms must carry."""

    user: UserInfo
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.user.role == "admin"

    @property
    def owner(self) -> str | None:
        """The owner filter for app lists: None (every app) for admins."""
        return None if self.is_admin else self.user.username

    @property
    def actor(self) -> str:
        return f"user:{self.user.username}"


def csrf_token(session_token: str) -> str:
    """Bound to the session: a token from another session (or a logged-out one) fails."""
    return hmac.new(session_token.encode(), b"simgate-dashboard-csrf", hashlib.sha256).hexdigest()


class LoginNeeded(Exception):
    """No live session: pages redirect to /login, htmx fragments ask the browser to."""


class NotAllowed(Exception):
    """Signed in, but this page is for admins (or for another user's app)."""

    def __init__(self, message: str = "This page is for admins.") -> None:
        super().__init__(message)
        self.message = message


class CsrfFailed(Exception):
    """A state-changing form without this session's CSRF token, or from another site."""


async def _viewer(request: Request, db: SessionDep) -> Viewer:
    token = request.cookies.get(COOKIE)
    user = await sessions.user_for(db, token) if token else None
    if user is None or token is None:
        raise LoginNeeded()
    viewer = Viewer(user, csrf_token(token))
    request.state.viewer = viewer
    return viewer


async def _admin(viewer: Annotated[Viewer, Depends(_viewer)]) -> Viewer:
    if not viewer.is_admin:
        raise NotAllowed()
    return viewer


def same_origin(request: Request) -> bool:
    """The browser says the form came from this site (Origin, else Referer)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        referer = request.headers.get("referer")
        if referer is None:
            return origin is None
        origin = referer
    from urllib.parse import urlparse

    return urlparse(origin).netloc == request.headers.get("host", "")


async def check_csrf(request: Request, viewer: Viewer) -> None:
    """The token from the form field or the X-CSRF-Token header (htmx sends it) must match
    this session's, compared in constant time; and the request must come from this site."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if "form" in content_type:
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), viewer.csrf.encode()):
        raise CsrfFailed()
    if not same_origin(request):
        raise CsrfFailed()


async def _acting(request: Request, viewer: Annotated[Viewer, Depends(_viewer)]) -> Viewer:
    await check_csrf(request, viewer)
    return viewer


async def _acting_admin(request: Request, viewer: Annotated[Viewer, Depends(_admin)]) -> Viewer:
    await check_csrf(request, viewer)
    return viewer


# Page dependencies: signed in; admin; and the same with a valid CSRF token (for POSTs).
ViewerDep = Annotated[Viewer, Depends(_viewer)]
AdminDep = Annotated[Viewer, Depends(_admin)]
ActingDep = Annotated[Viewer, Depends(_acting)]
ActingAdminDep = Annotated[Viewer, Depends(_acting_admin)]
__all__ = [
    "ActingAdminDep",
    "ActingDep",
    "AdminDep",
    "FormErrors",
    "RuntimeDep",
    "SessionDep",
    "Viewer",
    "ViewerDep",
    "form_text",
    "render",
    "see_other",
]


# ---------------------------------------------------------------------------- rendering
def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    section: str = "",
) -> HTMLResponse:
    """Render a template with the viewer, their CSRF token and the nav section to mark."""
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    ctx: dict[str, Any] = {
        "viewer": viewer,
        "user": viewer.user if viewer else None,
        "csrf": viewer.csrf if viewer else "",
        "section": section,
        "public_url": request.app.state.runtime.settings.public_url,
    }
    if context:
        ctx.update(context)
    response = templates.TemplateResponse(request, name, ctx, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def error_page(
    request: Request, title: str, message: str, *, status: int, back: str = "", section: str = ""
) -> HTMLResponse:
    """A page that says what went wrong and links back (404s, refused actions)."""
    context = {"title": title, "message": message, "back": back}
    return render(request, "error.html", context, status=status, section=section)


def see_other(url: str) -> RedirectResponse:
    """After a successful POST: the browser GETs ``url`` (no resubmission on reload)."""
    return RedirectResponse(url, status_code=303)


def server_url(request: Request) -> str:
    """The URL users reach this server at: PUBLIC_URL, else what the browser used."""
    configured = request.app.state.runtime.settings.public_url.rstrip("/")
    return configured or str(request.base_url).rstrip("/")


def form_text(form: Mapping[str, Any], name: str, *, limit: int = 10_000) -> str:
    """A form field as stripped text ('' when absent; uploads are not text)."""
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


@dataclass
class FormErrors:
    """Messages to show next to fields (``field`` → message), plus ones for the whole form."""

    fields: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fields or self.general)

    def add(self, name: str | None, message: str) -> None:
        if name and name not in self.fields:
            self.fields[name] = message
        elif not name:
            self.general.append(message)

    def from_error(self, exc: SimgateError, *, known: tuple[str, ...] = ()) -> FormErrors:
        """A service error, placed next to its field when the form has that field."""
        text = exc.message[:1].upper() + exc.message[1:]
        if exc.hint:
            text = f"{text} ({exc.hint})"
        self.add(exc.field if exc.field in known else None, text)
        return self

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


# ---------------------------------------------------------------------------- handlers
def install(app: Any) -> None:
    """Exception handlers that turn the dashboard's own exceptions into pages."""

    async def login_needed(request: Request, exc: Exception) -> Response:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        login = f"/login?next={quote(target)}"
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": login})
        if request.method != "GET":
            login = "/login?expired=1"
        return see_other(login)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        message = exc.message if isinstance(exc, NotAllowed) else "Not allowed."
        return render(
            request, "error.html", {"title": "Not allowed", "message": message}, status=403
        )

    async def csrf_failed(request: Request, exc: Exception) -> Response:
        return render(
            request,
            "error.html",
            {
                "title": "This form has expired",
                "message": "The form was stale or sent from another site, so nothing was "
                "changed. Go back, reload the page and try again.",
            },
            status=403,
        )

    app.add_exception_handler(LoginNeeded, login_needed)
    app.add_exception_handler(NotAllowed, not_allowed)
    app.add_exception_handler(CsrfFailed, csrf_failed)
