"""Recipient lists as pasted or uploaded: which entries, and where each came from."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simgate.domain.recipients import MAX_CSV_BYTES, Entry, RecipientsError, from_csv, from_text
from simgate.web.dashboard.compose import check_recipients


def test_a_pasted_list_splits_on_lines_commas_and_semicolons() -> None:
    text = "+4915112345678\n\n+49 151 1111 2222, +33612345678;+447700900123\r\n  \n0151 3333"
    assert from_text(text) == [
        Entry("line 1", "+4915112345678"),
        Entry("line 3", "+49 151 1111 2222"),
        Entry("line 3", "+33612345678"),
        Entry("line 3", "+447700900123"),
        Entry("line 5", "0151 3333"),
    ]
    assert from_text("") == []
    assert from_text(" ,;\n") == []


@given(
    st.lists(st.from_regex(r"\+[1-9][0-9]{6,13}", fullmatch=True), min_size=1, max_size=30),
    st.sampled_from(["\n", ",", ";", ", ", "\r\n", " ;\n"]),
)
def test_any_separator_keeps_every_number_in_order(numbers: list[str], sep: str) -> None:
    assert [e.raw for e in from_text(sep.join(numbers))] == numbers


def test_csv_takes_the_column_headed_phone_and_numbers_rows_as_a_spreadsheet_does() -> None:
    data = b'name,Phone Number,note\nAnna,+4915112345678,"hi, there"\nBen,,x\nCem,not-a-number,y\n'
    assert from_csv(data) == [Entry("row 2", "+4915112345678"), Entry("row 4", "not-a-number")]


def test_csv_without_a_header_uses_the_first_column() -> None:
    assert from_csv(b"+4915112345678;Anna\n+33612345678;Bob\n") == [
        Entry("row 1", "+4915112345678"),
        Entry("row 2", "+33612345678"),
    ]
    # A header naming no phone column is skipped; the first column is used.
    assert from_csv(b"contact\n+4915112345678\n") == [Entry("row 2", "+4915112345678")]
    # A single column of numbers: one per row.
    assert [e.raw for e in from_csv(b"+4915112345678\n+4915112345679\n")] == [
        "+4915112345678",
        "+4915112345679",
    ]


def test_csv_text_encodings() -> None:
    assert from_csv("\ufeffmsisdn\n+4915112345678\n".encode()) == [Entry("row 2", "+4915112345678")]
    assert from_csv("Nom\tTéléphone\tmobile\nZoë\tx\t+33612345678\n".encode("cp1252")) == [
        Entry("row 2", "+33612345678")
    ]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"\n\n  \n", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "binary"),
        (b"x" * (MAX_CSV_BYTES + 1), "larger than"),
    ],
)
def test_csv_files_that_cannot_be_read_say_why(data: bytes, words: str) -> None:
    with pytest.raises(RecipientsError, match=words):
        from_csv(data)


def test_checking_names_bad_entries_and_sends_duplicates_once() -> None:
    entries = [
        Entry("line 1", "+4915112345678"),
        Entry("line 2", "hello"),
        Entry("line 3", "+49 151 12345678"),
        Entry("line 4", "+33612345678"),
        Entry("line 5", "0151 11112222"),
    ]
    checked = check_recipients(entries, region=None, allowed="")
    assert checked.numbers == ["+4915112345678", "+33612345678"]
    assert checked.duplicates == 1
    assert [(b.where, b.raw) for b in checked.bad] == [
        ("line 2", "hello"),
        ("line 5", "0151 11112222"),
    ]
    national = check_recipients([Entry("line 1", "0151 11112222")], region="DE", allowed="")
    assert national.numbers == ["+4915111112222"]
    only_de = check_recipients(entries[:4], region=None, allowed="DE")
    assert only_de.numbers == ["+4915112345678"]
    assert [(b.where, "FR" in b.reason) for b in only_de.bad] == [
        ("line 2", False),
        ("line 4", True),
    ]
