"""The delivery-state rule that the webhook processor applies in SQL."""

import itertools

import pytest

from wa_cloud.delivery import (
    DELIVERY_ORDER,
    META_STATUS_TO_STATE,
    delivery_rank,
    next_state,
    strongest_state,
)

# Outbound states: inbound messages get no statuses.
STATES = (*DELIVERY_ORDER, "failed", "cancelled")


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        ("queued", "sent", "sent"),
        ("sent", "delivered", "delivered"),
        ("delivered", "read", "read"),
        ("queued", "read", "read"),  # a skipped step changes nothing
        ("read", "delivered", "read"),  # late 'delivered' after 'read'
        ("delivered", "sent", "delivered"),
        ("sent", "failed", "failed"),
        ("queued", "failed", "failed"),
        ("delivered", "failed", "delivered"),  # Meta fails undelivered only
        ("failed", "delivered", "failed"),  # failed is final
        ("cancelled", "sent", "cancelled"),
        ("sent", "unknown", "sent"),
    ],
)
def test_states_only_move_forward(current, new, expected):
    assert next_state(current, new) == expected


def test_a_network_failure_is_undone_by_any_later_status_but_failed():
    assert next_state("failed", "sent", "network") == "sent"
    assert next_state("failed", "read", "network") == "read"
    assert next_state("failed", "failed", "network") == "failed"
    assert next_state("failed", "read", "recipient") == "failed"


def test_no_sequence_of_statuses_moves_a_message_backward():
    statuses = sorted(set(META_STATUS_TO_STATE.values()))
    for start in ("queued", "sent"):
        for sequence in itertools.product(statuses, repeat=3):
            state, ranks = start, [delivery_rank(start)]
            for status in sequence:
                state = next_state(state, status)
                if state != "failed":
                    ranks.append(delivery_rank(state))
            assert ranks == sorted(ranks), sequence


def test_the_strongest_status_of_a_batch_decides():
    assert strongest_state(["sent", "delivered", "read"]) == "read"
    assert strongest_state(["read", "sent"]) == "read"
    # A delivery proves the message was not failed; a failure beats 'sent'.
    assert strongest_state(["failed", "delivered"]) == "delivered"
    assert strongest_state(["sent", "failed"]) == "failed"
    assert strongest_state([None, "unknown"]) is None
    assert strongest_state([]) is None


def test_one_batch_ends_where_the_same_statuses_one_by_one_end():
    # For every batch Meta sends in practice (forward statuses, or a failure of
    # an undelivered message), applying the strongest equals applying in order.
    batches = [
        ["sent", "delivered", "read"],
        ["read", "delivered", "sent"],
        ["delivered", "read"],
        ["sent", "failed"],
        ["failed", "sent"],
        ["read"],
    ]
    for current in STATES:
        for batch in batches:
            one_by_one = current
            for status in batch:
                one_by_one = next_state(one_by_one, status)
            assert next_state(current, strongest_state(batch)) == one_by_one, (
                current,
                batch,
            )
