"""RetryPolicy.decide: give up on permanent errors and after max_attempts, back off by a
factor up to max_delay, and hand gateway errors to another gateway at once."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simgate.domain.retry import ErrorKind, RetryDecision, RetryPolicy


def test_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.base_delay, policy.factor, policy.max_delay) == (
        5,
        2.0,
        3.0,
        300.0,
    )


def test_error_kind_values() -> None:
    assert {k.value for k in ErrorKind} == {"transient", "permanent", "gateway"}


@pytest.mark.parametrize("attempt", [0, 1, 2, 4, 5, 100])
def test_permanent_errors_never_retry(attempt: int) -> None:
    assert RetryPolicy().decide(attempt, ErrorKind.PERMANENT) is None
    assert RetryPolicy(max_attempts=1000).decide(attempt, ErrorKind.PERMANENT) is None


def test_default_transient_schedule() -> None:
    policy = RetryPolicy()
    decisions = [policy.decide(attempt, ErrorKind.TRANSIENT) for attempt in range(1, 7)]
    assert decisions == [
        RetryDecision(delay=2.0, avoid_gateway=True),
        RetryDecision(delay=6.0, avoid_gateway=True),
        RetryDecision(delay=18.0, avoid_gateway=True),
        RetryDecision(delay=54.0, avoid_gateway=True),
        None,  # five attempts made: give up
        None,
    ]


@pytest.mark.parametrize("kind", [ErrorKind.TRANSIENT, ErrorKind.GATEWAY])
def test_max_attempts_is_respected(kind: ErrorKind) -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.decide(1, kind) is not None
    assert policy.decide(2, kind) is not None
    assert policy.decide(3, kind) is None
    assert policy.decide(4, kind) is None


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_a_single_attempt_policy_never_retries(kind: ErrorKind) -> None:
    assert RetryPolicy(max_attempts=1).decide(1, kind) is None


def test_delays_grow_by_factor_and_cap_at_max_delay() -> None:
    policy = RetryPolicy(max_attempts=20, base_delay=1.0, factor=2.0, max_delay=60.0)
    delays = []
    for attempt in range(1, 20):
        decision = policy.decide(attempt, ErrorKind.TRANSIENT)
        assert decision is not None
        delays.append(decision.delay)
    assert delays[:7] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
    assert delays[6:] == [60.0] * 13


def test_cap_applies_to_the_first_delay_too() -> None:
    policy = RetryPolicy(base_delay=10.0, max_delay=5.0)
    decision = policy.decide(1, ErrorKind.TRANSIENT)
    assert decision == RetryDecision(delay=5.0, avoid_gateway=True)


def test_factor_one_is_a_constant_delay() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=7.0, factor=1.0)
    assert {policy.decide(a, ErrorKind.TRANSIENT) for a in range(1, 10)} == {
        RetryDecision(delay=7.0, avoid_gateway=True)
    }


def test_zero_base_delay_retries_at_once() -> None:
    decision = RetryPolicy(base_delay=0.0).decide(3, ErrorKind.TRANSIENT)
    assert decision == RetryDecision(delay=0.0, avoid_gateway=True)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
def test_gateway_errors_retry_at_once_on_another_gateway(attempt: int) -> None:
    decision = RetryPolicy().decide(attempt, ErrorKind.GATEWAY)
    assert decision == RetryDecision(delay=0.0, avoid_gateway=True)


def test_transient_errors_also_prefer_another_gateway() -> None:
    # The router falls back to the same gateway when it is the only one left.
    decision = RetryPolicy().decide(1, ErrorKind.TRANSIENT)
    assert decision is not None
    assert decision.avoid_gateway


def test_values_are_frozen() -> None:
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 9  # type: ignore[misc]
    decision = RetryDecision(1.0, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.delay = 2.0  # type: ignore[misc]


policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 50),
    base_delay=st.floats(0.0, 100.0),
    factor=st.floats(1.0, 10.0),
    max_delay=st.floats(0.0, 3600.0),
)


@given(policies, st.integers(1, 60), st.sampled_from(list(ErrorKind)))
def test_decisions_follow_the_rules(policy: RetryPolicy, attempt: int, kind: ErrorKind) -> None:
    decision = policy.decide(attempt, kind)
    if kind is ErrorKind.PERMANENT or attempt >= policy.max_attempts:
        assert decision is None
        return
    assert decision is not None
    assert decision.avoid_gateway
    if kind is ErrorKind.GATEWAY:
        assert decision.delay == 0.0
    else:
        expected = min(policy.base_delay * policy.factor ** (attempt - 1), policy.max_delay)
        assert decision.delay == pytest.approx(expected)
        assert 0.0 <= decision.delay <= policy.max_delay


@given(policies)
def test_transient_delays_never_shrink(policy: RetryPolicy) -> None:
    delays = []
    for attempt in range(1, policy.max_attempts):
        decision = policy.decide(attempt, ErrorKind.TRANSIENT)
        assert decision is not None
        delays.append(decision.delay)
    assert delays == sorted(delays)
    assert len(delays) == policy.max_attempts - 1


def test_very_many_attempts_stay_capped() -> None:
    policy = RetryPolicy(max_attempts=10_000)
    assert policy.decide(700, ErrorKind.TRANSIENT) == RetryDecision(300.0, True)
