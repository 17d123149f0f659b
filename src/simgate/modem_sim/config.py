"""What a simulated modem is (identity, SIM), how fast it is, and what is wrong with it.

All three are frozen values: a test builds them once, and a running simulator swaps in a new
``Faults`` (``SimModem.set_faults``) instead of mutating one, so a fault never half-applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

# Registration states of +CREG (TS 27.007 7.2): 1 home, 5 roaming; the rest are "no service".
REGISTERED = frozenset({1, 5})
DEFAULT_NUMBER = "+491701234567"


@dataclass(frozen=True, slots=True)
class ModemConfig:
    """The module and its SIM as they answer ATI, AT+CGSN, AT+CIMI, AT+CCID, AT+COPS?,
    AT+CNUM."""

    manufacturer: str = "SIMCOM_Ltd"
    model: str = "SIMCOM_SIM800L"
    revision: str = "Revision:1418B04SIM800L24"
    ati: str = "SIM800 R14.18"
    imei: str = "866262037741234"
    imsi: str = "262011234567890"
    iccid: str = "89490200001234567890"
    operator: str = "Telekom.de"
    tz_minutes: int = 60  # the network's time zone, as time stamps carry it
    smsc: str = "+491710760000"  # on the SIM; AT+CSCA changes it and it survives a reboot
    number: str | None = DEFAULT_NUMBER  # the SIM's own number (AT+CNUM); many SIMs keep none
    pin: str | None = None  # None: the SIM has no PIN lock
    puk: str = "12345678"
    pin_attempts: int = 3
    capacity: int = 30  # SIM ("SM") message slots
    me_capacity: int = 50  # module ("ME") message slots


@dataclass(frozen=True, slots=True)
class Timings:
    """Seconds the modem takes. Zero everywhere but the status report makes tests fast;
    ``realistic()`` is what a SIM800L on a breadboard roughly does (for demos)."""

    boot: float = 0.0  # RDY -> SMS Ready
    send: float = 0.0  # PDU handed over -> +CMGS
    report: float = 0.5  # +CMGS -> the status report from the network
    reboot: float = 0.1  # UNDER-VOLTAGE WARNNING -> RDY
    part_gap: float = 0.0  # between the parts of an inbound multipart message

    @classmethod
    def realistic(cls) -> Timings:
        return cls(boot=4.0, send=2.5, report=6.0, reboot=1.5, part_gap=0.8)


@dataclass(frozen=True, slots=True)
class Faults:
    """What goes wrong. Every field's default is "nothing"; combine freely.

    ``cms_error`` is one-shot (the next send fails, later ones succeed); the others hold
    until a new ``Faults`` replaces them.
    """

    cms_error: int | None = None  # the next AT+CMGS fails with +CMS ERROR: <code>
    # Commands (as "+CSQ", "+CPMS", …) that fail with +CME ERROR: <code>.
    cme_errors: Mapping[str, int] = field(default_factory=dict)
    registration: int | None = None  # force the +CREG state: 0, 2 (searching), 3 (denied)
    sim_missing: bool = False
    delay: float = 0.0  # every answer comes this many seconds late
    dead: bool = False  # no answer at all, not even the echo
    hang: bool = False  # the next command is echoed, then nothing until this is cleared
    garbage: bytes = b""  # written before every answer (line noise, a wrong baud rate)
    extra_urcs: tuple[str, ...] = ()  # URC lines written between the echo and every answer
    brown_out_on_send: bool = False  # the 2 A burst of a send drops the supply: reset
    report_status: int = 0  # TP-ST in status reports: 0 delivered, 0x40+ failed
    signal: int = 18  # +CSQ rssi (0-31, 99 unknown)

    @property
    def registered(self) -> bool:
        return self.registration is None or self.registration in REGISTERED

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """A copy with ``changes`` applied, from JSON-ish values (the control channel):
        ``garbage`` may be a string (latin-1), ``extra_urcs`` a list. Unknown names and
        wrong types raise ``ValueError`` naming them."""
        known = {f.name: f for f in fields(self)}
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(known))}")
            clean[name] = _coerce(name, value)
        return replace(self, **clean)


def _coerce(name: str, value: Any) -> Any:
    if name == "garbage":
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("latin-1")
        raise ValueError(f"garbage must be a string, got {value!r}")
    if name == "extra_urcs":
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ValueError(f"extra_urcs must be a list of strings, got {value!r}")
    if name == "cme_errors":
        if isinstance(value, Mapping) and all(
            isinstance(k, str) and _is_int(v) for k, v in value.items()
        ):
            return {k.upper(): v for k, v in value.items()}
        raise ValueError(f"cme_errors must map commands to codes, got {value!r}")
    if name in ("cms_error", "registration"):
        if value is None or _is_int(value):
            return value
        raise ValueError(f"{name} must be an integer or null, got {value!r}")
    if name in ("report_status", "signal"):
        if _is_int(value):
            return value
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if name == "delay":
        if _is_int(value) or isinstance(value, float):
            return float(value)
        raise ValueError(f"delay must be a number of seconds, got {value!r}")
    if isinstance(value, bool):
        return value
    raise ValueError(f"{name} must be true or false, got {value!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Profile:
    """The settings a reset forgets (unless saved with AT&W): the brown-out test of a
    driver is whether it notices and sends them again."""

    echo: bool = True
    cmee: int = 0
    cmgf: int = 0
    cscs: str = "IRA"
    creg: int = 0
    cnmi: tuple[int, int, int, int, int] = (2, 1, 0, 0, 0)
    csmp: tuple[int, int, int, int] = (17, 167, 0, 0)
    cpms: tuple[str, str, str] = ("SM", "SM", "SM")
