"""Charts drawn on the server as SVG: no chart library, no script, nothing from a CDN.

Colours come from CSS classes (the page's Content-Security-Policy forbids inline style);
each bar carries a <title> so screen readers and hover show its figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from markupsafe import Markup

from simgate.services.stats import Series

SERIES = (
    ("sent", "Sent"),
    ("delivered", "Delivered"),
    ("failed", "Failed"),
    ("received", "Received"),
)
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 200, 34, 22, 8


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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


def _x(at: datetime, start: datetime, span: float, left: float, width: float) -> float:
    return left + width * max(0.0, min(1.0, (at - start).total_seconds() / span))


def signal_chart(
    samples: Sequence[Any], *, now: datetime, hours: int = 24, title: str = "Signal history"
) -> Markup:
    """Signal (0-5 bars) as a step line, battery (%) as a dashed line, and the status as a
    coloured strip under them, over the last ``hours``. ``samples`` have ``at``, ``signal``,
    ``battery`` and ``status``, in any order; the last one before the window carries in."""
    start = now - timedelta(hours=hours)
    ordered = sorted(samples, key=lambda s: _aware(s.at))
    before = [s for s in ordered if _aware(s.at) < start]
    inside = [s for s in ordered if _aware(s.at) >= start]
    points = ([before[-1]] if before else []) + inside
    span = (now - start).total_seconds()
    right = 34
    plot_w, plot_h = WIDTH - LEFT - right, HEIGHT - BOTTOM - TOP - 14
    strip_y = TOP + plot_h + 4
    out = [
        f'<svg class="chart signal-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for level in range(6):
        y = TOP + plot_h - plot_h * level / 5
        out.append(
            f'<line class="grid-line" x1="{LEFT}" x2="{WIDTH - right}" y1="{y:.1f}" '
            f'y2="{y:.1f}"/><text class="axis" x="{LEFT - 4}" y="{y + 3:.1f}" '
            f'text-anchor="end">{level}</text><text class="axis" x="{WIDTH - right + 4}" '
            f'y="{y + 3:.1f}">{level * 20}%</text>'
        )
    for i in range(0, hours + 1, max(1, hours // 6)):
        at = start + timedelta(hours=i)
        x = _x(at, start, span, LEFT, plot_w)
        out.append(
            f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 4}" text-anchor="middle">'
            f"{at:%H:%M}</text>"
        )

    def ends(i: int) -> tuple[float, float]:
        x0 = _x(_aware(points[i].at), start, span, LEFT, plot_w)
        nxt = _aware(points[i + 1].at) if i + 1 < len(points) else now
        return x0, _x(nxt, start, span, LEFT, plot_w)

    i = 0
    while i < len(points):  # the status strip: one bar per run of the same status
        j = i
        while j + 1 < len(points) and points[j + 1].status == points[i].status:
            j += 1
        x0, x1 = ends(i)[0], ends(j)[1]
        raw = str(points[i].status)
        status = "".join(c if c.isalnum() else "-" for c in raw)[:16]
        out.append(
            f'<rect class="st st-{status}" x="{x0:.1f}" y="{strip_y:.1f}" '
            f'width="{max(x1 - x0, 0.5):.1f}" height="8"><title>'
            f"{escape(raw)} from {_aware(points[i].at):%Y-%m-%d %H:%M} UTC</title></rect>"
        )
        i = j + 1
    dots = len(points) <= 48  # a dot per sample while they are few enough to tell apart
    for attr, scale, cls in (("signal", 5, "line-signal"), ("battery", 100, "line-battery")):
        path: list[str] = []
        joined = False  # the previous sample had a value: rise or fall to this one
        for i, p in enumerate(points):
            value = getattr(p, attr)
            if value is None:
                joined = False
                continue
            x0, x1 = ends(i)
            y = TOP + plot_h - plot_h * max(0, min(value, scale)) / scale
            path.append(f"{'V' if joined else f'M{x0:.1f},'}{y:.1f}H{x1:.1f}")
            joined = True
            if dots:
                unit = "%" if scale == 100 else ""
                out.append(
                    f'<circle class="{cls}-dot" cx="{x0:.1f}" cy="{y:.1f}" r="2"><title>'
                    f"{_aware(p.at):%H:%M} UTC: {attr} {value}{unit}</title></circle>"
                )
        if path:
            out.append(f'<path class="{cls}" d="{"".join(path)}"/>')
    if not points:
        out.append(
            f'<text class="axis" x="{WIDTH / 2:.0f}" y="{TOP + plot_h / 2:.0f}" '
            'text-anchor="middle">No samples in this period</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - numbers and escaped text only
