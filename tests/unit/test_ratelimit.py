"""Fixed one-minute windows with seed 003's headers."""

from __future__ import annotations

from simgate.domain.ratelimit import FixedWindows


def test_a_window_counts_to_its_limit_then_refuses_until_it_resets() -> None:
    limits = FixedWindows(limit=3)
    t = 1_700_000_020.0  # 40 s into the minute that starts at 1_699_999_980
    verdicts = [limits.hit("phone", t + i) for i in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert {v.reset for v in verdicts} == {1_700_000_040}
    assert verdicts[3].retry_after(t + 3) == 17
    assert verdicts[3].headers() == {
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(1_700_000_040),
    }
    assert limits.hit("phone", 1_700_000_040.0).allowed  # the next minute
    assert limits.hit("other", t).allowed  # keys are counted apart


def test_the_seeds_30_second_heartbeats_never_hit_six_a_minute() -> None:
    limits = FixedWindows(limit=6)
    t = 1_700_000_000.0
    for beat in range(200):  # every 30 s, jittered by up to a second either way
        jitter = (-1) ** beat * (beat % 7) / 7
        assert limits.hit("phone", t + beat * 30 + jitter).allowed


def test_memory_is_bounded() -> None:
    limits = FixedWindows(limit=1, max_keys=100)
    for key in range(1000):
        limits.hit(key, 0.0)
    assert len(limits._windows) <= 100
