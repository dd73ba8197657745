"""Typed events parsed from Meta's webhook notifications.

``parse_webhook`` turns one POST body into a flat list of events, one per inbound
message, status, value-level error list or management notification, across every
entry and change of the batch.

Robustness rules (the body comes from the network and Meta adds fields often):

* Only a body that is not JSON, or whose top level is not an object, raises
  ``ValueError`` (the controller answers 400). Nothing else raises: wrong types,
  nulls, missing keys and unknown types degrade to ``None``/empty values.
* A body whose ``object`` is not ``whatsapp_business_account`` yields ``[]``: such
  notifications belong to other Meta products and carry nothing for this addon.
* Every change with a dict ``value`` yields at least one event; a change that is
  not understood becomes an :class:`UnknownEvent` so the caller can log it, and a
  change that made a parser fail (a bug here) a :class:`ParseFailure` with the
  error, so that the caller keeps the body for a retry once the bug is fixed.
* Epoch timestamps become tz-aware UTC datetimes; unusable ones become None.

Event reprs leave out message content and phone numbers so that logging an event
does not leak personal data.
"""

import dataclasses
import json
import logging
import math
from datetime import datetime, timezone

_logger = logging.getLogger(__name__)

WABA_OBJECT = "whatsapp_business_account"
MEDIA_TYPES = frozenset({"image", "document", "audio", "video", "sticker"})
# Compared after trimming, collapsing whitespace and case-folding.
OPT_OUT_KEYWORDS = frozenset({"stop", "unsubscribe", "baja", "parar", "cancelar"})
# Template quick-reply labels are user-visible text too (e.g. a "STOP" button).
_OPT_OUT_TYPES = frozenset({"text", "button"})
# Interactive answers that pick one option of ours (a Flow answer is a form).
_CHOICE_REPLIES = frozenset({"button_reply", "list_reply"})
# account_update events that restrict or ban the WhatsApp Business Account.
_BLOCKING_ACCOUNT_EVENTS = frozenset(
    {"ACCOUNT_RESTRICTION", "ACCOUNT_VIOLATION", "DISABLED_UPDATE"}
)
# A Flow answer is small; refuse to parse anything larger than this.
_MAX_FLOW_RESPONSE_CHARS = 100_000


# --------------------------------------------------------------------------
# Event classes
# --------------------------------------------------------------------------
# Fields holding personal data or bulk are declared with repr=False.


