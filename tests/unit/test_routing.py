"""Gateway choice (pinning, health, load, failover) and the per-gateway token bucket."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simgate.domain.routing import GatewayView, TokenBucket, available, choose


def gw(
    name: str,
    in_flight: int = 0,
    max_in_flight: int = 10,
    *,
    online: bool = True,
    rate_ok: bool = True,
) -> GatewayView:
    return GatewayView(
        name=name, online=online, in_flight=in_flight, max_in_flight=max_in_flight, rate_ok=rate_ok
    )


# --- available -----------------------------------------------------------------------------


def test_available() -> None:
    assert available(gw("a"))
    assert available(gw("a", in_flight=9, max_in_flight=10))
    assert not available(gw("a", in_flight=10, max_in_flight=10))
    assert not available(gw("a", in_flight=11, max_in_flight=10))
    assert not available(gw("a", max_in_flight=0))
    assert not available(gw("a", online=False))
    assert not available(gw("a", rate_ok=False))


# --- choose --------------------------------------------------------------------------------


def test_nothing_to_choose_from() -> None:
    assert choose([]) is None
    assert choose([], pinned="a") is None
    assert choose([], avoid=["a"]) is None


def test_the_least_loaded_gateway_wins() -> None:
    assert choose([gw("a", 5), gw("b", 1), gw("c", 3)]) == "b"


def test_load_is_relative_to_capacity() -> None:
    # a: 3 of 4 (75 %), b: 5 of 10 (50 %) - b is less loaded although busier.
    assert choose([gw("a", 3, 4), gw("b", 5, 10)]) == "b"


def test_equal_load_prefers_fewer_in_flight() -> None:
    # Both half full; b has fewer messages out.
    assert choose([gw("a", 2, 4), gw("b", 1, 2)]) == "b"


@pytest.mark.parametrize(
    "names", [["alpha", "beta", "gamma"], ["gamma", "beta", "alpha"], ["beta", "gamma", "alpha"]]
)
def test_ties_break_by_name(names: list[str]) -> None:
    assert choose([gw(n, 1) for n in names]) == "alpha"


@pytest.mark.parametrize(
    "down",
    [
        gw("b", online=False),
        gw("b", 10, 10),
        gw("b", rate_ok=False),
    ],
    ids=["offline", "full", "rate-limited"],
)
def test_unavailable_gateways_are_skipped(down: GatewayView) -> None:
    assert choose([down, gw("a", 9)]) == "a"
    assert choose([down]) is None


def test_all_unavailable_gives_none() -> None:
    gateways = [gw("a", online=False), gw("b", 10, 10), gw("c", rate_ok=False)]
    assert choose(gateways) is None
    assert choose(gateways, avoid=["a", "b"]) is None


def test_pinned_gateway_is_used_even_when_busier() -> None:
    assert choose([gw("a", 8), gw("b", 0)], pinned="a") == "a"


def test_pinned_gateway_is_used_even_when_avoided() -> None:
    assert choose([gw("a", 1), gw("b", 0)], pinned="a", avoid=["a"]) == "a"


@pytest.mark.parametrize(
    "pinned_view",
    [
        gw("a", online=False),
        gw("a", 10, 10),
        gw("a", rate_ok=False),
        None,
    ],
    ids=["offline", "full", "rate-limited", "unknown"],
)
def test_pinned_messages_wait_for_their_gateway(pinned_view: GatewayView | None) -> None:
    others = [gw("b"), gw("c")]
    gateways = others if pinned_view is None else [pinned_view, *others]
    assert choose(gateways, pinned="a") is None


def test_avoided_gateway_is_skipped_for_another() -> None:
    assert choose([gw("a", 0), gw("b", 5)], avoid=["a"]) == "b"
    assert choose([gw("a", 0), gw("b", 5), gw("c", 3)], avoid=["a"]) == "c"


def test_avoided_gateway_is_used_when_it_is_the_only_one() -> None:
    assert choose([gw("a", 3)], avoid=["a"]) == "a"


def test_avoided_gateway_is_used_when_the_others_are_unavailable() -> None:
    assert choose([gw("a", 3), gw("b", online=False)], avoid=["a"]) == "a"


def test_when_all_are_avoided_the_least_loaded_wins() -> None:
    assert choose([gw("a", 3), gw("b", 1)], avoid=["a", "b"]) == "b"


def test_avoiding_an_unknown_gateway_changes_nothing() -> None:
    assert choose([gw("a", 3), gw("b", 1)], avoid=["zzz"]) == "b"


def test_iterables_are_read_once() -> None:
    gateways = iter([gw("a", 1), gw("b", 0), gw("c", 2)])
    avoid = (name for name in ["b"])
    assert choose(gateways, avoid=avoid) == "a"
    assert choose(iter([gw("a"), gw("b")]), pinned="b") == "b"


gateway_lists = st.lists(
    st.builds(
        GatewayView,
        name=st.sampled_from(["a", "b", "c", "d", "e"]),
        online=st.booleans(),
        in_flight=st.integers(0, 12),
        max_in_flight=st.integers(0, 10),
        rate_ok=st.booleans(),
    ),
    max_size=6,
    unique_by=lambda g: g.name,
)
avoid_lists = st.lists(st.sampled_from(["a", "b", "c", "d", "e", "x"]), max_size=3)


def _load(g: GatewayView) -> tuple[float, int, str]:
    return (g.in_flight / max(1, g.max_in_flight), g.in_flight, g.name)


@given(gateway_lists, avoid_lists)
def test_choice_properties(gateways: list[GatewayView], avoid: list[str]) -> None:
    ok = [g for g in gateways if available(g)]
    name = choose(gateways, avoid=avoid)
    if not ok:
        assert name is None
        return
    assert name is not None
    chosen = next(g for g in ok if g.name == name)
    fresh = [g for g in ok if g.name not in avoid]
    if fresh:
        assert name not in avoid
        pool = fresh
    else:
        pool = ok
    assert all(_load(chosen) <= _load(g) for g in pool)


@given(gateway_lists, avoid_lists, st.randoms(use_true_random=False))
def test_choice_does_not_depend_on_order(
    gateways: list[GatewayView], avoid: list[str], rnd: random.Random
) -> None:
    shuffled = list(gateways)
    rnd.shuffle(shuffled)
    assert choose(shuffled, avoid=avoid) == choose(gateways, avoid=avoid)


@given(gateway_lists, st.sampled_from(["a", "b", "c", "d", "e", "x"]), avoid_lists)
def test_pinned_is_that_gateway_or_nothing(
    gateways: list[GatewayView], pinned: str, avoid: list[str]
) -> None:
    name = choose(gateways, pinned=pinned, avoid=avoid)
    expected = pinned if any(g.name == pinned and available(g) for g in gateways) else None
    assert name == expected


# --- TokenBucket ---------------------------------------------------------------------------


def test_bucket_starts_full() -> None:
    bucket = TokenBucket(rate_per_minute=6, burst=3)
    assert bucket.tokens == 3
    for _ in range(3):
        assert bucket.available(0.0)
        assert bucket.wait_time(0.0) == 0.0
        bucket.take(0.0)
    assert not bucket.available(0.0)
    assert bucket.tokens == pytest.approx(0.0)


def test_default_burst_is_one() -> None:
    bucket = TokenBucket(rate_per_minute=60)
    assert bucket.tokens == 1.0
    bucket.take(0.0)
    assert not bucket.available(0.0)


def test_explicit_tokens_are_kept() -> None:
    bucket = TokenBucket(rate_per_minute=60, burst=5, tokens=0.0)
    assert bucket.tokens == 0.0
    assert not bucket.available(0.0)
    bucket = TokenBucket(rate_per_minute=60, burst=5, tokens=2.5)
    assert bucket.tokens == 2.5


def test_refills_at_rate_per_minute_over_60_per_second() -> None:
    bucket = TokenBucket(rate_per_minute=30, burst=1, updated=100.0)  # 0.5 tokens a second
    bucket.take(100.0)
    assert not bucket.available(101.0)
    assert bucket.tokens == pytest.approx(0.5)
    assert not bucket.available(101.999)
    assert bucket.available(102.0)
    assert bucket.tokens == pytest.approx(1.0)


def test_refill_uses_the_now_argument_not_the_clock() -> None:
    bucket = TokenBucket(rate_per_minute=60, burst=1, updated=0.0)
    bucket.take(0.0)
    assert not bucket.available(0.5)
    assert bucket.updated == 0.5
    assert bucket.available(1.0)
    assert bucket.updated == 1.0


def test_refill_is_capped_at_burst() -> None:
    bucket = TokenBucket(rate_per_minute=600, burst=2, updated=0.0)
    bucket.take(0.0)
    bucket.take(0.0)
    assert bucket.available(1_000_000.0)
    assert bucket.tokens == 2.0
    bucket.take(1_000_000.0)
    bucket.take(1_000_000.0)
    assert not bucket.available(1_000_000.0)


def test_wait_time() -> None:
    bucket = TokenBucket(rate_per_minute=12, burst=1, updated=0.0)  # one token per 5 s
    assert bucket.wait_time(0.0) == 0.0
    bucket.take(0.0)
    assert bucket.wait_time(0.0) == pytest.approx(5.0)
    assert bucket.wait_time(2.0) == pytest.approx(3.0)
    assert bucket.wait_time(4.5) == pytest.approx(0.5)
    assert bucket.wait_time(5.0) == 0.0
    assert bucket.wait_time(60.0) == 0.0


def test_wait_time_after_overdraw() -> None:
    # take() does not refuse, so a caller that ignores available() drives tokens negative.
    bucket = TokenBucket(rate_per_minute=60, burst=1, updated=0.0)
    bucket.take(0.0)
    bucket.take(0.0)
    assert bucket.tokens == pytest.approx(-1.0)
    assert bucket.wait_time(0.0) == pytest.approx(2.0)


@pytest.mark.parametrize("rate", [0, 0.0, -1.0])
def test_rate_zero_means_unlimited(rate: float) -> None:
    bucket = TokenBucket(rate_per_minute=rate, burst=1)
    for i in range(1000):
        assert bucket.available(float(i % 3))
        assert bucket.wait_time(0.0) == 0.0
        bucket.take(0.0)
    assert bucket.tokens == 1.0  # never spent


def test_time_standing_still_does_not_refill() -> None:
    bucket = TokenBucket(rate_per_minute=60, burst=1, updated=10.0)
    bucket.take(10.0)
    for _ in range(100):
        assert not bucket.available(10.0)
    assert bucket.wait_time(10.0) == pytest.approx(1.0)


def test_a_clock_step_backwards_does_not_refill() -> None:
    bucket = TokenBucket(rate_per_minute=60, burst=1, updated=100.0)
    bucket.take(100.0)
    assert not bucket.available(50.0)
    assert bucket.tokens == pytest.approx(0.0)


def test_a_clock_step_backwards_does_not_mint_tokens_later() -> None:
    bucket = TokenBucket(rate_per_minute=60, burst=1, updated=100.0)
    bucket.take(100.0)
    assert not bucket.available(50.0)
    # Back at t=100 no time has passed since the token was taken.
    assert not bucket.available(100.0)


@given(
    st.floats(1.0, 600.0),
    st.integers(1, 5),
    st.lists(st.floats(0.0, 30.0, allow_nan=False), min_size=1, max_size=60),
)
def test_never_more_sends_than_burst_plus_rate(rate: float, burst: int, steps: list[float]) -> None:
    bucket = TokenBucket(rate_per_minute=rate, burst=float(burst), updated=0.0)
    now = 0.0
    sent = 0
    for step in steps:
        now += step
        while bucket.available(now):
            bucket.take(now)
            sent += 1
    assert sent <= burst + rate * now / 60.0 + 1e-9


@given(st.floats(1.0, 600.0), st.floats(0.0, 100.0), st.floats(0.0, 100.0))
def test_wait_time_is_when_a_token_is_available(rate: float, t0: float, dt: float) -> None:
    bucket = TokenBucket(rate_per_minute=rate, burst=1, updated=0.0)
    bucket.take(t0)
    now = t0 + dt
    wait = bucket.wait_time(now)
    assert wait >= 0.0
    expected = max(0.0, 60.0 / rate - dt)
    assert wait == pytest.approx(expected, abs=1e-6)
    if wait > 1e-6:
        assert not bucket.available(now)
    assert bucket.available(now + wait + 1e-6)
