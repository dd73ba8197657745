"""Exact JSON produced by the message builders."""

import json

import pytest

import wa_cloud.payloads as p

BASE = {"messaging_product": "whatsapp", "recipient_type": "individual"}


def expected(to="33612345678", **rest):
    return {**BASE, "to": to, **rest}


# -- recipients ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,result",
    [
        ("33612345678", {"to": "33612345678"}),
        ("+33 6 12 34 56 78", {"to": "33612345678"}),
        ("+1 (555) 010-0001", {"to": "15550100001"}),
        (33612345678, {"to": "33612345678"}),
        ("FR.1304857236419057341", {"recipient": "FR.1304857236419057341"}),
        ("  US.99887766  ", {"recipient": "US.99887766"}),
    ],
)
def test_normalize_recipient(raw, result):
    assert p.normalize_recipient(raw) == result


@pytest.mark.parametrize("raw", [None, "", "   ", "+33", "1234567890123456", "33 ٦١٢"])
def test_normalize_recipient_rejects_garbage(raw):
    with pytest.raises(ValueError):
        p.normalize_recipient(raw)


# -- text ------------------------------------------------------------------------


def test_text_payload_exact():
    assert p.text_payload("+33 6 12 34 56 78", "Votre devis S00117 est prêt.") == {
        **BASE,
        "to": "33612345678",
        "type": "text",
        "text": {"preview_url": False, "body": "Votre devis S00117 est prêt."},
    }


def test_text_with_preview_reply_context_and_callback_data():
    payload = p.text_payload(
        "33612345678",
        "See https://acme.example",
        preview_url=True,
        reply_to="wamid.IN-TEXT",
        biz_opaque_callback_data="whatsapp.message,42",
    )
    assert payload == expected(
        type="text",
        text={"preview_url": True, "body": "See https://acme.example"},
        context={"message_id": "wamid.IN-TEXT"},
        biz_opaque_callback_data="whatsapp.message,42",
    )


def test_text_to_bsuid_uses_recipient():
    payload = p.text_payload("FR.1304857236419057341", "Bonjour")
    assert payload["recipient"] == "FR.1304857236419057341"
    assert "to" not in payload


def test_text_limits():
    assert p.text_payload("33612345678", "x" * 4096)["text"]["body"] == "x" * 4096
    with pytest.raises(ValueError, match="4096"):
        p.text_payload("33612345678", "x" * 4097)
    with pytest.raises(ValueError):
        p.text_payload("33612345678", "")
    with pytest.raises(ValueError, match="512"):
        p.text_payload("33612345678", "hi", biz_opaque_callback_data="c" * 513)


def test_payload_is_json_serialisable_with_unicode():
    payload = p.text_payload("33612345678", "Démo 👍")
    assert json.loads(json.dumps(payload)) == payload


# -- templates -------------------------------------------------------------------


def test_template_with_all_component_kinds():
    components = [
        p.header_component(
            [p.media_param("image", link="https://erp.example.com/logo.png")]
        ),
        p.body_component([p.text_param("Amélie"), p.text_param("S00117")]),
        p.url_button(0, "S00117"),
        p.quick_reply_button(1, "STOP_PROMO"),
    ]
    payload = p.template_payload(
        "33612345678",
        "order_update_v2",
        "fr",
        components=components,
        biz_opaque_callback_data="whatsapp.message,7",
    )
    assert payload == expected(
        type="template",
        template={
            "name": "order_update_v2",
            "language": {"code": "fr"},
            "components": [
                {
                    "type": "header",
                    "parameters": [
                        {
                            "type": "image",
                            "image": {"link": "https://erp.example.com/logo.png"},
                        }
                    ],
                },
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Amélie"},
                        {"type": "text", "text": "S00117"},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{"type": "text", "text": "S00117"}],
                },
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": "1",
                    "parameters": [{"type": "payload", "payload": "STOP_PROMO"}],
                },
            ],
        },
        biz_opaque_callback_data="whatsapp.message,7",
    )


def test_template_without_components_and_with_language_dict():
    payload = p.template_payload(
        "33612345678", "hello_world", {"code": "en_US", "policy": "deterministic"}
    )
    assert payload == expected(
        type="template",
        template={
            "name": "hello_world",
            "language": {"code": "en_US", "policy": "deterministic"},
        },
    )


