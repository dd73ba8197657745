"""Pure builders for the JSON bodies of ``POST /{phone-number-id}/messages``.

Every builder returns a new dict, ready for ``json=``. Obvious mistakes raise
``ValueError`` here rather than a Meta error (and a wasted call) later.
"""

import re

__all__ = [
    "MAX_BUTTONS",
    "MAX_CALLBACK_DATA",
    "MAX_CAPTION",
    "MAX_TEXT_BODY",
    "MEDIA_TYPES",
    "body_component",
    "button_component",
    "contacts_payload",
    "copy_code_button",
    "currency_param",
    "date_time_param",
    "header_component",
    "interactive_buttons_payload",
    "interactive_list_payload",
    "location_param",
    "location_payload",
    "media_param",
    "media_payload",
    "normalize_recipient",
    "quick_reply_button",
    "reaction_payload",
    "read_payload",
    "sanitize_parameter_text",
    "template_payload",
    "text_param",
    "text_payload",
    "url_button",
]

MAX_TEXT_BODY = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 512
MAX_INTERACTIVE_BODY = 1024
MAX_HEADER_TEXT = 60
MAX_FOOTER_TEXT = 60
MIN_BUTTONS = 1
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_BUTTON_ID = 256
MAX_LIST_BUTTON = 20
MAX_SECTIONS = 10
MAX_LIST_ROWS = 10
MAX_ROW_ID = 200
MAX_ROW_TITLE = 24
MAX_ROW_DESCRIPTION = 72
# E.164 numbers have at most 15 digits; shorter than 7 is never a mobile number.
MIN_PHONE_DIGITS = 7
MAX_PHONE_DIGITS = 15

MEDIA_TYPES = ("image", "video", "document", "audio", "sticker")
CAPTION_TYPES = ("image", "video", "document")
HEADER_MEDIA_TYPES = ("image", "video", "document")

_PHONE_SEPARATORS = re.compile(r"[\s\-().+/]")


def normalize_recipient(to):
    """``{"to": digits}`` for a phone number, ``{"recipient": bsuid}`` for a BSUID.

    Phone numbers may carry ``+``, spaces, dashes, dots or parentheses. A BSUID
    (``"FR.1304857236419057341"``) is recognised by its letters.
    """
    if to is None:
        raise ValueError("recipient is required")
    text = str(to).strip()
    if not text:
        raise ValueError("recipient is required")
    if any(ch.isalpha() for ch in text):
        if any(ch.isspace() for ch in text):
            raise ValueError("a business-scoped user id cannot contain spaces")
        return {"recipient": text}
    digits = _PHONE_SEPARATORS.sub("", text)
    if not digits.isdigit() or not digits.isascii():
        raise ValueError("recipient is neither a phone number nor a user id")
    if not MIN_PHONE_DIGITS <= len(digits) <= MAX_PHONE_DIGITS:
        raise ValueError(
            f"phone number must have {MIN_PHONE_DIGITS} to {MAX_PHONE_DIGITS} digits"
        )
    return {"to": digits}


def _check_text(value, label, limit, *, required=True):
    if value is None or value == "":
        if required:
            raise ValueError(f"{label} is required")
        return
    if not isinstance(value, str):
        raise ValueError(f"{label} must be a string")
    if len(value) > limit:
        raise ValueError(f"{label} is {len(value)} characters long (max {limit})")


def _envelope(
    to, message_type, content, *, reply_to=None, biz_opaque_callback_data=None
):
    payload = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    payload.update(normalize_recipient(to))
    payload["type"] = message_type
    payload[message_type] = content
    if reply_to:
        payload["context"] = {"message_id": str(reply_to)}
    if biz_opaque_callback_data is not None:
        _check_text(
            biz_opaque_callback_data, "biz_opaque_callback_data", MAX_CALLBACK_DATA
        )
        payload["biz_opaque_callback_data"] = biz_opaque_callback_data
    return payload


