"""People, apps and API keys: the ``admin``, ``app`` and ``key`` commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Column, Table
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.cli.common import ACTOR, ConfigOpt, fail, in_transaction, out, run, settings_from
from simgate.domain.keys import DEFAULT_SCOPES, InvalidScopes, format_scopes, parse_scopes
from simgate.errors import SimgateError
from simgate.services import accounts
from simgate.services import apps as app_service
from simgate.services.auth import touch_marker

admin_cli = typer.Typer(help="People who log in: admins and users.", no_args_is_help=True)
app_cli = typer.Typer(help="Apps: what API keys belong to.", no_args_is_help=True)
key_cli = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            fail("no password on standard input")
        return password
    if not sys.stdin.isatty():
        fail("no terminal to ask for a password; pipe it in with --password-stdin")
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@admin_cli.command("create")
def admin_create(
    username: Annotated[str, typer.Argument(help="Login name.")],
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input instead of prompting.")
    ] = False,
    role: Annotated[
        str, typer.Option(help="admin (manages everything) or user (owns apps).")
    ] = "admin",
    config: ConfigOpt = None,
) -> None:
    """Create a person who can log in (an admin unless --role user)."""
    settings = settings_from(config)
    try:
        accounts.check_username(username)
    except SimgateError as exc:
        fail(exc.message)
    password = _read_password(password_stdin)

    async def work(session: AsyncSession) -> accounts.UserInfo:
        return await accounts.create_user(
            session, username=username, password=password, role=role, actor=ACTOR
        )

    user = run(in_transaction(settings, work))
    out.print(f"created {user.role} {user.username!r}", markup=False)


@admin_cli.command("set-password")
def admin_set_password(
    username: str,
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Set a new password for a user."""
    settings = settings_from(config)
    password = _read_password(password_stdin)

    async def work(session: AsyncSession) -> None:
        await accounts.set_password(session, username=username, password=password, actor=ACTOR)

    run(in_transaction(settings, work))
    out.print(f"password of {username!r} changed", markup=False)


@admin_cli.command("list")
def admin_list(config: ConfigOpt = None) -> None:
    """List users."""
    settings = settings_from(config)
    users = run(in_transaction(settings, accounts.list_users))
    table = Table("username", "role", "active", "created", "last login")
    for u in users:
        table.add_row(
            u.username,
            u.role,
            "yes" if u.is_active else "no",
            f"{u.created_at:%Y-%m-%d %H:%M}",
            f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "never",
        )
    out.print(table)


def _set_active(username: str, active: bool, config: Path | None) -> None:
    settings = settings_from(config)

    async def work(session: AsyncSession) -> None:
        await accounts.set_active(session, username=username, active=active, actor=ACTOR)

    run(in_transaction(settings, work))
    out.print(f"{username!r} {'enabled' if active else 'disabled'}", markup=False)


@admin_cli.command("disable")
def admin_disable(username: str, config: ConfigOpt = None) -> None:
    """Stop a user from logging in (their apps keep working)."""
    _set_active(username, False, config)


@admin_cli.command("enable")
def admin_enable(username: str, config: ConfigOpt = None) -> None:
    """Let a disabled user log in again."""
    _set_active(username, True, config)


ScopesOpt = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated scopes: send, inbox, otp, admin, or 'all' "
        f"[default: {format_scopes(DEFAULT_SCOPES)}]",
        show_default=False,
    ),
]


def _scopes(text: str | None) -> Any:
    if text is None:
        return DEFAULT_SCOPES
    try:
        return parse_scopes(text)
    except InvalidScopes as exc:
        fail(f"--scopes: {exc}")


