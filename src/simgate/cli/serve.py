"""``simgate serve`` and the ``db`` commands: the server process and its schema."""

from __future__ import annotations

import gc
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from simgate import __version__
from simgate.cli.common import (
    ConfigOpt,
    err,
    fail,
    out,
    prepared_engine,
    run,
    settings_from,
)
from simgate.cli.gateway import this_host
from simgate.config import ConfigError, Settings, redact_url
from simgate.services import accounts, phones
from simgate.services import apps as app_service
from simgate.services import gateways as gateway_service
from simgate.store import migrate
from simgate.store.engine import make_engine, make_sessionmaker, wait_for_database

db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)


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
        # Phone frames are small JSON: compression would cost every idle socket a zlib
        # context (tens of KiB) and save nothing.
        ws_per_message_deflate=False,
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
                config={"port": str(_demo_port(settings))},
                placement=this_host(settings),
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
        base = settings.public_url or f"http://{_display_host(settings.host)}:{settings.port}"
        names = {g.name for g in await gateway_service.list_all(session, offline_after=1.0)}
        if "demo-phone" not in names:
            phone = await phones.create(
                session, label="Demo phone", device_id=None, name="demo-phone", actor="demo"
            )
            lines.append(
                "Demo phone 'demo-phone' (its key is shown once): start an emulated Android "
                f"phone with: simgate gateway emulate --url {base} --key {phone.key}"
            )
        lines.append(
            f"Connect a real Android phone: in its gateway app, server {base}, and a key from "
            "'simgate gateway add NAME' (or let it register with a token from 'simgate "
            "gateway enroll-token')"
        )
    return lines


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
            migrate.check_known(before)
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