def text_payload(
    to, body, *, preview_url=False, reply_to=None, biz_opaque_callback_data=None
):
    """Plain text message (``preview_url`` renders the first link)."""
    _check_text(body, "body", MAX_TEXT_BODY)
    return _envelope(
        to,
        "text",
        {"preview_url": bool(preview_url), "body": body},
        reply_to=reply_to,
        biz_opaque_callback_data=biz_opaque_callback_data,
    )


# -- template parameters and components ------------------------------------------

_EXCESS_SPACES = re.compile(r" {5,}")


def sanitize_parameter_text(value):
    """Make ``value`` acceptable as template parameter text.

    Meta rejects newlines, tabs and runs of more than 4 spaces (131009).
    """
    text = re.sub(r"[\r\n\t]+", " ", str(value))
    return _EXCESS_SPACES.sub("    ", text).strip()


def _named(param, parameter_name):
    if parameter_name:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", parameter_name):
            raise ValueError("parameter_name must be lowercase letters and underscores")
        param["parameter_name"] = parameter_name
    return param


def text_param(text, *, parameter_name=None, sanitize=True):
    """``{"type": "text", "text": ...}`` (sanitised unless told otherwise)."""
    value = sanitize_parameter_text(text) if sanitize else str(text)
    if not value:
        raise ValueError("template text parameter is empty")
    return _named({"type": "text", "text": value}, parameter_name)


def currency_param(fallback_value, code, amount_1000, *, parameter_name=None):
    """Currency parameter; ``amount_1000`` is the amount times 1000 (an int)."""
    param = {
        "type": "currency",
        "currency": {
            "fallback_value": str(fallback_value),
            "code": str(code),
            "amount_1000": int(amount_1000),
        },
    }
    return _named(param, parameter_name)


def date_time_param(fallback_value, *, parameter_name=None):
    """Date/time parameter, rendered by Meta as ``fallback_value``."""
    param = {"type": "date_time", "date_time": {"fallback_value": str(fallback_value)}}
    return _named(param, parameter_name)


def _media_object(media_type, media_id, link):
    if bool(media_id) == bool(link):
        raise ValueError(f"{media_type}: give exactly one of media_id or link")
    return {"id": str(media_id)} if media_id else {"link": str(link)}


def media_param(media_type, *, media_id=None, link=None, filename=None):
    """Header media parameter (image, video or document)."""
    if media_type not in HEADER_MEDIA_TYPES:
        raise ValueError(f"header media type must be one of {HEADER_MEDIA_TYPES}")
    media = _media_object(media_type, media_id, link)
    if filename:
        if media_type != "document":
            raise ValueError("only a document header takes a filename")
        media["filename"] = filename
    return {"type": media_type, media_type: media}


def location_param(latitude, longitude, *, name=None, address=None):
    """Header location parameter."""
    return {
        "type": "location",
        "location": _location(latitude, longitude, name, address),
    }


def header_component(parameters):
    return {"type": "header", "parameters": list(parameters)}


def body_component(parameters):
    return {"type": "body", "parameters": list(parameters)}


def button_component(sub_type, index, parameters):
    """Button component; Meta wants ``index`` as a string."""
    if int(index) < 0:
        raise ValueError("button index must not be negative")
    return {
        "type": "button",
        "sub_type": sub_type,
        "index": str(int(index)),
        "parameters": list(parameters),
    }


def quick_reply_button(index, payload):
    return button_component(
        "quick_reply", index, [{"type": "payload", "payload": payload}]
    )


def url_button(index, suffix):
    """URL button whose variable part (the suffix) is ``suffix``."""
    return button_component("url", index, [{"type": "text", "text": str(suffix)}])


def copy_code_button(index, coupon_code):
    return button_component(
        "copy_code", index, [{"type": "coupon_code", "coupon_code": str(coupon_code)}]
    )


