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
    "check_reaction_emoji",
    "contacts_payload",
    "copy_code_button",
    "currency_param",
    "date_time_param",
    "header_component",
    "interactive_buttons",
    "interactive_buttons_payload",
    "interactive_choices",
    "interactive_from_spec",
    "interactive_list",
    "interactive_list_payload",
    "interactive_payload",
    "interactive_spec",
    "location_param",
    "location_payload",
    "media_param",
    "media_payload",
    "MEDIA_LIMITS",
    "media_takes_caption",
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

MB = 1024 * 1024
# The media types Meta accepts, with the size limits of its media documentation.
MEDIA_LIMITS = {
    "image/jpeg": 5 * MB,
    "image/png": 5 * MB,
    "image/webp": 500 * 1024,  # sent as a sticker
    "video/mp4": 16 * MB,
    "video/3gpp": 16 * MB,
    "audio/aac": 16 * MB,
    "audio/amr": 16 * MB,
    "audio/mpeg": 16 * MB,
    "audio/mp4": 16 * MB,
    "audio/ogg": 16 * MB,
    "text/plain": 100 * MB,
    "application/pdf": 100 * MB,
    "application/msword": 100 * MB,
    "application/vnd.ms-excel": 100 * MB,
    "application/vnd.ms-powerpoint": 100 * MB,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": 100 * MB,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": 100 * MB,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": (
        100 * MB
    ),
}


def media_takes_caption(mimetype):
    """Stickers (webp) and audio messages carry no caption."""
    return not (mimetype == "image/webp" or (mimetype or "").startswith("audio/"))


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
# The longest emoji sequences (families, subdivision flags) have 7 to 10 code points.
MAX_REACTION_CODEPOINTS = 16
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
#
# An interactive message is stored as a *spec*, a small JSON-friendly dict that the
# builders below validate and turn into Meta's ``interactive`` object:
#
#   {"type": "button", "body": str, "header": str?, "footer": str?,
#    "buttons": [{"id": str, "title": str}, ...]}
#   {"type": "list", "body": str, "header": str?, "footer": str?, "button": str,
#    "sections": [{"title": str?, "rows": [{"id", "title", "description"?}]}]}

INTERACTIVE_KINDS = ("button", "list")


def _interactive_header(header):
    if header is None or header == "":
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


def _reply_button(button, position):
    if isinstance(button, dict):
        reply = button.get("reply", button)
        button_id, title = reply.get("id"), reply.get("title")
    else:
        button_id, title = button
    _check_text(button_id, f"button {position} id", MAX_BUTTON_ID)
    _check_text(title, f"button {position} title", MAX_BUTTON_TITLE)
    return {"type": "reply", "reply": {"id": button_id, "title": title}}


def _check_unique(values, label):
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(
                f"{label} {value!r} is used twice ({label}s must be unique)"
            )
        seen.add(value)


def interactive_buttons(body, buttons, *, header=None, footer=None):
    """Meta's ``interactive`` object for reply buttons (``(id, title)`` or dicts)."""
    buttons = list(buttons or [])
    if not MIN_BUTTONS <= len(buttons) <= MAX_BUTTONS:
        raise ValueError(
            f"{len(buttons)} buttons given: a message has {MIN_BUTTONS} to "
            f"{MAX_BUTTONS} reply buttons"
        )
    items = [
        _reply_button(button, position)
        for position, button in enumerate(buttons, start=1)
    ]
    _check_unique([item["reply"]["title"] for item in items], "button title")
    _check_unique([item["reply"]["id"] for item in items], "button id")
    return _interactive("button", body, {"buttons": items}, header, footer)


def _list_row(row, position):
    if isinstance(row, dict):
        row_id, title, description = (
            row.get("id"),
            row.get("title"),
            row.get("description"),
        )
    else:
        row_id, title, *rest = row
        description = rest[0] if rest else None
    _check_text(row_id, f"row {position} id", MAX_ROW_ID)
    _check_text(title, f"row {position} title", MAX_ROW_TITLE)
    item = {"id": row_id, "title": title}
    if description:
        _check_text(description, f"row {position} description", MAX_ROW_DESCRIPTION)
        item["description"] = description
    return item


