"""The message status table: every (from, to) pair, final statuses, and the stated facts
about cancelable and claimable statuses."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simgate.domain.messages import (
    CANCELABLE,
    CLAIMABLE,
    FINAL,
    TRANSITIONS,
    Direction,
    IllegalTransition,
    MessageError,
    MessageStatus,
    Priority,
    can_move,
    check_move,
)

S = MessageStatus
ALL = list(MessageStatus)
PAIRS = list(itertools.product(ALL, ALL))

# Written out independently of the module, so that a change to the table is a deliberate one.
EXPECTED: dict[MessageStatus, set[MessageStatus]] = {
    S.SCHEDULED: {S.QUEUED, S.SENDING, S.CANCELED, S.EXPIRED},
    # SENT too: a phone's late "sent" after its send timed out proves it went out
    S.QUEUED: {S.SENDING, S.CANCELED, S.EXPIRED, S.FAILED, S.DELIVERED, S.SENT},
    S.SENDING: {S.SENT, S.DELIVERED, S.FAILED, S.QUEUED, S.EXPIRED},
    S.SENT: {S.DELIVERED, S.FAILED},
    S.DELIVERED: set(),
    S.FAILED: set(),
    S.EXPIRED: set(),
    S.CANCELED: set(),
    S.RECEIVED: set(),
}


def _pair_id(pair: tuple[MessageStatus, MessageStatus]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


def test_status_values() -> None:
    assert [s.value for s in MessageStatus] == [
        "queued",
        "scheduled",
        "sending",
        "sent",
        "delivered",
        "failed",
        "expired",
        "canceled",
        "received",
    ]
    assert all(s.value == s.name.lower() for s in MessageStatus)


def test_other_enums() -> None:
    assert {d.value for d in Direction} == {"outbound", "inbound"}
    assert Priority.NORMAL < Priority.HIGH
    assert (int(Priority.NORMAL), int(Priority.HIGH)) == (0, 1)


def test_every_status_has_a_row() -> None:
    assert set(TRANSITIONS) == set(MessageStatus)
    assert all(isinstance(nxt, frozenset) for nxt in TRANSITIONS.values())


def test_table_is_the_expected_one() -> None:
    assert {s: set(nxt) for s, nxt in TRANSITIONS.items()} == EXPECTED


@pytest.mark.parametrize("pair", PAIRS, ids=_pair_id)
def test_every_pair_follows_the_table(pair: tuple[MessageStatus, MessageStatus]) -> None:
    current, new = pair
    allowed = new in TRANSITIONS[current]
    assert can_move(current, new) is allowed
    if allowed:
        check_move(current, new)  # does not raise
    else:
        with pytest.raises(IllegalTransition) as excinfo:
            check_move(current, new)
        message = str(excinfo.value)
        assert current.value in message
        assert new.value in message
        assert message == f"a {current.value} message cannot become {new.value}"


def test_number_of_legal_moves() -> None:
    assert sum(can_move(a, b) for a, b in PAIRS) == 17


@pytest.mark.parametrize("status", ALL, ids=str)
def test_no_status_moves_to_itself(status: MessageStatus) -> None:
    assert not can_move(status, status)
    with pytest.raises(IllegalTransition):
        check_move(status, status)


def test_final_statuses() -> None:
    assert {S.DELIVERED, S.FAILED, S.EXPIRED, S.CANCELED, S.RECEIVED} == FINAL
    assert {s for s in ALL if not TRANSITIONS[s]} == FINAL


@pytest.mark.parametrize("status", sorted(FINAL), ids=str)
def test_final_statuses_have_no_exits(status: MessageStatus) -> None:
    for new in ALL:
        assert not can_move(status, new)
        with pytest.raises(IllegalTransition):
            check_move(status, new)


@pytest.mark.parametrize("status", sorted(set(ALL) - FINAL), ids=str)
def test_non_final_statuses_can_still_end(status: MessageStatus) -> None:
    assert TRANSITIONS[status]
    assert TRANSITIONS[status] & FINAL, "every open status has a direct way to an end"


def test_illegal_transition_is_a_value_error() -> None:
    assert issubclass(IllegalTransition, ValueError)
    with pytest.raises(ValueError, match=r"^a delivered message cannot become queued$"):
        check_move(S.DELIVERED, S.QUEUED)


def test_cancelable_and_claimable_facts() -> None:
    assert {S.QUEUED, S.SCHEDULED} == CANCELABLE
    assert {S.QUEUED, S.SCHEDULED} == CLAIMABLE
    assert CANCELABLE <= CLAIMABLE
    assert not CANCELABLE & FINAL
    assert not CLAIMABLE & FINAL


def test_exactly_the_cancelable_statuses_can_be_canceled() -> None:
    # "Still ours to cancel: not handed to a gateway" - SENDING and SENT cannot be.
    assert {s for s in ALL if can_move(s, S.CANCELED)} == CANCELABLE
    assert not can_move(S.SENDING, S.CANCELED)
    assert not can_move(S.SENT, S.CANCELED)


def test_claimable_statuses_can_start_sending() -> None:
    assert all(can_move(s, S.SENDING) for s in CLAIMABLE)
    # Only claimed messages are sent; nothing else enters SENDING.
    assert {s for s in ALL if can_move(s, S.SENDING)} == CLAIMABLE


def test_stated_special_moves() -> None:
    # back to QUEUED after a transient error or an expired lease
    assert can_move(S.SENDING, S.QUEUED)
    # a delivery report may say the network gave up after accepting the message
    assert can_move(S.SENT, S.FAILED)
    assert can_move(S.SENT, S.DELIVERED)
    # a scheduled message becomes due
    assert can_move(S.SCHEDULED, S.QUEUED)
    # a sent message is never sent again, nor does it expire
    assert not can_move(S.SENT, S.QUEUED)
    assert not can_move(S.SENT, S.SENDING)
    assert not can_move(S.SENT, S.EXPIRED)


def test_received_is_inbound_only() -> None:
    assert not TRANSITIONS[S.RECEIVED]
    assert not any(can_move(s, S.RECEIVED) for s in ALL)
    assert not any(can_move(S.RECEIVED, s) for s in ALL)


def test_every_outbound_status_is_reachable_from_a_start() -> None:
    starts = {S.QUEUED, S.SCHEDULED}
    seen = set(starts)
    frontier = list(starts)
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(ALL) - {S.RECEIVED}


def test_the_only_cycle_is_the_retry_loop() -> None:
    """Without SENDING -> QUEUED the table is acyclic: every message eventually ends."""
    edges = {s: set(nxt) for s, nxt in TRANSITIONS.items()}
    edges[S.SENDING].discard(S.QUEUED)
    order: list[MessageStatus] = []
    indegree = dict.fromkeys(ALL, 0)
    for nxt in edges.values():
        for s in nxt:
            indegree[s] += 1
    ready = [s for s in ALL if indegree[s] == 0]
    while ready:
        s = ready.pop()
        order.append(s)
        for t in edges[s]:
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
    assert len(order) == len(ALL)


@given(st.sampled_from([S.QUEUED, S.SCHEDULED]), st.lists(st.integers(0, 100), max_size=50))
def test_random_legal_walks_never_raise(start: MessageStatus, choices: list[int]) -> None:
    status = start
    for choice in choices:
        options = sorted(TRANSITIONS[status])
        if not options:
            assert status in FINAL
            break
        new = options[choice % len(options)]
        check_move(status, new)
        status = new


def test_message_error_value() -> None:
    err = MessageError("invalid_number", "+49 1 is too short")
    assert err.hint == ""
    assert err == MessageError("invalid_number", "+49 1 is too short", "")
    with pytest.raises(AttributeError):
        err.code = "x"  # type: ignore[misc]