def test_template_parameter_builders():
    assert p.text_param(
        "Line one\nline\ttwo      end", parameter_name="first_name"
    ) == {
        "type": "text",
        "text": "Line one line two    end",
        "parameter_name": "first_name",
    }
    assert p.currency_param("€12.50", "EUR", 12500) == {
        "type": "currency",
        "currency": {"fallback_value": "€12.50", "code": "EUR", "amount_1000": 12500},
    }
    assert p.date_time_param("23 nov. 2026") == {
        "type": "date_time",
        "date_time": {"fallback_value": "23 nov. 2026"},
    }
    assert p.media_param("document", media_id="148", filename="Devis.pdf") == {
        "type": "document",
        "document": {"id": "148", "filename": "Devis.pdf"},
    }
    assert p.location_param(45.764043, 4.835659, name="Agence Lyon") == {
        "type": "location",
        "location": {
            "latitude": 45.764043,
            "longitude": 4.835659,
            "name": "Agence Lyon",
        },
    }
    assert p.copy_code_button(2, "PROMO10") == {
        "type": "button",
        "sub_type": "copy_code",
        "index": "2",
        "parameters": [{"type": "coupon_code", "coupon_code": "PROMO10"}],
    }


def test_template_validation():
    with pytest.raises(ValueError):
        p.text_param("First-Name", parameter_name="First-Name")
    with pytest.raises(ValueError):
        p.text_param(" \n ")
    with pytest.raises(ValueError):
        p.template_payload("33612345678", "", "fr")
    with pytest.raises(ValueError):
        p.template_payload("33612345678", "x", "fr", components=[{"parameters": []}])
    with pytest.raises(ValueError):
        p.media_param("image", media_id="1", filename="a.png")


# -- media -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,content",
    [
        (
            {
                "media_type": "image",
                "media_id": "1480001122339999",
                "caption": "Plan d'installation",
            },
            {"id": "1480001122339999", "caption": "Plan d'installation"},
        ),
        (
            {
                "media_type": "document",
                "link": "https://erp.example.com/web/content/871?access_token=9f2c",
                "filename": "Devis-S00117.pdf",
                "caption": "Devis",
            },
            {
                "link": "https://erp.example.com/web/content/871?access_token=9f2c",
                "caption": "Devis",
                "filename": "Devis-S00117.pdf",
            },
        ),
        (
            {"media_type": "audio", "media_id": "1480001122338888"},
            {"id": "1480001122338888"},
        ),
        (
            {
                "media_type": "video",
                "link": "https://cdn.example.com/demo.mp4",
                "caption": "Démo",
            },
            {"link": "https://cdn.example.com/demo.mp4", "caption": "Démo"},
        ),
        (
            {"media_type": "sticker", "media_id": "1480001122337777"},
            {"id": "1480001122337777"},
        ),
    ],
)
def test_media_payload_exact(kwargs, content):
    media_type = kwargs["media_type"]
    assert p.media_payload("33612345678", **kwargs) == expected(
        type=media_type, **{media_type: content}
    )


def test_media_reply_context():
    payload = p.media_payload(
        "33612345678", "image", media_id="1", reply_to="wamid.IN-IMG"
    )
    assert payload["context"] == {"message_id": "wamid.IN-IMG"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"media_type": "image"},  # neither id nor link
        {"media_type": "image", "media_id": "1", "link": "https://x.example/a.png"},
        {"media_type": "audio", "media_id": "1", "caption": "no captions on audio"},
        {"media_type": "sticker", "media_id": "1", "caption": "nor on stickers"},
        {"media_type": "image", "media_id": "1", "filename": "only documents.png"},
        {"media_type": "image", "media_id": "1", "caption": "c" * 1025},
        {"media_type": "gif", "media_id": "1"},
    ],
)
def test_media_validation(kwargs):
    with pytest.raises(ValueError):
        p.media_payload("33612345678", **kwargs)


def test_caption_limit_is_inclusive():
    payload = p.media_payload("33612345678", "video", media_id="1", caption="c" * 1024)
    assert len(payload["video"]["caption"]) == 1024


# -- location and contacts -------------------------------------------------------


def test_location_payload_exact():
    payload = p.location_payload(
        "33612345678",
        45.764043,
        4.835659,
        name="Agence Lyon",
        address="10 Rue de la République, 69002 Lyon",
    )
    assert payload == expected(
        type="location",
        location={
            "latitude": 45.764043,
            "longitude": 4.835659,
            "name": "Agence Lyon",
            "address": "10 Rue de la République, 69002 Lyon",
        },
    )
    with pytest.raises(ValueError):
        p.location_payload("33612345678", 91, 0)