def interactive_list(body, button, sections, *, header=None, footer=None):
    """Meta's ``interactive`` object for a list: sections of ``{"title", "rows"}``."""
    _check_text(button, "list button", MAX_LIST_BUTTON)
    sections = list(sections or [])
    if not 1 <= len(sections) <= MAX_SECTIONS:
        raise ValueError(
            f"{len(sections)} sections given: a list has 1 to {MAX_SECTIONS} sections"
        )
    built = []
    position = 0
    for number, section in enumerate(sections, start=1):
        if not isinstance(section, dict):
            raise ValueError(f"section {number} must be a dict with rows")
        rows = []
        for row in section.get("rows") or []:
            position += 1
            rows.append(_list_row(row, position))
        if not rows:
            raise ValueError(f"section {number} has no row (each needs at least one)")
        item = {}
        if section.get("title"):
            _check_text(section["title"], f"section {number} title", MAX_ROW_TITLE)
            item["title"] = section["title"]
        elif len(sections) > 1:
            raise ValueError(
                f"section {number} has no title (every section needs a title when "
                "there are several)"
            )
        item["rows"] = rows
        built.append(item)
    if position > MAX_LIST_ROWS:
        raise ValueError(
            f"{position} rows given: at most {MAX_LIST_ROWS} rows in total in a list"
        )
    _check_unique([row["id"] for item in built for row in item["rows"]], "row id")
    action = {"button": button, "sections": built}
    return _interactive("list", body, action, header, footer)


def interactive_from_spec(spec):
    """Meta's ``interactive`` object for a stored spec (see above)."""
    if not isinstance(spec, dict):
        raise ValueError("an interactive message needs a spec dict")
    kind = spec.get("type")
    options = {"header": spec.get("header"), "footer": spec.get("footer")}
    if kind == "button":
        return interactive_buttons(spec.get("body"), spec.get("buttons"), **options)
    if kind == "list":
        return interactive_list(
            spec.get("body"), spec.get("button"), spec.get("sections"), **options
        )
    raise ValueError(
        f"interactive type {kind!r} is not supported (use one of {INTERACTIVE_KINDS})"
    )


def interactive_spec(spec):
    """The spec, validated and reduced to what is sent (a new dict).

    Raises ValueError saying what is wrong; what it returns always builds.
    """
    interactive = interactive_from_spec(spec)
    clean = {"type": interactive["type"], "body": interactive["body"]["text"]}
    header = interactive.get("header")
    if header and header.get("type") == "text":
        clean["header"] = header["text"]
    elif header:
        clean["header"] = header
    if interactive.get("footer"):
        clean["footer"] = interactive["footer"]["text"]
    action = interactive["action"]
    if clean["type"] == "button":
        clean["buttons"] = [dict(item["reply"]) for item in action["buttons"]]
    else:
        clean["button"] = action["button"]
        clean["sections"] = [
            {**section, "rows": [dict(row) for row in section["rows"]]}
            for section in action["sections"]
        ]
    return clean


def interactive_choices(spec):
    """``(id, title)`` of each button or list row of a spec, in order."""
    spec = spec if isinstance(spec, dict) else {}
    if spec.get("type") == "button":
        rows = spec.get("buttons") or []
    else:
        rows = [
            row
            for section in spec.get("sections") or []
            if isinstance(section, dict)
            for row in section.get("rows") or []
        ]
    return [(row.get("id"), row.get("title")) for row in rows if isinstance(row, dict)]


def interactive_payload(to, spec, *, reply_to=None, biz_opaque_callback_data=None):
    """Interactive message (reply buttons or a list) from a spec."""
    return _envelope(
        to,
        "interactive",
        interactive_from_spec(spec),
        reply_to=reply_to,
        biz_opaque_callback_data=biz_opaque_callback_data,
    )


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
    return _envelope(
        to,
        "interactive",
        interactive_buttons(body, buttons, header=header, footer=footer),
        reply_to=reply_to,
        biz_opaque_callback_data=biz_opaque_callback_data,
    )


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
    return _envelope(
        to,
        "interactive",
        interactive_list(body, button, sections, header=header, footer=footer),
        reply_to=reply_to,
        biz_opaque_callback_data=biz_opaque_callback_data,
    )


# -- reactions and read receipts -------------------------------------------------


def check_reaction_emoji(emoji):
    """The emoji of a reaction, ``""`` to remove one; ValueError for anything else.

    Meta takes one emoji (a single grapheme, which may be several code points:
    skin tones, flags, joined sequences), not text.
    """
    if emoji is None or emoji == "":
        return ""
    if not isinstance(emoji, str):
        raise ValueError("a reaction emoji must be a string")
    if len(emoji) > MAX_REACTION_CODEPOINTS or any(
        ch.isspace() or (ch.isascii() and ch.isalnum()) for ch in emoji
    ):
        raise ValueError(f"a reaction is one emoji, not text ({emoji!r})")
    return emoji


def reaction_payload(to, message_id, emoji, *, biz_opaque_callback_data=None):
    """React to a customer's message; an empty ``emoji`` removes the reaction."""
    _check_text(message_id, "message_id", 512)
    return _envelope(
        to,
        "reaction",
        {"message_id": str(message_id), "emoji": check_reaction_emoji(emoji)},
        biz_opaque_callback_data=biz_opaque_callback_data,
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
