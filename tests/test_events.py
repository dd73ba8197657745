"""parse_webhook(): every notification shape, batches, and robustness."""

import contextlib
import copy
import json
import logging
from datetime import datetime, timezone

import pytest
from conftest import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wa_cloud import events as events_module
from wa_cloud.events import (
    AccountUpdate,
    ErrorInfo,
    InboundMessage,
    PhoneNumberQualityUpdate,
    StatusUpdate,
    TemplateCategoryUpdate,
    TemplateQualityUpdate,
    TemplateStatusUpdate,
    UnknownEvent,
    UserPreferenceUpdate,
    ValueErrors,
    is_opt_out_text,
    parse_webhook,
)

WABA, PHONE_ID, DISPLAY = "104000000000001", "109000000000001", "15550100001"
WA_ID, BSUID = "33612345678", "FR.1304857236419057341"
ALL_FIXTURES = sorted(FIXTURES.glob("*.json"))


def load(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def parse(name):
    return parse_webhook((FIXTURES / f"{name}.json").read_bytes())


def only(name, cls=InboundMessage):
    events = parse(name)
    assert len(events) == 1, events
    assert isinstance(events[0], cls)
    return events[0]


def utc(epoch):
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


# -- envelope --------------------------------------------------------------
def test_text_message_and_common_fields():
    msg = only("messages_text")
    assert (msg.field, msg.waba_id) == ("messages", WABA)
    assert (msg.phone_number_id, msg.display_phone_number) == (PHONE_ID, DISPLAY)
    assert msg.wamid == "wamid.IN-TEXT"
    assert msg.message_type == "text"
    assert msg.text == "Bonjour, je voudrais un devis"
    assert (msg.from_wa_id, msg.from_user_id) == (WA_ID, BSUID)
    # The fixture carries the name as Meta's \u00e9 escape.
    assert msg.profile_name == "Amélie Dupont"
    assert msg.timestamp == utc(1795165200)
    assert msg.timestamp.tzinfo is timezone.utc
    assert (msg.context_wamid, msg.forwarded, msg.errors) == (None, False, [])
    assert msg.raw["id"] == "wamid.IN-TEXT"


def test_body_may_be_bytes_str_or_dict():
    raw = (FIXTURES / "messages_text.json").read_bytes()
    assert (
        parse_webhook(raw)
        == parse_webhook(raw.decode())
        == parse_webhook(json.loads(raw))
    )


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"{", "[1, 2]", b'"text"', b"null", b"\xff\xfe\x00", None, 42],
)
def test_not_json_or_not_object_raises_value_error(body):
    with pytest.raises(ValueError):
        parse_webhook(body)


