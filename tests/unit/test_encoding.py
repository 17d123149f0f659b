"""GSM-7 / UCS-2 detection, exact segment counts and splitting.

Units are counted here independently of the module: septets from the published GSM 03.38
tables (basic table: one septet, extension table: escape + code = two septets) and UTF-16
code units from Python's own UTF-16 encoder.
"""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from simgate.domain.encoding import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    MULTI_GSM7,
    MULTI_UCS2,
    SINGLE_GSM7,
    SINGLE_UCS2,
    Encoding,
    SegmentInfo,
    detect,
    is_gsm7,
    segment_info,
    split,
)

# --- independent reference counting ----------------------------------------------------

BASIC_CHARS = frozenset(GSM7_BASIC) - {"\x1b"}  # 0x1B is the escape, not a character
EXTENSION_CHARS = frozenset(GSM7_EXTENSION)
GSM_CHARS = BASIC_CHARS | EXTENSION_CHARS


def ref_is_gsm(text: str) -> bool:
    return all(ch in GSM_CHARS for ch in text)


def septets(text: str) -> list[int]:
    """The septet stream of ``text`` (escape 0x1B before each extension character)."""
    out: list[int] = []
    for ch in text:
        if ch in EXTENSION_CHARS:
            out += [0x1B, GSM7_EXTENSION[ch]]
        else:
            out.append(GSM7_BASIC.index(ch))
    return out


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def units(text: str, gsm: bool) -> int:
    return len(septets(text)) if gsm else utf16_units(text)


def facts(info: SegmentInfo) -> tuple[Encoding, int, int, int]:
    """The four published numbers of a SegmentInfo (compared as a tuple, not the whole value)."""
    return (info.encoding, info.segments, info.units, info.per_segment)


def short_id(value: object) -> str | None:
    """Readable test ids for long texts; pytest's default for everything else."""
    if isinstance(value, str) and len(value) > 12:
        return f"{value[:6]!r}..{len(value)}ch"
    return None


def capacities(gsm: bool) -> tuple[int, int]:
    return (160, 153) if gsm else (70, 67)


# --- strategies --------------------------------------------------------------------------

gsm_char = st.sampled_from(sorted(GSM_CHARS))
extension_char = st.sampled_from(sorted(EXTENSION_CHARS))
astral_char = st.characters(
    min_codepoint=0x10000, max_codepoint=0x10FFFF, exclude_categories=["Cs"]
)
non_gsm_bmp_char = st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"]).filter(
    lambda ch: ch not in GSM_CHARS
)

gsm_text = st.text(alphabet=gsm_char, max_size=700)
# Many extension characters, so escape pairs often meet a part boundary.
extension_heavy_text = st.text(
    alphabet=st.one_of(extension_char, st.sampled_from("ab")), max_size=500
)
# Mostly GSM with a few non-GSM characters, some outside the BMP, near part boundaries.
mixed_text = st.text(
    alphabet=st.one_of(gsm_char, gsm_char, gsm_char, non_gsm_bmp_char, astral_char),
    max_size=300,
)
astral_heavy_text = st.text(alphabet=st.one_of(astral_char, st.sampled_from("aж")), max_size=200)
any_text = st.one_of(
    st.text(max_size=400), gsm_text, extension_heavy_text, mixed_text, astral_heavy_text
)


# --- constants ---------------------------------------------------------------------------


def test_published_capacities() -> None:
    assert (SINGLE_GSM7, MULTI_GSM7, SINGLE_UCS2, MULTI_UCS2) == (160, 153, 70, 67)


def test_basic_table_has_128_codes_in_spec_order() -> None:
    assert len(GSM7_BASIC) == 128
    assert GSM7_BASIC[0x00] == "@"
    assert GSM7_BASIC[0x02] == "$"
    assert GSM7_BASIC[0x09] == "Ç"
    assert GSM7_BASIC[0x0A] == "\n"
    assert GSM7_BASIC[0x0D] == "\r"
    assert GSM7_BASIC[0x10] == "Δ"
    assert GSM7_BASIC[0x1B] == "\x1b"
    assert GSM7_BASIC[0x20] == " "
    assert GSM7_BASIC[0x30] == "0"
    assert GSM7_BASIC[0x40] == "¡"
    assert GSM7_BASIC[0x41] == "A"
    assert GSM7_BASIC[0x60] == "¿"
    assert GSM7_BASIC[0x61] == "a"
    assert GSM7_BASIC[0x7F] == "à"
    assert len(BASIC_CHARS) == 127  # no duplicates besides the escape


