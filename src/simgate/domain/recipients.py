"""Recipient lists as people paste or upload them: one number, a list (one per line, or
separated by commas or semicolons), or a CSV file with a phone column.

Pure parsing, no I/O: each entry keeps where it came from (``line 3``, ``row 3``) so a form
can say exactly which rows are wrong. Numbers are checked elsewhere (``domain.phone``).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

# Header names taken as "the phone column", compared lower-cased without spaces/underscores.
PHONE_HEADERS = ("phone", "phonenumber", "number", "to", "mobile", "msisdn", "recipient", "tel")
MAX_CSV_BYTES = 2_000_000
_SPLIT = re.compile(r"[\n;,]")


class RecipientsError(ValueError):
    """The list or file as a whole cannot be read (not one bad row: those are entries)."""


@dataclass(frozen=True, slots=True)
class Entry:
    where: str  # "line 2" or "row 2": for messages shown to the person who typed it
    raw: str


def from_text(text: str) -> list[Entry]:
    """Entries of a pasted list: one number per line, or separated by ',' or ';'.

    Spaces inside a number are kept (``+49 151 1234 5678`` is one number); blank items are
    skipped. ``where`` counts lines, so "line 3" is the third line of what was pasted."""
    out: list[Entry] = []
    for n, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        parts = [p.strip() for p in _SPLIT.split(line)]
        items = [p for p in parts if p]
        for item in items:
            out.append(Entry(f"line {n}", item))
    return out


def _normal_header(cell: str) -> str:
    return re.sub(r"[\s_\-.]", "", cell.strip().lower())


def _looks_like_number(cell: str) -> bool:
    digits = sum(c.isdigit() for c in cell)
    return digits >= 3 and not any(c.isalpha() for c in cell.replace("x", "").replace("X", ""))


def from_csv(data: bytes) -> list[Entry]:
    """Entries of a CSV file's phone column.

    The column is the one whose header names a phone (``phone``, ``number``, ``to``,
    ``mobile``, ``msisdn`` ...); without such a header, the first column. A first row that
    holds no number is taken as the header. ``where`` is the file's row number (1 = first
    line), as a spreadsheet shows it. Rows with an empty phone cell are skipped."""
    if len(data) > MAX_CSV_BYTES:
        raise RecipientsError(f"the file is larger than {MAX_CSV_BYTES // 1_000_000} MB")
    if b"\x00" in data:
        raise RecipientsError("this is not a CSV text file (it holds binary data)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            raise RecipientsError("the file is neither UTF-8 nor Windows-1252 text") from None
    if not text.strip():
        raise RecipientsError("the file is empty")
    sample = text[:4096]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:
        raise RecipientsError(f"the file is not valid CSV ({exc})") from None
    column = 0
    start = 0
    first = next((i for i, row in enumerate(rows) if any(c.strip() for c in row)), None)
    if first is None:
        raise RecipientsError("the file is empty")
    header = [_normal_header(c) for c in rows[first]]
    named = [i for i, h in enumerate(header) if h in PHONE_HEADERS]
    if named:
        column, start = named[0], first + 1
    elif not any(_looks_like_number(c) for c in rows[first]):
        start = first + 1  # a header naming no phone column: the first column it is
    out: list[Entry] = []
    for i in range(start, len(rows)):
        row = rows[i]
        cell = row[column].strip() if column < len(row) else ""
        if cell:
            out.append(Entry(f"row {i + 1}", cell))
    return out