def test_contacts_payload_exact():
    card = {
        "name": {"formatted_name": "Support Acme", "first_name": "Support"},
        "phones": [{"phone": "+33 4 72 00 00 00", "type": "WORK"}],
        "emails": [{"email": "support@acme.example", "type": "WORK"}],
    }
    assert p.contacts_payload("33612345678", [card]) == expected(
        type="contacts", contacts=[card]
    )
    with pytest.raises(ValueError):
        p.contacts_payload("33612345678", [{"name": {"first_name": "x"}}])
    with pytest.raises(ValueError):
        p.contacts_payload("33612345678", [])


# -- interactive -----------------------------------------------------------------


def test_interactive_buttons_exact():
    payload = p.interactive_buttons_payload(
        "33612345678",
        "Confirmez-vous le RDV du 23/11 à 10h ?",
        [
            ("appt_confirm_8812", "Confirmer"),
            {"id": "appt_move_8812", "title": "Déplacer"},
        ],
        footer="Acme",
    )
    assert payload == expected(
        type="interactive",
        interactive={
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
    )


def test_interactive_buttons_text_header():
    payload = p.interactive_buttons_payload(
        "33612345678", "Body", [("a", "A")], header="Rendez-vous"
    )
    assert payload["interactive"]["header"] == {"type": "text", "text": "Rendez-vous"}


@pytest.mark.parametrize(
    "buttons",
    [
        [],
        [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")],
        [("a", "Same"), ("b", "Same")],
        [("a", "x" * 21)],
        [("", "Empty id")],
    ],
)
def test_interactive_buttons_validation(buttons):
    with pytest.raises(ValueError):
        p.interactive_buttons_payload("33612345678", "Body", buttons)


def test_interactive_list_exact():
    payload = p.interactive_list_payload(
        "33612345678",
        "Choisissez un créneau",
        "Créneaux",
        [
            {
                "title": "Lundi",
                "rows": [
                    {
                        "id": "slot_2026-11-23T10:00",
                        "title": "Lun. 23/11 10:00",
                        "description": "Agence Lyon",
                    },
                    ("slot_2026-11-23T14:00", "Lun. 23/11 14:00"),
                ],
            }
        ],
    )
    assert payload == expected(
        type="interactive",
        interactive={
            "type": "list",
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
                            },
                            {
                                "id": "slot_2026-11-23T14:00",
                                "title": "Lun. 23/11 14:00",
                            },
                        ],
                    }
                ],
            },
        },
    )


def test_interactive_list_validation():
    rows = [(f"r{i}", f"Row {i}") for i in range(11)]
    with pytest.raises(ValueError, match="10 rows"):
        p.interactive_list_payload(
            "33612345678", "B", "Menu", [{"title": "S", "rows": rows}]
        )
    with pytest.raises(ValueError, match="title"):
        p.interactive_list_payload(
            "33612345678", "B", "Menu", [{"rows": [("a", "A")]}, {"rows": [("b", "B")]}]
        )
    with pytest.raises(ValueError):
        p.interactive_list_payload(
            "33612345678", "B", "x" * 21, [{"rows": [("a", "A")]}]
        )


# -- reaction and read -----------------------------------------------------------


def test_reaction_payload_exact_and_removal():
    assert p.reaction_payload("33612345678", "wamid.IN-TEXT", "👍") == expected(
        type="reaction", reaction={"message_id": "wamid.IN-TEXT", "emoji": "👍"}
    )
    removal = p.reaction_payload("33612345678", "wamid.IN-TEXT", "")
    assert removal["reaction"] == {"message_id": "wamid.IN-TEXT", "emoji": ""}


def test_read_payload_with_and_without_typing_indicator():
    assert p.read_payload("wamid.IN-TEXT") == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN-TEXT",
    }
    assert p.read_payload("wamid.IN-TEXT", typing_indicator=True) == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN-TEXT",
        "typing_indicator": {"type": "text"},
    }
    with pytest.raises(ValueError):
        p.read_payload("")


def test_builders_do_not_share_state():
    components = [p.body_component([p.text_param("A")])]
    first = p.template_payload("33612345678", "t", "fr", components=components)
    first["template"]["components"][0]["type"] = "mutated"
    second = p.template_payload("33612345678", "t", "fr", components=components)
    assert second["template"]["components"][0]["type"] == "body"
