"""Delivery states of an outbound message, and how Meta's statuses move them.

One rule, used by the webhook processor (in SQL, for a whole batch at once) and
testable here without a database:

* states only move forward: queued < sent < delivered < read;
* ``failed`` is final, and so is ``cancelled``; Meta fails only messages it has not
  delivered, so a ``failed`` status moves a queued or sent message only;
* a message we failed ourselves because Meta did not answer (a network failure) is
  moved by any later status but ``failed``: Meta did send it after all.
"""

# Forward order of the delivery states.
DELIVERY_ORDER = ("queued", "sent", "delivered", "read")
FINAL_STATES = ("failed", "cancelled")
# Meta's status -> our state ('played' is a voice message listened to).
META_STATUS_TO_STATE = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "played": "read",
    "failed": "failed",
}
# Within one batch, the status that decides: a later delivery proves the message
# was not failed, a failure beats a mere 'sent'.
_BATCH_RANK = {"sent": 1, "failed": 2, "delivered": 3, "read": 4}


def delivery_rank(state: str) -> int:
    """Position of a state in DELIVERY_ORDER; -1 for any other state."""
    try:
        return DELIVERY_ORDER.index(state)
    except ValueError:
        return -1


def strongest_state(states) -> str | None:
    """The state a batch of statuses of one message asks for (None: nothing)."""
    known = [state for state in states if state in _BATCH_RANK]
    return max(known, key=_BATCH_RANK.__getitem__) if known else None


def next_state(current: str, new: str, failure_type: str | None = None) -> str:
    """The state of a message in ``current`` once Meta reports ``new``."""
    if new not in _BATCH_RANK:
        return current
    if current == "failed" and failure_type == "network" and new != "failed":
        return new
    if current in FINAL_STATES:
        return current
    if new == "failed":
        return new if current in ("queued", "sent") else current
    return new if delivery_rank(new) > delivery_rank(current) else current


def next_state_sql(current: str, new: str, failure_type: str) -> str:
    """``next_state`` as a SQL expression over three column expressions.

    The names are our own column references, never user input.
    """
    order = ", ".join(f"'{state}'" for state in DELIVERY_ORDER)
    finals = ", ".join(f"'{state}'" for state in FINAL_STATES)
    return (
        f"CASE WHEN {new} IS NULL THEN {current}"
        f" WHEN {current} = 'failed' AND {failure_type} = 'network'"
        f" AND {new} <> 'failed' THEN {new}"
        f" WHEN {current} IN ({finals}) THEN {current}"
        f" WHEN {new} = 'failed' THEN CASE WHEN {current} IN ('queued', 'sent')"
        f" THEN 'failed' ELSE {current} END"
        f" WHEN COALESCE(array_position(ARRAY[{order}]::varchar[], {new}), 0)"
        f" > COALESCE(array_position(ARRAY[{order}]::varchar[], {current}), 0)"
        f" THEN {new} ELSE {current} END"
    )
