"""The ``gateway`` and ``node`` commands: the ways out to the radio network, where each
runs, and the servers (nodes) that run them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.cli.common import (
    ACTOR,
    ConfigOpt,
    fail,
    out,
    say,
    settings_from,
    transaction,
    warn,
)
from simgate.config import Settings
from simgate.domain.placement import PlaceKind, Placement, ago
from simgate.services import gateways as gateway_service
from simgate.services import nodes, phones
from simgate.services.auth import touch_marker
from simgate.store.types import utcnow

gateway_cli = typer.Typer(help="Gateways: the ways out to the radio network.", no_args_is_help=True)
node_cli = typer.Typer(help="Nodes: the 'simgate serve' processes seen.", no_args_is_help=True)

NodeOpt = Annotated[
    str | None,
    typer.Option(
        "--node",
        help="Run it only on the server with this node name (SIMGATE_NODE_NAME, default "
        "<hostname>:<port>).",
        show_default=False,
    ),
]
AnyNodeOpt = Annotated[
    bool, typer.Option("--any-node", help="Let any server run it (a modem: any that has its port).")
]
ThisHostOpt = Annotated[
    bool,
    typer.Option(
        "--this-host", help="Run it on any server of this host, whatever its port or name."
    ),
]


def this_host(settings: Settings) -> Placement:
    identity = nodes.host_identity(settings)
    return Placement.on_host(identity.id, identity.hostname)


def placement_from(
    settings: Settings,
    *,
    node: str | None,
    any_node: bool,
    here: bool,
    default: Callable[[], Placement] | None,
) -> Placement:
    chosen = [
        flag
        for flag, on in (("--node", node), ("--any-node", any_node), ("--this-host", here))
        if on
    ]
    if len(chosen) > 1:
        fail(f"choose one of {', '.join(chosen)}")
    if node:
        return Placement.on_node(node)
    if any_node:
        return Placement.anywhere()
    if here:
        return this_host(settings)
    if default is None:
        fail("say where it may run: --node NODE, --any-node or --this-host")
    return default()


def warn_if_unseen(settings: Settings, placement: Placement) -> None:
    """A node pin to a name no server has run under: allowed (it may start later), but
    said, with the names that did run, since a typo would leave the gateway idle."""
    if placement.kind is not PlaceKind.NODE:
        return

    async def work(session: AsyncSession) -> list[Any]:
        return await nodes.seen(session)

    seen = transaction(settings, work)
    if placement.node in {n.name for n in seen}:
        return
    warn(
        f"no server named {placement.node!r} has run recently; it starts the gateway once a "
        f"'simgate serve' with SIMGATE_NODE_NAME={placement.node} runs. Nodes seen: "
        f"{nodes.describe_recent(seen, utcnow())}"
    )


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
    name: Annotated[str, typer.Argument(help="Unique gateway name (what sends pin with).")],
    kind: Annotated[
        str,
        typer.Option(
            help="android: a phone that connects over WebSocket (prints its key); "
            "fake: the built-in simulated gateway (for demos and tests). Modems: "
            "'simgate modem add'."
        ),
    ] = "android",
    device_id: Annotated[
        str | None, typer.Option(help="android: the phone's device id, if it has one.")
    ] = None,
    label: Annotated[str, typer.Option(help="android: a display name, e.g. 'Shop phone'.")] = "",
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
            "fail_first; android: sim_rates=1:10,2:5 (SMS a minute per SIM). "
            "(node=NODE is --node.)",
        ),
    ] = None,
    node: NodeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Add a gateway; running servers pick it up within seconds. A phone (the default kind)
    gets its gw_live_ key printed once, on the last line."""
    settings = settings_from(config)
    options = _options(set_ or [])
    pinned = options.pop("node", None) or node
    placement = Placement.on_node(pinned) if pinned else Placement.anywhere()
    if kind != "android":
        if device_id or label:
            fail("--device-id and --label are for phones (--kind android)")
        info = add_gateway(settings, name, kind, options, placement, rate_per_minute, max_in_flight)
        say(f"added {info.kind} gateway {info.name!r} (runs on {info.placement.describe()})")
        warn_if_unseen(settings, placement)
        return

    async def work(session: AsyncSession) -> phones.Registered:
        gateway_service.check_name(name)
        return await phones.create(
            session,
            label=label or name,
            device_id=device_id,
            name=name,
            config=options,
            placement=placement,
            rate_per_minute=rate_per_minute,
            max_in_flight=max_in_flight,
            actor=ACTOR,
        )

    made = transaction(settings, work)
    base = settings.public_url or f"http://<this server>:{settings.port}"
    say(f"added phone gateway {made.name!r}: point the phone app at {base} with the key below")
    say(f"(or try it: simgate gateway emulate --url {base} --key <key>)")
    say("The key is shown only now; store it safely:")
    print(made.key)


@gateway_cli.command("enroll-token")
def gateway_enroll_token(
    ttl: Annotated[float, typer.Option(help="Hours until the token expires.")] = 24.0,
    label: Annotated[str, typer.Option(help="What it is for, e.g. 'phones for shop 2'.")] = "",
    config: ConfigOpt = None,
) -> None:
    """Print a one-time token a phone registers itself with (POST /api/v1/gateway/register
    with 'Authorization: Bearer <token>'); a successful registration uses it up."""
    settings = settings_from(config)

    async def work(session: AsyncSession) -> tuple[str, Any]:
        return await phones.enrollment_token(session, hours=ttl, label=label, actor=ACTOR)

    token, expires = transaction(settings, work)
    say(f"enrollment token for one phone, valid until {expires:%Y-%m-%d %H:%M} UTC (shown once):")
    print(token)


