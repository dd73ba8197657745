"""Which webhook bodies must be processed one after the other."""

import json

from conftest import FIXTURES

from wa_cloud.events import ANY_PARTY, MAX_ORDERING_KEYS, ordering_keys


def body(field, value, waba="104000000000001"):
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba, "changes": [{"field": field, "value": value}]}],
    }


def inbound(number, user_id=None):
    message = {"from": number, "id": f"wamid.{number}", "type": "text"}
    if user_id:
        message["from_user_id"] = user_id
    return body("messages", {"messages": [message]})


def test_messages_of_one_customer_share_a_key():
    assert ordering_keys(inbound("33612345678")) == ["33612345678"]
    assert ordering_keys(inbound("33612345678")) == ordering_keys(
        json.dumps(inbound("+33 6 12 34 56 78")).encode()
    )
    assert not set(ordering_keys(inbound("33612345678"))) & set(
        ordering_keys(inbound("33699999999"))
    )


def test_a_status_shares_the_key_of_its_recipient():
    status = body("messages", {"statuses": [{"id": "w", "recipient_id": "336123"}]})
    assert ordering_keys(status) == ordering_keys(inbound("336123"))


def test_user_ids_are_keys_too():
    keys = ordering_keys(inbound("33612345678", user_id="US.13491208655302741918"))
    assert keys == ["33612345678", "u:US.13491208655302741918"]
    preference = body(
        "user_preferences",
        {"user_preferences": [{"user_id": "US.13491208655302741918", "value": "stop"}]},
    )
    assert ordering_keys(preference) == ["u:US.13491208655302741918"]


def test_account_level_changes_are_ordered_among_themselves():
    status = body("message_template_status_update", {"event": "APPROVED"})
    quality = body("message_template_quality_update", {"new_quality_score": "RED"})
    assert ordering_keys(status) == ordering_keys(quality) == ["@template"]
    assert ordering_keys(body("account_update", {"event": "X"})) == ["@account_update"]


def test_too_many_parties_or_an_unreadable_body_order_against_everything():
    many = body(
        "messages",
        {
            "statuses": [
                {"id": str(i), "recipient_id": f"3361{i:07d}"}
                for i in range(MAX_ORDERING_KEYS + 1)
            ]
        },
    )
    assert ordering_keys(many) == [ANY_PARTY]
    assert ordering_keys(b"not json") == [ANY_PARTY]
    assert ordering_keys(b"[" * 100_000 + b"]" * 100_000) == [ANY_PARTY]


def test_every_fixture_gives_keys_without_spaces():
    # Spaces separate the keys where the inbox stores them.
    for path in sorted(FIXTURES.glob("*.json")):
        keys = ordering_keys(path.read_bytes())
        assert keys or path.stem == "value_errors", path.name
        assert all(isinstance(key, str) and " " not in key for key in keys)
