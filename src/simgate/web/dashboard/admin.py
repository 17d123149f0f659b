"""Dashboard pages: users (admins), the signed-in user's account, the logs (admins) and the
API examples."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from simgate.errors import SimgateError
from simgate.services import accounts, audit, events, request_log, sessions
from simgate.services.apps import list_apps
from simgate.web.dashboard.core import (
    COOKIE,
    ActingAdminDep,
    ActingDep,
    AdminDep,
    FormErrors,
    SessionDep,
    ViewerDep,
    form_text,
    render,
    see_other,
    server_url,
)
from simgate.web.deps import RuntimeDep
from simgate.web.routing import Router

router = Router(include_in_schema=False)
USER_FIELDS = ("username", "password", "role")


# ---------------------------------------------------------------------------- users
async def _users_page(
    request: Request,
    db: SessionDep,
    *,
    errors: FormErrors | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    return render(
        request,
        "users.html",
        {
            "users": await accounts.list_users(db),
            "errors": errors or FormErrors(),
            "form": form or {"role": "user"},
            "notice": notice or request.query_params.get("done", "")[:80],
            "roles": accounts.ROLES,
        },
        status=status,
        section="users",
    )


@router.get("/admin/users", response_model=None)
async def users_page(request: Request, db: SessionDep, viewer: AdminDep) -> Response:
    return await _users_page(request, db)


@router.post("/admin/users", response_model=None)
async def create_user(request: Request, db: SessionDep, viewer: ActingAdminDep) -> Response:
    form = await request.form()
    values = {k: form_text(form, k) for k in ("username", "role")}
    password = form.get("password")
    try:
        await accounts.create_user(
            db,
            username=values["username"],
            password=password if isinstance(password, str) else "",
            role=values["role"],
            actor=viewer.actor,
        )
    except SimgateError as exc:
        await db.rollback()
        errors = FormErrors().from_error(exc, known=USER_FIELDS)
        return await _users_page(request, db, errors=errors, form=values, status=422)
    await db.commit()
    return see_other("/admin/users?done=created")


async def _user_action(request: Request, db: SessionDep, username: str, action: Any) -> Response:
    try:
        await accounts.get_user(db, username)
    except SimgateError:
        return render(
            request,
            "error.html",
            {
                "title": "No such user",
                "message": f"There is no user {username!r}.",
                "back": "/admin/users",
            },
            status=404,
            section="users",
        )
    try:
        await action()
    except SimgateError as exc:
        await db.rollback()
        errors = FormErrors()
        errors.add(None, f"{username}: " + exc.message[:1].upper() + exc.message[1:] + ".")
        return await _users_page(request, db, errors=errors, status=422)
    await db.commit()
    return see_other("/admin/users?done=changed")


class _Refused(SimgateError):
    status = 422
    code = "invalid"


@router.post("/admin/users/{username}/role", response_model=None)
async def set_role(
    request: Request, username: str, db: SessionDep, viewer: ActingAdminDep
) -> Response:
    role = form_text(await request.form(), "role")

    async def act() -> None:
        if username == viewer.user.username and role != "admin":
            raise _Refused("you cannot take away your own admin role; ask another admin")
        await accounts.set_role(db, username=username, role=role, actor=viewer.actor)

    return await _user_action(request, db, username, act)


@router.post("/admin/users/{username}/activate", response_model=None)
async def activate(
    request: Request, username: str, db: SessionDep, viewer: ActingAdminDep
) -> Response:
    async def act() -> None:
        await accounts.set_active(db, username=username, active=True, actor=viewer.actor)

    return await _user_action(request, db, username, act)


@router.post("/admin/users/{username}/deactivate", response_model=None)
async def deactivate(
    request: Request, username: str, db: SessionDep, viewer: ActingAdminDep
) -> Response:
    async def act() -> None:
        if username == viewer.user.username:
            raise _Refused("you cannot deactivate yourself; ask another admin")
        user = await accounts.get_user(db, username)
        await accounts.set_active(db, username=username, active=False, actor=viewer.actor)
        await sessions.close_user_sessions(db, user_id=user.id)

    return await _user_action(request, db, username, act)


@router.post("/admin/users/{username}/password", response_model=None)
async def set_password(
    request: Request, username: str, db: SessionDep, viewer: ActingAdminDep
) -> Response:
    password = (await request.form()).get("password")

    async def act() -> None:
        user = await accounts.get_user(db, username)
        await accounts.set_password(
            db,
            username=username,
            password=password if isinstance(password, str) else "",
            actor=viewer.actor,
        )
        if username != viewer.user.username:
            await sessions.close_user_sessions(db, user_id=user.id)

    return await _user_action(request, db, username, act)


# ---------------------------------------------------------------------------- account
@router.get("/admin/account", response_model=None)
async def account_page(request: Request, viewer: ViewerDep) -> Response:
    done = request.query_params.get("done") == "password"
    return render(request, "account.html", {"errors": FormErrors(), "changed": done}, section="")


@router.post("/admin/account", response_model=None)
async def change_password(request: Request, db: SessionDep, viewer: ActingDep) -> Response:
    """Change one's own password; the user's other sessions end with the old password."""
    form = await request.form()
    current, new, repeat = (
        v if isinstance(v := form.get(k), str) else "" for k in ("current", "new", "repeat")
    )
    errors = FormErrors()
    if new != repeat:
        errors.add("repeat", "The two new passwords differ.")
    else:
        try:
            await accounts.change_own_password(
                db, username=viewer.user.username, current=current, new=new, actor=viewer.actor
            )
        except SimgateError as exc:
            await db.rollback()
            if exc.field == "password":
                exc.field = "new"
            errors.from_error(exc, known=("current", "new", "repeat"))
    if errors:
        return render(request, "account.html", {"errors": errors}, status=422)
    await sessions.close_other_sessions(
        db, user_id=viewer.user.id, keep=request.cookies.get(COOKIE, "")
    )
    await db.commit()
    return see_other("/admin/account?done=password")


# ---------------------------------------------------------------------------- logs
async def _logs(request: Request, db: SessionDep, runtime: RuntimeDep) -> dict[str, Any]:
    # The viewer was read in this session, which holds SQLite's only connection: end that
    # read so the request log's writer can take the connection, or it waits for it in vain.
    await db.commit()
    await runtime.request_log.flush()
    q = request.query_params
    apps = await list_apps(db)
    by_id = {a.id: a.name for a in apps}
    app = q.get("app", "")[:64]
    status = q.get("status", "")
    path = q.get("path", "")[:200]
    app_ids = [a.id for a in apps if a.name == app] if app else None
    requests = await request_log.search(
        db,
        app_ids=app_ids,
        status_class=status if status in request_log.STATUS_CLASSES else None,
        path=path or None,
    )
    return {
        "apps": apps,
        "by_id": by_id,
        "filters": {"app": app, "status": status, "path": path},
        "requests": requests,
        "status_classes": request_log.STATUS_CLASSES,
        "gateway_log": await events.gateway_log(db, limit=100),
        "audit": await audit.recent(db, limit=100),
    }


@router.get("/admin/logs", response_model=None)
async def logs_page(
    request: Request, db: SessionDep, viewer: AdminDep, runtime: RuntimeDep
) -> Response:
    """Seed 003's log view: API requests, gateway problems and the audit trail."""
    return render(request, "logs.html", await _logs(request, db, runtime), section="logs")


@router.get("/admin/logs/live", response_model=None)
async def logs_live(
    request: Request, db: SessionDep, viewer: AdminDep, runtime: RuntimeDep
) -> Response:
    return render(request, "_logs_live.html", await _logs(request, db, runtime))


# ---------------------------------------------------------------------------- API examples
@router.get("/admin/api", response_model=None)
async def api_examples(request: Request, db: SessionDep, viewer: ViewerDep) -> Response:
    apps = await list_apps(db, owner=viewer.owner)
    return render(
        request,
        "api_examples.html",
        {"base": server_url(request), "app_names": [a.name for a in apps]},
        section="api",
    )
