"""Message memory of the simulated modem: numbered slots, a capacity, and the read state.

A SIM800L keeps received messages (and status reports with AT+CNMI ds=2) in slots numbered
from 1; reading an unread message marks it read; AT+CMGD deletes one slot or, with a flag,
whole classes of them. What each slot holds is both its PDU (for PDU mode) and the fields
text mode shows, because the simulator made the PDU itself and need not decode it back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class Stat(enum.IntEnum):
    """<stat> of 27.005 3.1, in PDU mode numbers and in text mode the names below."""

    REC_UNREAD = 0
    REC_READ = 1
    STO_UNSENT = 2
    STO_SENT = 3

    @property
    def text(self) -> str:
        return self.name.replace("_", " ")


ALL = 4
TEXT_STAT = {s.text: int(s) for s in Stat} | {"ALL": ALL}


@dataclass(frozen=True, slots=True)
class Stored:
    """One message in a slot.

    ``header`` is what text mode shows after the <stat> in +CMGR/+CMGL (sender, time
    stamp, …, already quoted) and ``text`` its body; ``pdu`` includes the SMSC part and
    ``tpdu_len`` is the length AT+CMGR reports (without the SMSC part).
    """

    stat: Stat
    pdu: str
    tpdu_len: int
    header: str
    text: str
    is_report: bool = False


class Memory:
    """Slots 1..capacity of one storage ("SM" on the SIM, "ME" in the module)."""

    def __init__(self, name: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"{name} memory needs at least one slot, got {capacity!r}")
        self.name = name
        self.capacity = capacity
        self._slots: dict[int, Stored] = {}

    @property
    def used(self) -> int:
        return len(self._slots)

    @property
    def full(self) -> bool:
        return self.used >= self.capacity

    def store(self, item: Stored) -> int | None:
        """The slot it went to (the lowest free one, like the module), or None when full."""
        for index in range(1, self.capacity + 1):
            if index not in self._slots:
                self._slots[index] = item
                return index
        return None

    def valid(self, index: int) -> bool:
        return 1 <= index <= self.capacity

    def peek(self, index: int) -> Stored | None:
        return self._slots.get(index)

    def read(self, index: int, *, mark: bool = True) -> Stored | None:
        """The message in ``index`` (None when the slot is empty); an unread one becomes
        read unless ``mark`` is false (AT+CMGR=<i>,1 on some firmware)."""
        item = self._slots.get(index)
        if item is not None and mark and item.stat is Stat.REC_UNREAD:
            self._slots[index] = replace(item, stat=Stat.REC_READ)
        return item

    def list(self, stat: int) -> list[tuple[int, Stored]]:
        """Messages with ``stat`` (4: all) in slot order, marked read as AT+CMGL does."""
        found = [
            (index, item)
            for index, item in sorted(self._slots.items())
            if stat == ALL or item.stat == stat
        ]
        for index, item in found:
            if item.stat is Stat.REC_UNREAD:
                self._slots[index] = replace(item, stat=Stat.REC_READ)
        return found

    def delete(self, index: int, flag: int = 0) -> None:
        """AT+CMGD=<index>,<flag>: 0 that slot; 1 all read; 2 read and sent; 3 read, sent
        and unsent; 4 everything (the index is then ignored)."""
        if flag == 0:
            self._slots.pop(index, None)
            return
        doomed = {
            1: {Stat.REC_READ},
            2: {Stat.REC_READ, Stat.STO_SENT},
            3: {Stat.REC_READ, Stat.STO_SENT, Stat.STO_UNSENT},
            4: set(Stat),
        }[flag]
        for slot in [i for i, item in self._slots.items() if item.stat in doomed]:
            del self._slots[slot]
