"""The ``simgate`` command line. Errors: one line on stderr, exit code 1 (2 for usage)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import secrets
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Column, Table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from simgate import __version__
from simgate.config import ConfigError, Settings, load_settings, redact_url
from simgate.domain.keys import DEFAULT_SCOPES, InvalidScopes, format_scopes, parse_scopes
from simgate.errors import SimgateError
from simgate.services import accounts
from simgate.services import apps as app_service
from simgate.services import gateways as gateway_service
from simgate.services.auth import touch_marker
from simgate.services.outbound import Outbound, Sender, SendRequest, get_message
from simgate.services.waiters import StatusWaiters
from simgate.store import migrate
from simgate.store.engine import (
    DatabaseUnavailable,
    describe_db_error,
    make_engine,
    make_sessionmaker,
    wait_for_database,
)

T = TypeVar("T")
ACTOR = "cli"

cli = typer.Typer(
    name="simgate",
    help="simgate: a self-hosted SMS gateway. Every command has --help.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
admin_cli = typer.Typer(help="People who log in: admins and users.", no_args_is_help=True)
app_cli = typer.Typer(help="Apps: what API keys belong to.", no_args_is_help=True)
key_cli = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
modem_cli = typer.Typer(
    help="GSM modems on serial ports (SIM800L, Huawei sticks).", no_args_is_help=True
)
gateway_cli = typer.Typer(help="Gateways: the ways out to the radio network.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(admin_cli, name="admin")
cli.add_typer(app_cli, name="app")
cli.add_typer(key_cli, name="key")
cli.add_typer(gateway_cli, name="gateway")
cli.add_typer(modem_cli, name="modem")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML config file (default: SIMGATE_CONFIG, or simgate.toml in the data directory).",
        show_default=False,
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def settings_from(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        fail(str(exc))


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn the errors a user can cause into one line on stderr."""
    try:
        return asyncio.run(coro)
    except SimgateError as exc:
        fail(exc.message)
    except (DatabaseUnavailable, ConfigError) as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(f"database error: {describe_db_error(exc)}")


async def prepared_engine(settings: Settings, *, timeout: float = 0.0) -> AsyncEngine:
    """An engine on a reachable database whose schema is current (upgraded if needed)."""
    engine = make_engine(settings)
    try:
        await wait_for_database(engine, timeout)
        if await migrate.current_revision(engine) != migrate.head_revision():
            await migrate.upgrade(engine)
    except BaseException:
        await engine.dispose()
        raise
    return engine


async def in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    engine = await prepared_engine(settings)
    try:
        async with make_sessionmaker(engine).begin() as session:
            return await work(session)
    finally:
        await engine.dispose()


def _version(value: bool) -> None:
    if value:
        out.print(f"simgate {__version__}")
        raise typer.Exit()


@cli.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """simgate: a self-hosted SMS gateway."""


# --- serve ---------------------------------------------------------------------------------


