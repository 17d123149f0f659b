"""``simgate otp``: try one-time passcodes from the shell: send a code to a phone, then check
what the phone received. Codes are never printed: read them on the phone (or, with the
simulated modem, from what it was asked to send)."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer
from sqlalchemy import select

from simgate.cli.common import ConfigOpt, fail, prepared_engine, run, say, settings_from
from simgate.config import Settings
from simgate.errors import NotFound
from simgate.services.otp import Otp
from simgate.services.outbound import Outbound, Sender
from simgate.store.engine import make_sessionmaker
from simgate.store.models import App

otp_cli = typer.Typer(
    help="One-time passcodes: send a code to a phone, check it.", no_args_is_help=True
)

AppOpt = Annotated[
    str | None,
    typer.Option(
        "--app",
        help="Count the verification as this app's (as if sent through its API key); "
        "default: an operator's, checked with 'simgate otp check' only.",
    ),
]
UrlOpt = Annotated[
    str | None,
    typer.Option(help="Use a server's HTTP API (e.g. http://host:8000) instead of the database."),
]
KeyOpt = Annotated[
    str | None, typer.Option(envvar="SIMGATE_API_KEY", help="App key (otp scope) for --url.")
]


async def _sender(sm: Any, app: str | None) -> Sender:
    if app is None:
        return Sender(None, "cli")
    async with sm() as session:
        app_id = await session.scalar(select(App.id).where(App.name == app))
    if app_id is None:
        raise NotFound(f"no app named {app!r} ('simgate app list' shows them)", field="app")
    return Sender(int(app_id), f"app:{app}")


def _http(url: str, key: str | None, path: str, body: dict[str, Any]) -> dict[str, Any]:
    if not key:
        fail("--url needs an app key: --key or SIMGATE_API_KEY")
    try:
        resp = httpx.post(
            url.rstrip("/") + path,
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url}: {exc}")
    try:
        answer: dict[str, Any] = resp.json()
    except ValueError:
        fail(f"{url} answered {resp.status_code}: {resp.text[:200]}")
    if resp.status_code >= 400:
        error = answer.get("error") or {}
        fail(f"{url} answered {resp.status_code}: {error.get('message', resp.text[:200])}")
    return answer


@otp_cli.command("send")
def send(
    phone: Annotated[str, typer.Argument(help="The phone to send a code to, e.g. +4915112345678.")],
    length: Annotated[int | None, typer.Option(help="Digits, 4-10 (default 6).")] = None,
    ttl: Annotated[int | None, typer.Option(help="Seconds it is valid, 1-1800.")] = None,
    template: Annotated[
        str | None, typer.Option(help="The text, with {code} (and {app}, {minutes}).")
    ] = None,
    locale: Annotated[str | None, typer.Option(help="Language of the built-in text.")] = None,
    gateway: Annotated[str | None, typer.Option(help="Send through this gateway only.")] = None,
    app: AppOpt = None,
    url: UrlOpt = None,
    key: KeyOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Send a one-time code (a running server sends the SMS); prints its id and expiry."""
    options: dict[str, Any] = {
        "length": length,
        "ttl": ttl,
        "template": template,
        "locale": locale,
        "gateway": gateway,
    }
    if url is not None:
        if app is not None:
            fail("--app applies to the database; with --url the key decides the app")
        started = _http(
            url, key, "/api/v1/otp", {"phone": phone, **{k: v for k, v in options.items() if v}}
        )
    else:
        settings = settings_from(config)

        async def work() -> dict[str, Any]:
            engine = await prepared_engine(settings)
            try:
                sm = make_sessionmaker(engine)
                outbound = Outbound(sm, settings)
                try:
                    return await Otp(sm, settings, outbound).start(
                        sender=await _sender(sm, app), phone=phone, **options
                    )
                finally:
                    await outbound.close()
            finally:
                await engine.dispose()

        started = run(work())
    again = " (sent again: it was pending)" if started.get("resent") else ""
    say(f"sent {started['id']} to {started['phone']}, valid until {started['expires_at']}{again}")


@otp_cli.command("check")
def check(
    phone: Annotated[str, typer.Argument(help="The phone the code was sent to.")],
    code: Annotated[str, typer.Argument(help="The code it received.")],
    app: AppOpt = None,
    url: UrlOpt = None,
    key: KeyOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Check a code against the phone's pending verification: 'approved' (exit 0) or why not."""
    if url is not None:
        if app is not None:
            fail("--app applies to the database; with --url the key decides the app")
        answer = _http(url, key, "/api/v1/otp/verify", {"phone": phone, "code": code})
        valid, status, message = bool(answer["valid"]), answer["status"], answer["message"]
    else:
        settings: Settings = settings_from(config)

        async def work() -> tuple[bool, str, str]:
            engine = await prepared_engine(settings)
            try:
                sm = make_sessionmaker(engine)
                sender = await _sender(sm, app)
                otp = Otp(sm, settings, Outbound(sm, settings))
                try:
                    _, verdict = await otp.check(app_id=sender.app_id, code=code, phone=phone)
                finally:
                    await otp.close()
                return verdict.valid, verdict.status, verdict.message
            finally:
                await engine.dispose()

        valid, status, message = run(work())
    if valid:
        say("approved")
        return
    fail(f"{status}: {message}")
