"""The kinds of gateway, in one table: how each checks its options, what it needs from the
node that runs it, and how its driver is built. Services look kinds up here and never
import a driver themselves; a new kind is one entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from simgate.domain.placement import Reach
from simgate.drivers.base import Gateway

if TYPE_CHECKING:
    from simgate.drivers.android import PhoneLinks


@dataclass(frozen=True, slots=True)
class DriverEnv:
    """What drivers may need from the node beyond their options: its open phone sockets."""

    phones: PhoneLinks | None = None


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    description: str
    reach: Reach
    # The options as stored, checked and normalised; ValueError names the bad one.
    check: Callable[[dict[str, Any]], dict[str, Any]]
    build: Callable[[str, dict[str, Any], int, DriverEnv], Gateway]  # name, options, in flight
    # The device a gateway of HOST reach needs on the node's host (its serial port).
    device: Callable[[dict[str, Any]], str | None] = lambda options: None
    # The number its SIM sends from, when its options say.
    number: Callable[[dict[str, Any]], str | None] = lambda options: None


def _fake_check(raw: dict[str, Any]) -> dict[str, Any]:
    from simgate.drivers.fake import FakeConfig

    return FakeConfig.from_dict(raw).as_dict()


def _fake_build(name: str, options: dict[str, Any], max_in_flight: int, env: DriverEnv) -> Gateway:
    from simgate.drivers.fake import FakeConfig, FakeGateway

    return FakeGateway(name, FakeConfig.from_dict(options), max_in_flight=max_in_flight)


def _modem_check(raw: dict[str, Any]) -> dict[str, Any]:
    from simgate.drivers.modem import ModemConfig

    return ModemConfig.from_dict(raw).as_dict()


def _modem_build(name: str, options: dict[str, Any], max_in_flight: int, env: DriverEnv) -> Gateway:
    from simgate.drivers.modem import ModemConfig, ModemGateway

    return ModemGateway(name, ModemConfig.from_dict(options))


def _android_check(raw: dict[str, Any]) -> dict[str, Any]:
    from simgate.drivers.android import AndroidConfig

    return AndroidConfig.from_dict(raw).as_dict()


def _android_build(
    name: str, options: dict[str, Any], max_in_flight: int, env: DriverEnv
) -> Gateway:
    from simgate.drivers.android import AndroidConfig, AndroidGateway

    if env.phones is None:
        raise ValueError("this node takes no phone connections")
    return AndroidGateway(
        name, AndroidConfig.from_dict(options), env.phones, max_in_flight=max_in_flight
    )


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "modem",
            "a GSM modem on a serial port",
            Reach.HOST,
            _modem_check,
            _modem_build,
            device=lambda options: str(options.get("port") or "") or None,
            number=lambda options: options.get("number") or None,
        ),
        Kind(
            "android",
            "an Android phone that connects over WebSocket (seed 003)",
            Reach.SOCKET,
            _android_check,
            _android_build,
        ),
        Kind(
            "fake",
            "the built-in simulated gateway (for demos and tests)",
            Reach.ANYWHERE,
            _fake_check,
            _fake_build,
        ),
    )
}


def kind_of(name: str) -> Kind:
    """The kind called ``name``; ValueError naming the kinds there are."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(
            f"kind {name!r} is not supported; use {', '.join(sorted(KINDS))}"
        ) from None