@cli.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on [default: 127.0.0.1]", show_default=False),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on [default: 8000]", show_default=False)
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(help="Create a demo admin and app on first start and print how to use them."),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Upgrade the database if needed, then serve the API, dashboard and gateways."""
    import uvicorn

    from simgate.logs import configure_logging
    from simgate.web.app import create_app

    settings = settings_from(config, host=host, port=port)
    configure_logging(settings.log_level, settings.log_format)
    try:
        settings.ensure_data_dir()
    except ConfigError as exc:
        fail(str(exc))

    async def prepare() -> list[str]:
        engine = await prepared_engine(settings, timeout=settings.db_startup_timeout)
        try:
            return await _demo_setup(engine, settings) if demo else []
        finally:
            await engine.dispose()

    lines = run(prepare())
    base = settings.public_url or f"http://{_display_host(settings.host)}:{settings.port}"
    err.print(
        f"simgate {__version__} on {redact_url(settings.effective_database_url)}", markup=False
    )
    err.print(f"Log in at {base}/login · API docs at {base}/docs", markup=False)
    for line in lines:
        err.print(line, markup=False)
    app = create_app(settings, companions=[lambda: _demo_modem(settings)] if demo else [])
    # Everything built so far lives as long as the process: keep it out of the cyclic
    # collector's way, so full collections stay short under load.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=10,
        server_header=False,
    )


def _demo_port(settings: Settings) -> Path:
    return (settings.data_dir / "demo-modem").resolve()


def _demo_modem(settings: Settings) -> Any:
    """The simulated SIM800L that 'serve --demo' runs beside the server."""
    import time as time_

    from simgate.modem_sim.config import Timings
    from simgate.modem_sim.model import SimModem
    from simgate.modem_sim.pty import PtyModem

    port = _demo_port(settings)
    return PtyModem(
        SimModem(timings=Timings.realistic(), now=time_.time(), booted=True),
        link=port,
        control=port.with_suffix(".ctl"),
    )


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104


async def _demo_setup(engine: AsyncEngine, settings: Settings) -> list[str]:
    lines: list[str] = []
    async with make_sessionmaker(engine).begin() as session:
        if not [u for u in await accounts.list_users(session) if u.role == "admin"]:
            password = secrets.token_urlsafe(12)
            await accounts.create_user(
                session, username="admin", password=password, role="admin", actor="demo"
            )
            lines.append(
                f"Admin login: username 'admin', password '{password}' "
                "(shown once; change it with 'simgate admin set-password admin')"
            )
        if not [a for a in await app_service.list_apps(session) if a.name == "demo"]:
            _, key = await app_service.create_app(session, name="demo", owner=None, actor="demo")
            lines.append(f"Demo app key (shown once): {key.secret}")
            lines.append(
                "Send one: curl -H 'Authorization: Bearer <key>' -H 'Content-Type: "
                'application/json\' -d \'{"to": "+4915112345678", "body": "Hello"}\' '
                f"http://{_display_host(settings.host)}:{settings.port}/api/v1/messages"
            )
        else:
            lines.append("Demo app exists; a new key: 'simgate key create demo'")
        if not await gateway_service.list_all(session, offline_after=1.0):
            await gateway_service.create(
                session,
                name="demo-modem",
                kind="modem",
                config={"port": str(_demo_port(settings)), "node": settings.node},
                rate_per_minute=0,
                max_in_flight=1,
                actor="demo",
            )
        if any(
            g.name == "demo-modem"
            for g in await gateway_service.list_all(session, offline_after=1.0)
        ):
            ctl = _demo_port(settings).with_suffix(".ctl")
            lines.append(
                f"Demo gateway 'demo-modem': a simulated SIM800L on "
                f"{_demo_port(settings)}; make it receive an SMS with: simgate modem "
                f"inject {ctl} +4915112345678 'Your code is 1234'"
            )
    return lines


# --- db ------------------------------------------------------------------------------------


@db_cli.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    config: ConfigOpt = None,
) -> None:
    """Apply database migrations (simgate serve does this by itself)."""
    settings = settings_from(config)

    async def work() -> tuple[str | None, str | None]:
        engine = make_engine(settings)
        try:
            await wait_for_database(engine, settings.db_startup_timeout)
            before = await migrate.current_revision(engine)
            await migrate.upgrade(engine, revision)
            return before, await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    before, after = run(work())
    if before == after:
        out.print(f"database already at {after}", markup=False)
    else:
        out.print(f"database upgraded from {before or 'empty'} to {after}", markup=False)


@db_cli.command("current")
def db_current(config: ConfigOpt = None) -> None:
    """Print the schema revision of the database and the one this version needs."""
    settings = settings_from(config)

    async def work() -> str | None:
        engine = make_engine(settings)
        try:
            await wait_for_database(engine, 0)
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    current = run(work())
    head = migrate.head_revision()
    state = "current" if current == head else "needs 'simgate db upgrade'"
    out.print(f"database: {current or 'empty'}; this version: {head} ({state})", markup=False)


# --- admin ---------------------------------------------------------------------------------


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


# --- apps and keys -------------------------------------------------------------------------

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


# --- gateways ------------------------------------------------------------------------------


def _options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--set: expected KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


@gateway_cli.command("add")
def gateway_add(
    name: Annotated[str, typer.Argument(help="Unique gateway name.")],
    kind: Annotated[
        str | None,
        typer.Option(
            help="fake: the built-in simulated gateway (for demos and tests). "
            "Required for now: the default becomes 'android' once phones can "
            "connect.",
            show_default=False,
        ),
    ] = None,
    rate_per_minute: Annotated[
        int,
        typer.Option(
            help="At most this many SMS a minute (0: no limit); SIM cards get blocked for bursts."
        ),
    ] = 0,
    max_in_flight: Annotated[int, typer.Option(help="Messages handed over at once.")] = 4,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Driver option KEY=VALUE; "
            "fake: mode (deliver, sent, undelivered, "
            "fail, reject, gateway_fail, stall, "
            "offline), send_delay, report_delay, "
            "fail_first; any: node.",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Add a gateway; running servers pick it up within seconds."""
    if kind is None:
        fail("--kind is required: the only kind so far is 'fake' (a simulated gateway)")
    settings = settings_from(config)
    options = _options(set_ or [])

    info = _add_gateway(settings, name, kind, options, rate_per_minute, max_in_flight)
    out.print(f"added {info.kind} gateway {info.name!r}", markup=False)