@gateway_cli.command("rotate-key")
def gateway_rotate_key(
    name: Annotated[str, typer.Argument(help="The phone gateway.")],
    config: ConfigOpt = None,
) -> None:
    """Give a phone a new key; the old one is refused at once (its socket is closed)."""
    settings = settings_from(config)

    async def work(session: AsyncSession) -> str:
        return await phones.rotate_key(session, name=name, actor=ACTOR)

    key = transaction(settings, work)
    touch_marker(settings.auth_marker_path)
    say(f"new key for {name!r}; the old one no longer works. Shown only now:")
    print(key)


def add_gateway(
    settings: Settings,
    name: str,
    kind: str,
    options: dict[str, Any],
    placement: Placement,
    rate_per_minute: int,
    max_in_flight: int,
) -> gateway_service.GatewayInfo:
    async def work(session: AsyncSession) -> gateway_service.GatewayInfo:
        return await gateway_service.create(
            session,
            name=name,
            kind=kind,
            config=options,
            placement=placement,
            rate_per_minute=rate_per_minute,
            max_in_flight=max_in_flight,
            actor=ACTOR,
        )

    return transaction(settings, work)


def gateways(settings: Settings) -> list[gateway_service.GatewayInfo]:
    async def work(session: AsyncSession) -> list[gateway_service.GatewayInfo]:
        return await gateway_service.list_all(session, offline_after=settings.gateway_offline_after)

    return transaction(settings, work)


def status_text(g: gateway_service.GatewayInfo) -> str:
    return g.status if g.active else "deactivated"


@gateway_cli.command("list")
def gateway_list(config: ConfigOpt = None) -> None:
    """List gateways: status, the node running each and where each may run, the number
    its SIM receives on, counters, and why one does not run."""
    settings = settings_from(config)
    table = Table(
        "name", "kind", "status", "node", "placement", "number", "sent", "failed", "received"
    )
    table.add_column("detail", overflow="fold")
    for g in gateways(settings):
        table.add_row(
            g.name,
            g.kind,
            status_text(g),
            g.node or "-",
            g.placement.describe(),
            g.number or "-",
            str(g.sent),
            str(g.failed),
            str(g.received),
            g.status_detail,
        )
    out.print(table)


def move_gateway(
    name: str,
    *,
    node: str | None,
    any_node: bool,
    here: bool,
    config: Path | None,
) -> None:
    settings = settings_from(config)
    placement = placement_from(settings, node=node, any_node=any_node, here=here, default=None)

    async def work(session: AsyncSession) -> gateway_service.GatewayInfo:
        return await gateway_service.move(session, name=name, placement=placement, actor=ACTOR)

    info = transaction(settings, work)
    say(
        f"gateway {info.name!r} now runs on {info.placement.describe()}; the node running it "
        "hands it over within seconds"
    )
    warn_if_unseen(settings, placement)


@gateway_cli.command("move")
def gateway_move(
    name: Annotated[str, typer.Argument(help="The gateway.")],
    node: NodeOpt = None,
    any_node: AnyNodeOpt = False,
    this_host_: ThisHostOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Change where a gateway may run, without removing and re-adding it."""
    move_gateway(name, node=node, any_node=any_node, here=this_host_, config=config)


def _gateway_active(name: str, active: bool, config: Path | None) -> None:
    settings = settings_from(config)

    async def work(session: AsyncSession) -> None:
        await gateway_service.set_active(session, name=name, active=active, actor=ACTOR)

    transaction(settings, work)
    touch_marker(settings.auth_marker_path)  # a phone's open socket closes at once
    say(f"gateway {name!r} {'activated' if active else 'deactivated'}")


@gateway_cli.command("deactivate")
def gateway_deactivate(name: str, config: ConfigOpt = None) -> None:
    """Stop using a gateway (servers stop it within seconds)."""
    _gateway_active(name, False, config)


@gateway_cli.command("activate")
def gateway_activate(name: str, config: ConfigOpt = None) -> None:
    """Use a deactivated gateway again."""
    _gateway_active(name, True, config)


@node_cli.command("list")
def node_list(config: ConfigOpt = None) -> None:
    """The servers seen in the last week: their host, address, and when last heard of."""
    settings = settings_from(config)

    async def work(session: AsyncSession) -> list[Any]:
        return await nodes.seen(session)

    now = utcnow()
    table = Table("node", "host", "address", "pid", "version", "state", "last seen")
    table.add_column("ports missing", overflow="fold")
    for n in transaction(settings, work):
        age = (now - n.last_seen_at).total_seconds()
        if n.stopped_at is not None:
            state = "stopped"
        elif age <= nodes.ALIVE_WITHIN:
            state = "running"
        else:
            state = "silent"
        table.add_row(
            n.name,
            n.hostname,
            n.address,
            str(n.pid),
            n.version,
            state,
            f"{ago(age)} ago",
            ", ".join((n.detail or {}).get("missing_ports") or ()) or "-",
        )
    out.print(table)
