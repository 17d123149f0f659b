"""A SIM800L-like GSM modem as a pure value machine: bytes in, bytes out, time passed in.

``receive(data, now)`` is what the serial line delivers to the modem and returns what the
modem writes back by ``now``; ``tick(now)`` returns what became due since (delayed answers,
URCs from the network, the boot sequence). ``next_due()`` says when to tick next. Nothing
here reads a clock or touches a file descriptor, so tests drive it with made-up times and
``pty.py`` puts it on a real pseudo-terminal.

The line protocol is a SIM800L's: echo on after power-on, results framed ``\\r\\n…\\r\\n``,
the ``> `` prompt without a line end, URCs whenever something happens. What the commands
answer is in ``commands.py`` and ``sms.py``; what the network does in ``network.py``.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from simgate.modem_sim.commands import (
    ERROR,
    ModemState,
    Reply,
    SendTarget,
    basic,
    cme,
    general,
    parse,
)
from simgate.modem_sim.config import Faults, ModemConfig, Timings
from simgate.modem_sim.network import Incoming, Urc, incoming, report, route_incoming, route_report
from simgate.modem_sim.sms import Submitted, sms_command, submit

CR, LF, BACKSPACE, CTRL_Z, ESC = 0x0D, 0x0A, 0x08, 0x1A, 0x1B
RETRY = 1.0  # how soon the network tries again when the modem cannot take a message
SENT_KEPT = 10_000  # submitted SMS the simulator keeps to show (the count goes on)
# Commands a SIM800L answers without a SIM; with the "SIM missing" fault all others fail.
_NO_SIM = {"+CGMM", "+CGMI", "+CGMR", "+CGSN", "+GSN", "+CMEE", "+CSQ", "+CREG", "+CFUN"}
_NO_SIM |= {"+IPR", "+CSCS", "+CMGF"}


class SimModem:
    """One simulated modem. Not thread-safe: one caller feeds it."""

    def __init__(
        self,
        config: ModemConfig | None = None,
        faults: Faults | None = None,
        *,
        timings: Timings | None = None,
        now: float = 0.0,
        booted: bool = False,
    ) -> None:
        """Power on at ``now``: the boot URCs follow (``booted=True`` instead starts as a
        modem that has been up for a while, with nothing pending)."""
        self.state = ModemState.create(config or ModemConfig(), faults or Faults())
        self.timings = timings or Timings()
        # What the network received, in order: the latest SENT_KEPT; ``sent_count``: all.
        self.sent: list[Submitted] = []
        self.sent_count = 0
        self._events: list[tuple[float, int, Callable[[float], object]]] = []
        self._out: deque[tuple[float, bytearray]] = deque()
        self._last_due = now
        self._seq = itertools.count()
        self._generation = 0  # bumped by each power-on; stale boot steps see it and stop
        self._line = bytearray()
        self._prompt: SendTarget | None = None
        self._body = bytearray()
        self._hung = False
        self._powered = True
        self._reported_reg = 0
        self._held: list[Incoming] = []  # parts the full memory could not take yet
        self._ref = 0
        self._power_on(now, quiet=booted)
        if booted:
            self._run(now + self.timings.boot)  # as if the boot finished long ago
            self._out.clear()
            self._last_due = now

    # --- the serial line ------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self.state.faults

    def receive(self, data: bytes, now: float) -> bytes:
        self._run(now)
        for byte in data:
            if not self._powered or self._hung or self.faults.dead:
                break  # a dead or hung modem drops what it is sent
            if self._prompt is not None:
                self._prompt_byte(byte, now)
                continue
            if self.state.profile.echo:
                self._write(bytes((byte,)), now)
            if byte == CR:
                line = bytes(self._line)
                self._line.clear()
                self._command(line, now)
            elif byte == BACKSPACE:
                del self._line[-1:]
            elif byte != LF:
                self._line.append(byte)
        return self._drain(now)

    def tick(self, now: float) -> bytes:
        self._run(now)
        return self._drain(now)

    def next_due(self) -> float | None:
        """When ``tick`` next has something to do (None: not until more input comes)."""
        times = []
        if self._events:
            times.append(self._events[0][0])
        if self._out:
            times.append(self._out[0][0])
        return min(times) if times else None

    # --- what tests and the control channel do --------------------------------------------

    def set_faults(self, faults: Faults, now: float) -> None:
        """Swap the faults; a SIM pulled or put back and a registration change show as
        URCs, as they would on a real module."""
        old, self.state.faults = self.state.faults, faults
        if not faults.hang:
            self._hung = False
        if faults.sim_missing and not old.sim_missing:
            self.state.sms_ready = False
            self._urc(("+CPIN: NOT INSERTED",), now)
        elif old.sim_missing and not faults.sim_missing and self._powered:
            self.state.pin_ok = False  # a SIM put back asks for its PIN again
            self._urc((f"+CPIN: {self.state.sim_status()}",), now)
            self._after(now + self.timings.boot / 2, self._this_boot(self._ready))
        self._check_registration(now)

    def update_faults(self, now: float, **changes: Any) -> None:
        """``set_faults`` with some fields changed: ``update_faults(now, dead=True)``."""
        self.set_faults(self.faults.updated(changes), now)

    def inject_sms(
        self, sender: str, text: str, now: float, *, order: Sequence[int] | None = None
    ) -> list[Incoming]:
        """The network delivers ``text`` from ``sender``: one SMS-DELIVER per part, parts
        sent in ``order`` (0-based, e.g. ``(1, 0)``: the second part first), spaced by
        ``timings.part_gap``. Returns the parts in text order."""
        self._ref = (self._ref + 1) % 256
        parts = incoming(self.state, sender, text, now, self._ref)
        sequence = list(range(len(parts))) if order is None else list(order)
        if sorted(sequence) != list(range(len(parts))):
            raise ValueError(f"order {order!r} is not a permutation of the {len(parts)} parts")
        for k, i in enumerate(sequence):
            self._after(now + k * self.timings.part_gap, self._arrive_later(parts[i]))
        self._run(now)
        return parts

    def brown_out(self, now: float) -> None:
        """The supply dipped: the warning, then a reset after ``timings.reboot``."""
        self._urc(("UNDER-VOLTAGE WARNNING",), now)
        self._powered, self._prompt, self._hung = False, None, False
        self._line.clear()
        self._generation += 1
        self._after(now + self.timings.reboot, lambda t: self._power_on(t))

    def power_cycle(self, now: float) -> None:
        self._power_on(now)

    # --- commands -------------------------------------------------------------------------

    def _command(self, raw: bytes, now: float) -> None:
        text = raw.decode("latin-1").strip()
        start = text.upper().find("AT")
        if start < 0:
            return  # noise without "AT": a modem ignores it
        if self.faults.hang:
            self._hung = True
            return
        self._reply(self._execute(text[start + 2 :]), now)

    def _execute(self, body: str) -> Reply:
        parsed = parse(body)
        if parsed is None:
            return basic(self.state, body)
        name, op, rest = parsed
        code = self.faults.cme_errors.get(name)
        if code is not None:
            return cme(code)
        if self.faults.sim_missing and name not in _NO_SIM:
            return cme(10)
        return (
            general(self.state, name, op, rest) or sms_command(self.state, name, op, rest) or ERROR
        )

    def _prompt_byte(self, byte: int, now: float) -> None:
        target = self._prompt
        assert target is not None
        if byte == ESC:
            self._prompt = None
            self._reply(Reply(), now)  # the send is abandoned; the modem says OK
            return
        if byte != CTRL_Z:
            if byte == CR and target.to is not None:
                self._body.append(LF)  # text mode: a new line, and the prompt again
                self._write(b"\r\n> ", now)
                return
            if self.state.profile.echo:
                self._write(bytes((byte,)), now)
            if byte not in (CR, LF) or target.to is not None:
                self._body.append(byte)  # PDU mode: line ends around the hex are noise
            return
        self._prompt = None
        if self.faults.hang:
            self._hung = True
            return
        if self.faults.brown_out_on_send:
            self.brown_out(now)  # the transmit burst is what browns out a weak supply
            return
        reply, sent = submit(self.state, target, bytes(self._body), now)
        self._reply(reply, now, self.timings.send)
        if sent is not None:
            self.sent.append(sent)
            self.sent_count += 1
            if len(self.sent) >= 2 * SENT_KEPT:  # a simulator left running must not grow
                del self.sent[:-SENT_KEPT]
            if sent.report:
                due = now + self.timings.send + self.timings.report
                self._after(due, self._report_later(sent))

    def _reply(self, reply: Reply, now: float, extra: float = 0.0) -> None:
        at = now + self.faults.delay + extra
        noise = bytearray(self.faults.garbage)
        for line in self.faults.extra_urcs:
            noise += f"\r\n{line}\r\n".encode("latin-1")
        if reply.prompt is not None:
            self._prompt, self._body = reply.prompt, bytearray()
            self._write(bytes(noise) + b"\r\n> ", at)
            return
        text = "".join(f"\r\n{line}" for line in reply.lines)
        text += "\r\n" if reply.lines else ""
        final = "OK" if reply.error is None else reply.error.line(self.state.profile.cmee)
        self._write(bytes(noise) + f"{text}\r\n{final}\r\n".encode(), at)
        if reply.reboot:  # AT+CFUN=1,1: the OK goes out, then the module restarts
            self._powered = False
            self._generation += 1
            self._after(at + self.timings.reboot, lambda t: self._power_on(t))
            return
        for urc in reply.after:
            self._urc((urc,), at)
        if self.state.sim_up and not self.state.sms_ready and self.state.sim_status() == "READY":
            # A PIN was just accepted: the message service comes up a little later.
            self._after(at + self.timings.boot / 2, self._this_boot(self._ready))
        self._check_registration(at)
        self._retry_held(at)

    # --- power, boot and the network ------------------------------------------------------

    def _power_on(self, now: float, *, quiet: bool = False) -> None:
        state = self.state
        self._generation += 1
        generation = self._generation
        state.profile, state.cfun = state.saved, 1
        state.sim_up = state.sms_ready = state.pin_ok = False
        self._powered, self._hung, self._prompt = True, False, None
        self._line.clear()
        self._reported_reg = 0
        if not quiet:
            self._urc(("RDY",), now)

        def sim(t: float) -> None:
            if generation == self._generation:
                state.sim_up = True
                self._urc(("+CFUN: 1",), t)
                self._urc((f"+CPIN: {state.sim_status()}",), t)

        self._after(now + self.timings.boot / 2, sim)
        self._after(now + self.timings.boot, self._this_boot(self._ready))

    def _this_boot(self, action: Callable[[float], None]) -> Callable[[float], None]:
        """``action``, unless the modem has restarted by the time it is due."""
        generation = self._generation

        def guarded(t: float) -> None:
            if generation == self._generation:
                action(t)

        return guarded

    def _ready(self, now: float) -> None:
        state = self.state
        if state.sms_ready or not state.sim_up or state.sim_status() != "READY":
            return
        state.sms_ready = True
        if state.cfun == 1:
            self._urc(("Call Ready",), now)
            self._urc(("SMS Ready",), now)
        self._check_registration(now)

    def _check_registration(self, now: float) -> None:
        stat = self.state.registration()
        if stat != self._reported_reg:
            self._reported_reg = stat
            if self.state.profile.creg:
                self._urc((self.state.creg_line(stat),), now)

    def _arrive_later(self, part: Incoming) -> Callable[[float], None]:
        def arrive(t: float) -> None:
            if not self._powered or not self.state.sms_ready:
                self._after(t + RETRY, arrive)  # the network keeps it and tries again
                return
            urc = route_incoming(self.state, part)
            if urc is None:
                self._held.append(part)
            else:
                self._urc(urc, t)

        return arrive

    def _report_later(self, sent: Submitted) -> Callable[[float], None]:
        def deliver(t: float) -> None:
            if not self._powered or not self.state.sms_ready:
                self._after(t + RETRY, deliver)
                return
            urc = route_report(self.state, report(self.state, sent, t))
            if urc is None:
                self._after(t + RETRY, deliver)
            else:
                self._urc(urc, t)

        return deliver

    def _retry_held(self, now: float) -> None:
        held, self._held = self._held, []
        for part in held:
            self._arrive_later(part)(now)

    # --- the output queue -----------------------------------------------------------------

    def _after(self, at: float, action: Callable[[float], object]) -> None:
        heapq.heappush(self._events, (at, next(self._seq), action))

    def _run(self, now: float) -> None:
        while self._events and self._events[0][0] <= now:
            at, _, action = heapq.heappop(self._events)
            action(at)

    def _urc(self, lines: Urc, at: float) -> None:
        """One unsolicited result; a +CMT/+CDS has its PDU as a second line."""
        if lines:
            self._write(("\r\n" + "\r\n".join(lines) + "\r\n").encode(), at)

    def _write(self, data: bytes, at: float) -> None:
        if not self._powered or self._hung or self.faults.dead:
            return
        # One serial line: nothing overtakes what was written before it.
        at = max(at, self._last_due)
        self._last_due = at
        if self._out and self._out[-1][0] == at:
            self._out[-1][1].extend(data)
        else:
            self._out.append((at, bytearray(data)))

    def _drain(self, now: float) -> bytes:
        out = bytearray()
        while self._out and self._out[0][0] <= now:
            out += self._out.popleft()[1]
        return b"" if self.faults.dead else bytes(out)
