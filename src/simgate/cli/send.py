"""``simgate send``: queue one SMS from the shell and, with --wait, follow it."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from simgate.cli.common import ConfigOpt, err, fail, prepared_engine, run, say, settings_from
from simgate.config import Settings
from simgate.services.changes import followed
from simgate.services.gateways import message_status
from simgate.services.outbound import Outbound, Sender, SendRequest
from simgate.services.waiters import StatusWaiters
from simgate.store.engine import make_sessionmaker

FINAL_SEND = {"sent", "delivered", "failed", "expired", "canceled"}


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
            outbound = Outbound(sm, settings)
            try:
                accepted = await outbound.submit(
                    sender=Sender(None, "cli"),
                    req=SendRequest(to=[to], body=body, many=False, gateway=gateway),
                )
            finally:
                await outbound.close()
            message_id = accepted.message_ids[0]
            if not wait:
                return message_id, str(accepted.body["status"]), None
            status = await _follow(sm, settings, message_id, timeout)
            return message_id, status, await _read(sm, settings, message_id)
        finally:
            await engine.dispose()

    message_id, status, detail = run(work())
    if detail is None:
        say(f"queued {message_id}")
        return
    error = detail.get("error") or {}
    if status in ("sent", "delivered"):
        say(f"{status} {message_id} via {detail.get('gateway')}")
        return
    if status in FINAL_SEND:
        hint = f" (hint: {error['hint']})" if error.get("hint") else ""
        fail(f"{message_id} {status}: {error.get('message', status)}{hint}")
    why = detail.get("status_detail")
    fail(
        f"{message_id} still {status} after {timeout:g} s: "
        + (why or "is 'simgate serve' running with an online gateway? ('simgate gateway list')")
    )


async def _read(sm: Any, settings: Settings, message_id: str) -> dict[str, Any]:
    async with sm() as session:
        return await message_status(
            session, message_id, app_id=None, offline_after=settings.gateway_offline_after
        )


SETTLE = 1.5  # seconds a reason must hold before it is printed (a server may be starting it)


async def _follow(sm: Any, settings: Settings, message_id: str, timeout: float) -> str | None:
    """Wait for a final status, showing progress; print why the message waits when no
    gateway can take it, rather than waiting silently."""

    push = settings.backend == "postgresql"  # told by the server the moment it changes
    waiters = StatusWaiters(sm, recheck=1.0 if push else 0.25)
    async with followed(settings, waiters.changed):
        return await _progress(sm, settings, waiters, message_id, timeout)


async def _progress(
    sm: Any, settings: Settings, waiters: StatusWaiters, message_id: str, timeout: float
) -> str | None:
    from rich.status import Status

    loop = asyncio.get_running_loop()
    with Status(f"{message_id}: queued", console=err) as spinner:
        deadline = loop.time() + timeout
        last = None
        reason, since, printed = None, 0.0, None
        while True:
            remaining = deadline - loop.time()
            status = await waiters.wait(message_id, FINAL_SEND, max(0.0, min(1.0, remaining)))
            if status is not None:
                return status
            detail = await _read(sm, settings, message_id)
            current = detail["status"]
            if current != last:
                spinner.update(
                    f"{message_id}: {current}"
                    + (f" via {detail['gateway']}" if detail.get("gateway") else "")
                )
                last = current
            why = detail.get("status_detail")
            if why != reason:
                reason, since = why, loop.time()
            elif why and why != printed and loop.time() - since >= SETTLE:
                err.print(f"waiting: {why}", markup=False)
                printed = why
            if remaining <= 0:
                return str(current)
