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
