"""The general AT commands of the simulated SIM800L (identity, errors, SIM, network).

``ModemState`` is everything the modem knows; ``execute`` turns one command line into a
``Reply`` value and never writes bytes itself, so the framing (echo, CR LF, prompt, delays,
faults on the line) stays in ``model.py``. The SMS commands are in ``sms.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from simgate.domain.modem_errors import lookup
from simgate.modem_sim.config import Faults, ModemConfig, Profile
from simgate.modem_sim.storage import Memory

_COMMAND = re.compile(r"^\+([A-Z]+)(=\?|\?|=)?(.*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Failure:
    kind: str  # "CME", "CMS" or "ERROR" (a plain ERROR, whatever AT+CMEE says)
    code: int = 0

    def line(self, cmee: int) -> str:
        """The final result as AT+CMEE=<cmee> has the modem write it."""
        if self.kind == "ERROR" or (self.kind == "CME" and cmee == 0):
            return "ERROR"
        if cmee == 2:
            return f"+{self.kind} ERROR: {lookup(self.kind, self.code).meaning}"
        # +CMS ERROR is numeric even with AT+CMEE=0 (TS 27.005 3.2.5 does not gate it).
        return f"+{self.kind} ERROR: {self.code}"


@dataclass(frozen=True, slots=True)
class SendTarget:
    """An AT+CMGS waiting for its body: the TPDU length (PDU mode) or the number (text)."""

    length: int | None = None
    to: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    lines: tuple[str, ...] = ()
    error: Failure | None = None
    prompt: SendTarget | None = None  # answer "> " and collect a message body
    after: tuple[str, ...] = ()  # URCs that follow the final result
    reboot: bool = False  # AT+CFUN=1,1: restart once the OK is out


OK = Reply()
ERROR = Reply(error=Failure("ERROR"))


def cme(code: int) -> Reply:
    return Reply(error=Failure("CME", code))


def cms(code: int) -> Reply:
    return Reply(error=Failure("CMS", code))


@dataclass
class ModemState:
    """The modem's memory. ``profile`` is lost on a reset; the rest lives on the SIM (or is
    the module's identity) and survives it."""

    config: ModemConfig
    faults: Faults = field(default_factory=Faults)
    profile: Profile = field(default_factory=Profile)
    saved: Profile = field(default_factory=Profile)  # what AT&W stored, restored on reset
    smsc: str = ""
    pin_ok: bool = False
    pin_left: int = 3
    puk_left: int = 10
    cfun: int = 1
    sim_up: bool = False  # the SIM answered after power-on (+CPIN: … was reported)
    sms_ready: bool = False
    mr: int = 255  # TP-MR of the last send; the first is 0
    memories: dict[str, Memory] = field(default_factory=dict)

    @classmethod
    def create(cls, config: ModemConfig, faults: Faults) -> ModemState:
        memories = {"SM": Memory("SM", config.capacity), "ME": Memory("ME", config.me_capacity)}
        return cls(
            config, faults, smsc=config.smsc, pin_left=config.pin_attempts, memories=memories
        )

    def sim_status(self) -> str:
        if self.faults.sim_missing:
            return "NOT INSERTED"
        if not self.sim_up:
            return "NOT READY"
        if self.pin_left == 0:
            return "SIM PUK"
        if self.config.pin is not None and not self.pin_ok:
            return "SIM PIN"
        return "READY"

    def registration(self) -> int:
        """+CREG <stat>: 1 home when the radio is on and the SIM unlocked, unless a fault
        says otherwise."""
        if self.cfun != 1 or self.sim_status() != "READY":
            return 0
        return 1 if self.faults.registration is None else self.faults.registration

    def sim_failure(self, sms: bool = False) -> Reply | None:
        """Why a command that needs the SIM cannot run now, or None."""
        status = self.sim_status()
        if status == "NOT INSERTED":
            return cme(10)
        if status == "NOT READY":
            return cme(14)
        if status == "SIM PUK":
            return cms(316) if sms else cme(12)
        if status == "SIM PIN":
            return cms(311) if sms else cme(11)
        return None

    def creg_line(self, stat: int | None = None, *, query: bool = False) -> str:
        stat = self.registration() if stat is None else stat
        head = f"+CREG: {self.profile.creg},{stat}" if query else f"+CREG: {stat}"
        if self.profile.creg == 2 and stat in (1, 5):
            return f'{head},"1A2B","3C4D"'  # location area and cell id
        return head

    def next_mr(self) -> int:
        self.mr = (self.mr + 1) % 256
        return self.mr


def split_args(text: str) -> list[str]:
    """Comma-separated parameters; quotes removed, commas inside quotes kept."""
    args: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            args.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    args.append("".join(current).strip())
    return [] if args == [""] else args


def ints(args: list[str], lo: int, hi: int) -> list[int] | None:
    """Parameters as integers within lo..hi, or None when one is not."""
    try:
        values = [int(a) for a in args]
    except ValueError:
        return None
    return values if all(lo <= v <= hi for v in values) else None


def parse(body: str) -> tuple[str, str, str] | None:
    """("+CMGS", "=", "25") for "+CMGS=25"; None for what is not an extended command."""
    match = _COMMAND.match(body)
    if match is None:
        return None
    name, op, rest = match.groups()
    return "+" + name.upper(), op or "", rest


