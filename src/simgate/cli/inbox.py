"""``simgate inbox``: read received SMS from the shell, and wait for one (for test scripts:
``code=$(simgate inbox wait --contains "code" --pattern '(\\d{6})')``)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import typer

import simgate
from simgate.cli.common import ConfigOpt, fail, out, prepared_engine, run, say, settings_from
from simgate.services import inbox as inbox_service
from simgate.services.changes import followed
from simgate.store.engine import make_sessionmaker

inbox_cli = typer.Typer(help="Received SMS: list them, or wait for one.", no_args_is_help=True)

_RELATIVE = re.compile(r"\A(\d{1,9})([smhd])\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(raw: str | None) -> datetime:
    """ISO-8601, or a time ago such as ``30s``, ``5m``, ``2h``; default: when this command
    started (so an SMS that arrives while the command is still starting counts)."""
    if raw is None:
        return datetime.fromtimestamp(simgate.STARTED_AT, UTC)
    relative = _RELATIVE.match(raw.strip())
    if relative:
        return datetime.now(UTC) - timedelta(
            seconds=int(relative.group(1)) * _UNITS[relative.group(2)]
        )
    try:
        when = datetime.fromisoformat(raw.strip())
    except ValueError:
        fail(f"--since: {raw!r} is neither ISO-8601 nor a time ago such as 30s, 5m or 2h")
    return when if when.tzinfo else when.replace(tzinfo=UTC)


FromOpt = Annotated[str | None, typer.Option("--from", help="The sender (number or name).")]
ToOpt = Annotated[str | None, typer.Option("--to", help="The number that received it.")]
GatewayOpt = Annotated[str | None, typer.Option(help="The gateway that received it.")]
ContainsOpt = Annotated[str | None, typer.Option(help="Text the SMS contains (any case).")]
PatternOpt = Annotated[
    str | None,
    typer.Option(help="A regular expression (RE2); its first group is printed, e.g. '(\\d{6})'."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the whole message as JSON.")]


def _print(item: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(item))
    elif item.get("match") is not None:
        say(str(item["match"]))
    else:
        say(str(item["body"]))


@inbox_cli.command("wait")
def wait(
    from_: FromOpt = None,
    to: ToOpt = None,
    gateway: GatewayOpt = None,
    contains: ContainsOpt = None,
    pattern: PatternOpt = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Count SMS arriving after this: ISO-8601 or e.g. 30s, 5m (default: now)."
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait (at most 120 via --url).")] = 60.0,
    as_json: JsonOpt = False,
    url: Annotated[
        str | None,
        typer.Option(
            help="Ask a server's HTTP API (e.g. http://host:8000) instead of the database."
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(envvar="SIMGATE_API_KEY", help="App key (inbox scope) for --url."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Print the first SMS that arrives matching every filter (the pattern's first group
    with --pattern) and exit 0; exit 1 if none arrived within --timeout."""
    if timeout <= 0:
        fail("--timeout must be more than 0 seconds")
    start = parse_since(since)
    if url is not None:
        found = _wait_http(url, key, from_, to, gateway, contains, pattern, start, timeout)
    else:
        settings = settings_from(config)
        query = inbox_service.InboxQuery.parse(
            sender=from_, to=to, gateway=gateway, contains=contains, pattern=pattern
        )
        found = run(_wait_db(settings, query, start, timeout))
    if found is None:
        fail(f"no matching SMS arrived within {timeout:g} s")
    _print(found, as_json)


async def _wait_db(
    settings: Any, query: inbox_service.InboxQuery, start: datetime, timeout: float
) -> dict[str, Any] | None:
    engine = await prepared_engine(settings)
    try:
        push = settings.backend == "postgresql"
        # On PostgreSQL the server's NOTIFY wakes us; elsewhere we look four times a second.
        waiters = inbox_service.InboxWaiters(
            make_sessionmaker(engine), per_app=1, rescan=5.0 if push else 0.25
        )
        async with followed(settings, waiters.changed):
            return await waiters.wait(query, app_id=None, since=start, timeout=timeout)
    finally:
        await engine.dispose()


def _wait_http(
    url: str,
    key: str | None,
    from_: str | None,
    to: str | None,
    gateway: str | None,
    contains: str | None,
    pattern: str | None,
    start: datetime,
    timeout: float,
) -> dict[str, Any] | None:
    if not key:
        fail("--url needs an app key: --key or SIMGATE_API_KEY")
    if timeout > inbox_service.MAX_WAIT:
        fail(f"--timeout: a server waits at most {inbox_service.MAX_WAIT:g} s")
    params = {
        name: value
        for name, value in {
            "from": from_,
            "to": to,
            "gateway": gateway,
            "contains": contains,
            "pattern": pattern,
            "since": start.isoformat(),
            "timeout": f"{timeout:g}",
        }.items()
        if value is not None
    }
    try:
        resp = httpx.get(
            url.rstrip("/") + "/api/v1/inbox/wait",
            params=params,
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout + 15,
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url}: {exc}")
    if resp.status_code == 408:
        return None
    if resp.status_code != 200:
        try:
            message = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = resp.text[:200]
        fail(f"{url} answered {resp.status_code}: {message}")
    found: dict[str, Any] = resp.json()
    return found


@inbox_cli.command("list")
def list_(
    from_: FromOpt = None,
    to: ToOpt = None,
    gateway: GatewayOpt = None,
    contains: ContainsOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many, newest first.")] = 20,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """The last received SMS, newest first."""
    settings = settings_from(config)

    async def work() -> list[dict[str, Any]]:
        query = inbox_service.InboxQuery.parse(
            sender=from_, to=to, gateway=gateway, contains=contains
        )
        engine = await prepared_engine(settings)
        try:
            async with make_sessionmaker(engine)() as session:
                items, _ = await inbox_service.list_inbox(session, query, limit=limit)
                return items
        finally:
            await engine.dispose()

    items = run(work())
    if as_json:
        out.print_json(json.dumps(items))
        return
    if not items:
        say("no received SMS")
        return
    from rich.table import Table

    table = Table("received", "from", "to", "gateway", "body")
    for item in items:
        table.add_row(
            item["received_at"] or "",
            item["from"],
            item["to"] or "-",
            item["gateway"] or "-",
            item["body"],
        )
    out.print(table)