def test_deeply_nested_body_is_a_value_error_not_a_crash():
    with pytest.raises(ValueError):
        parse_webhook("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize("obj", ["page", "instagram", None, 1, ["whatsapp"]])
def test_other_objects_are_ignored(obj):
    body = load("messages_text")
    body["object"] = obj
    assert parse_webhook(body) == []


def test_empty_or_odd_entries_yield_nothing():
    base = {"object": "whatsapp_business_account"}
    assert parse_webhook(base) == []
    assert parse_webhook({**base, "entry": None}) == []
    assert parse_webhook({**base, "entry": [1, "x", None, {"changes": "nope"}]}) == []


# -- each inbound type -----------------------------------------------------
def test_reply_context():
    msg = only("messages_text_reply")
    assert msg.context_wamid == "wamid.OUT-A1"
    assert msg.context_from == DISPLAY
    assert msg.text == "Oui, c'est bien ça"
    assert not msg.forwarded


def test_forwarded_and_frequently_forwarded():
    fwd, many = parse("messages_forwarded")
    assert (fwd.forwarded, fwd.frequently_forwarded, fwd.context_wamid) == (
        True,
        False,
        None,
    )
    assert (many.forwarded, many.frequently_forwarded) == (True, True)
    assert many.message_type == "image" and many.media.id == "1480001122330001"


def test_image():
    msg = only("messages_image")
    assert msg.message_type == "image"
    assert msg.media.id == "1480001122334455"
    assert msg.media.mime_type == "image/jpeg"
    assert msg.media.sha256 == "q3G2aW1hZ2Utc2hhMjU2"
    assert msg.media.caption == msg.text == "Compteur"
    assert msg.media.url.startswith("https://lookaside.fbsbx.com/")
    assert not msg.media.voice and not msg.media.animated


def test_document():
    msg = only("messages_document")
    assert msg.media.filename == "Devis-2026-117.pdf"
    assert msg.media.mime_type == "application/pdf"
    assert msg.text == "Signé"


def test_voice_note():
    msg = only("messages_audio_voice")
    assert msg.message_type == "audio"
    assert msg.media.voice is True
    assert msg.media.mime_type == "audio/ogg; codecs=opus"
    assert msg.text is None


def test_video_and_sticker():
    video = only("messages_video")
    assert (video.media.id, video.text) == ("1480001122334488", "Fuite")
    sticker = only("messages_sticker")
    assert sticker.message_type == "sticker"
    assert sticker.media.animated is True
    assert sticker.media.mime_type == "image/webp"


def test_location():
    msg = only("messages_location")
    assert msg.location == {
        "latitude": 48.8583701,
        "longitude": 2.2944813,
        "name": "Tour Eiffel",
        "address": "Champ de Mars, 75007 Paris",
        "url": None,
    }


def test_shared_contacts():
    msg = only("messages_contacts")
    assert len(msg.contacts) == 1
    assert msg.contacts[0]["name"]["formatted_name"] == "Marc Lefèvre"
    assert msg.contacts[0]["phones"][0]["wa_id"] == "33698765432"
    # The sender still comes from value.contacts, not from the shared card.
    assert msg.from_wa_id == WA_ID and msg.profile_name == "Amélie Dupont"


def test_interactive_button_reply():
    msg = only("messages_interactive_button_reply")
    assert msg.interactive == {
        "type": "button_reply",
        "id": "appt_confirm_8812",
        "title": "Confirmer",
        "description": None,
    }
    assert msg.text == "Confirmer"
    assert msg.context_wamid == "wamid.OUT-BUTTONS"


def test_interactive_list_reply():
    msg = only("messages_interactive_list_reply")
    assert msg.interactive["type"] == "list_reply"
    assert msg.interactive["id"] == "slot_2026-11-23T10:00"
    assert msg.interactive["description"] == "Agence Lyon"
    assert msg.text == "Lun. 23/11 10:00"


def test_interactive_flow_reply():
    msg = only("messages_interactive_nfm_reply")
    assert msg.interactive["type"] == "nfm_reply"
    assert msg.interactive["response_data"] == {
        "flow_token": "tok-7781",
        "appointment_date": "2026-11-24",
    }
    assert isinstance(msg.interactive["response_json"], str)
    assert msg.text == "Sent"


def test_interactive_call_permission_reply():
    msg = only("messages_interactive_call_permission_reply")
    assert msg.interactive["type"] == "call_permission_reply"
    assert msg.interactive["response"] == "accept"
    assert msg.interactive["response_source"] == "user_action"
    assert msg.interactive["expiration_timestamp"] == 1795770025


def test_template_quick_reply_button():
    msg = only("messages_button")
    assert msg.message_type == "button"
    assert msg.button == {"text": "Ne plus recevoir", "payload": "STOP_PROMO"}
    assert msg.text == "Ne plus recevoir"
    assert msg.context_wamid == "wamid.OUT-TEMPLATE"


def test_reaction_and_removed_reaction():
    added = only("messages_reaction")
    assert added.reaction == {
        "message_id": "wamid.OUT-ANY",
        "emoji": "👍",
        "removed": False,
    }
    removed = only("messages_reaction_removed")
    assert removed.reaction == {
        "message_id": "wamid.OUT-ANY",
        "emoji": None,
        "removed": True,
    }


def test_order_numbers_as_strings_are_normalised():
    order = only("messages_order").order
    assert order["catalog_id"] == "354160437000001"
    assert order["text"] is None
    first, second = order["product_items"]
    assert first == {
        "product_retailer_id": "LIC-PRO",
        "quantity": 3,
        "item_price": 49.0,
        "currency": "EUR",
    }
    assert (second["quantity"], second["item_price"]) == (1, 120.5)


def test_system_number_change_without_contacts():
    msg = only("messages_system")
    assert msg.message_type == "system"
    assert msg.system["type"] == "user_changed_number"
    assert msg.system["wa_id"] == "33698001122"
    assert msg.system["user_id"] == BSUID
    assert msg.from_wa_id == WA_ID
    assert msg.profile_name is None


@pytest.mark.parametrize(
    ("name", "kind"),
    [("messages_unsupported", "poll"), ("messages_unknown_legacy", None)],
)
def test_unsupported_messages_carry_their_error(name, kind):
    msg = only(name)
    assert msg.unsupported_type == kind
    assert msg.errors[0].code == 131051
    assert msg.errors[0].details
    assert msg.text is None


def test_request_welcome():
    msg = only("messages_request_welcome")
    assert msg.message_type == "request_welcome"
    assert msg.wamid == "wamid.IN-WELCOME" and msg.text is None


def test_edit_and_revoke():
    edit = only("messages_edit")
    assert edit.message_type == "edit"
    assert edit.original_wamid == "wamid.IN-TEXT"
    assert edit.edited_message_type == "text"
    assert edit.text == "Bonjour, je voudrais deux devis"
    revoke = only("messages_revoke")
    assert (revoke.message_type, revoke.original_wamid) == ("revoke", "wamid.IN-TEXT")
    assert revoke.text is None


def test_referral_from_an_ad():
    msg = only("messages_referral")
    assert msg.referral["source_type"] == "ad"
    assert msg.referral["ctwa_clid"].startswith("ARAk")
    assert msg.text == "Je viens de votre pub"


def test_group_message():
    assert only("messages_group").group_id == "120363000000000001"


def test_sender_known_only_by_bsuid():
    msg = only("messages_bsuid_only")
    assert msg.from_wa_id is None
    assert msg.from_user_id == "FR.8830000000000000001"
    assert msg.username == "@julien.martin"
    assert msg.profile_name == "Julien"


def test_bsuid_taken_from_contacts_when_message_lacks_it():
    body = load("messages_bsuid_only")
    del body["entry"][0]["changes"][0]["value"]["messages"][0]["from_user_id"]
    (msg,) = parse_webhook(body)
    assert msg.from_user_id == "FR.8830000000000000001"
    assert msg.from_wa_id is None


def test_contact_of_another_sender_is_not_borrowed():
    body = load("messages_text")
    value = body["entry"][0]["changes"][0]["value"]
    value["contacts"] = [{"profile": {"name": "Someone Else"}, "wa_id": "34600000000"}]
    (msg,) = parse_webhook(body)
    assert msg.profile_name is None
    assert msg.from_wa_id == WA_ID


def test_interactive_without_object_and_value_error():
    msg, errors = parse("messages_interactive_without_object")
    assert msg.message_type == "interactive" and msg.interactive is None
    assert isinstance(errors, ValueErrors)
    assert errors.errors[0].code == 131000


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda path: path.stem)
def test_dict_fields_are_json_serialisable(path):
    # The Odoo layer stores them in Json fields as they are.
    for event in parse_webhook(path.read_bytes()):
        for name in ("location", "contacts", "interactive", "button", "reaction"):
            json.dumps(getattr(event, name, None))
        for name in ("order", "system", "referral", "referred_product", "details"):
            json.dumps(getattr(event, name, None))


