"""The AT command conversation with a GSM modem, without I/O (in the style of h11).

Feed the bytes the modem sent to ``receive_data``; take events from ``next_event`` until it
answers ``NEED_DATA``; ``send`` a command to get the bytes to write. The session knows which
command is waiting for its final result, so it can tell that command's answer lines from the
unsolicited result codes (URCs) a modem interleaves anywhere: a ``+CMTI`` between a
command's echo and its ``OK``, ``RDY`` after a brown-out, ``+CREG: 5`` while idle.

What a modem sends, and how it is read here:

- lines end in CR LF (some firmware sends bare CR or LF; all three end a line);
- an echo of the command (before ``ATE0``, and again after a reset) is dropped;
- ``> `` (no line end) is the prompt for the PDU of ``AT+CMGS``/``AT+CMGW``;
- a final result ends the command: ``OK``, ``ERROR``, ``+CME ERROR: <n|text>``,
  ``+CMS ERROR: <n|text>``, ``COMMAND NOT SUPPORT``, ``NO CARRIER``, ``BUSY``, …;
- ``+CMT:`` and ``+CDS:`` are followed by one more line, the PDU, which belongs to them.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from dataclasses import dataclass, field

CTRL_Z = b"\x1a"
ESC = b"\x1b"


class LocalProtocolError(RuntimeError):
    """We asked for something the conversation does not allow now (a bug on our side)."""


class State(enum.Enum):
    IDLE = "idle"
    WAITING = "waiting"  # a command is out; its final result has not come
    PROMPT = "prompt"  # the modem asked for the PDU (``> ``)


@dataclass(frozen=True, slots=True)
class Command:
    """An AT command. ``prefix`` marks its information lines (``+CSQ`` for ``AT+CSQ``);
    without one, every non-URC line before the final result is taken as its answer."""

    text: str
    timeout: float = 5.0
    prefix: str | None = None
    expects_prompt: bool = False

    @classmethod
    def of(cls, text: str, *, timeout: float = 5.0, expects_prompt: bool = False) -> Command:
        match = re.match(r"^AT([+#$%^][A-Z0-9]+)", text.upper())
        return cls(text, timeout, match.group(1) if match else None, expects_prompt)


@dataclass(frozen=True, slots=True)
class FinalError:
    kind: str  # "ERROR", "CME", "CMS", "NOT_SUPPORTED", "NO_CARRIER", "BUSY", …
    code: int | None = None  # numeric CME/CMS code when the modem gives one
    text: str = ""  # the verbose text when the modem gives one


@dataclass(frozen=True, slots=True)
class Response:
    """The end of a command: its information lines and whether it succeeded."""

    command: Command
    lines: tuple[str, ...]
    error: FinalError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Prompt:
    """The modem waits for the PDU (``send_pdu``)."""

    command: Command


@dataclass(frozen=True, slots=True)
class Urc:
    """An unsolicited result code. ``name`` is e.g. ``+CMTI``, ``RDY``, ``SMS Ready``, or
    ``unknown``; ``value`` is the text after ``: ``; ``pdu`` is the line that follows
    ``+CMT``/``+CDS``."""

    name: str
    value: str
    raw: str
    pdu: str | None = None


@dataclass(frozen=True, slots=True)
class TimedOut:
    command: Command
    lines: tuple[str, ...]


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
Event = Response | Prompt | Urc | TimedOut

_FINAL_OK = "OK"
_FINAL_PLAIN = {
    "ERROR": "ERROR",
    "COMMAND NOT SUPPORT": "NOT_SUPPORTED",
    "NO CARRIER": "NO_CARRIER",
    "NO DIALTONE": "NO_DIALTONE",
    "BUSY": "BUSY",
    "NO ANSWER": "NO_ANSWER",
}
_CM_ERROR = re.compile(r"^\+(CME|CMS) ERROR:\s*(.*)$")
# Lines that are URCs whenever no command is waiting for lines with that prefix.
_URC_PREFIXES = (
    "+CMTI",
    "+CMT",
    "+CDSI",
    "+CDS",
    "+CBM",
    "+CREG",
    "+CGREG",
    "+CEREG",
    "+CPIN",
    "+CFUN",
    "+CUSD",
    "+CLIP",
    "+CRING",
    "+CMGS_URC",
    "+CSQN",
    "*PSUTTZ",
    "+CTZV",
    "DST",
)
_URC_PLAIN = (
    "RDY",
    "Call Ready",
    "SMS Ready",
    "RING",
    "NORMAL POWER DOWN",
    "UNDER-VOLTAGE POWER DOWN",
    "UNDER-VOLTAGE WARNNING",
    "UNDER-VOLTAGE WARNING",
    "OVER-VOLTAGE POWER DOWN",
    "OVER-VOLTAGE WARNNING",
    "OVER-VOLTAGE WARNING",
    "^BOOT",
    "^RSSI",
    "^MODE",
    "^SRVST",
    "^SIMST",
)
_WITH_PDU = ("+CMT", "+CDS", "+CBM")


def _urc_name(line: str) -> str | None:
    for plain in _URC_PLAIN:
        if line == plain or (plain.startswith("^") and line.startswith(plain + ":")):
            return plain
    head = line.split(":", 1)[0]
    return head if head in _URC_PREFIXES else None


@dataclass
class AtSession:
    """One modem conversation. Not thread-safe; drive it from one task."""

    state: State = State.IDLE
    _buffer: bytearray = field(default_factory=bytearray)
    _events: deque[Event] = field(default_factory=deque)
    _current: Command | None = None
    _lines: list[str] = field(default_factory=list)
    _pdu_for: str | None = None  # a +CMT/+CDS header waiting for its PDU line
    _pdu_header: str = ""
    _echo_pdu: str = ""

    # --- what we send ---------------------------------------------------------------------

    def send(self, command: Command) -> bytes:
        if self.state is not State.IDLE:
            raise LocalProtocolError(
                f"cannot send {command.text!r}: {self._current.text if self._current else '?'}"
                f" is still waiting ({self.state.value})"
            )
        self._current = command
        self._lines = []
        self.state = State.WAITING
        return command.text.encode("ascii") + b"\r"

    def send_pdu(self, pdu_hex: str) -> bytes:
        if self.state is not State.PROMPT:
            raise LocalProtocolError("no prompt to answer: send_pdu only after a Prompt event")
        self.state = State.WAITING
        self._echo_pdu = pdu_hex.upper()
        return pdu_hex.encode("ascii") + CTRL_Z

    def cancel_prompt(self) -> bytes:
        """Abort a PDU entry (the modem answers with a final result)."""
        if self.state is not State.PROMPT:
            raise LocalProtocolError("no prompt to cancel")
        self.state = State.WAITING
        return ESC

    def timed_out(self) -> TimedOut:
        """The caller's timer for the current command ran out: give up on it. Its late
        answer, if any comes, is then read as stray lines (URCs or unknown)."""
        if self._current is None:
            raise LocalProtocolError("no command is waiting")
        event = TimedOut(self._current, tuple(self._lines))
        self._finish()
        return event

    def reset(self) -> None:
        """Forget everything (the port was reopened, or the modem restarted)."""
        self.state = State.IDLE
        self._buffer.clear()
        self._events.clear()
        self._finish()
        self._pdu_for = None

    @property
    def current(self) -> Command | None:
        return self._current

    # --- what we receive ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        self._buffer += data
        self._parse()

    def next_event(self) -> Event | _NeedData:
        return self._events.popleft() if self._events else NEED_DATA

    def _parse(self) -> None:
        while True:
            if (
                self.state is State.WAITING
                and self._current is not None
                and self._current.expects_prompt
                and self._take_prompt()
            ):
                continue
            end = _line_end(self._buffer)
            if end is None:
                return
            raw = bytes(self._buffer[: end[0]])
            del self._buffer[: end[1]]
            line = raw.decode("latin-1").strip()
            if line:
                self._line(line)

    def _take_prompt(self) -> bool:
        # The prompt is "> " with no line end, possibly after a CR LF.
        stripped = self._buffer.lstrip(b"\r\n")
        if not stripped.startswith(b">"):
            return False
        del self._buffer[: len(self._buffer) - len(stripped) + 1]
        if self._buffer.startswith(b" "):
            del self._buffer[:1]
        assert self._current is not None
        self.state = State.PROMPT
        self._events.append(Prompt(self._current))
        return True

    def _line(self, line: str) -> None:
        pending = self._pdu_for
        if pending is not None:
            name, header = pending, self._pdu_header
            self._pdu_for = None
            self._events.append(Urc(name, header.split(":", 1)[1].strip(), header, pdu=line))
            return
        command = self._current
        if command is not None:
            if line.upper() == command.text.upper():
                return  # echo
            final = self._final(line)
            if final is not None:
                error = final if isinstance(final, FinalError) else None
                self._events.append(Response(command, tuple(self._lines), error))
                self._finish()
                return
            if self._echo_pdu and line.rstrip("\x1a").upper() == self._echo_pdu:
                return  # the PDU echoed back (echo still on)
            if command.prefix and line.startswith(command.prefix):
                self._lines.append(line)
                return
        urc = _urc_name(line)
        if urc is not None:
            if urc in _WITH_PDU and ":" in line:
                self._pdu_for, self._pdu_header = urc, line
                return
            value = line.split(":", 1)[1].strip() if ":" in line else ""
            self._events.append(Urc(urc, value, line))
            return
        if command is not None and command.prefix is None:
            self._lines.append(line)  # e.g. AT+CGSN answers a bare IMEI line
            return
        if command is not None and not line.startswith("+"):
            self._lines.append(line)  # a plain answer line to a prefixed command
            return
        self._events.append(Urc("unknown", line, line))

    def _final(self, line: str) -> FinalError | _Ok | None:
        if line == _FINAL_OK:
            return _OK
        if line in _FINAL_PLAIN:
            return FinalError(_FINAL_PLAIN[line])
        match = _CM_ERROR.match(line)
        if match:
            detail = match.group(2).strip()
            code = int(detail) if detail.isdigit() else None
            return FinalError(match.group(1), code, "" if code is not None else detail)
        return None

    def _finish(self) -> None:
        self._echo_pdu = ""
        self._current = None
        self._lines = []
        self.state = State.IDLE


class _Ok:
    pass


_OK = _Ok()


def _line_end(buffer: bytearray) -> tuple[int, int] | None:
    """(end of the line, start of the next) for the first complete line, else None."""
    for i, byte in enumerate(buffer):
        if byte in (0x0D, 0x0A):
            nxt = i + 1
            if byte == 0x0D and nxt < len(buffer) and buffer[nxt] == 0x0A:
                nxt += 1
            # A CR at the very end ends the line too (some firmware sends bare CR); an LF
            # arriving next then makes an empty line, which is skipped.
            return i, nxt
    return None
