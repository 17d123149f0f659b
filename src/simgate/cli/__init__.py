"""The ``simgate`` command line: one module per command group, sharing ``common``."""

from __future__ import annotations

from typing import Annotated

import typer

from simgate import __version__
from simgate.cli import emulate as _emulate  # noqa: F401 (registers gateway emulate)
from simgate.cli import send as send_cmd
from simgate.cli import serve as serve_cmd
from simgate.cli.accounts import admin_cli, app_cli, key_cli
from simgate.cli.common import out
from simgate.cli.gateway import gateway_cli, node_cli
from simgate.cli.inbox import inbox_cli
from simgate.cli.modem import modem_cli
from simgate.cli.otp import otp_cli

cli = typer.Typer(
    name="simgate",
    help="simgate: a self-hosted SMS gateway. Every command has --help.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cli.command()(serve_cmd.serve)
cli.add_typer(serve_cmd.db_cli, name="db")
cli.add_typer(admin_cli, name="admin")
cli.add_typer(app_cli, name="app")
cli.add_typer(key_cli, name="key")
cli.add_typer(gateway_cli, name="gateway")
cli.add_typer(modem_cli, name="modem")
cli.add_typer(node_cli, name="node")
cli.add_typer(inbox_cli, name="inbox")
cli.add_typer(otp_cli, name="otp")
cli.command()(send_cmd.send)


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


def main() -> None:
    cli()
