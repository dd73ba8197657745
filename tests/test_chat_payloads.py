"""Chat actions in the pure core: quoted replies, reactions, interactive messages,
read receipts, and the customer's choices parsed from webhooks."""

import json
from datetime import datetime, timedelta

import pytest
from conftest import FIXTURES

import wa_cloud.payloads as p
from wa_cloud.client import SendResult
from wa_cloud.events import parse_webhook
from wa_cloud.receipts import plan_read_receipts
from wa_cloud.sender import perform

TO = "33612345678"
BUTTONS_SPEC = {
    "type": "button",
    "body": "Confirmez-vous le RDV du 23/11 à 10h ?",
    "footer": "Acme",
    "buttons": [
        {"id": "appt_confirm_8812", "title": "Confirmer"},
        {"id": "appt_move_8812", "title": "Déplacer"},
    ],
}
LIST_SPEC = {
    "type": "list",
    "body": "Choisissez un créneau",
    "header": "Rendez-vous",
    "button": "Créneaux",
    "sections": [
        {
            "title": "Lundi",
            "rows": [
                {
                    "id": "slot_2026-11-23T10:00",
                    "title": "Lun. 23/11 10:00",
                    "description": "Agence Lyon",
                }
            ],
        }
    ],
}


def parse_one(name):
    (event,) = parse_webhook((FIXTURES / f"{name}.json").read_text())
    return event


# -- quoted replies --------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda r: p.text_payload(TO, "Oui", reply_to=r),
        lambda r: p.media_payload(TO, "image", media_id="1480001122339999", reply_to=r),
        lambda r: p.template_payload(TO, "hello_world", "en_US", reply_to=r),
        lambda r: p.interactive_payload(TO, BUTTONS_SPEC, reply_to=r),
        lambda r: p.location_payload(TO, 45.76, 4.83, reply_to=r),
    ],
    ids=["text", "image", "template", "interactive", "location"],
)
def test_any_message_type_quotes_the_message_it_replies_to(build):
    payload = build("wamid.IN-TEXT")
    assert payload["context"] == {"message_id": "wamid.IN-TEXT"}
    assert "context" not in build(None)


# -- interactive specs -----------------------------------------------------------


def test_button_spec_builds_metas_interactive_object_exactly():
    payload = p.interactive_payload(TO, BUTTONS_SPEC, biz_opaque_callback_data="m:1")
    assert payload == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": TO,
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Confirmez-vous le RDV du 23/11 à 10h ?"},
            "footer": {"text": "Acme"},
            "action": {
                "buttons": [
                    {
                        "type": "reply",
                        "reply": {"id": "appt_confirm_8812", "title": "Confirmer"},
                    },
                    {
                        "type": "reply",
                        "reply": {"id": "appt_move_8812", "title": "Déplacer"},
                    },
                ]
            },
        },
        "biz_opaque_callback_data": "m:1",
    }


def test_list_spec_builds_metas_interactive_object_exactly():
    interactive = p.interactive_payload(TO, LIST_SPEC)["interactive"]
    assert interactive == {
        "type": "list",
        "header": {"type": "text", "text": "Rendez-vous"},
        "body": {"text": "Choisissez un créneau"},
        "action": {
            "button": "Créneaux",
            "sections": [
                {
                    "title": "Lundi",
                    "rows": [
                        {
                            "id": "slot_2026-11-23T10:00",
                            "title": "Lun. 23/11 10:00",
                            "description": "Agence Lyon",
                        }
                    ],
                }
            ],
        },
    }


@pytest.mark.parametrize("spec", [BUTTONS_SPEC, LIST_SPEC], ids=["button", "list"])
def test_interactive_spec_round_trips_and_is_json(spec):
    clean = p.interactive_spec(dict(spec, extra="dropped"))
    assert "extra" not in clean
    assert json.loads(json.dumps(clean)) == clean
    assert p.interactive_spec(clean) == clean
    assert p.interactive_payload(TO, clean) == p.interactive_payload(TO, spec)


def test_interactive_choices_list_buttons_and_rows():
    assert p.interactive_choices(BUTTONS_SPEC) == [
        ("appt_confirm_8812", "Confirmer"),
        ("appt_move_8812", "Déplacer"),
    ]
    assert p.interactive_choices(LIST_SPEC) == [
        ("slot_2026-11-23T10:00", "Lun. 23/11 10:00")
    ]
    assert p.interactive_choices(None) == []


def buttons(*titles):
    return {
        "type": "button",
        "body": "Body",
        "buttons": [{"id": f"b{i}", "title": t} for i, t in enumerate(titles)],
    }


def rows(count, **row):
    return [dict({"id": f"r{i}", "title": f"Row {i}"}, **row) for i in range(count)]


