"""The ``modem`` commands: GSM modems on serial ports, and the simulator to try them with."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.cli.common import ACTOR, ConfigOpt, fail, out, say, settings_from, transaction, warn
from simgate.cli.gateway import (
    AnyNodeOpt,
    NodeOpt,
    ThisHostOpt,
    add_gateway,
    gateways,
    move_gateway,
    placement_from,
    status_text,
    this_host,
    warn_if_unseen,
)
from simgate.domain.placement import PlaceKind, Placement
from simgate.modem_sim.config import DEFAULT_NUMBER as DEFAULT_SIM_NUMBER
from simgate.modem_sim.config import ModemConfig as SimConfig
from simgate.services import gateways as gateway_service

modem_cli = typer.Typer(
    help="GSM modems on serial ports (SIM800L, Huawei sticks).", no_args_is_help=True
)


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
    number: Annotated[
        str | None,
        typer.Option(
            help="The SIM's own number in E.164 form (+49…), when the SIM does not know it; "
            "received SMS are stored as sent to it.",
            show_default=False,
        ),
    ] = None,
    rate_per_minute: Annotated[
        int, typer.Option(help="At most this many SMS a minute; SIM cards get blocked for bursts.")
    ] = 10,
    node: NodeOpt = None,
    any_node: AnyNodeOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Add a modem. By default any server on this host runs it, whatever its port or node
    name (the modem is plugged into this host); --node pins it to one server, --any-node
    lets any server that has the port run it."""
    settings = settings_from(config)
    placement = placement_from(
        settings, node=node, any_node=any_node, here=False, default=lambda: this_host(settings)
    )
    options: dict[str, Any] = {"port": port, "baud": baud}
    for key, value in (("pin", pin), ("smsc", smsc), ("number", number)):
        if value:
            options[key] = value
    info = add_gateway(settings, name, "modem", options, placement, rate_per_minute, 1)
    say(
        f"added modem {info.name!r} on {port}"
        + (f" ({info.number})" if info.number else "")
        + f", run by {_who(info.placement)}"
    )
    if placement.kind is PlaceKind.HOST and not os.path.exists(port):
        warn(
            f"{port} does not exist on this host (yet): the modem starts when it appears, "
            "and 'simgate modem list' says so until then"
        )
    warn_if_unseen(settings, placement)


def _who(placement: Placement) -> str:
    if placement.kind is PlaceKind.HOST:
        return f"any server on this host ({placement.host_name})"
    if placement.kind is PlaceKind.NODE:
        return f"the server named {placement.node!r}"
    return "any server that has the port"


@modem_cli.command("list")
def modem_list(config: ConfigOpt = None) -> None:
    """List modems: port, number, status, the node running each, where each may run, and
    why one does not run."""
    settings = settings_from(config)
    table = Table("name", "port", "number", "status", "node", "placement", "sent", "received")
    table.add_column("detail", overflow="fold")
    for g in gateways(settings):
        if g.kind == "modem":
            table.add_row(
                g.name,
                str(g.config.get("port", "")),
                g.number or "-",
                status_text(g),
                g.node or "-",
                g.placement.describe(),
                str(g.sent),
                str(g.received),
                g.status_detail,
            )
    out.print(table)


@modem_cli.command("move")
def modem_move(
    name: Annotated[str, typer.Argument(help="The modem.")],
    node: NodeOpt = None,
    any_node: AnyNodeOpt = False,
    this_host_: ThisHostOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Change which server runs a modem (say, after moving it to another machine), without
    removing and re-adding it."""
    move_gateway(name, node=node, any_node=any_node, here=this_host_, config=config)


@modem_cli.command("remove")
def modem_remove(name: str, config: ConfigOpt = None) -> None:
    """Remove a modem (its messages stay)."""
    settings = settings_from(config)

    async def work(session: AsyncSession) -> None:
        await gateway_service.remove(session, name=name, actor=ACTOR)

    transaction(settings, work)
    say(f"removed modem {name!r}")


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
    number: Annotated[
        str,
        typer.Option(help="The SIM's own number, as AT+CNUM reports it ('' for a SIM without)."),
    ] = DEFAULT_SIM_NUMBER,
) -> None:
    """Run a SIM800L-like modem on a pseudo-terminal and print its device path.

    Point 'simgate modem add NAME --port <path>' at it. From another shell, make it
    receive an SMS with 'simgate modem inject <control> FROM TEXT', read what it was asked
    to send with 'simgate modem sent <control>', or change faults with
    'simgate modem fault <control> KEY=VALUE' (cms_error, registration, sim_missing, dead,
    hang, delay, garbage, brown_out_on_send, report_status, signal). Ctrl-C stops it.
    """
    import time as time_

    from simgate.modem_sim.config import Faults, Timings
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
            SimConfig(pin=pin, number=number or None),
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


@modem_cli.command("sent")
def modem_sent(
    control: Annotated[Path, typer.Argument(help="The simulator's control socket.")],
    to: Annotated[str | None, typer.Option("--to", help="Only SMS to this number.")] = None,
    last: Annotated[
        bool, typer.Option("--last", help="Only the newest one (e.g. to read a code).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
) -> None:
    """Print the SMS a running 'simgate modem simulate' was asked to send, oldest first:
    the number and the text, one per line (the simulated radio network's outbox)."""
    from simgate.modem_sim.control import request

    try:
        answer = asyncio.run(request(control, {"cmd": "sent"}))
    except (OSError, TimeoutError) as exc:
        fail(f"cannot reach the simulator at {control}: {exc}")
    sent = [s for s in answer.get("sent", []) if to is None or s["to"] == to]
    if last:
        sent = sent[-1:]
    if as_json:
        out.print(json.dumps(sent), markup=False)
        return
    if not sent:
        fail("the simulator sent no SMS" + (f" to {to}" if to else ""))
    for item in sent:  # tab-separated, for scripts (cut -f2): not through Rich, which pads tabs
        typer.echo(f"{item['to']}\t{item['text']}")


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
