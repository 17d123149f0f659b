"""Charts drawn on the server as SVG: no chart library, no script, nothing from a CDN.

Colours come from CSS classes (the page's Content-Security-Policy forbids inline style);
each bar carries a <title> so screen readers and hover show its figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from simgate.services.stats import Series

SERIES = (
    ("sent", "Sent"),
    ("delivered", "Delivered"),
    ("failed", "Failed"),
    ("received", "Received"),
)
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 200, 34, 22, 8


def _nice(top: int) -> int:
    """A round axis maximum at or above ``top``: four steps of 1, 2 or 5 times a power of ten."""
    raw = max(top, 4) / 4
    scale = 1
    while scale * 10 < raw:
        scale *= 10
    for mult in (1, 2, 5, 10):
        if scale * mult >= raw:
            return scale * mult * 4
    return top


def bar_chart(series: Series, labels: Sequence[str], *, title: str) -> Markup:
    """Grouped bars, one group per bucket, one bar per kind in ``SERIES``."""
    n = len(series.buckets)
    values = [[getattr(b, key) for key, _ in SERIES] for b in series.buckets]
    top = _nice(max((v for group in values for v in group), default=0))
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(n, 1)
    bar = max(1.0, (slot * 0.8) / len(SERIES))
    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i in range(5):  # grid lines with their values
        y = TOP + plot_h - plot_h * i / 4
        out.append(
            f'<line class="grid-line" x1="{LEFT}" x2="{WIDTH - 4}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">'
            f"{top * i // 4}</text>"
        )
    every = max(1, n // 12)
    for i, (group, label) in enumerate(zip(values, labels, strict=True)):
        x0 = LEFT + slot * i + slot * 0.1
        for j, ((key, name), v) in enumerate(zip(SERIES, group, strict=True)):
            if v:
                h = plot_h * v / top
                out.append(
                    f'<rect class="s-{key}" x="{x0 + bar * j:.1f}" y="{TOP + plot_h - h:.1f}" '
                    f'width="{bar:.1f}" height="{h:.1f}"><title>{escape(label)}: {v} '
                    f"{name.lower()}</title></rect>"
                )
        if i % every == 0:
            out.append(
                f'<text class="axis" x="{LEFT + slot * (i + 0.5):.1f}" y="{HEIGHT - 6}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - numbers and escaped labels only


def legend() -> Markup:
    items = "".join(
        f'<li><span class="key s-{key}" aria-hidden="true"></span>{name}</li>'
        for key, name in SERIES
    )
    return Markup(f'<ul class="legend">{items}</ul>')  # noqa: S704 - constant text