# -- statuses --------------------------------------------------------------
def test_statuses_sent_delivered_read_failed():
    sent, delivered, read, failed = parse("statuses")
    assert all(isinstance(event, StatusUpdate) for event in (sent, delivered, read))
    assert [e.status for e in (sent, delivered, read, failed)] == [
        "sent",
        "delivered",
        "read",
        "failed",
    ]
    assert sent.wamid == "wamid.OUT-A1"
    assert sent.biz_opaque_callback_data == "odoo:whatsapp.message:42"
    assert (sent.recipient_id, sent.recipient_user_id) == (WA_ID, BSUID)
    assert delivered.timestamp == utc(1795165403)
    assert (delivered.pricing_model, delivered.pricing_type) == ("PMP", "regular")
    assert (delivered.pricing_category, delivered.billable) == ("utility", True)
    assert read.pricing_model is None and read.errors == []
    assert failed.recipient_user_id is None
    (error,) = failed.errors
    assert isinstance(error, ErrorInfo)
    assert (error.code, error.title) == (131047, "Re-engagement message")
    assert "24 hours" in error.details
    assert error.href.startswith("https://")
    assert error.raw["code"] == 131047


def test_played_status_bsuid_only_and_legacy_conversation():
    played, legacy = parse("statuses_played_bsuid")
    assert played.status == "played"
    assert played.recipient_id is None
    assert played.recipient_user_id == "FR.8830000000000000001"
    assert played.parent_recipient_user_id == "FR.PARENT.0001"
    assert legacy.conversation_id == "c0ffee00000000000000000000000001"
    assert legacy.conversation_category == "service"
    assert legacy.conversation_expiration == utc(1795252101)
    assert (legacy.pricing_type, legacy.billable) == ("free_customer_service", False)