@app_cli.command("create")
def app_create(
    name: Annotated[str, typer.Argument(help="Unique app name.")],
    owner: Annotated[
        str | None, typer.Option(help="Owning user [default: the first admin]", show_default=False)
    ] = None,
    description: Annotated[str, typer.Option(help="What the app is for.")] = "",
    scopes: ScopesOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create an app and print its first API key, once, on the last line."""
    settings = settings_from(config)
    chosen = _scopes(scopes)

    async def work(session: AsyncSession) -> tuple[app_service.AppInfo, app_service.CreatedKey]:
        return await app_service.create_app(
            session, name=name, owner=owner, description=description, scopes=chosen, actor=ACTOR
        )

    info, key = run(in_transaction(settings, work))
    owner_text = info.owner or "the first admin, once one exists"
    out.print(
        f"created app {info.name!r} (owner: {owner_text}); key {key.info.prefix} "
        f"with scopes {key.info.scopes}",
        markup=False,
    )
    out.print("The key is shown only now; store it safely:", markup=False)
    print(key.secret)


@app_cli.command("list")
def app_list(config: ConfigOpt = None) -> None:
    """List apps with their owners and number of active keys."""
    settings = settings_from(config)
    apps = run(in_transaction(settings, app_service.list_apps))
    table = Table("name", "owner", "active keys", "created", "description")
    for a in apps:
        table.add_row(
            a.name,
            a.owner or "-",
            str(a.active_keys),
            f"{a.created_at:%Y-%m-%d %H:%M}",
            a.description,
        )
    out.print(table)


def _limit(value: str | None, option: str) -> Any:
    if value is None:
        return app_service.UNSET
    if value.lower() in ("none", "off", "0", ""):
        return None
    if not value.isdigit():
        fail(f"{option}: expected a number or 'none', got {value!r}")
    return int(value)


@app_cli.command("limits")
def app_limits(
    name: Annotated[str, typer.Argument(help="The app.")],
    per_minute: Annotated[str | None, typer.Option(help="Messages per minute, or 'none'.")] = None,
    per_day: Annotated[str | None, typer.Option(help="Messages per day, or 'none'.")] = None,
    countries: Annotated[
        str | None, typer.Option(help="Allowed destination countries, e.g. 'DE,AT'; '' allows all.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Set an app's sending limits (429 beyond them) and allowed destination countries."""
    settings = settings_from(config)
    minute = _limit(per_minute, "--per-minute")
    day = _limit(per_day, "--per-day")
    allowed = app_service.UNSET if countries is None else countries

    async def work(session: AsyncSession) -> app_service.AppInfo:
        return await app_service.set_limits(
            session,
            name=name,
            rate_per_minute=minute,
            rate_per_day=day,
            allowed_countries=allowed,
            actor=ACTOR,
        )

    info = run(in_transaction(settings, work))
    out.print(
        f"app {info.name!r}: {info.rate_per_minute or 'unlimited'} per minute, "
        f"{info.rate_per_day or 'unlimited'} per day, countries: "
        f"{info.allowed_countries or 'any'}",
        markup=False,
    )


@key_cli.command("create")
def key_create(
    app: Annotated[str, typer.Argument(help="The app the key belongs to.")],
    scopes: ScopesOpt = None,
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
    config: ConfigOpt = None,
) -> None:
    """Create another API key for an app; printed once, on the last line."""
    settings = settings_from(config)
    chosen = _scopes(scopes)

    async def work(session: AsyncSession) -> app_service.CreatedKey:
        return await app_service.create_key(session, app=app, scopes=chosen, name=name, actor=ACTOR)

    key = run(in_transaction(settings, work))
    out.print(
        f"created key {key.info.prefix} for app {app!r} with scopes {key.info.scopes}", markup=False
    )
    out.print("The key is shown only now; store it safely:", markup=False)
    print(key.secret)


@key_cli.command("list")
def key_list(
    app: Annotated[str | None, typer.Argument(help="Only this app's keys.")] = None,
    config: ConfigOpt = None,
) -> None:
    """List keys by prefix (secrets are never stored, so never shown)."""
    settings = settings_from(config)

    async def work(session: AsyncSession) -> list[app_service.KeyInfo]:
        return await app_service.list_keys(session, app=app)

    keys = run(in_transaction(settings, work))
    table = Table("app", "name", "scopes", "created", "last used", "state")
    table.columns.insert(0, Column("prefix", no_wrap=True))
    for k in keys:
        table.add_row(
            k.prefix,
            k.app,
            k.name,
            k.scopes,
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never",
            f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active",
        )
    out.print(table)


@key_cli.command("revoke")
def key_revoke(
    prefix: Annotated[
        str, typer.Argument(help="The key's prefix (sg_xxxxxxxxxx), as 'simgate key list' shows.")
    ],
    config: ConfigOpt = None,
) -> None:
    """Revoke a key: running servers refuse it at once."""
    settings = settings_from(config)

    async def work(session: AsyncSession) -> app_service.KeyInfo:
        return await app_service.revoke_key(session, prefix=prefix, actor=ACTOR)

    info = run(in_transaction(settings, work))
    touch_marker(settings.auth_marker_path)
    out.print(f"revoked {info.prefix} of app {info.app!r}", markup=False)