def template_payload(
    to, name, language, *, components=None, reply_to=None, biz_opaque_callback_data=None
):
    """Template message. ``language`` is a code (``"fr"``) or a full dict."""
    _check_text(name, "template name", 512)
    if isinstance(language, dict):
        if not language.get("code"):
            raise ValueError("template language needs a code")
        language_obj = dict(language)
    else:
        _check_text(language, "template language", 15)
        language_obj = {"code": language}
    template = {"name": name, "language": language_obj}
    if components:
        for component in components:
            if not isinstance(component, dict) or not component.get("type"):
                raise ValueError("each template component needs a type")
        template["components"] = [dict(component) for component in components]
    return _envelope(
        to,
        "template",
        template,
        reply_to=reply_to,
        biz_opaque_callback_data=biz_opaque_callback_data,
    )


# -- media, location, contacts ---------------------------------------------------


def media_payload(
    to,
    media_type,
    *,
    media_id=None,
    link=None,
    caption=None,
    filename=None,
    reply_to=None,
    biz_opaque_callback_data=None,
):
    """Image, video, document, audio or sticker, by uploaded id or public link."""
    if media_type not in MEDIA_TYPES:
        raise ValueError(f"media_type must be one of {MEDIA_TYPES}")
    media = _media_object(media_type, media_id, link)
    if caption:
        if media_type not in CAPTION_TYPES:
            raise ValueError(f"{media_type} messages take no caption")
        _check_text(caption, "caption", MAX_CAPTION)
        media["caption"] = caption
    if filename:
        if media_type != "document":
            raise ValueError("only documents take a filename")
        media["filename"] = filename
    return _envelope(
        to,
        media_type,
        media,
        reply_to=reply_to,
        biz_opaque_callback_data=biz_opaque_callback_data,
    )


def _location(latitude, longitude, name, address):
    lat, lon = float(latitude), float(longitude)
    if not -90.0 <= lat <= 90.0 or not -180.0 <= lon <= 180.0:
        raise ValueError("latitude/longitude out of range")
    location = {"latitude": lat, "longitude": lon}
    if name:
        location["name"] = name
    if address:
        location["address"] = address
    return location


def location_payload(
    to,
    latitude,
    longitude,
    *,
    name=None,
    address=None,
    reply_to=None,
    biz_opaque_callback_data=None,
):
    return _envelope(
        to,
        "location",
        _location(latitude, longitude, name, address),
        reply_to=reply_to,
        biz_opaque_callback_data=biz_opaque_callback_data,
    )


def contacts_payload(to, contacts, *, reply_to=None, biz_opaque_callback_data=None):
    """Contact cards; each needs ``name.formatted_name``."""
    cards = list(contacts or [])
    if not cards:
        raise ValueError("at least one contact card is required")
    for card in cards:
        name = card.get("name") if isinstance(card, dict) else None
        if not isinstance(name, dict) or not name.get("formatted_name"):
            raise ValueError("each contact card needs name.formatted_name")
    return _envelope(
        to,
        "contacts",
        [dict(card) for card in cards],
        reply_to=reply_to,
        biz_opaque_callback_data=biz_opaque_callback_data,
    )


# -- interactive -----------------------------------------------------------------


def _interactive_header(header):
    if header is None:
        return None
    if isinstance(header, str):
        _check_text(header, "header", MAX_HEADER_TEXT)
        return {"type": "text", "text": header}
    if isinstance(header, dict) and header.get("type"):
        return dict(header)
    raise ValueError("header must be a string or a dict with a type")


def _interactive(kind, body, action, header, footer):
    _check_text(body, "body", MAX_INTERACTIVE_BODY)
    interactive = {"type": kind}
    header_obj = _interactive_header(header)
    if header_obj:
        interactive["header"] = header_obj
    interactive["body"] = {"text": body}
    if footer:
        _check_text(footer, "footer", MAX_FOOTER_TEXT)
        interactive["footer"] = {"text": footer}
    interactive["action"] = action
    return interactive