def basic(state: ModemState, body: str) -> Reply:
    """V.25ter commands: ATE, ATI, ATZ, AT&F, AT&W, ATV1 (no extended name)."""
    upper = body.upper()
    if upper in ("E", "E0", "E1"):
        state.profile = replace(state.profile, echo=upper != "E0" and upper != "E")
        return OK
    if upper in ("I", "I0"):
        return Reply((state.config.ati,))
    if upper in ("", "V1", "&V"):
        return OK
    if upper in ("&W", "&W0"):
        state.saved = state.profile
        return OK
    if upper in ("Z", "Z0"):
        state.profile = state.saved
        return OK
    if upper in ("&F", "&F0"):
        state.profile = Profile()
        return OK
    return ERROR


def general(state: ModemState, name: str, op: str, rest: str) -> Reply | None:
    """The non-SMS extended commands; None when ``name`` is not one of them."""
    cfg, args = state.config, split_args(rest)
    if op == "=?":
        return OK if name in _GENERAL else None
    if name in ("+CGMM", "+CGMI", "+CGMR", "+CGSN", "+GSN") and op == "":
        value = {"+CGMM": cfg.model, "+CGMI": cfg.manufacturer, "+CGMR": cfg.revision}
        return Reply((value.get(name, cfg.imei),))
    if name in ("+CIMI", "+CCID") and op == "":
        return state.sim_failure() or Reply((cfg.imsi if name == "+CIMI" else cfg.iccid,))
    if name == "+CNUM" and op == "":
        failure = state.sim_failure()
        if failure is not None or not cfg.number:
            return failure or OK
        kind = 145 if cfg.number.startswith("+") else 129
        return Reply((f'+CNUM: "","{cfg.number}",{kind},7,4',))
    if name == "+CMEE":
        return setting(state, "cmee", op, args, 2)
    if name == "+CPIN":
        return _cpin(state, op, args)
    if name == "+CREG":
        if op == "?":
            return Reply((state.creg_line(query=True),))
        return setting(state, "creg", op, args, 2)
    if name == "+CSQ" and op == "":
        return Reply((f"+CSQ: {state.faults.signal},0",))
    if name == "+COPS" and op == "?":
        if state.registration() in (1, 5):
            return Reply((f'+COPS: 0,0,"{cfg.operator}"',))
        return Reply(("+COPS: 0",))
    if name == "+CFUN":
        return _cfun(state, op, args)
    if name == "+IPR" and op in ("=", "?"):
        return Reply(("+IPR: 0",)) if op == "?" else OK  # autobauding; any rate is fine
    if name == "+CSCS":
        if op == "?":
            return Reply((f'+CSCS: "{state.profile.cscs}"',))
        if op == "=" and len(args) == 1 and args[0].upper() in ("GSM", "IRA", "UCS2", "HEX"):
            state.profile = replace(state.profile, cscs=args[0].upper())
            return OK
        return ERROR
    return None


_GENERAL = {"+CGMM", "+CGMI", "+CGMR", "+CGSN", "+GSN", "+CIMI", "+CCID", "+CNUM", "+CMEE"}
_GENERAL |= {"+CPIN"}
_GENERAL |= {"+CREG", "+CSQ", "+COPS", "+CFUN", "+IPR", "+CSCS"}


def setting(state: ModemState, attr: str, op: str, args: list[str], hi: int) -> Reply:
    """A numeric setting of the profile: query it or set it."""
    if op == "?":
        return Reply((f"+{attr.upper()}: {getattr(state.profile, attr)}",))
    values = ints(args, 0, hi)
    if op != "=" or values is None or len(values) != 1:
        return ERROR
    changes: dict[str, Any] = {attr: values[0]}
    state.profile = replace(state.profile, **changes)
    return OK


def _cpin(state: ModemState, op: str, args: list[str]) -> Reply:
    status = state.sim_status()
    if op == "?":
        if status in ("NOT INSERTED", "NOT READY"):
            return cme(10 if status == "NOT INSERTED" else 14)
        return Reply((f"+CPIN: {status}",))
    if op != "=" or not args:
        return ERROR
    if status in ("NOT INSERTED", "NOT READY"):
        return cme(10 if status == "NOT INSERTED" else 14)
    if status == "READY":
        return cme(3)  # no PIN is asked for: giving one is not allowed
    if status == "SIM PUK":
        # AT+CPIN=<puk>,<new pin>: unblocks and sets the PIN (the model keeps the old one).
        if len(args) == 2 and args[0] == state.config.puk:
            state.pin_left, state.pin_ok = state.config.pin_attempts, True
            return Reply(after=("+CPIN: READY",))
        state.puk_left = max(0, state.puk_left - 1)
        return cme(16)
    if args[0] == state.config.pin:
        state.pin_ok, state.pin_left = True, state.config.pin_attempts
        return Reply(after=("+CPIN: READY",))
    state.pin_left -= 1
    # The third wrong PIN blocks the SIM: that is why a driver must never retry a PIN.
    return Reply(error=Failure("CME", 16), after=("+CPIN: SIM PUK",) if not state.pin_left else ())


def _cfun(state: ModemState, op: str, args: list[str]) -> Reply:
    if op == "?":
        return Reply((f"+CFUN: {state.cfun}",))
    values = ints(args, 0, 4)
    if op != "=" or not values or values[0] not in (0, 1, 4) or len(values) > 2:
        return ERROR
    if len(values) == 2 and values[1] == 1:
        return Reply(reboot=True)
    before = state.cfun
    state.cfun = values[0]
    if before != 1 and state.cfun == 1 and state.sim_status() == "READY":
        return Reply(after=("+CPIN: READY", "Call Ready", "SMS Ready"))
    return OK