def _add_gateway(
    settings: Settings,
    name: str,
    kind: str,
    options: dict[str, Any],
    rate_per_minute: int,
    max_in_flight: int,
) -> gateway_service.GatewayInfo:
    async def work(session: AsyncSession) -> gateway_service.GatewayInfo:
        return await gateway_service.create(
            session,
            name=name,
            kind=kind,
            config=options,
            rate_per_minute=rate_per_minute,
            max_in_flight=max_in_flight,
            actor=ACTOR,
        )

    return run(in_transaction(settings, work))


def _gateways(settings: Settings) -> list[gateway_service.GatewayInfo]:
    async def work(session: AsyncSession) -> list[gateway_service.GatewayInfo]:
        return await gateway_service.list_all(session, offline_after=settings.gateway_offline_after)

    return run(in_transaction(settings, work))


@gateway_cli.command("list")
def gateway_list(config: ConfigOpt = None) -> None:
    """List gateways with their status and counters."""
    settings = settings_from(config)

    table = Table("name", "kind", "status", "node", "sent", "failed", "received", "detail")
    for g in _gateways(settings):
        status = g.status if g.active else "deactivated"
        table.add_row(
            g.name,
            g.kind,
            status,
            g.node or "-",
            str(g.sent),
            str(g.failed),
            str(g.received),
            g.status_detail,
        )
    out.print(table)


def _gateway_active(name: str, active: bool, config: Path | None) -> None:
    settings = settings_from(config)

    async def work(session: AsyncSession) -> None:
        await gateway_service.set_active(session, name=name, active=active, actor=ACTOR)

    run(in_transaction(settings, work))
    out.print(f"gateway {name!r} {'activated' if active else 'deactivated'}", markup=False)


@gateway_cli.command("deactivate")
def gateway_deactivate(name: str, config: ConfigOpt = None) -> None:
    """Stop using a gateway (servers stop it within seconds)."""
    _gateway_active(name, False, config)


@gateway_cli.command("activate")
def gateway_activate(name: str, config: ConfigOpt = None) -> None:
    """Use a deactivated gateway again."""
    _gateway_active(name, True, config)


# --- modems --------------------------------------------------------------------------------