def test_extension_table_is_the_published_one() -> None:
    assert GSM7_EXTENSION == {
        "\f": 0x0A,
        "^": 0x14,
        "{": 0x28,
        "}": 0x29,
        "\\": 0x2F,
        "[": 0x3C,
        "~": 0x3D,
        "]": 0x3E,
        "|": 0x40,
        "€": 0x65,
    }
    assert not EXTENSION_CHARS & BASIC_CHARS


# --- detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Hello, world!",
        "äöüÄÖÜñÑßàèéùìòÇØøÅåÆæÉ",
        "ΔΦΓΛΩΠΨΣΘΞ",
        "@£$¥¤§¡¿_",
        "line\nbreak\rreturn",
        "€[]{}~^|\\\f",
        "".join(sorted(GSM_CHARS)),
    ],
    ids=short_id,
)
def test_gsm_texts_are_gsm7(text: str) -> None:
    assert is_gsm7(text)
    assert detect(text) is Encoding.GSM7


@pytest.mark.parametrize(
    "char",
    [
        "ç",  # Ç is in the basic table, ç is not
        "á",
        "ê",
        "δ",  # Δ is GSM, lowercase Greek is not
        "ж",
        "Я",
        "中",
        "ع",
        "😀",
        "𝄞",
        "\t",
        "\x1b",  # the escape itself is not a character
        "`",
        "\u00a0",  # no-break space
        "\u2019",  # typographic apostrophe
        "\u201c",  # typographic quote
    ],
)
def test_one_non_gsm_character_switches_the_whole_text_to_ucs2(char: str) -> None:
    text = "a" * 100 + char + "€[]" * 10
    assert not is_gsm7(char)
    assert not is_gsm7(text)
    assert detect(text) is Encoding.UCS2
    info = segment_info(text)
    assert info.encoding is Encoding.UCS2
    # Extension characters cost one UTF-16 unit, not two septets, once in UCS-2.
    assert info.units == utf16_units(text)


def test_encoding_values() -> None:
    assert Encoding.GSM7.value == str(Encoding.GSM7) == "gsm7"
    assert Encoding.UCS2.value == str(Encoding.UCS2) == "ucs2"


@given(any_text)
def test_detect_agrees_with_the_tables(text: str) -> None:
    assert is_gsm7(text) is ref_is_gsm(text)
    assert detect(text) is (Encoding.GSM7 if ref_is_gsm(text) else Encoding.UCS2)


# --- exact segment counts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "segments"),
    [
        (1, 1),
        (159, 1),
        (160, 1),
        (161, 2),
        (305, 2),
        (306, 2),
        (307, 3),
        (459, 3),
        (460, 4),
        (612, 4),
        (613, 5),
        (1530, 10),
        (1531, 11),
    ],
)
def test_gsm7_boundaries(length: int, segments: int) -> None:
    text = ("The quick brown fox jumps over the lazy dog. " * 40)[:length]
    assert len(text) == length
    info = segment_info(text)
    assert facts(info) == (
        Encoding.GSM7,
        segments,
        length,
        SINGLE_GSM7 if segments == 1 else MULTI_GSM7,
    )
    parts = split(text)
    assert len(parts) == segments
    if segments > 1:
        assert [len(p) for p in parts[:-1]] == [153] * (segments - 1)


@pytest.mark.parametrize(
    ("length", "segments"),
    [
        (1, 1),
        (69, 1),
        (70, 1),
        (71, 2),
        (133, 2),
        (134, 2),
        (135, 3),
        (201, 3),
        (202, 4),
        (670, 10),
        (671, 11),
    ],
)
def test_ucs2_boundaries(length: int, segments: int) -> None:
    text = ("Привет, мир! " * 60)[:length]
    assert len(text) == length
    info = segment_info(text)
    assert facts(info) == (
        Encoding.UCS2,
        segments,
        length,
        SINGLE_UCS2 if segments == 1 else MULTI_UCS2,
    )
    parts = split(text)
    assert len(parts) == segments
    if segments > 1:
        assert [len(p) for p in parts[:-1]] == [67] * (segments - 1)


def test_empty_text_has_no_segments() -> None:
    assert split("") == []
    info = segment_info("")
    assert facts(info) == (Encoding.GSM7, 0, 0, SINGLE_GSM7)
    assert info.remaining == 0