@dataclasses.dataclass(frozen=True, kw_only=True)
class ErrorInfo:
    """One error object as Meta embeds it in webhooks."""

    code: int | None = None
    title: str | None = None
    message: str | None = None
    details: str | None = None
    href: str | None = None
    # The original dict, e.g. for errors.error_from_payload().
    raw: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MediaRef:
    """A received media handle; the file itself is downloaded separately."""

    id: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = dataclasses.field(default=None, repr=False)
    filename: str | None = dataclasses.field(default=None, repr=False)
    url: str | None = dataclasses.field(default=None, repr=False)
    voice: bool = False
    animated: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    """Fields shared by every event.

    ``timestamp`` is the message/status time for those events and ``entry.time``
    for management notifications. ``raw`` is the dict the event was read from.
    """

    field: str
    waba_id: str | None = None
    phone_number_id: str | None = None
    display_phone_number: str | None = None
    timestamp: datetime | None = None
    raw: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class InboundMessage(Event):
    wamid: str | None = None
    # None for users known only by username/BSUID.
    from_wa_id: str | None = dataclasses.field(default=None, repr=False)
    from_user_id: str | None = None
    from_parent_user_id: str | None = None
    profile_name: str | None = dataclasses.field(default=None, repr=False)
    username: str | None = dataclasses.field(default=None, repr=False)
    message_type: str = "unknown"
    # Body, caption, button text, reply title, reaction emoji, system notice...
    text: str | None = dataclasses.field(default=None, repr=False)
    media: MediaRef | None = None
    location: dict | None = dataclasses.field(default=None, repr=False)
    contacts: list[dict] = dataclasses.field(default_factory=list, repr=False)
    interactive: dict | None = None
    button: dict | None = None
    reaction: dict | None = None
    order: dict | None = dataclasses.field(default=None, repr=False)
    system: dict | None = dataclasses.field(default=None, repr=False)
    unsupported_type: str | None = None
    # For 'edit' and 'revoke': the message that was edited or deleted.
    original_wamid: str | None = None
    edited_message_type: str | None = None
    context_wamid: str | None = None
    context_from: str | None = dataclasses.field(default=None, repr=False)
    forwarded: bool = False
    frequently_forwarded: bool = False
    referred_product: dict | None = None
    referral: dict | None = dataclasses.field(default=None, repr=False)
    group_id: str | None = None
    errors: list[ErrorInfo] = dataclasses.field(default_factory=list)

    @property
    def is_opt_out(self) -> bool:
        """True when the customer sent a STOP-like keyword as text."""
        return self.message_type in _OPT_OUT_TYPES and is_opt_out_text(self.text)

    @property
    def choice(self) -> tuple[str | None, str | None] | None:
        """``(id, title)`` of the option the customer tapped, else None.

        A reply button or list row answers with the id and title we sent; a
        template's quick-reply button with its payload and its label.
        """
        if self.message_type == "interactive" and self.interactive:
            if self.interactive.get("type") in _CHOICE_REPLIES:
                return self.interactive.get("id"), self.interactive.get("title")
        elif self.message_type == "button" and self.button:
            return self.button.get("payload"), self.button.get("text")
        return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class StatusUpdate(Event):
    wamid: str | None = None
    status: str = "unknown"
    recipient_id: str | None = dataclasses.field(default=None, repr=False)
    recipient_user_id: str | None = None
    parent_recipient_user_id: str | None = None
    recipient_type: str | None = None
    biz_opaque_callback_data: str | None = dataclasses.field(default=None, repr=False)
    errors: list[ErrorInfo] = dataclasses.field(default_factory=list)
    conversation_id: str | None = None
    conversation_category: str | None = None
    conversation_expiration: datetime | None = None
    pricing_category: str | None = None
    pricing_type: str | None = None
    pricing_model: str | None = None
    billable: bool | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ValueErrors(Event):
    """``value.errors[]``: errors not tied to one message."""

    errors: list[ErrorInfo] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TemplateStatusUpdate(Event):
    # A number in webhooks, a string in Graph responses: always str here.
    template_id: str | None = None
    name: str | None = None
    language: str | None = None
    event: str | None = None
    reason: str | None = None
    category: str | None = None
    rejection_info: dict | None = None
    disable_info: dict | None = None
    other_info: dict | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class TemplateQualityUpdate(Event):
    template_id: str | None = None
    name: str | None = None
    language: str | None = None
    previous_quality: str | None = None
    new_quality: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class TemplateCategoryUpdate(Event):
    template_id: str | None = None
    name: str | None = None
    language: str | None = None
    previous_category: str | None = None
    new_category: str | None = None
    correct_category: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class PhoneNumberQualityUpdate(Event):
    event: str | None = None
    current_limit: str | None = None
    old_limit: str | None = None
    max_daily_conversations_per_business: str | None = None

    @property
    def messaging_limit(self) -> str | None:
        """The limit now in force.

        ``current_limit`` while Meta still sends it; it announced its removal for
        February 2026, leaving ``max_daily_conversations_per_business``.
        """
        return self.current_limit or self.max_daily_conversations_per_business


@dataclasses.dataclass(frozen=True, kw_only=True)
class AccountUpdate(Event):
    event: str | None = None
    # Everything but 'event' (restriction_info, violation_info, ban_info...).
    details: dict = dataclasses.field(default_factory=dict)

    @property
    def blocks_account(self) -> bool:
        """True when Meta restricts, flags or bans the business account.

        A DISABLED_UPDATE whose ban state is only REINSTATE lifts a ban instead.
        """
        if self.event not in _BLOCKING_ACCOUNT_EVENTS:
            return False
        if self.event == "DISABLED_UPDATE":
            states = _dict(self.details.get("ban_info")).get("waba_ban_state")
            states = {states} if isinstance(states, str) else set(states or ())
            return states != {"REINSTATE"}
        return True