def a_list(sections, button="Menu", body="Body"):
    return {"type": "list", "body": body, "button": button, "sections": sections}


@pytest.mark.parametrize(
    "spec, message",
    [
        (buttons(), r"0 buttons given: a message has 1 to 3 reply buttons"),
        (buttons("A", "B", "C", "D"), r"4 buttons given"),
        (buttons("Oui", "Oui"), r"button title 'Oui' is used twice"),
        (buttons("x" * 21), r"button 1 title is 21 characters long \(max 20\)"),
        (buttons("Ok", ""), r"button 2 title is required"),
        (
            dict(buttons("A"), buttons=[{"id": "x" * 257, "title": "A"}]),
            r"button 1 id is 257 characters long \(max 256\)",
        ),
        (
            dict(buttons("A", "B"), buttons=[{"id": "same", "title": t} for t in "AB"]),
            r"button id 'same' is used twice",
        ),
        (dict(buttons("A"), body="x" * 1025), r"body is 1025 characters long"),
        (dict(buttons("A"), body=""), r"body is required"),
        (dict(buttons("A"), header="x" * 61), r"header is 61 characters long"),
        (dict(buttons("A"), footer="x" * 61), r"footer is 61 characters long"),
        (a_list([{"rows": rows(11)}]), r"11 rows given: at most 10 rows in total"),
        (
            a_list([{"title": f"S{i}", "rows": rows(1)} for i in range(11)]),
            r"11 sections given: a list has 1 to 10 sections",
        ),
        (a_list([]), r"0 sections given"),
        (a_list([{"rows": rows(1)}], button="x" * 21), r"list button is 21 characters"),
        (a_list([{"rows": rows(1)}], button=""), r"list button is required"),
        (a_list([{"title": "S", "rows": []}]), r"section 1 has no row"),
        (
            a_list([{"title": "S", "rows": rows(1)}, {"rows": rows(1)}]),
            r"section 2 has no title",
        ),
        (
            a_list([{"rows": [{"id": "r", "title": "x" * 25}]}]),
            r"row 1 title is 25 characters long \(max 24\)",
        ),
        (
            a_list([{"rows": rows(2, description="x" * 73)}]),
            r"row 1 description is 73 characters long \(max 72\)",
        ),
        (
            a_list([{"rows": [{"id": "r", "title": "A"}, {"id": "r", "title": "B"}]}]),
            r"row id 'r' is used twice",
        ),
        ({"type": "flow", "body": "x"}, r"interactive type 'flow' is not supported"),
        ("not a spec", r"needs a spec dict"),
    ],
)
def test_interactive_validation_says_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        p.interactive_spec(spec)


def test_interactive_limits_are_inclusive():
    p.interactive_spec(buttons("A" * 20, "B", "C"))
    p.interactive_spec(
        a_list(
            [
                {"title": "x" * 24, "rows": rows(5, description="d" * 72)},
                {"title": "Other", "rows": [{"id": "z" * 200, "title": "t" * 24}]},
            ],
            button="m" * 20,
            body="b" * 1024,
        )
    )


# -- reactions -------------------------------------------------------------------