def test_unknown_status_value_is_kept_lowercased():
    body = load("statuses")
    body["entry"][0]["changes"][0]["value"]["statuses"][0]["status"] = "DELETED"
    assert parse_webhook(body)[0].status == "deleted"


def test_value_level_errors():
    event = only("value_errors", ValueErrors)
    assert event.phone_number_id == PHONE_ID
    assert [(e.code, e.title) for e in event.errors] == [
        (131000, "Something went wrong")
    ]


# -- management fields -----------------------------------------------------
def test_template_status_update():
    event = only("message_template_status_update", TemplateStatusUpdate)
    assert event.field == "message_template_status_update"
    assert event.template_id == "774400112244"  # number in the webhook
    assert (event.name, event.language) == ("rappel_rdv", "fr")
    assert (event.event, event.reason, event.category) == (
        "REJECTED",
        "INCORRECT_CATEGORY",
        "UTILITY",
    )
    assert event.rejection_info["recommendation"]
    assert event.phone_number_id is None and event.waba_id == WABA
    assert event.timestamp == utc(1795166000)


def test_template_quality_update():
    event = only("message_template_quality_update", TemplateQualityUpdate)
    assert (event.template_id, event.name) == ("774400112245", "promo_hiver")
    assert (event.previous_quality, event.new_quality) == ("GREEN", "YELLOW")


def test_template_category_update():
    event = only("template_category_update", TemplateCategoryUpdate)
    assert (event.previous_category, event.new_category) == ("UTILITY", "MARKETING")
    assert event.language == "fr"


def test_phone_number_quality_update():
    event = only("phone_number_quality_update", PhoneNumberQualityUpdate)
    assert event.display_phone_number == DISPLAY
    assert event.phone_number_id is None
    assert (event.event, event.current_limit, event.old_limit) == (
        "DOWNGRADE",
        "TIER_1K",
        "TIER_10K",
    )
    assert event.max_daily_conversations_per_business == "1K"
    assert event.messaging_limit == "TIER_1K"
    # Without current_limit (announced for removal), the portfolio limit remains.
    later = copy.deepcopy(load("phone_number_quality_update"))
    del later["entry"][0]["changes"][0]["value"]["current_limit"]
    assert parse_webhook(later)[0].messaging_limit == "1K"


def test_account_update():
    event = only("account_update", AccountUpdate)
    assert event.event == "ACCOUNT_RESTRICTION"
    assert "event" not in event.details
    assert event.details["restriction_info"][0]["restriction_type"]
    assert event.blocks_account


