"""The simulator's control requests (JSON objects) applied to a ``SimModem``, and a client.

The wire protocol (one JSON object per line, one answer line per request) is described in
``pty.py``, which serves it on a Unix socket; the logic is here so it can be tested, and
used in-process, without a socket.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from simgate.modem_sim.config import Faults
from simgate.modem_sim.model import SimModem
from simgate.modem_sim.sms import Submitted

MAX_LINE = 1 << 20  # a request carries at most a long text; a megabyte is plenty


class ControlError(ValueError):
    """A request the simulator cannot carry out; the message says why, naming the value."""


def faults_json(faults: Faults) -> dict[str, Any]:
    out = asdict(faults)
    out["garbage"] = faults.garbage.decode("latin-1")
    out["extra_urcs"] = list(faults.extra_urcs)
    out["cme_errors"] = dict(faults.cme_errors)
    return out


def status_json(modem: SimModem) -> dict[str, Any]:
    state = modem.state
    return {
        "sim": state.sim_status(),
        "registration": state.registration(),
        "sms_ready": state.sms_ready,
        "echo": state.profile.echo,
        "stored": {name: memory.used for name, memory in state.memories.items()},
        "sent": modem.sent_count,
        "faults": faults_json(modem.faults),
    }


def handle(modem: SimModem, request: object, now: float) -> dict[str, Any]:
    """Carry out one request; raises ``ControlError`` for a bad one."""
    if not isinstance(request, dict):
        raise ControlError(f"a request must be a JSON object, got {request!r}")
    cmd = request.get("cmd")
    if cmd == "sms":
        sender, text, order = request.get("from"), request.get("text"), request.get("order")
        if not isinstance(sender, str) or not sender or not isinstance(text, str):
            raise ControlError('"sms" needs "from" (a number or name) and "text" (strings)')
        if order is not None and not (
            isinstance(order, list) and all(isinstance(i, int) for i in order)
        ):
            raise ControlError(f'"order" must be a list of part numbers (0-based), got {order!r}')
        try:
            parts = modem.inject_sms(sender, text, now, order=order)
        except ValueError as exc:  # a bad order, or a sender the PDU cannot carry
            raise ControlError(str(exc)) from None
        return {"ok": True, "parts": len(parts)}
    if cmd == "fault":
        changes = {k: v for k, v in request.items() if k not in ("cmd", "clear")}
        base = Faults() if request.get("clear") else modem.faults
        try:
            faults = base.updated(changes)
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        modem.set_faults(faults, now)
        return {"ok": True, "faults": faults_json(faults)}
    if cmd == "brownout":
        modem.brown_out(now)
        return {"ok": True}
    if cmd == "reboot":
        modem.power_cycle(now)
        return {"ok": True}
    if cmd == "sent":
        return {"ok": True, "sent": [_sent_json(s) for s in modem.sent]}
    if cmd == "status":
        return {"ok": True, **status_json(modem)}
    known = "sms, fault, brownout, reboot, sent, status, unplug, replug"
    raise ControlError(f"unknown cmd {cmd!r}; known: {known}")


def _sent_json(sent: Submitted) -> dict[str, Any]:
    out = {f.name: getattr(sent, f.name) for f in fields(sent) if f.name != "concat"}
    concat = sent.concat
    out["part"] = None if concat is None else [concat.seq, concat.total, concat.ref]
    return out


def fault_names() -> list[str]:
    return [f.name for f in fields(Faults)]


async def request(path: str | Path, message: dict[str, Any], timeout: float = 5.0) -> Any:
    """Send one request to a simulator's control socket and return its answer.

    Raises ``ControlError`` when the simulator refused it (``ok`` false)."""

    async def exchange() -> Any:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE)
        try:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
            await writer.wait_closed()
        if not line:
            raise ControlError(f"the simulator at {str(path)!r} closed the connection")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise ControlError(answer.get("error", "refused"))
        return answer

    return await asyncio.wait_for(exchange(), timeout)
