"""What every command shares: the consoles, settings, one way to fail, and running a
coroutine against a database whose schema is current. Errors are one line on stderr and
exit code 1 (2 for usage)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from simgate.config import ConfigError, Settings, load_settings
from simgate.errors import SimgateError
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

# Piped output (scripts, tests) gets wide tables rather than 80 columns that fold every cell.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
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


def warn(message: str) -> None:
    err.print(f"warning: {message}", markup=False)


def say(message: str) -> None:
    out.print(message, markup=False)


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
    except (DatabaseUnavailable, ConfigError, migrate.SchemaTooNew) as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(f"database error: {describe_db_error(exc)}")


async def prepared_engine(settings: Settings, *, timeout: float = 0.0) -> AsyncEngine:
    """An engine on a reachable database whose schema is current (upgraded if needed)."""
    engine = make_engine(settings)
    try:
        await wait_for_database(engine, timeout)
        current = await migrate.current_revision(engine)
        migrate.check_known(current)
        if current != migrate.head_revision():
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


def transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """``in_transaction`` run to completion, its user errors turned into one line."""
    return run(in_transaction(settings, work))
