"""Which inbound messages get a read receipt (the customer's blue ticks).

Meta's rules (cloud-api.md 2.4): only inbound messages less than 30 days old can
be marked as read, and marking one marks the earlier ones of the same 1:1 chat.
So one receipt per chat is enough: for its newest message.
"""

from datetime import timedelta

__all__ = ["MAX_READ_AGE", "SKIPPED_TYPES", "plan_read_receipts"]

MAX_READ_AGE = timedelta(days=30)
# Not messages the customer wrote: a reaction or a notice from Meta. Whether
# Meta accepts their ids for a receipt is not documented, and the message they
# follow is marked anyway.
SKIPPED_TYPES = frozenset({"reaction", "system"})


def plan_read_receipts(messages, now):
    """Split inbound messages into those to mark as read and those covered.

    ``messages`` is an iterable of ``(key, chat, received_at, message_type)``:
    ``chat`` identifies the conversation (account and customer), ``received_at``
    is Meta's timestamp (naive or aware, like ``now``); keys of one call compare
    (ids: the higher wins a tie). Returns ``(send, skip)``,
    two lists of keys: ``send`` has the newest eligible message of each chat;
    every other message is in ``skip`` (covered by it, or too old).
    """
    newest = {}
    keys = []
    limit = now - MAX_READ_AGE
    for key, chat, received_at, message_type in messages:
        keys.append(key)
        if message_type in SKIPPED_TYPES or not received_at or received_at < limit:
            continue
        best = newest.get(chat)
        if best is None or (received_at, key) > (best[1], best[0]):
            newest[chat] = (key, received_at)
    send = [key for key, _received_at in newest.values()]
    chosen = set(send)
    return send, [key for key in keys if key not in chosen]
