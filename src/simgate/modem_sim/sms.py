"""The SMS commands of TS 27.005 as the simulated SIM800L answers them.

PDU mode (AT+CMGF=0, the default) and text mode (AT+CMGF=1) both work; what AT+CMGS hands
over is decoded with the project's own codec, so a driver that builds a wrong PDU is told
so here exactly as a real modem would tell it (+CMS ERROR: 304).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from simgate.modem_sim.commands import (
    ERROR,
    OK,
    ModemState,
    Reply,
    SendTarget,
    cms,
    ints,
    setting,
    split_args,
)
from simgate.modem_sim.config import REGISTERED
from simgate.modem_sim.storage import ALL, TEXT_STAT, Memory
from simgate.protocols.pdu import Concat, PduError, Submit, decode

MAX_TPDU = 164  # first octet … 140 octets of user data: the longest SMS-SUBMIT
_MEMORIES = ("SM", "ME")
_NEEDS_SIM = {"+CSCA", "+CPMS", "+CMGS", "+CMGL", "+CMGR", "+CMGD"}
_SMS = _NEEDS_SIM | {"+CMGF", "+CSMP", "+CNMI"}


@dataclass(frozen=True, slots=True)
class Submitted:
    """What the network got from one AT+CMGS: the tests' and the control channel's view."""

    mr: int
    to: str
    text: str
    pdu: str | None  # None in text mode
    at: float
    report: bool  # a status report was requested (TP-SRR)
    concat: Concat | None = None


def sms_command(state: ModemState, name: str, op: str, rest: str) -> Reply | None:
    """Run an SMS command; None when ``name`` is not one."""
    if name not in _SMS:
        return None
    if op == "=?":
        return OK
    if name in _NEEDS_SIM:
        failure = state.sim_failure(sms=True)
        if failure is not None:
            return failure
        if not state.sms_ready:
            return cms(302)  # before "SMS Ready" the message service refuses
    args = split_args(rest)
    if name == "+CMGF":
        return setting(state, "cmgf", op, args, 1)
    if name == "+CSCA":
        return _csca(state, op, args)
    if name == "+CSMP":
        return _csmp(state, op, args)
    if name == "+CPMS":
        return _cpms(state, op, args)
    if name == "+CNMI":
        return _cnmi(state, op, args)
    if name == "+CMGS":
        return _cmgs(state, op, args)
    if name == "+CMGL":
        return _cmgl(state, op, args)
    if name == "+CMGR":
        return _cmgr(state, op, args)
    return _cmgd(state, op, args)


def _csca(state: ModemState, op: str, args: list[str]) -> Reply:
    if op == "?":
        toa = 145 if state.smsc.startswith("+") else 129
        return Reply((f'+CSCA: "{state.smsc}",{toa}',))
    if op != "=" or not args or not args[0].lstrip("+").isdigit():
        return ERROR
    state.smsc = args[0]
    return OK


def _csmp(state: ModemState, op: str, args: list[str]) -> Reply:
    if op == "?":
        return Reply(("+CSMP: " + ",".join(map(str, state.profile.csmp)),))
    values = ints(args, 0, 255)
    if op != "=" or not values or len(values) > 4:
        return ERROR
    csmp = (*values, *state.profile.csmp[len(values) :])
    state.profile = replace(state.profile, csmp=(csmp[0], csmp[1], csmp[2], csmp[3]))
    return OK


def _memory_counts(state: ModemState, names: tuple[str, ...]) -> str:
    return ",".join(f"{state.memories[n].used},{state.memories[n].capacity}" for n in names)


def _cpms(state: ModemState, op: str, args: list[str]) -> Reply:
    if op == "?":
        used = (f'"{n}",{_memory_counts(state, (n,))}' for n in state.profile.cpms)
        return Reply(("+CPMS: " + ",".join(used),))
    names = [a.upper() for a in args]
    if op != "=" or not 1 <= len(names) <= 3:
        return ERROR
    if any(n not in _MEMORIES for n in names):
        return cms(302)
    cpms = (*names, *state.profile.cpms[len(names) :])
    state.profile = replace(state.profile, cpms=(cpms[0], cpms[1], cpms[2]))
    return Reply(("+CPMS: " + _memory_counts(state, state.profile.cpms),))


def _cnmi(state: ModemState, op: str, args: list[str]) -> Reply:
    if op == "?":
        return Reply(("+CNMI: " + ",".join(map(str, state.profile.cnmi)),))
    values = ints(args, 0, 3)
    if op != "=" or not values or len(values) > 5 or values[3:4] == [3]:
        return ERROR
    cnmi = (*values, *state.profile.cnmi[len(values) :])
    state.profile = replace(state.profile, cnmi=(cnmi[0], cnmi[1], cnmi[2], cnmi[3], cnmi[4]))
    return OK


def _cmgs(state: ModemState, op: str, args: list[str]) -> Reply:
    if op != "=" or not args:
        return ERROR
    if state.profile.cmgf == 1:
        return Reply(prompt=SendTarget(to=args[0])) if args[0] else ERROR
    values = ints(args[:1], 1, MAX_TPDU)
    return Reply(prompt=SendTarget(length=values[0])) if values else cms(304)


def submit(
    state: ModemState, target: SendTarget, body: bytes, now: float
) -> tuple[Reply, Submitted | None]:
    """The body of an AT+CMGS arrived (Ctrl-Z): hand it to the network."""
    if state.registration() not in REGISTERED:
        return cms(331), None  # no network service
    if state.faults.cms_error is not None:
        code = state.faults.cms_error
        state.faults = replace(state.faults, cms_error=None)  # one shot: the retry works
        return cms(code), None
    if target.to is not None:
        text = _text_in(state, body)
        srr = bool(state.profile.csmp[0] & 0x20)
        return _accepted(state, Submitted(0, target.to, text, None, now, srr))
    pdu = body.decode("latin-1").strip()
    try:
        message = decode(pdu, has_smsc=True)
        smsc_octets = int(pdu[:2], 16) + 1
    except (PduError, ValueError):
        return cms(304), None
    if not isinstance(message, Submit) or len(pdu) // 2 - smsc_octets != target.length:
        return cms(304), None  # not a SUBMIT, or <length> does not match what came
    if message.smsc is None and not state.smsc:
        return cms(330), None  # nobody to hand it to
    sent = Submitted(
        0, str(message.destination), message.text, pdu.upper(), now,
        message.status_report_request, message.concat,
    )  # fmt: skip
    return _accepted(state, sent)


def _accepted(state: ModemState, sent: Submitted) -> tuple[Reply, Submitted]:
    # The module writes its own TP-MR over the one in the PDU and reports it.
    sent = replace(sent, mr=state.next_mr())
    return Reply((f"+CMGS: {sent.mr}",)), sent


def _text_in(state: ModemState, body: bytes) -> str:
    raw = body.decode("latin-1")
    if state.profile.cscs == "UCS2":
        try:
            return bytes.fromhex(raw.strip()).decode("utf-16-be")
        except ValueError:
            return raw
    return raw


def text_out(state: ModemState, text: str) -> str:
    """A body as text mode shows it: hex UTF-16 with AT+CSCS="UCS2", else ASCII with
    '?' for what the line cannot carry (the simulator does not emulate the GSM charset)."""
    if state.profile.cscs == "UCS2":
        return text.encode("utf-16-be").hex().upper()
    return text.encode("ascii", "replace").decode("ascii")


def _read_memory(state: ModemState) -> Memory:
    return state.memories[state.profile.cpms[0]]


def _cmgl(state: ModemState, op: str, args: list[str]) -> Reply:
    text_mode = state.profile.cmgf == 1
    if op == "":
        stat = 0 if not text_mode else TEXT_STAT["REC UNREAD"]
    elif op == "=" and len(args) == 1:
        arg = args[0].upper()
        found = TEXT_STAT.get(arg) if text_mode else (int(arg) if arg.isdigit() else None)
        if found is None or not 0 <= found <= ALL:
            return ERROR
        stat = found
    else:
        return ERROR
    lines: list[str] = []
    for index, item in _read_memory(state).list(stat):
        if text_mode:
            lines.append(f'+CMGL: {index},"{item.stat.text}",{item.header}')
            if not item.is_report:
                lines.append(text_out(state, item.text))
        else:
            lines += [f"+CMGL: {index},{int(item.stat)},,{item.tpdu_len}", item.pdu]
    return Reply(tuple(lines))


def _cmgr(state: ModemState, op: str, args: list[str]) -> Reply:
    values = ints(args, 0, 65535)
    if op != "=" or not values or len(values) > 2:
        return ERROR
    memory = _read_memory(state)
    if not memory.valid(values[0]):
        return cms(321)  # invalid memory index
    item = memory.read(values[0], mark=values[1:] != [1])
    if item is None:
        return OK  # an empty slot: a SIM800L answers just OK
    if state.profile.cmgf == 0:
        return Reply((f"+CMGR: {int(item.stat)},,{item.tpdu_len}", item.pdu))
    head = f'+CMGR: "{item.stat.text}",{item.header}'
    return Reply((head,) if item.is_report else (head, text_out(state, item.text)))


def _cmgd(state: ModemState, op: str, args: list[str]) -> Reply:
    values = ints(args, 0, 65535)
    if op != "=" or not values or len(values) > 2 or values[1:2] > [4]:
        return ERROR
    memory = _read_memory(state)
    flag = values[1] if len(values) == 2 else 0
    if flag == 0 and not memory.valid(values[0]):
        return cms(321)
    memory.delete(values[0], flag)
    return OK