@dataclasses.dataclass(frozen=True, kw_only=True)
class UserPreferenceUpdate(Event):
    wa_id: str | None = dataclasses.field(default=None, repr=False)
    user_id: str | None = None
    category: str | None = None
    # 'stop', 'resume', 'signup'... lowercased.
    value: str | None = None
    detail: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class UnknownEvent(Event):
    """A change this module does not understand; log it and move on."""

    value: dict = dataclasses.field(default_factory=dict, repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ParseFailure(Event):
    """A change whose parser raised; ``error`` names the exception."""

    error: str = ""


# --------------------------------------------------------------------------
# Tolerant readers: each returns None/empty instead of raising.
# --------------------------------------------------------------------------
def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _items(value) -> list[dict]:
    """The dicts of a list; a lone dict counts as a list of one."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


def _str(value) -> str | None:
    """Text or an identifier; numbers (ids in webhooks) become their digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return None


def _id(value) -> str | None:
    """Like _str() but an empty or blank identifier is no identifier."""
    text = _str(value)
    if text is None:
        return None
    text = text.strip()
    return text or None


def _lower(value) -> str | None:
    text = _id(value)
    return text.lower() if text else None


def _int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:  # also raised for absurdly long digit strings
            return None
    return None


def _float(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | str):
        try:
            number = float(value)
        except (ValueError, OverflowError):
            return None
        return number if math.isfinite(number) else None
    return None


def _bool(value) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _ts(value) -> datetime | None:
    """Epoch seconds (Meta sends strings, sometimes numbers) -> aware UTC."""
    if isinstance(value, str):
        text = value.strip()
        # int() keeps large epochs exact; float() covers "1795165200.5".
        value = _int(text)
        if value is None:
            value = _float(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value < 0:
        return None
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _copy(value) -> dict | None:
    """A shallow copy of a non-empty dict, else None."""
    return dict(value) if isinstance(value, dict) and value else None


def _json_object(text) -> dict | None:
    if not isinstance(text, str) or len(text) > _MAX_FLOW_RESPONSE_CHARS:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def is_opt_out_text(text) -> bool:
    """True when ``text`` is only a STOP keyword (any case, spacing, final '.'/'!')."""
    if not isinstance(text, str):
        return False
    word = " ".join(text.split()).strip(".!¡ ").casefold()
    return word in OPT_OUT_KEYWORDS


def _error_info(data: dict) -> ErrorInfo:
    return ErrorInfo(
        code=_int(data.get("code")),
        title=_str(data.get("title")),
        message=_str(data.get("message")),
        details=_str(_dict(data.get("error_data")).get("details")),
        href=_str(data.get("href")),
        raw=data,
    )


def _errors(value) -> list[ErrorInfo]:
    return [_error_info(item) for item in _items(value)]


# --------------------------------------------------------------------------
# messages: inbound content
# --------------------------------------------------------------------------
def _media(msg_type: str, data: dict) -> MediaRef:
    return MediaRef(
        id=_id(data.get("id")),
        mime_type=_str(data.get("mime_type")),
        sha256=_str(data.get("sha256")),
        caption=_str(data.get("caption")),
        filename=_str(data.get("filename")),
        url=_str(data.get("url")),
        voice=msg_type == "audio" and _bool(data.get("voice")) is True,
        animated=msg_type == "sticker" and _bool(data.get("animated")) is True,
    )


def _interactive(data: dict) -> tuple[dict, str | None]:
    kind = _str(data.get("type"))
    reply = _dict(data.get(kind)) if kind else {}
    info = {
        "type": kind,
        "id": _id(reply.get("id")),
        "title": _str(reply.get("title")),
        "description": _str(reply.get("description")),
    }
    text = info["title"]
    if kind == "nfm_reply":
        # A submitted WhatsApp Flow: the answers are a JSON document in a string.
        response_json = _str(reply.get("response_json"))
        info.update(
            name=_str(reply.get("name")),
            body=_str(reply.get("body")),
            response_json=response_json,
            response_data=_json_object(response_json),
        )
        text = info["body"]
    elif kind == "call_permission_reply":
        info.update(
            response=_lower(reply.get("response")),
            response_source=_str(reply.get("response_source")),
            # Epoch seconds kept as a number: these dicts stay JSON-serialisable.
            expiration_timestamp=_int(reply.get("expiration_timestamp")),
        )
        text = info["response"]
    return info, text


def _order(data: dict) -> dict:
    items = [
        {
            "product_retailer_id": _id(item.get("product_retailer_id")),
            "quantity": _int(item.get("quantity")),
            "item_price": _float(item.get("item_price")),
            "currency": _str(item.get("currency")),
        }
        for item in _items(data.get("product_items"))
    ]
    return {
        "catalog_id": _id(data.get("catalog_id")),
        "text": _str(data.get("text")) or None,
        "product_items": items,
    }


def _system(data: dict) -> dict:
    return {
        "type": _str(data.get("type")),
        "body": _str(data.get("body")),
        # Older payloads call the new number 'new_wa_id'.
        "wa_id": _id(data.get("wa_id")) or _id(data.get("new_wa_id")),
        "user_id": _id(data.get("user_id")),
        "parent_user_id": _id(data.get("parent_user_id")),
    }


# One flat branch per Meta message type reads best here.
def _content(msg_type: str, msg: dict, *, allow_edit: bool = True) -> dict:  # noqa: C901
    """Type-specific InboundMessage fields read from ``msg[msg_type]``.

    Only known types read their object, so a hostile ``type`` such as "id" or
    "from" cannot make a top-level key pass for content.
    """
    out: dict = {}
    if msg_type == "text":
        out["text"] = _str(_dict(msg.get("text")).get("body"))
    elif msg_type in MEDIA_TYPES:
        data = _dict(msg.get(msg_type))
        if data:
            out["media"] = _media(msg_type, data)
            out["text"] = out["media"].caption
    elif msg_type == "location":
        data = _dict(msg.get("location"))
        if data:
            out["location"] = {
                "latitude": _float(data.get("latitude")),
                "longitude": _float(data.get("longitude")),
                "name": _str(data.get("name")),
                "address": _str(data.get("address")),
                "url": _str(data.get("url")),
            }
    elif msg_type == "contacts":
        out["contacts"] = _items(msg.get("contacts"))
    elif msg_type == "interactive":
        # Meta has sent 'interactive' without the object (with a value error).
        data = _dict(msg.get("interactive"))
        if data:
            out["interactive"], out["text"] = _interactive(data)
    elif msg_type == "button":
        data = _dict(msg.get("button"))
        if data:
            out["button"] = {
                "text": _str(data.get("text")),
                "payload": _str(data.get("payload")),
            }
            out["text"] = out["button"]["text"]
    elif msg_type == "reaction":
        data = _dict(msg.get("reaction"))
        # An empty or missing emoji means the customer removed the reaction.
        emoji = _str(data.get("emoji")) or None
        out["reaction"] = {
            "message_id": _id(data.get("message_id")),
            "emoji": emoji,
            "removed": emoji is None,
        }
        out["text"] = emoji
    elif msg_type == "order":
        out["order"] = _order(_dict(msg.get("order")))
        out["text"] = out["order"]["text"]
    elif msg_type == "system":
        out["system"] = _system(_dict(msg.get("system")))
        out["text"] = out["system"]["body"]
    elif msg_type in ("unsupported", "unknown"):
        out["unsupported_type"] = _str(_dict(msg.get("unsupported")).get("type"))
    elif msg_type == "revoke":
        out["original_wamid"] = _id(_dict(msg.get("revoke")).get("original_message_id"))
    elif msg_type == "edit" and allow_edit:
        data = _dict(msg.get("edit"))
        inner = _dict(data.get("message"))
        inner_type = _str(inner.get("type"))
        if inner_type:
            # One level only: an edit of an edit is not a thing.
            out.update(_content(inner_type, inner, allow_edit=False))
        out["original_wamid"] = _id(data.get("original_message_id"))
        out["edited_message_type"] = inner_type
    # request_welcome and unknown types carry no content.
    return out


def _find_contact(contacts: list[dict], wa_id, user_id) -> dict:
    """The ``value.contacts`` entry describing this sender, or {}."""
    for contact in contacts:
        if wa_id and _id(contact.get("wa_id")) == wa_id:
            return contact
        if user_id and _id(contact.get("user_id")) == user_id:
            return contact
    if len(contacts) == 1:
        # Usual single-sender batch: accept it unless it names someone else.
        contact = contacts[0]
        other_wa = _id(contact.get("wa_id"))
        other_user = _id(contact.get("user_id"))
        if (not wa_id or not other_wa or other_wa == wa_id) and (
            not user_id or not other_user or other_user == user_id
        ):
            return contact
    return {}


def _inbound(msg: dict, contacts: list[dict], base: dict) -> InboundMessage:
    wa_id = _id(msg.get("from"))
    user_id = _id(msg.get("from_user_id"))
    contact = _find_contact(contacts, wa_id, user_id)
    profile = _dict(contact.get("profile"))
    msg_type = _str(msg.get("type")) or "unknown"
    context = _dict(msg.get("context"))
    frequently = _bool(context.get("frequently_forwarded")) is True
    return InboundMessage(
        **base,
        timestamp=_ts(msg.get("timestamp")),
        raw=msg,
        wamid=_id(msg.get("id")),
        from_wa_id=wa_id or _id(contact.get("wa_id")),
        from_user_id=user_id or _id(contact.get("user_id")),
        from_parent_user_id=(
            _id(msg.get("from_parent_user_id")) or _id(contact.get("parent_user_id"))
        ),
        profile_name=_str(profile.get("name")),
        username=_str(profile.get("username")) or _str(contact.get("username")),
        message_type=msg_type,
        context_wamid=_id(context.get("id")),
        context_from=_id(context.get("from")),
        # Frequently forwarded messages are forwarded ones too.
        forwarded=_bool(context.get("forwarded")) is True or frequently,
        frequently_forwarded=frequently,
        referred_product=_copy(context.get("referred_product")),
        referral=_copy(msg.get("referral")),
        group_id=_id(msg.get("group_id")),
        errors=_errors(msg.get("errors")),
        **_content(msg_type, msg),
    )


def _status(data: dict, base: dict) -> StatusUpdate:
    pricing = _dict(data.get("pricing"))
    conversation = _dict(data.get("conversation"))
    return StatusUpdate(
        **base,
        timestamp=_ts(data.get("timestamp")),
        raw=data,
        wamid=_id(data.get("id")),
        status=_lower(data.get("status")) or "unknown",
        recipient_id=_id(data.get("recipient_id")),
        recipient_user_id=_id(data.get("recipient_user_id")),
        parent_recipient_user_id=_id(data.get("parent_recipient_user_id")),
        recipient_type=_str(data.get("recipient_type")),
        biz_opaque_callback_data=_str(data.get("biz_opaque_callback_data")),
        errors=_errors(data.get("errors")),
        conversation_id=_id(conversation.get("id")),
        conversation_category=_str(_dict(conversation.get("origin")).get("type")),
        conversation_expiration=_ts(conversation.get("expiration_timestamp")),
        pricing_category=_str(pricing.get("category")),
        pricing_type=_str(pricing.get("type")),
        pricing_model=_str(pricing.get("pricing_model")),
        billable=_bool(pricing.get("billable")),
    )


# --------------------------------------------------------------------------
# One parser per subscribed field. Each gets the change value and the common
# fields, and returns a list of events (possibly empty).
# --------------------------------------------------------------------------
def _parse_messages(value: dict, base: dict) -> list[Event]:
    # Messages and statuses carry their own timestamp.
    entry_time = base["timestamp"]
    base = {key: item for key, item in base.items() if key != "timestamp"}
    contacts = _items(value.get("contacts"))
    events: list[Event] = [
        _inbound(msg, contacts, base) for msg in _items(value.get("messages"))
    ]
    events += [_status(item, base) for item in _items(value.get("statuses"))]
    errors = _errors(value.get("errors"))
    if errors:
        events.append(
            ValueErrors(**base, timestamp=entry_time, raw=value, errors=errors)
        )
    return events


def _template_fields(value: dict) -> dict:
    return {
        "template_id": _id(value.get("message_template_id")),
        "name": _str(value.get("message_template_name")),
        "language": _str(value.get("message_template_language")),
    }


def _parse_template_status(value: dict, base: dict) -> list[Event]:
    return [
        TemplateStatusUpdate(
            **base,
            raw=value,
            **_template_fields(value),
            event=_str(value.get("event")),
            reason=_str(value.get("reason")),
            category=_str(value.get("message_template_category")),
            rejection_info=_copy(value.get("rejection_info")),
            disable_info=_copy(value.get("disable_info")),
            other_info=_copy(value.get("other_info")),
        )
    ]


def _parse_template_quality(value: dict, base: dict) -> list[Event]:
    return [
        TemplateQualityUpdate(
            **base,
            raw=value,
            **_template_fields(value),
            previous_quality=_str(value.get("previous_quality_score")),
            new_quality=_str(value.get("new_quality_score")),
        )
    ]


def _parse_template_category(value: dict, base: dict) -> list[Event]:
    return [
        TemplateCategoryUpdate(
            **base,
            raw=value,
            **_template_fields(value),
            previous_category=_str(value.get("previous_category")),
            new_category=_str(value.get("new_category")),
            correct_category=_str(value.get("correct_category")),
        )
    ]


def _parse_phone_quality(value: dict, base: dict) -> list[Event]:
    # No metadata here: the number itself is the only routing hint besides WABA.
    base = {
        **base,
        "display_phone_number": base["display_phone_number"]
        or _id(value.get("display_phone_number")),
    }
    return [
        PhoneNumberQualityUpdate(
            **base,
            raw=value,
            event=_str(value.get("event")),
            current_limit=_str(value.get("current_limit")),
            old_limit=_str(value.get("old_limit")),
            max_daily_conversations_per_business=_str(
                value.get("max_daily_conversations_per_business")
            ),
        )
    ]


def _parse_account_update(value: dict, base: dict) -> list[Event]:
    details = {key: item for key, item in value.items() if key != "event"}
    return [
        AccountUpdate(
            **base, raw=value, event=_str(value.get("event")), details=details
        )
    ]


def _parse_user_preferences(value: dict, base: dict) -> list[Event]:
    contacts = _items(value.get("contacts"))
    events: list[Event] = []
    for item in _items(value.get("user_preferences")):
        wa_id = _id(item.get("wa_id"))
        user_id = _id(item.get("user_id"))
        contact = _find_contact(contacts, wa_id, user_id)
        events.append(
            UserPreferenceUpdate(
                **{
                    **base,
                    "timestamp": _ts(item.get("timestamp")) or base["timestamp"],
                },
                raw=item,
                wa_id=wa_id or _id(contact.get("wa_id")),
                user_id=user_id or _id(contact.get("user_id")),
                category=_str(item.get("category")),
                value=_lower(item.get("value")),
                detail=_str(item.get("detail")),
            )
        )
    return events


_FIELD_PARSERS = {
    "messages": _parse_messages,
    "message_template_status_update": _parse_template_status,
    "message_template_quality_update": _parse_template_quality,
    "template_category_update": _parse_template_category,
    "phone_number_quality_update": _parse_phone_quality,
    "account_update": _parse_account_update,
    "user_preferences": _parse_user_preferences,
}


def _parse_change(entry: dict, change: dict) -> list[Event]:
    field = _str(change.get("field")) or ""
    value = change.get("value")
    value = value if isinstance(value, dict) else {}
    metadata = _dict(value.get("metadata"))
    base = {
        "field": field,
        "waba_id": _id(entry.get("id")),
        "phone_number_id": _id(metadata.get("phone_number_id")),
        "display_phone_number": _id(metadata.get("display_phone_number")),
        "timestamp": _ts(entry.get("time")),
    }
    parser = _FIELD_PARSERS.get(field)
    events: list[Event] = []
    if parser is not None and value:
        try:
            events = parser(value, base)
        except Exception as exc:
            # Safety net for a bug here: one odd change must not cost the batch.
            # The exception text may quote payload data, so only its type is logged.
            _logger.error(
                "WhatsApp webhook: could not parse a %r change (%s); kept as failed",
                field,
                type(exc).__name__,
            )
            _logger.debug("WhatsApp webhook parse failure", exc_info=True)
            return [
                ParseFailure(
                    **base, raw=value, error=f"{type(exc).__name__}: {exc}"[:500]
                )
            ]
    if not events:
        events = [UnknownEvent(**base, raw=value, value=value)]
    return events


def _load(body) -> dict:
    if isinstance(body, dict):
        return body
    if isinstance(body, bytes | bytearray | memoryview):
        body = bytes(body)
    elif not isinstance(body, str):
        raise ValueError("webhook body must be a JSON object")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        # Never echo the body: it may hold personal data.
        raise ValueError("webhook body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("webhook body must be a JSON object")
    return data


def parse_webhook(body: dict | bytes | str) -> list[Event]:
    """Parse one webhook POST body into events, in payload order.

    Raises ValueError only when ``body`` is not JSON or not a JSON object.
    """
    payload = _load(body)
    if payload.get("object") != WABA_OBJECT:
        return []
    events: list[Event] = []
    for entry in _items(payload.get("entry")):
        for change in _items(entry.get("changes")):
            events.extend(_parse_change(entry, change))
    return events


# --------------------------------------------------------------------------
# Ordering keys: which bodies must be processed one after the other.
# --------------------------------------------------------------------------
# Beyond this many parties, a body is ordered against every other body.
MAX_ORDERING_KEYS = 64
ANY_PARTY = "*"
_FIELD_KEYS = {
    "message_template_status_update": "@template",
    "message_template_quality_update": "@template",
    "template_category_update": "@template",
}


def ordering_keys(body) -> list[str]:
    """The parties of a body whose events must keep their arrival order.

    Two bodies sharing a key are processed one after the other; bodies without a
    common key may be processed in parallel. The customers (number and user id)
    of the messages, statuses and preferences are keys; account-level changes
    share one key per field, template changes one for all. ``["*"]`` stands for
    every party (too many to list, or a body that cannot be read).
    """
    try:
        payload = _load(body)
    except ValueError:
        return [ANY_PARTY]
    keys: set[str] = set()
    for entry in _items(payload.get("entry")):
        for change in _items(entry.get("changes")):
            field = _str(change.get("field")) or ""
            value = _dict(change.get("value"))
            if field == "messages":
                for msg in _items(value.get("messages")):
                    keys.update(_parties(msg, "from", "from_user_id"))
                for status in _items(value.get("statuses")):
                    keys.update(_parties(status, "recipient_id", "recipient_user_id"))
                for contact in _items(value.get("contacts")):
                    keys.update(_parties(contact, "wa_id", "user_id"))
            elif field == "user_preferences":
                for item in _items(value.get("user_preferences")):
                    keys.update(_parties(item, "wa_id", "user_id"))
            else:
                keys.add(_FIELD_KEYS.get(field, f"@{field}"))
            if len(keys) > MAX_ORDERING_KEYS:
                return [ANY_PARTY]
    return sorted(keys)


def _parties(data: dict, number_key: str, user_key: str) -> list[str]:
    # Numbers as digits: "+33 6..." and "336..." are one customer.
    number = _id(data.get(number_key))
    digits = "".join(ch for ch in number if ch.isdigit()) if number else ""
    user = _id(data.get(user_key))
    return [key for key in (digits, user and f"u:{user}") if key]