@pytest.mark.parametrize("char", sorted(EXTENSION_CHARS))
def test_each_extension_character_takes_two_septets(char: str) -> None:
    assert facts(segment_info(char)) == (Encoding.GSM7, 1, 2, SINGLE_GSM7)
    assert facts(segment_info(char * 80)) == (Encoding.GSM7, 1, 160, SINGLE_GSM7)
    assert facts(segment_info(char * 81)) == (Encoding.GSM7, 2, 162, MULTI_GSM7)
    assert facts(segment_info("a" * 158 + char)) == (Encoding.GSM7, 1, 160, SINGLE_GSM7)
    assert facts(segment_info("a" * 159 + char)) == (Encoding.GSM7, 2, 161, MULTI_GSM7)


def test_euro_examples() -> None:
    assert segment_info("€" * 80).segments == 1
    assert segment_info("€" * 81).segments == 2
    # 76 euros (152 septets) fill a part; the 77th would need 154.
    assert split("€" * 81) == ["€" * 76, "€" * 5]
    assert facts(segment_info("€" * 153)) == (Encoding.GSM7, 3, 306, MULTI_GSM7)
    assert [len(p) for p in split("€" * 153)] == [76, 76, 1]


def test_an_escape_pair_never_straddles_two_parts() -> None:
    text = "a" * 152 + "€" + "a" * 10
    assert split(text) == ["a" * 152, "€" + "a" * 10]
    assert segment_info(text).segments == 2
    # With one fewer leading character the pair fits exactly at the end of the first part.
    text = "a" * 151 + "€" + "a" * 10
    assert split(text) == ["a" * 151 + "€", "a" * 10]


def test_wasted_septets_can_add_a_segment() -> None:
    # 2 * 153 = 306 septets, but one septet is wasted at the end of part one.
    text = "a" * 152 + "€" + "a" * 152
    assert segment_info(text).units == 306
    assert split(text) == ["a" * 152, "€" + "a" * 151, "a"]
    assert segment_info(text).segments == 3


def test_form_feed_is_an_extension_character() -> None:
    assert is_gsm7("\f")
    assert segment_info("\f" * 80).units == 160


@pytest.mark.parametrize(
    ("text", "segments", "units"),
    [
        ("😀", 1, 2),
        ("😀" * 35, 1, 70),
        ("😀" * 36, 2, 72),
        ("a" * 68 + "😀", 1, 70),
        ("a" * 69 + "😀", 2, 71),
        ("𝄞" * 67, 3, 134),  # 33 pairs (66 units) per part: 33 + 33 + 1
        ("Hello 😀", 1, 8),
    ],
    ids=short_id,
)
def test_characters_outside_the_bmp_take_two_units(text: str, segments: int, units: int) -> None:
    info = segment_info(text)
    assert info.encoding is Encoding.UCS2
    assert (info.segments, info.units) == (segments, units)
    assert info.units == utf16_units(text)


def test_a_surrogate_pair_never_straddles_two_parts() -> None:
    assert split("😀" * 36) == ["😀" * 33, "😀" * 3]
    text = "a" * 66 + "😀" + "a" * 10
    assert split(text) == ["a" * 66, "😀" + "a" * 10]
    text = "a" * 65 + "😀" + "a" * 10
    assert split(text) == ["a" * 65 + "😀", "a" * 10]
    assert split("a" * 69 + "😀") == ["a" * 67, "aa😀"]


def test_one_non_gsm_character_in_a_160_character_text() -> None:
    assert segment_info("a" * 160).segments == 1
    info = segment_info("a" * 159 + "ç")
    assert facts(info) == (Encoding.UCS2, 3, 160, MULTI_UCS2)
    assert [len(p) for p in split("a" * 159 + "ç")] == [67, 67, 26]


def test_explicit_encoding_is_used_for_splitting() -> None:
    text = "a" * 100
    assert split(text, Encoding.GSM7) == [text]
    assert split(text, Encoding.UCS2) == ["a" * 67, "a" * 33]
    assert split("€" * 81, Encoding.UCS2) == ["€" * 67, "€" * 14]


@pytest.mark.parametrize(
    ("text", "remaining"),
    [
        ("", 0),
        ("a", 159),
        ("a" * 160, 0),
        ("a" * 161, 145),
        ("€" * 10, 140),
        ("ж" * 10, 60),
        ("ж" * 71, 63),
        ("😀", 68),
    ],
    ids=short_id,
)
def test_remaining(text: str, remaining: int) -> None:
    assert segment_info(text).remaining == remaining


