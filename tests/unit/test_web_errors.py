from __future__ import annotations

import pytest

from simgate.web.errors import field_path


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("body", "to"), "to"),
        (("body", "to", 3), "to[3]"),
        (("query", "limit"), "limit"),
        (("body", "metadata", "a", 0, "b"), "metadata.a[0].b"),
        (("body",), "body"),
        ((), "body"),
    ],
)
def test_field_path(loc: tuple[object, ...], expected: str) -> None:
    assert field_path(loc) == expected