def _reply_button(button):
    if isinstance(button, dict):
        reply = button.get("reply", button)
        button_id, title = reply.get("id"), reply.get("title")
    else:
        button_id, title = button
    _check_text(button_id, "button id", MAX_BUTTON_ID)
    _check_text(title, "button title", MAX_BUTTON_TITLE)
    return {"type": "reply", "reply": {"id": button_id, "title": title}}


def interactive_buttons_payload(
    to,
    body,
    buttons,
    *,
    header=None,
    footer=None,
    reply_to=None,
    biz_opaque_callback_data=None,
):
    """Reply buttons: ``buttons`` is a list of ``(id, title)`` or dicts."""
    items = [_reply_button(button) for button in buttons or []]
    if not MIN_BUTTONS <= len(items) <= MAX_BUTTONS:
        raise ValueError(f"{MIN_BUTTONS} to {MAX_BUTTONS} buttons are required")
    titles = [item["reply"]["title"] for item in items]
    if len(set(titles)) != len(titles):
        raise ValueError("button titles must be unique")
    ids = [item["reply"]["id"] for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("button ids must be unique")
    interactive = _interactive("button", body, {"buttons": items}, header, footer)
    return _envelope(
        to,
        "interactive",
        interactive,
        reply_to=reply_to,
        biz_opaque_callback_data=biz_opaque_callback_data,
    )


def _list_row(row):
    if isinstance(row, dict):
        row_id, title, description = (
            row.get("id"),
            row.get("title"),
            row.get("description"),
        )
    else:
        row_id, title, *rest = row
        description = rest[0] if rest else None
    _check_text(row_id, "row id", MAX_ROW_ID)
    _check_text(title, "row title", MAX_ROW_TITLE)
    item = {"id": row_id, "title": title}
    if description:
        _check_text(description, "row description", MAX_ROW_DESCRIPTION)
        item["description"] = description
    return item


def interactive_list_payload(
    to,
    body,
    button,
    sections,
    *,
    header=None,
    footer=None,
    reply_to=None,
    biz_opaque_callback_data=None,
):
    """List message: ``sections`` is a list of ``{"title", "rows": [...]}``."""
    _check_text(button, "list button", MAX_LIST_BUTTON)
    sections = list(sections or [])
    if not 1 <= len(sections) <= MAX_SECTIONS:
        raise ValueError(f"1 to {MAX_SECTIONS} sections are required")
    built = []
    for section in sections:
        rows = [_list_row(row) for row in section.get("rows") or []]
        if not rows:
            raise ValueError("each section needs at least one row")
        item = {}
        if section.get("title"):
            _check_text(section["title"], "section title", MAX_ROW_TITLE)
            item["title"] = section["title"]
        elif len(sections) > 1:
            raise ValueError("every section needs a title when there are several")
        item["rows"] = rows
        built.append(item)
    row_ids = [row["id"] for item in built for row in item["rows"]]
    if len(row_ids) > MAX_LIST_ROWS:
        raise ValueError(f"at most {MAX_LIST_ROWS} rows in total")
    if len(set(row_ids)) != len(row_ids):
        raise ValueError("row ids must be unique")
    action = {"button": button, "sections": built}
    interactive = _interactive("list", body, action, header, footer)
    return _envelope(
        to,
        "interactive",
        interactive,
        reply_to=reply_to,
        biz_opaque_callback_data=biz_opaque_callback_data,
    )


# -- reactions and read receipts -------------------------------------------------


def reaction_payload(to, message_id, emoji):
    """React to a customer's message; an empty ``emoji`` removes the reaction."""
    _check_text(message_id, "message_id", 512)
    return _envelope(
        to, "reaction", {"message_id": str(message_id), "emoji": emoji or ""}
    )


def read_payload(message_id, *, typing_indicator=False):
    """Mark an inbound message as read, optionally showing "typing..."."""
    _check_text(message_id, "message_id", 512)
    payload = {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": str(message_id),
    }
    if typing_indicator:
        payload["typing_indicator"] = {"type": "text"}
    return payload