@pytest.mark.parametrize(
    ("text", "room"),
    [
        ("a" * 152 + "€" + "a" * 10, 153 - 12),  # part one holds 152 septets, not 153
        ("a" * 66 + "😀" + "a" * 10, 67 - 12),  # part one holds 66 units, not 67
    ],
    ids=short_id,
)
def test_remaining_is_the_room_in_the_last_part(text: str, room: int) -> None:
    info = segment_info(text)
    assert info.remaining == room
    assert segment_info(text + "a" * info.remaining).segments == info.segments
    assert segment_info(text + "a" * (info.remaining + 1)).segments == info.segments + 1


@example("a" * 152 + "€" + "a" * 10)
@example("a" * 66 + "😀" + "a" * 10)
@settings(max_examples=200)
@given(st.one_of(gsm_text, extension_heavy_text, mixed_text, astral_heavy_text).filter(bool))
def test_remaining_room_is_exact_for_any_text(text: str) -> None:
    info = segment_info(text)
    filler = "a"  # one unit in either encoding, and keeps the encoding
    assert segment_info(text + filler * info.remaining).segments == info.segments
    assert segment_info(text + filler * (info.remaining + 1)).segments == info.segments + 1


@given(st.text(alphabet=st.sampled_from("abc ж"), min_size=1, max_size=400))
def test_remaining_room_is_exact_when_no_unit_is_wasted(text: str) -> None:
    info = segment_info(text)
    filler = "a"
    assert segment_info(text + filler * info.remaining).segments == info.segments
    assert segment_info(text + filler * (info.remaining + 1)).segments == info.segments + 1


# --- splitting properties ----------------------------------------------------------------


@settings(max_examples=300)
@given(any_text)
def test_split_round_trips(text: str) -> None:
    assert "".join(split(text)) == text


@settings(max_examples=300)
@given(any_text)
def test_every_part_fits_its_capacity(text: str) -> None:
    gsm = ref_is_gsm(text)
    single, multi = capacities(gsm)
    parts = split(text)
    assert all(parts), "no empty parts"
    limit = single if len(parts) == 1 else multi
    for part in parts:
        assert units(part, gsm) <= limit
        part.encode("utf-16-le")  # a valid string: no lone surrogate at either end


@settings(max_examples=300)
@given(any_text)
def test_parts_never_cut_a_character_in_two(text: str) -> None:
    parts = split(text)
    if ref_is_gsm(text):
        # Septet streams of the parts add up to the text's: no escape pair is broken.
        assert [s for part in parts for s in septets(part)] == septets(text)
        for part in parts:
            assert septets(part)[-1:] != [0x1B]
    else:
        encoded = [part.encode("utf-16-le") for part in parts]
        assert b"".join(encoded) == text.encode("utf-16-le")
        for raw in encoded:
            first = int.from_bytes(raw[:2], "little")
            last = int.from_bytes(raw[-2:], "little")
            assert not 0xDC00 <= first <= 0xDFFF, "part starts with a low surrogate"
            assert not 0xD800 <= last <= 0xDBFF, "part ends with a high surrogate"


@settings(max_examples=300)
@given(any_text)
def test_split_count_is_the_segment_count(text: str) -> None:
    info = segment_info(text)
    parts = split(text)
    assert len(parts) == info.segments
    if not text:
        assert info.segments == 0


@settings(max_examples=300)
@given(any_text)
def test_segment_info_matches_reference(text: str) -> None:
    gsm = ref_is_gsm(text)
    single, multi = capacities(gsm)
    total = units(text, gsm)
    info = segment_info(text)
    assert info.encoding is (Encoding.GSM7 if gsm else Encoding.UCS2)
    assert info.units == total
    if not text:
        assert info.segments == 0
    elif total <= single:
        assert info.segments == 1
        assert info.per_segment == single
    else:
        assert info.segments >= 2
        assert info.per_segment == multi
        # At most one unit is wasted per part (a two-unit character that did not fit).
        assert math.ceil(total / multi) <= info.segments <= math.ceil(total / (multi - 1))


@settings(max_examples=300)
@given(any_text)
def test_split_is_greedy_and_minimal(text: str) -> None:
    gsm = ref_is_gsm(text)
    _, multi = capacities(gsm)
    parts = split(text)
    for part, following in itertools.pairwise(parts):
        # Each part but the last was closed only because the next character did not fit.
        assert units(part, gsm) + units(following[0], gsm) > multi


@given(any_text)
def test_split_with_the_detected_encoding_is_the_default(text: str) -> None:
    assert split(text, detect(text)) == split(text)


@given(gsm_text)
def test_gsm_text_stays_gsm_when_split(text: str) -> None:
    for part in split(text):
        assert is_gsm7(part)