@modem_cli.command("add")
def modem_add(
    name: Annotated[str, typer.Argument(help="Unique gateway name.")],
    port: Annotated[
        str, typer.Option(help="Serial port; prefer /dev/serial/by-id/… (it survives replugging).")
    ],
    baud: Annotated[int, typer.Option(help="Baud rate.")] = 115200,
    pin: Annotated[str | None, typer.Option(help="SIM PIN, if the SIM has one.")] = None,
    smsc: Annotated[
        str | None, typer.Option(help="SMS centre number, if the SIM lacks one.")
    ] = None,
    rate_per_minute: Annotated[
        int, typer.Option(help="At most this many SMS a minute; SIM cards get blocked for bursts.")
    ] = 10,
    node: Annotated[
        str | None,
        typer.Option(
            help="The server the modem is plugged into [default: this one]", show_default=False
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Add a modem; the server on its host starts using it within seconds."""
    settings = settings_from(config)
    options: dict[str, Any] = {"port": port, "baud": baud, "node": node or settings.node}
    if pin:
        options["pin"] = pin
    if smsc:
        options["smsc"] = smsc

    info = _add_gateway(settings, name, "modem", options, rate_per_minute, 1)
    out.print(f"added modem {info.name!r} on {port} (node {options['node']})", markup=False)


@modem_cli.command("list")
def modem_list(config: ConfigOpt = None) -> None:
    """List modems with their port, status and counters."""
    settings = settings_from(config)

    table = Table("name", "port", "status", "node", "sent", "received", "detail")
    for g in _gateways(settings):
        if g.kind == "modem":
            table.add_row(
                g.name,
                str(g.config.get("port", "")),
                g.status if g.active else "deactivated",
                g.node or "-",
                str(g.sent),
                str(g.received),
                g.status_detail,
            )
    out.print(table)


@modem_cli.command("remove")
def modem_remove(name: str, config: ConfigOpt = None) -> None:
    """Remove a modem (its messages stay)."""
    settings = settings_from(config)

    async def work(session: AsyncSession) -> None:
        await gateway_service.remove(session, name=name, actor=ACTOR)

    run(in_transaction(settings, work))
    out.print(f"removed modem {name!r}", markup=False)


@modem_cli.command("probe")
def modem_probe(
    port: Annotated[str, typer.Argument(help="Serial port, e.g. /dev/ttyUSB0 or /dev/serial0.")],
    baud: Annotated[int, typer.Option(help="Baud rate.")] = 115200,
    pin: Annotated[str | None, typer.Option(help="SIM PIN, if the SIM has one.")] = None,
) -> None:
    """Talk to a modem once and report model, IMEI, SIM, network and signal, with hints.
    Exits non-zero when the modem cannot send."""
    from simgate.drivers.modem import ModemConfig, ModemGateway, ModemProblem

    async def work() -> tuple[Any, str | None]:
        gw = ModemGateway("probe", ModemConfig(port=port, baud=baud, pin=pin, boot_wait=5))
        try:
            health = await gw.probe()
            return health, None if health.registered else gw.status_detail
        except ModemProblem as exc:
            return gw.health, str(exc)
        finally:
            await gw.stop()

    health, problem = asyncio.run(work())
    table = Table(show_header=False)
    for label, value in (
        ("port", port),
        ("model", health.model or "?"),
        ("IMEI", health.imei or "?"),
        ("network", health.operator or "-"),
        ("registered", "yes" if health.registered else "no"),
        (
            "signal",
            f"{health.signal_dbm} dBm ({health.signal_bars}/5 bars)"
            if health.signal_dbm is not None
            else "unknown",
        ),
    ):
        table.add_row(label, value)
    out.print(table)
    if problem:
        fail(problem)
    out.print("ready to send", markup=False)


@modem_cli.command("simulate")
def modem_simulate(
    link: Annotated[
        Path | None,
        typer.Option(help="Also make this path a link to the device (like /dev/serial/by-id/…)."),
    ] = None,
    control: Annotated[
        Path | None,
        typer.Option(
            help="Control socket [default: next to the link, or ./simgate-modem.ctl]",
            show_default=False,
        ),
    ] = None,
    pin: Annotated[str | None, typer.Option(help="Lock the simulated SIM with this PIN.")] = None,
    realistic: Annotated[
        bool,
        typer.Option(help="Take as long as a real SIM800L (boot 4 s, send 2.5 s, report 6 s)."),
    ] = False,
    no_registration: Annotated[bool, typer.Option(help="Never register on a network.")] = False,
    sim_missing: Annotated[bool, typer.Option(help="Behave as if no SIM is inserted.")] = False,
    cms_error: Annotated[
        int | None, typer.Option(help="Fail the next send with this +CMS ERROR code.")
    ] = None,
    delay: Annotated[
        float, typer.Option(help="Answer every command this many seconds late.")
    ] = 0.0,
) -> None:
    """Run a SIM800L-like modem on a pseudo-terminal and print its device path.

    Point 'simgate modem add NAME --port <path>' at it. From another shell, make it
    receive an SMS with 'simgate modem inject <control> FROM TEXT', or change faults with
    'simgate modem fault <control> KEY=VALUE' (cms_error, registration, sim_missing, dead,
    hang, delay, garbage, brown_out_on_send, report_status, signal). Ctrl-C stops it.
    """
    import time as time_

    from simgate.modem_sim.config import Faults, Timings
    from simgate.modem_sim.config import ModemConfig as SimConfig
    from simgate.modem_sim.model import SimModem
    from simgate.modem_sim.pty import PtyModem

    faults = Faults(
        registration=3 if no_registration else None,
        sim_missing=sim_missing,
        cms_error=cms_error,
        delay=delay,
    )
    control_path = control or (link.with_suffix(".ctl") if link else Path("simgate-modem.ctl"))

    async def work() -> None:
        modem = SimModem(
            SimConfig(pin=pin),
            faults,
            timings=Timings.realistic() if realistic else Timings(),
            now=time_.time(),
            booted=True,
        )
        async with PtyModem(modem, link=link, control=control_path) as sim:
            out.print(f"simulated SIM800L on {sim.path}", markup=False)
            out.print(f"control socket: {control_path}", markup=False)
            out.print(f"try: simgate modem add sim1 --port {sim.path}", markup=False)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(work())


@modem_cli.command("inject")
def modem_inject(
    control: Annotated[Path, typer.Argument(help="The simulator's control socket.")],
    sender: Annotated[str, typer.Argument(help="Who the SMS is from, e.g. +4915112345678.")],
    text: Annotated[str, typer.Argument(help="The text (long ones arrive in parts).")],
) -> None:
    """Make a running 'simgate modem simulate' receive an SMS."""
    _control(control, {"cmd": "sms", "from": sender, "text": text})


@modem_cli.command("fault")
def modem_fault(
    control: Annotated[Path, typer.Argument(help="The simulator's control socket.")],
    settings_: Annotated[
        list[str],
        typer.Argument(
            metavar="KEY=VALUE",
            help="e.g. dead=true, cms_error=500, registration=3; 'clear' resets all.",
        ),
    ],
) -> None:
    """Change a running simulator's faults."""
    message: dict[str, Any] = {"cmd": "fault"}
    for item in settings_:
        if item == "clear":
            message["clear"] = True
            continue
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"expected KEY=VALUE, got {item!r}")
        message[key] = json.loads(value) if value[:1] in "[{0123456789-tfn" else value
    _control(control, message)


def _control(path: Path, message: dict[str, Any]) -> None:
    from simgate.modem_sim.control import request

    try:
        answer = asyncio.run(request(path, message))
    except (OSError, TimeoutError) as exc:
        fail(f"cannot reach the simulator at {path}: {exc}")
    except ValueError as exc:
        fail(str(exc))
    if not answer.get("ok"):
        fail(str(answer.get("error", "the simulator refused")))
    out.print(json.dumps(answer), markup=False)


# --- send ----------------------------------------------------------------------------------

FINAL_SEND = {"sent", "delivered", "failed", "expired", "canceled"}


@cli.command()
def send(
    to: Annotated[str, typer.Argument(help="Recipient, e.g. +4915112345678.")],
    body: Annotated[str, typer.Argument(help="The text.")],
    gateway: Annotated[str | None, typer.Option(help="Send through this gateway only.")] = None,
    wait: Annotated[
        bool, typer.Option(help="Wait until a gateway sent it (or it failed).")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 60.0,
    config: ConfigOpt = None,
) -> None:
    """Queue one SMS (a running 'simgate serve' sends it); prints its id."""
    settings = settings_from(config)

    async def work() -> tuple[str, str | None, dict[str, Any] | None]:
        engine = await prepared_engine(settings)
        try:
            sm = make_sessionmaker(engine)
            accepted = await Outbound(sm, settings).submit(
                sender=Sender(None, "cli"),
                req=SendRequest(to=[to], body=body, many=False, gateway=gateway),
            )
            message_id = accepted.message_ids[0]
            if not wait:
                return message_id, str(accepted.body["status"]), None
            status = await _follow(sm, message_id, timeout)
            async with sm() as session:
                detail = await get_message(session, message_id, app_id=None)
            return message_id, status, detail
        finally:
            await engine.dispose()

    message_id, status, detail = run(work())
    if detail is None:
        out.print(f"queued {message_id}", markup=False)
        return
    error = detail.get("error") or {}
    if status in ("sent", "delivered"):
        out.print(f"{status} {message_id} via {detail.get('gateway')}", markup=False)
        return
    if status in FINAL_SEND:
        hint = f" (hint: {error['hint']})" if error.get("hint") else ""
        fail(f"{message_id} {status}: {error.get('message', status)}{hint}")
    fail(
        f"{message_id} still {status} after {timeout:g} s; is 'simgate serve' running "
        "with an online gateway? ('simgate gateway list')"
    )


async def _follow(sm: Any, message_id: str, timeout: float) -> str | None:
    from rich.status import Status

    waiters = StatusWaiters(sm)
    with Status(f"{message_id}: queued", console=err) as spinner:
        deadline = asyncio.get_running_loop().time() + timeout
        last = None
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            status = await waiters.wait(message_id, FINAL_SEND, max(0.0, min(0.5, remaining)))
            if status is not None:
                return status
            async with sm() as session:
                detail = await get_message(session, message_id, app_id=None)
            current = detail["status"]
            if current != last:
                spinner.update(
                    f"{message_id}: {current}"
                    + (f" via {detail['gateway']}" if detail.get("gateway") else "")
                )
                last = current
            if remaining <= 0:
                return str(current)


def main() -> None:
    cli()