@pytest.mark.parametrize("emoji", ["👍", "❤️", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷"])
def test_reaction_accepts_one_emoji(emoji):
    payload = p.reaction_payload(TO, "wamid.IN-TEXT", emoji)
    assert payload["type"] == "reaction"
    assert payload["reaction"] == {"message_id": "wamid.IN-TEXT", "emoji": emoji}
    assert "context" not in payload


@pytest.mark.parametrize("emoji", ["", None])
def test_empty_reaction_removes_it(emoji):
    payload = p.reaction_payload(TO, "wamid.IN-TEXT", emoji)
    assert payload["reaction"]["emoji"] == ""


@pytest.mark.parametrize("emoji", ["ok", "👍 👍", "a👍", "1", "👍" * 17])
def test_reaction_refuses_text(emoji):
    with pytest.raises(ValueError, match="one emoji"):
        p.reaction_payload(TO, "wamid.IN-TEXT", emoji)


def test_reaction_carries_callback_data_for_its_statuses():
    payload = p.reaction_payload(
        TO, "wamid.IN-TEXT", "👍", biz_opaque_callback_data="whatsapp.message:7"
    )
    assert payload["biz_opaque_callback_data"] == "whatsapp.message:7"


# -- inbound choices ---------------------------------------------------------------


def test_button_reply_choice_is_id_and_title():
    message = parse_one("messages_interactive_button_reply")
    assert message.choice == ("appt_confirm_8812", "Confirmer")
    assert message.context_wamid == "wamid.OUT-BUTTONS"


def test_list_reply_choice_is_row_id_and_title():
    message = parse_one("messages_interactive_list_reply")
    assert message.choice == ("slot_2026-11-23T10:00", "Lun. 23/11 10:00")


def test_template_quick_reply_choice_is_payload_and_label():
    message = parse_one("messages_button")
    assert message.choice == ("STOP_PROMO", "Ne plus recevoir")


@pytest.mark.parametrize(
    "name",
    [
        "messages_text",
        "messages_reaction",
        "messages_interactive_nfm_reply",
        "messages_interactive_without_object",
    ],
)
def test_other_messages_have_no_choice(name):
    message = next(e for e in parse_webhook((FIXTURES / f"{name}.json").read_text()))
    assert message.choice is None


def test_reaction_names_the_message_it_is_about():
    added = parse_one("messages_reaction")
    assert added.reaction["message_id"] and added.reaction["emoji"]
    removed = parse_one("messages_reaction_removed")
    assert removed.reaction["emoji"] is None and removed.reaction["removed"]


# -- read receipts -----------------------------------------------------------------

NOW = datetime(2026, 11, 30, 12, 0)


def test_one_receipt_per_chat_for_its_newest_message():
    messages = [
        (1, "amelie", NOW - timedelta(hours=3), "text"),
        (2, "amelie", NOW - timedelta(hours=1), "image"),
        (3, "bruno", NOW - timedelta(minutes=5), "text"),
        (4, "amelie", NOW - timedelta(minutes=30), "reaction"),
    ]
    send, skip = plan_read_receipts(messages, NOW)
    assert sorted(send) == [2, 3]
    assert sorted(skip) == [1, 4]


def test_messages_older_than_30_days_get_no_receipt():
    messages = [
        (1, "amelie", NOW - timedelta(days=31), "text"),
        (2, "bruno", NOW - timedelta(days=29), "text"),
        (3, "chloe", None, "text"),
    ]
    send, skip = plan_read_receipts(messages, NOW)
    assert send == [2]
    assert sorted(skip) == [1, 3]


def test_same_second_the_higher_key_wins():
    messages = [(5, "a", NOW, "text"), (9, "a", NOW, "text"), (7, "a", NOW, "text")]
    assert plan_read_receipts(messages, NOW) == ([9], [5, 7])


# -- the send engine runs every kind through one function ---------------------------


class RecordingClient:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            if name == "mark_as_read":
                return True
            if name == "upload_media":
                return "media-1"
            return SendResult(wamid="wamid.OUT-1")

        return call


@pytest.mark.parametrize(
    "spec, expected",
    [
        (
            {"to": TO, "type": "text", "body": "Oui", "reply_to": "wamid.Q"},
            ("send_text", (TO, "Oui"), {"reply_to": "wamid.Q"}),
        ),
        (
            {"to": TO, "type": "interactive", "interactive": BUTTONS_SPEC},
            ("send_interactive", (TO, BUTTONS_SPEC), {}),
        ),
        (
            {"to": TO, "type": "reaction", "message_id": "wamid.IN", "emoji": "👍"},
            ("send_reaction", (TO, "wamid.IN", "👍"), {}),
        ),
        (
            {"type": "read", "message_id": "wamid.IN"},
            ("mark_as_read", ("wamid.IN",), {}),
        ),
        (
            {
                "to": TO,
                "type": "template",
                "template_name": "hello_world",
                "language": "en_US",
                "reply_to": "wamid.Q",
            },
            (
                "send_template",
                (TO, "hello_world", "en_US"),
                {"components": None, "reply_to": "wamid.Q"},
            ),
        ),
    ],
    ids=["text", "interactive", "reaction", "read", "template"],
)
def test_perform_sends_each_kind_with_its_quote(spec, expected):
    client = RecordingClient()
    spec = dict(spec, callback="whatsapp.message:3")
    before = []
    perform(client, spec, lambda: before.append(True))
    assert before == [True]
    ((name, args, kwargs),) = client.calls
    assert (name, args) == expected[:2]
    for key, value in expected[2].items():
        assert kwargs[key] == value
    assert ("reply_to" in kwargs) == ("reply_to" in spec)
    if name != "mark_as_read":
        assert kwargs["biz_opaque_callback_data"] == "whatsapp.message:3"


def test_perform_uploads_media_then_sends_it_quoted():
    client = RecordingClient()
    spec = {
        "to": TO,
        "type": "image",
        "content": b"\x89PNG",
        "mime_type": "image/png",
        "filename": "plan.png",
        "caption": "Plan",
        "reply_to": "wamid.Q",
    }
    perform(client, spec)
    assert [call[0] for call in client.calls] == ["upload_media", "send_media"]
    assert client.calls[1][2]["reply_to"] == "wamid.Q"
    assert client.calls[1][2]["media_id"] == "media-1"