@pytest.mark.parametrize(
    ("event", "details", "blocks"),
    [
        ("ACCOUNT_VIOLATION", {"violation_info": {"violation_type": "SPAM"}}, True),
        ("DISABLED_UPDATE", {"ban_info": {"waba_ban_state": ["DISABLE"]}}, True),
        (
            "DISABLED_UPDATE",
            {"ban_info": {"waba_ban_state": "SCHEDULE_FOR_DISABLE"}},
            True,
        ),
        ("DISABLED_UPDATE", {}, True),
        ("DISABLED_UPDATE", {"ban_info": {"waba_ban_state": ["REINSTATE"]}}, False),
        ("VERIFIED_ACCOUNT", {}, False),
        ("PARTNER_ADDED", {}, False),
    ],
)
def test_account_update_blocks_account(event, details, blocks):
    assert (
        AccountUpdate(
            field="account_update", event=event, details=details
        ).blocks_account
        is blocks
    )


def test_user_preferences_stop_and_resume():
    stop, resume = parse("user_preferences")
    assert isinstance(stop, UserPreferenceUpdate)
    assert (stop.category, stop.value) == ("marketing_messages", "stop")
    assert (stop.wa_id, stop.user_id) == (WA_ID, BSUID)
    assert stop.timestamp == utc(1795166500)
    assert resume.value == "resume"
    assert stop.phone_number_id == PHONE_ID


def test_unknown_field_becomes_unknown_event():
    event = only("unknown_field", UnknownEvent)
    assert event.field == "business_capability_update"
    assert event.value["max_phone_numbers_per_business"] == 2
    assert event.waba_id == WABA


def test_known_field_with_nothing_usable_becomes_unknown_event():
    for value in ({}, [], "text", None, {"messaging_product": "whatsapp"}):
        body = {
            "object": "whatsapp_business_account",
            "entry": [{"id": WABA, "changes": [{"field": "messages", "value": value}]}],
        }
        (event,) = parse_webhook(body)
        assert isinstance(event, UnknownEvent)
        assert event.field == "messages"
        assert isinstance(event.value, dict)


# -- batches ---------------------------------------------------------------
def test_batch_with_two_wabas_and_three_numbers():
    events = parse("batch")
    summary = [
        (type(e).__name__, e.waba_id, e.phone_number_id, getattr(e, "wamid", None))
        for e in events
    ]
    assert summary == [
        ("InboundMessage", WABA, PHONE_ID, "wamid.BATCH-1"),
        ("InboundMessage", WABA, PHONE_ID, "wamid.BATCH-2"),
        ("StatusUpdate", WABA, "109000000000002", "wamid.OUT-B1"),
        ("StatusUpdate", WABA, "109000000000002", "wamid.OUT-B1"),
        ("InboundMessage", "104000000000002", "109000000000003", "wamid.BATCH-3"),
        ("TemplateStatusUpdate", "104000000000002", None, None),
    ]
    first, second = events[0], events[1]
    # Each sender is matched with its own contact entry.
    assert (first.from_wa_id, first.profile_name) == (WA_ID, "Amélie Dupont")
    assert (second.from_wa_id, second.profile_name) == ("34611223344", "Lucía García")
    assert events[2].display_phone_number == "15550100002"
    assert events[5].event == "APPROVED"


# -- opt-out keywords ------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    ["STOP", "stop", "  Stop \n", "BAJA", "parar", "Cancelar", "unsubscribe", "STOP."],
)
def test_opt_out_keywords(text):
    assert is_opt_out_text(text)


@pytest.mark.parametrize(
    "text", ["stop please", "Don't stop", "STOPPED", "", None, 42, "arrêt"]
)
def test_not_opt_out(text):
    assert not is_opt_out_text(text)


def test_is_opt_out_property():
    body = load("messages_text")
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    message["text"]["body"] = " Stop "
    assert parse_webhook(body)[0].is_opt_out
    assert not only("messages_text").is_opt_out
    # A reaction or caption saying STOP is not a keyword message.
    assert not only("messages_image").is_opt_out


