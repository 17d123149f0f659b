"""The dashboard's formatting: times, ages, signal bars, status pills and SVG charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from simgate.errors import Invalid
from simgate.services.stats import Series, Tally
from simgate.web.dashboard.charts import _nice, bar_chart
from simgate.web.dashboard.core import FormErrors, ago, bars, csrf_token, status_badge, when

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_when_and_ago() -> None:
    assert when(None) == "-"
    assert when(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02 03:04:05"  # naive is UTC
    assert when("2026-01-02T03:04:05Z") == "2026-01-02 03:04:05"
    assert when("not a time") == "not a time"
    assert ago(None) == "never"
    assert ago(NOW - timedelta(seconds=12), NOW) == "12 s ago"
    assert ago(NOW - timedelta(minutes=3, seconds=5), NOW) == "3 min ago"
    assert ago(NOW - timedelta(hours=2), NOW) == "2 h ago"
    assert ago(NOW - timedelta(days=4), NOW) == "4 d ago"
    assert ago(NOW + timedelta(seconds=2), NOW) == "just now"


def test_bars_light_as_many_as_reported() -> None:
    assert str(bars(3)).count('class="on"') == 3
    assert str(bars(9)).count('class="on"') == 5
    assert str(bars(None)).count('class="on"') == 0
    assert "no signal reading" in str(bars(None))
    assert "style=" not in str(bars(2))


def test_status_badge_escapes_and_classes() -> None:
    html = str(status_badge("max_attempts"))
    assert 'class="status status-max-attempts"' in html
    assert ">max attempts<" in html
    assert "<script>" not in str(status_badge("<script>"))


def test_chart_axis_and_bars() -> None:
    assert [_nice(n) for n in (0, 3, 5, 17, 95, 1234)] == [4, 4, 8, 20, 200, 2000]
    series = Series(NOW, timedelta(hours=1), [Tally(accepted=3, sent=3, delivered=2), Tally()])
    svg = str(bar_chart(series, ["<b>", "13:00"], title="t & t"))
    assert "&lt;b&gt;" in svg
    assert "<b>" not in svg
    assert "t &amp; t" in svg
    assert svg.count("<rect") == 2  # sent and delivered of the first hour; zeros draw nothing
    assert "style=" not in svg


def test_csrf_tokens_differ_per_session() -> None:
    assert csrf_token("a") != csrf_token("b")
    assert len(csrf_token("a")) == 64


def test_form_errors_place_messages() -> None:
    errors = FormErrors().from_error(Invalid("name is taken", field="name"), known=("name",))
    assert errors.get("name") == "Name is taken"
    other = FormErrors().from_error(Invalid("bad", field="elsewhere"), known=("name",))
    assert other.general == ["Bad"]
    assert not other.fields
    assert not FormErrors()


def test_the_signal_chart_draws_steps_battery_and_status() -> None:
    from types import SimpleNamespace as S

    from simgate.web.dashboard.charts import signal_chart

    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    empty = str(signal_chart([], now=now))
    assert "No samples in this period" in empty
    assert empty.startswith("<svg")
    assert empty.endswith("</svg>")
    samples = [
        S(at=now - timedelta(hours=30), signal=2, battery=None, status="online"),  # carries in
        S(at=now - timedelta(hours=6), signal=9, battery=140, status="<b>odd</b>"),
        S(
            at=(now - timedelta(hours=1)).replace(tzinfo=None),
            signal=None,
            battery=50,
            status="error",
        ),
    ]
    svg = str(signal_chart(list(reversed(samples)), now=now, title="pi <x>"))
    assert 'aria-label="pi &lt;x&gt;"' in svg
    assert "<b>" not in svg
    assert "&lt;b&gt;odd&lt;/b&gt;" in svg
    assert 'class="st st-online" x="34.0"' in svg  # the sample before the window starts it
    assert svg.count('class="line-signal-dot"') == 2  # no dot where the signal is unknown
    assert svg.count('class="line-battery-dot"') == 2
    assert "signal 9" in svg
    assert "battery 140%" in svg
    top = 8  # values above the scale are drawn at its top, not outside the chart
    assert f'cy="{top:.1f}"' in svg
    assert 'class="line-battery"' in svg


def test_the_signal_chart_joins_runs_and_thins_dots() -> None:
    from types import SimpleNamespace as S

    from simgate.web.dashboard.charts import signal_chart

    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    day = [
        S(
            at=now - timedelta(minutes=5 * i),
            signal=(i % 5) + 1,
            battery=None,
            status="error" if 100 <= i < 120 else "online",
        )
        for i in range(1, 280)
    ]
    svg = str(signal_chart(day, now=now))
    # three runs of status (online, error, online), not one bar per sample
    assert svg.count('class="st st-online"') == 2
    assert svg.count('class="st st-error"') == 1
    assert "-dot" not in svg  # too many samples for a dot each
    path = svg.split('<path class="line-signal" d="')[1].split('"')[0]
    assert path.count("M") == 1  # one connected step line
    assert path.count("V") == len(day) - 1
