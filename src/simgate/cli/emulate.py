"""``simgate gateway emulate`` and ``gateway inject``: a reference phone to try simgate with."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from simgate.cli.common import fail, say
from simgate.cli.gateway import gateway_cli


@gateway_cli.command("emulate")
def gateway_emulate(
    url: Annotated[str, typer.Option(help="The server, e.g. http://127.0.0.1:8000")] = "",
    key: Annotated[str, typer.Option(help="The phone's gw_live_ key.")] = "",
    qr: Annotated[
        str,
        typer.Option(
            help="What the dashboard's QR code holds (simgate://connect?server=…&key=…), "
            "instead of --url and --key."
        ),
    ] = "",
    deliver_after: Annotated[float, typer.Option(help="Seconds from 'sent' to 'delivered'.")] = 2.0,
    fail_rate: Annotated[
        float, typer.Option(help="Share of sends (0-1) the phone reports as failed.")
    ] = 0.0,
    sims: Annotated[int, typer.Option(help="SIM slots the phone has (1 or 2).")] = 1,
    number: Annotated[
        list[str] | None,
        typer.Option(help="The SIMs' own numbers, slot by slot (repeat for SIM 2)."),
    ] = None,
    heartbeat: Annotated[float, typer.Option(help="Seconds between heartbeats.")] = 60.0,
    http_only: Annotated[
        bool, typer.Option(help="Report over HTTP instead of the socket (as some apps do).")
    ] = False,
    subprotocol: Annotated[
        bool, typer.Option(help="Offer actioncable-v1-json, as the official clients do.")
    ] = False,
    control: Annotated[
        Path | None,
        typer.Option(help="Control socket for 'simgate gateway inject' [default: none]"),
    ] = None,
) -> None:
    """Run a phone gateway that speaks seed 003's protocol like the Android app: it
    connects to /cable, takes send_sms, reports sent and delivered, and hands over SMS
    injected with 'simgate gateway inject CONTROL FROM TEXT'. Ctrl-C stops it."""
    from simgate.domain.connect import BadConnectUri, parse_connect_uri
    from simgate.phone_sim import EmulatorConfig, PhoneEmulator, Refused, serve_control

    if qr:
        if url or key:
            fail("give either --qr or --url with --key, not both")
        try:
            url, key = parse_connect_uri(qr)
        except BadConnectUri as exc:
            fail(f"--qr: {exc}")
    if not url or not key:
        fail("say where to connect: --url and --key, or --qr with the dashboard's QR text")

    if not 0 <= fail_rate <= 1:
        fail("--fail-rate must be from 0 to 1")
    if not 1 <= sims <= 4:
        fail("--sims must be 1 to 4")
    config = EmulatorConfig(
        url=url,
        key=key,
        deliver_after=deliver_after,
        fail_rate=fail_rate,
        sims=sims,
        numbers=tuple(number or ()),
        heartbeat_every=heartbeat,
        http_only=http_only,
        subprotocol=subprotocol,
    )
    emulator = PhoneEmulator(
        config, on_send=lambda p: say(f"send_sms {p.get('message_id')} to {p.get('phone_number')}")
    )

    async def work() -> None:
        server = None
        if control is not None:
            control.unlink(missing_ok=True)
            server = await serve_control(emulator, str(control))
        say(f"emulated phone connecting to {emulator.cable_url.split('?')[0]}")
        if control is not None:
            say(f"make it receive an SMS: simgate gateway inject {control} +4915112345678 'hi'")
        try:
            await emulator.run()
        finally:
            if server is not None:
                server.close()

    try:
        asyncio.run(work())
    except Refused as exc:
        fail(f"the server refused the phone: {exc}")
    except KeyboardInterrupt:
        pass


@gateway_cli.command("inject")
def gateway_inject(
    control: Annotated[Path, typer.Argument(help="The emulated phone's control socket.")],
    sender: Annotated[str, typer.Argument(help="Who the SMS is from.")],
    text: Annotated[str, typer.Argument(help="The text.")],
    sim: Annotated[int, typer.Option(help="The SIM slot that receives it.")] = 1,
) -> None:
    """Make a running 'simgate gateway emulate' receive an SMS."""
    from simgate.modem_sim.control import ControlError, request

    try:
        answer = asyncio.run(
            request(control, {"cmd": "sms", "from": sender, "text": text, "sim": sim})
        )
    except (OSError, TimeoutError) as exc:
        fail(f"cannot reach the emulated phone at {control}: {exc}")
    except ControlError as exc:
        fail(str(exc))
    say(json.dumps(answer))