# -- robustness ------------------------------------------------------------
def test_bad_timestamps_become_none():
    for value in (
        "",
        "soon",
        None,
        [],
        {},
        True,
        -5,
        "1e999",
        "nan",
        10**30,
        "9" * 5000,
    ):
        body = load("messages_text")
        body["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = value
        (msg,) = parse_webhook(body)
        assert msg.timestamp is None, value


def test_numeric_and_float_timestamps_are_accepted():
    body = load("messages_text")
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    for value in (1795165200, 1795165200.0, " 1795165200 "):
        message["timestamp"] = value
        assert parse_webhook(body)[0].timestamp == utc(1795165200)


def test_wrong_types_everywhere_degrade_gracefully():
    body = load("messages_image")
    value = body["entry"][0]["changes"][0]["value"]
    value["metadata"] = ["not", "a", "dict"]
    value["contacts"] = {"wa_id": 33612345678, "profile": None}
    message = value["messages"][0]
    message["id"] = 12345
    message["from"] = 33612345678
    message["image"] = "not a dict"
    message["context"] = {"id": None, "forwarded": "true"}
    message["errors"] = [None, "x", {"code": "131051"}]
    (msg,) = parse_webhook(body)
    assert (msg.phone_number_id, msg.display_phone_number) == (None, None)
    assert msg.wamid == "12345"
    assert msg.from_wa_id == WA_ID  # a number is turned into its digits
    assert msg.media is None
    assert msg.forwarded is True
    assert [e.code for e in msg.errors] == [131051]


def test_hostile_type_name_does_not_read_other_keys():
    body = load("messages_text")
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    message["type"] = "from"
    (msg,) = parse_webhook(body)
    assert msg.message_type == "from" and msg.text is None


def test_repr_does_not_leak_message_content_or_phone_numbers():
    for name in ("messages_text", "messages_location", "statuses", "user_preferences"):
        for event in parse(name):
            text = repr(event)
            assert "Bonjour" not in text and "Eiffel" not in text
            assert WA_ID not in text


def test_a_parser_bug_is_contained(monkeypatch, caplog):
    def broken(value, base):
        raise KeyError("33612345678")

    monkeypatch.setitem(events_module._FIELD_PARSERS, "messages", broken)
    with caplog.at_level(logging.DEBUG, logger=events_module.__name__):
        events = parse("batch")
    # Each broken change is kept as a failure naming the error, so that the inbox
    # marks the body failed instead of dropping it; the other changes parse.
    assert [type(e).__name__ for e in events] == [
        "ParseFailure",
        "ParseFailure",
        "ParseFailure",
        "TemplateStatusUpdate",
    ]
    assert all(e.error.startswith("KeyError") for e in events[:3])
    assert "KeyError" in caplog.text
    error_lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert error_lines and all("33612345678" not in line for line in error_lines)


# -- fuzzing ---------------------------------------------------------------
class _ParseBugs(logging.Handler):
    """Collects the safety-net log lines: they mean a bug in the parser."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@contextlib.contextmanager
def no_parser_bug():
    handler = _ParseBugs()
    logger = logging.getLogger(events_module.__name__)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert not handler.records, [r.getMessage() for r in handler.records]


JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(
        ["messages", "text", "image", "interactive", "1795165200", "", "edit", "stop"]
    )
)
FUZZ_KEYS = [
    "object",
    "entry",
    "id",
    "time",
    "changes",
    "field",
    "value",
    "metadata",
    "contacts",
    "messages",
    "statuses",
    "errors",
    "type",
    "from",
    "timestamp",
    "text",
    "body",
    "image",
    "interactive",
    "context",
    "reaction",
    "order",
    "system",
    "edit",
    "message",
    "pricing",
    "conversation",
    "event",
    "user_preferences",
    "profile",
    "wa_id",
    "user_id",
    "button_reply",
    "nfm_reply",
    "response_json",
    "emoji",
    "product_items",
    "x",
]
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FUZZ_KEYS), children, max_size=6)
    ),
    max_leaves=15,
)
MESSAGE_TYPES = [
    "text",
    "image",
    "document",
    "audio",
    "video",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "reaction",
    "order",
    "system",
    "unsupported",
    "unknown",
    "request_welcome",
    "edit",
    "revoke",
]
# Message-shaped dicts reach the type-specific code that random dicts rarely do.
MESSAGES = st.builds(
    lambda kind, content, extra: {**extra, "type": kind, kind: content},
    st.sampled_from(MESSAGE_TYPES),
    JSON_VALUES,
    st.dictionaries(st.sampled_from(FUZZ_KEYS), JSON_VALUES, max_size=4),
)
MESSAGES_VALUES = st.fixed_dictionaries(
    {},
    optional={
        "metadata": JSON_VALUES,
        "contacts": JSON_VALUES,
        "messages": st.lists(MESSAGES, max_size=3),
        "statuses": st.lists(
            st.dictionaries(st.sampled_from(FUZZ_KEYS), JSON_VALUES), max_size=3
        ),
        "errors": JSON_VALUES,
    },
)
FIELDS = st.sampled_from([*sorted(events_module._FIELD_PARSERS), "other", ""])


@settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(field=FIELDS, value=JSON_VALUES | MESSAGES_VALUES, entry_extra=JSON_VALUES)
def test_fuzz_random_structures_never_raise(field, value, entry_extra):
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": entry_extra,
                "time": entry_extra,
                "changes": [{"field": field, "value": value}],
            },
            entry_extra,
        ],
    }
    with no_parser_bug():
        parsed = parse_webhook(body)
        parse_webhook(json.dumps(body))
    assert all(isinstance(event, events_module.Event) for event in parsed)


def _paths(node, prefix=()):
    """The key path of every dict entry and list item of a JSON document."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _mutate(body, path, replacement):
    """Copy of ``body`` with the node at ``path`` replaced (or deleted)."""
    body = copy.deepcopy(body)
    container = body
    for key in path[:-1]:
        container = container[key]
    if replacement is _DELETE and isinstance(container, dict):
        del container[path[-1]]
    else:
        container[path[-1]] = None if replacement is _DELETE else replacement
    return body


_DELETE = object()
FIXTURE_BODIES = [json.loads(path.read_text()) for path in ALL_FIXTURES]
FIXTURE_PATHS = [list(_paths(body)) for body in FIXTURE_BODIES]


@settings(max_examples=200, deadline=None, database=None)
@given(
    index=st.integers(min_value=0, max_value=len(FIXTURE_BODIES) - 1),
    position=st.integers(min_value=0, max_value=10_000),
    replacement=JSON_VALUES,
    delete=st.booleans(),
)
def test_fuzz_mutated_fixtures_never_raise(index, position, replacement, delete):
    body = FIXTURE_BODIES[index]
    paths = FIXTURE_PATHS[index]
    path = paths[position % len(paths)]
    with no_parser_bug():
        parse_webhook(_mutate(body, path, _DELETE if delete else replacement))


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda path: path.stem)
def test_every_fixture_parses_without_unknown_events(path):
    events = parse_webhook(path.read_bytes())
    assert events
    unknown = [e for e in events if isinstance(e, UnknownEvent)]
    assert len(unknown) == (1 if path.stem == "unknown_field" else 0)
    assert all(e.waba_id for e in events)


JUNK = (None, [], {}, "", "x", 0, -1, 1.5, True, [None], {"x": None}, _DELETE)


def test_every_node_of_every_fixture_replaced_by_junk_never_raises():
    # Systematic counterpart of the random fuzzing: each key or list item of each
    # fixture, in turn, is deleted or replaced by each junk value.
    count = 0
    with no_parser_bug():
        for body, paths in zip(FIXTURE_BODIES, FIXTURE_PATHS, strict=True):
            for path in paths:
                for junk in JUNK:
                    parse_webhook(_mutate(body, path, junk))
                    count += 1
    assert count > 10_000
