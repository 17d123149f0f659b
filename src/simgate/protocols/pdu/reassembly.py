"""Reassembly of concatenated messages, pure: parts in any order, time passed in.

Parts are grouped by originator, reference and part count. A group is delivered when the
last part arrives; ``expire(now)`` hands over groups waiting longer than the timeout with
what arrived, a marker where parts are missing, and ``complete=False``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from simgate.protocols.pdu.fields import Address
from simgate.protocols.pdu.tpdu import Deliver, Submit
from simgate.protocols.pdu.userdata import join_payloads

# gammu-smsd waits 600 s for missing parts by default; networks that hold parts back
# usually release them together, so waiting much longer rarely completes a message.
DEFAULT_TIMEOUT = timedelta(minutes=10)


def missing_marker(first: int, last: int, total: int) -> str:
    if first == last:
        return f"[part {first} of {total} missing]"
    return f"[parts {first}-{last} of {total} missing]"


def join_text(parts: Iterable[Deliver | Submit], total: int | None = None) -> str:
    """The text of ``parts`` in sequence order, with a marker for each run of missing parts.

    Code units are joined before decoding, so an escape or a surrogate pair that a sender
    split across parts is whole again. Parts without concatenation info count as part 1.
    """
    by_seq = {p.concat.seq if p.concat else 1: p for p in parts}
    count = total if total is not None else max(by_seq, default=0)
    pieces: list[str] = []
    run: list[Deliver | Submit] = []
    gap_start: int | None = None

    def flush_run() -> None:
        if run:
            pieces.append(join_payloads((p.payload for p in run), run[0].dcs.alphabet))
            run.clear()

    for seq in range(1, count + 1):
        part = by_seq.get(seq)
        if part is None:
            flush_run()
            gap_start = seq if gap_start is None else gap_start
            continue
        if gap_start is not None:
            pieces.append(missing_marker(gap_start, seq - 1, count))
            gap_start = None
        if run and run[0].dcs.alphabet is not part.dcs.alphabet:
            flush_run()  # a sender switching alphabets mid-message: decode each run alone
        run.append(part)
    flush_run()
    if gap_start is not None:
        pieces.append(missing_marker(gap_start, count, count))
    return "".join(pieces)


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A received message, whole or (after a timeout) with parts missing."""

    originator: Address
    text: str
    timestamp: datetime  # service-centre time stamp of the earliest part received
    smsc: Address | None = None
    reference: int | None = None  # concatenation reference, None for a single SMS
    total: int = 1
    received: tuple[int, ...] = (1,)
    missing: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass(slots=True)
class _Group:
    first_seen: datetime
    parts: dict[int, Deliver] = field(default_factory=dict)


_Key = tuple[str, bool, int, int]


def _message(parts: Sequence[Deliver], total: int, reference: int | None) -> Message:
    ordered = sorted(parts, key=lambda p: p.concat.seq if p.concat else 1)
    received = tuple(p.concat.seq if p.concat else 1 for p in ordered)
    head = ordered[0]
    return Message(
        originator=head.originator,
        text=join_text(ordered, total),
        timestamp=head.timestamp,
        smsc=head.smsc,
        reference=reference,
        total=total,
        received=received,
        missing=tuple(sorted(set(range(1, total + 1)) - set(received))),
    )


class Reassembler:
    """Collects parts of concatenated SMS-DELIVERs until each message is whole."""

    def __init__(self, *, timeout: timedelta = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._groups: dict[_Key, _Group] = {}

    def __len__(self) -> int:
        """Messages waiting for parts."""
        return len(self._groups)

    def add(self, part: Deliver, now: datetime) -> Message | None:
        """Take one part; the whole message once its last part is in, else None.

        A part already held (same originator, reference, count and number) is a
        duplicate, as modems re-report stored messages after a restart: it is ignored.
        """
        concat = part.concat
        if concat is None or concat.total == 1:
            return _message([part], 1, concat.ref if concat else None)
        key = (part.originator.number, concat.ref16, concat.ref, concat.total)
        group = self._groups.setdefault(key, _Group(now))
        if concat.seq in group.parts:
            return None
        group.parts[concat.seq] = part
        if len(group.parts) < concat.total:
            return None
        del self._groups[key]
        return _message(list(group.parts.values()), concat.total, concat.ref)

    def expire(self, now: datetime) -> list[Message]:
        """Give up on messages whose first part arrived ``timeout`` or more before ``now``."""
        stale = [key for key, g in self._groups.items() if now - g.first_seen >= self.timeout]
        stale.sort(key=lambda key: self._groups[key].first_seen)
        messages = []
        for key in stale:
            group = self._groups.pop(key)
            _, _, ref, total = key
            messages.append(_message(list(group.parts.values()), total, ref))
        return messages
