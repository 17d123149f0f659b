"""Checking a webhook URL before each delivery: parse it, resolve its host, refuse private
addresses.

Callers connect to one of the returned addresses (``Target.url_for``) rather than to the host
name, so a DNS answer that changes between the check and the connection (DNS rebinding) cannot
send the request somewhere else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

from simgate.domain.addresses import Target, blocked_reason, parse_target

Resolver = Callable[[str, int], Awaitable[list[str]]]

ALLOW_PRIVATE_SETTING = "SIMGATE_WEBHOOK_ALLOW_PRIVATE"


class UnsafeUrl(ValueError):
    """A webhook URL that is malformed, does not resolve or points at a refused address."""


async def resolve(host: str, port: int, *, timeout: float = 5.0) -> list[str]:
    """The IPv4 and IPv6 addresses of ``host``, unique, in resolver order."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = str(sockaddr[0])
        if address not in out:
            out.append(address)
    return out


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


async def check_url(
    url: str, *, allow_private: bool, resolver: Resolver = resolve
) -> tuple[Target, list[str]]:
    """Parse ``url`` and resolve its host; raise UnsafeUrl unless every address is allowed.

    Returns the target and the addresses to connect to.
    """
    try:
        target = parse_target(url)
    except ValueError as exc:
        raise UnsafeUrl(str(exc)) from exc
    host = target.host
    try:
        addresses = await resolver(host, target.port)
    except (OSError, ValueError) as exc:  # gaierror, TimeoutError, UnicodeError (bad label)
        raise UnsafeUrl(f"cannot resolve {host!r}: {_describe(exc)}") from exc
    if not addresses:
        raise UnsafeUrl(f"cannot resolve {host!r}: no addresses")
    unique: list[str] = []
    for ip in addresses:
        try:
            reason = blocked_reason(ip)
        except ValueError as exc:
            raise UnsafeUrl(f"{host} resolves to {ip!r}, which is not an IP address") from exc
        if reason is not None and not allow_private:
            raise UnsafeUrl(
                f"{host} resolves to {ip}, {reason}; set {ALLOW_PRIVATE_SETTING}=true "
                "to allow such targets"
            )
        if ip not in unique:
            unique.append(ip)
    return target, unique
