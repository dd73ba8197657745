"""A fake Graph API server that stands in for Meta's WhatsApp Cloud API.

Used by end-to-end tests and as a developer sandbox. It imitates the behaviour
described in shared/docs/cloud-api.md: version-prefixed paths (any ``/vNN.0``, or
none), bearer tokens, Meta-shaped error bodies, send validation, the 24-hour
customer-service window, a per-number throughput limit, templates with cursor
pagination, media upload/download, phone-number info, ``subscribed_apps``, and,
acting as Meta toward the business, signed webhook notifications (inbound
messages and message statuses).

Library use (tests)::

    from fake_graph import FakeAccount, FakeGraph

    account = FakeAccount(webhook_url="http://127.0.0.1:8069/whatsapp/webhook/KEY")
    with FakeGraph([account], rate_limit=80, auto_statuses=True) as fake:
        client = CloudApiClient(account.access_token, account.phone_number_id,
                                base_url=fake.url)
        fake.inject_inbound_text(account.phone_number_id, "33612345678", "Bonjour")
        client.send_text("33612345678", "Hello")
        fake.wait_idle(5)           # the sent/delivered/read webhooks were posted
        assert fake.max_sends_in_window(1.0) <= 80

Everything the server received is in ``fake.received`` (RecordedRequest), the
accepted sends in ``fake.sent_messages`` (SentMessage), and every webhook it posted
in ``fake.webhook_deliveries`` (WebhookDelivery). Settings such as ``rate_limit``,
``latency``, ``failure_rate``, ``enforce_window`` or ``errors_for`` are plain
attributes and may be changed while the server runs.

Routes (all need ``Authorization: Bearer <token>``, or ``?access_token=``):

- ``GET  /vNN.0/{phone-number-id}?fields=...``     phone number info
- ``POST /vNN.0/{phone-number-id}/messages``       send, or mark as read
- ``POST /vNN.0/{phone-number-id}/media``          multipart upload
- ``GET|DELETE /vNN.0/{media-id}``                  media URL / delete
- ``GET  /media-download/{media-id}``               media bytes
- ``GET  /vNN.0/{waba-id}``, ``.../message_templates`` (``limit``/``after``),
  ``.../phone_numbers``, ``GET|POST|DELETE .../subscribed_apps``
- ``GET  /vNN.0/{template-id}``                     one template

Developer sandbox (CLI)::

    python3 tests/fake_graph.py --port 8765 --phone-number-id 109000000000001 \\
        --waba-id 104000000000001 --token sandbox-token --app-secret sandbox-secret \\
        --webhook-url http://localhost:8069/whatsapp/webhook/<key> --auto-statuses

It prints the values to paste into the Odoo WhatsApp account (use the printed URL
as the Graph base URL) and serves until Ctrl+C. One extra route exists for humans,
without a token and only in sandbox mode::

    curl -X POST http://127.0.0.1:8765/_sandbox/inbound \\
         -H 'Content-Type: application/json' \\
         -d '{"from": "33612345678", "text": "Bonjour", "name": "Amélie"}'

It injects an inbound text message (a signed webhook posted to the webhook URL,
which also opens the 24-hour window) and answers
``{"id": "<wamid>", "webhook_status": <HTTP status from Odoo>}``.
Optional keys: ``name`` (profile name), ``context`` (replied-to wamid),
``phone_number_id`` (when several numbers are served).

Nothing here logs tokens, secrets or bodies.
"""

from __future__ import annotations

import argparse
import base64
import collections
import functools
import hashlib
import hmac
import itertools
import json
import logging
import queue
import random
import re
import secrets
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
from requests.structures import CaseInsensitiveDict

__all__ = [
    "DEFAULT_TEMPLATES",
    "FakeAccount",
    "FakeGraph",
    "RecordedRequest",
    "SentMessage",
    "WebhookDelivery",
    "async_error",
    "error_body",
    "hmac_signature",
    "main",
    "sign_body",
]

_logger = logging.getLogger(__name__)

ADDON_DIR = Path(__file__).resolve().parent.parent / "whatsapp_business"
WINDOW_SECONDS = 24 * 3600
ERROR_DOCS_URL = (
    "https://developers.facebook.com/documentation/business-messaging/whatsapp/"
    "support/error-codes/"
)

# Titles in our own words, close enough to Meta's for humans reading test output.
ERROR_TITLES = {
    1: "Unknown API error",
    2: "Service temporarily unavailable",
    4: "Application request limit reached",
    10: "Permission denied",
    100: "Invalid parameter",
    190: "Access token has expired or is invalid",
    200: "Permission missing",
    368: "Temporarily blocked for policy violations",
    80007: "Rate limit issues",
    130429: "Rate limit hit",
    130472: "Recipient is part of an experiment",
    131000: "Something went wrong",
    131005: "Access denied",
    131008: "Required parameter is missing",
    131009: "Parameter value is not valid",
    131016: "Service unavailable",
    131021: "Recipient cannot be sender",
    131026: "Message undeliverable",
    131030: "Recipient not in allowed list",
    131031: "Business account locked",
    131042: "Business eligibility payment issue",
    131045: "Incorrect certificate",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131049: "Message held back to protect user engagement",
    131050: "User stopped marketing messages",
    131051: "Unsupported message type",
    131052: "Media download error",
    131053: "Media upload error",
    131056: "Pair rate limit hit",
    131057: "Account in maintenance mode",
    132000: "Number of parameters does not match the template",
    132001: "Template does not exist in this language or is not approved",
    132005: "Translated text too long",
    132007: "Template format character policy violated",
    132012: "Parameter format does not match the template",
    132015: "Template is paused",
    132016: "Template is disabled",
    133004: "Server temporarily unavailable",
    133010: "Phone number not registered",
    135000: "Generic user error",
}
# Codes Meta flags as transient (is_transient) in synchronous errors.
TRANSIENT_CODES = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131057, 133004})

MESSAGE_TYPES = (
    "text",
    "image",
    "audio",
    "document",
    "video",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "template",
    "reaction",
)
MEDIA_TYPES = frozenset({"image", "audio", "document", "video", "sticker"})
_CAPTION_TYPES = frozenset({"image", "video", "document"})
_INTERACTIVE_TYPES = frozenset(
    {
        "button",
        "list",
        "cta_url",
        "flow",
        "product",
        "product_list",
        "location_request_message",
        "call_permission_request",
    }
)
_MB = 1024 * 1024
# Upload limits per MIME type (docs §5): anything else is refused with 131053.
MEDIA_LIMITS = {
    "audio/aac": 16 * _MB,
    "audio/amr": 16 * _MB,
    "audio/mpeg": 16 * _MB,
    "audio/mp4": 16 * _MB,
    "audio/ogg": 16 * _MB,
    "text/plain": 100 * _MB,
    "application/pdf": 100 * _MB,
    "application/msword": 100 * _MB,
    "application/vnd.ms-excel": 100 * _MB,
    "application/vnd.ms-powerpoint": 100 * _MB,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (
        100 * _MB
    ),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": 100 * _MB,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": (
        100 * _MB
    ),
    "image/jpeg": 5 * _MB,
    "image/png": 5 * _MB,
    "image/webp": 500 * 1024,
    "video/mp4": 16 * _MB,
    "video/3gpp": 16 * _MB,
}
FAILURE_KINDS = ("server_error", "bad_gateway", "unavailable")
_BAD_GATEWAY_HTML = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>502 Bad Gateway</h1><p>The upstream server did not answer.</p>"
    b"</body></html>"
)
_PHONE_FIELDS = (
    "id",
    "display_phone_number",
    "verified_name",
    "quality_rating",
    "messaging_limit_tier",
    "whatsapp_business_manager_messaging_limit",
    "code_verification_status",
    "name_status",
    "platform_type",
    "throughput",
    "status",
    "account_mode",
    "health_status",
    "is_official_business_account",
)
_TEMPLATE_VAR = re.compile(r"{{\s*([A-Za-z0-9_]+)\s*}}")
_FAKE_APP_ID = "1200000000000001"


# ---------------------------------------------------------------------------
# Signing


def hmac_signature(raw: bytes, app_secret: str) -> str:
    """``sha256=<lowercase hex>`` HMAC of the raw bytes, keyed by the app secret."""
    digest = hmac.new(app_secret.encode("utf-8"), raw, hashlib.sha256).hexdigest()
    return "sha256=" + digest


@functools.cache
def _addon_signer() -> Callable[[bytes, str], str] | None:
    # Imported lazily: the CLI only puts the addon on sys.path inside main().
    try:
        from wa_cloud.webhook import compute_signature
    except ImportError:
        return None
    return compute_signature


def sign_body(raw: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` value Meta would send for ``raw``.

    Uses the addon's own signer when it is importable, so the fake and the
    verifier can never drift apart silently; otherwise a local HMAC.
    """
    signer = _addon_signer()
    if signer is not None:
        return signer(raw, app_secret)
    return hmac_signature(raw, app_secret)


# ---------------------------------------------------------------------------
# Errors


def error_body(
    code: int,
    details: str | None = None,
    *,
    message: str | None = None,
    subcode: int | None = None,
    error_type: str = "OAuthException",
) -> dict:
    """A synchronous Graph error body, shaped like Meta's."""
    title = ERROR_TITLES.get(code, "Unknown error")
    error: dict = {
        "message": message or f"(#{code}) {title}",
        "type": error_type,
        "code": code,
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["is_transient"] = code in TRANSIENT_CODES
    error["fbtrace_id"] = "A" + secrets.token_urlsafe(15)[:20]
    return {"error": error}


def async_error(code: int, details: str | None = None) -> dict:
    """An error item as found in ``statuses[].errors`` of a webhook."""
    title = ERROR_TITLES.get(code, "Unknown error")
    return {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details or title},
        "href": ERROR_DOCS_URL,
    }


class _Reject(Exception):
    """Raised inside request handling; becomes a Meta-shaped error reply."""

    def __init__(
        self,
        code: int,
        details: str | None = None,
        *,
        status: int = 400,
        subcode: int | None = None,
        message: str | None = None,
        error_type: str = "OAuthException",
        headers: Sequence[tuple[str, str]] = (),
    ):
        super().__init__(code)
        self.code = code
        self.details = details
        self.status = status
        self.subcode = subcode
        self.message = message
        self.error_type = error_type
        self.headers = list(headers)


def _unknown_node(method: str, node: str) -> _Reject:
    return _Reject(
        100,
        subcode=33,
        error_type="GraphMethodException",
        message=(
            f"Unsupported {method.lower()} request. Object with ID '{node}' does not "
            "exist, cannot be loaded due to missing permissions, or does not support "
            "this operation."
        ),
    )


# ---------------------------------------------------------------------------
# Records and configuration


@dataclass
class FakeAccount:
    """One business phone number and the Meta app/WABA it belongs to."""

    phone_number_id: str = "109000000000001"
    waba_id: str = "104000000000001"
    access_token: str = "fake-access-token"
    app_secret: str = "fake-app-secret"
    display_phone_number: str = "15550100001"
    verified_name: str = "Acme Test"
    webhook_url: str | None = None
    quality_rating: str = "GREEN"
    messaging_limit_tier: str = "TIER_2K"
    throughput_level: str = "STANDARD"
    # Flip to True to answer 190/463 ("token expired") for this token.
    token_expired: bool = False


def most_in_window(times, window: float = 1.0) -> int:
    """Most of ``times`` within any half-open ``window`` seconds."""
    times = sorted(times)
    most, start = 0, 0
    for end, stamp in enumerate(times):
        while stamp - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


@dataclass
class RecordedRequest:
    """One HTTP request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    # Kept out of repr: assertion messages must not print tokens or bodies.
    headers: CaseInsensitiveDict = field(repr=False)
    body: object | None = field(repr=False)  # parsed JSON, when the body was JSON
    raw_body: bytes = field(repr=False)
    timestamp: float  # the fake's clock (monotonic by default)
    version: str | None = None  # "v26.0", or None when the path had no version
    # Multipart fields; file parts as {filename, content_type, size}.
    form: dict | None = None
    status: int | None = None  # HTTP status the fake answered


@dataclass
class SentMessage:
    """A send the fake accepted (it answered a wamid)."""

    wamid: str
    phone_number_id: str
    to: str  # `to` or `recipient` exactly as sent
    wa_id: str | None
    user_id: str | None
    type: str
    payload: dict
    timestamp: float  # clock() at acceptance; used for the rate-limit records
    sent_at: float  # wall clock (epoch seconds)
    biz_opaque_callback_data: str | None = None
    pricing: dict | None = None


@dataclass
class WebhookDelivery:
    """One webhook POST the fake made (or tried to make)."""

    phone_number_id: str
    url: str | None
    body: object
    raw: bytes
    headers: dict
    status_code: int  # 0 when nothing answered (no URL, connection error)
    response_text: str
    timestamp: float


@dataclass
class _Media:
    media_id: str
    phone_number_id: str
    content: bytes
    mime_type: str
    filename: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=UTF-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def _template(
    template_id: str,
    name: str,
    language: str,
    body_text: str,
    *,
    category: str = "UTILITY",
    status: str = "APPROVED",
    parameter_format: str = "POSITIONAL",
    header: dict | None = None,
    footer: str | None = None,
    buttons: list | None = None,
) -> dict:
    components: list[dict] = []
    if header:
        components.append({"type": "HEADER", **header})
    components.append({"type": "BODY", "text": body_text})
    if footer:
        components.append({"type": "FOOTER", "text": footer})
    if buttons:
        components.append({"type": "BUTTONS", "buttons": buttons})
    return {
        "id": template_id,
        "name": name,
        "language": language,
        "status": status,
        "category": category,
        "parameter_format": parameter_format,
        "components": components,
        "quality_score": {"score": "GREEN"},
    }


DEFAULT_TEMPLATES: tuple[dict, ...] = (
    _template(
        "774400110001",
        "hello_world",
        "en_US",
        "Hello! This message comes from the WhatsApp sandbox.",
    ),
    _template(
        "774400110002",
        "order_update",
        "fr",
        "Bonjour {{1}}, votre commande {{2}} est expédiée.",
        footer="Acme",
        buttons=[
            {
                "type": "URL",
                "text": "Suivre",
                "url": "https://acme.example/track/{{1}}",
            },
            {"type": "QUICK_REPLY", "text": "Ne plus recevoir"},
        ],
    ),
    _template(
        "774400110003",
        "appointment_reminder",
        "en_US",
        "Hi {{first_name}}, see you on {{appointment_date}} at our shop.",
        parameter_format="NAMED",
    ),
    _template(
        "774400110004",
        "autumn_sale",
        "fr",
        "Profitez de -{{1}}% sur toute la boutique jusqu'à dimanche.",
        category="MARKETING",
        header={"format": "IMAGE"},
    ),
    _template(
        "774400110005",
        "login_code",
        "en_US",
        "{{1}} is your verification code.",
        category="AUTHENTICATION",
    ),
    _template(
        "774400110006",
        "new_offer",
        "fr",
        "Une nouvelle offre vous attend, {{1}}.",
        category="MARKETING",
        status="PENDING",
    ),
)


def _digits(value: str) -> str:
    return re.sub(r"[\s\-().+]", "", value)


def _new_wamid(counter: int) -> str:
    # Real wamids are base64 blobs; ours stay unique across servers and runs.
    raw = f"FAKE:{counter:010d}:{uuid.uuid4().hex}".encode("ascii")
    return "wamid." + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"cursor:{index}".encode("ascii")).decode("ascii")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
        prefix, _, index = text.partition(":")
        if prefix != "cursor":
            raise ValueError(cursor)
        return int(index)
    except (ValueError, UnicodeError) as exc:
        raise _Reject(100, "The 'after' cursor is not valid.") from exc


def _template_vars(text: str | None) -> list[str]:
    found: list[str] = []
    for name in _TEMPLATE_VAR.findall(text or ""):
        if name not in found:
            found.append(name)
    return found


# ---------------------------------------------------------------------------
# Send validation (pure functions raising _Reject)


def _require_str(obj: dict, key: str, where: str, *, max_len: int | None = None):
    value = obj.get(key)
    if value is None:
        raise _Reject(131008, f"The parameter {where}.{key} is required.")
    if not isinstance(value, str) or not value.strip():
        raise _Reject(131009, f"The parameter {where}.{key} must be non-empty text.")
    if max_len is not None and len(value) > max_len:
        raise _Reject(
            131009, f"The parameter {where}.{key} is longer than {max_len} characters."
        )
    return value


def _check_text(obj: dict) -> None:
    _require_str(obj, "body", "text", max_len=4096)
    if "preview_url" in obj and not isinstance(obj["preview_url"], bool):
        raise _Reject(131009, "text.preview_url must be a boolean.")


def _check_media(media_type: str, obj: dict) -> None:
    has_id, has_link = bool(obj.get("id")), bool(obj.get("link"))
    if not has_id and not has_link:
        raise _Reject(131008, f"{media_type} needs an id or a link.")
    if has_id and has_link:
        raise _Reject(131009, f"{media_type} takes an id or a link, not both.")
    if has_link and not re.match(r"https?://", str(obj["link"])):
        raise _Reject(131009, f"{media_type}.link must be an http(s) URL.")
    if "caption" in obj:
        if media_type not in _CAPTION_TYPES:
            raise _Reject(100, f"{media_type} does not take a caption.")
        if not isinstance(obj["caption"], str) or len(obj["caption"]) > 1024:
            raise _Reject(131009, "The caption must be at most 1024 characters.")
    if "filename" in obj and media_type != "document":
        raise _Reject(100, f"{media_type} does not take a filename.")


def _check_location(obj: dict) -> None:
    for key, bound in (("latitude", 90), ("longitude", 180)):
        value = obj.get(key)
        if value is None:
            raise _Reject(131008, f"The parameter location.{key} is required.")
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise _Reject(131009, f"location.{key} must be a number.") from exc
        if not -bound <= number <= bound:
            raise _Reject(131009, f"location.{key} is out of range.")


def _check_contacts(cards: object) -> None:
    if not isinstance(cards, list) or not cards:
        raise _Reject(131008, "contacts must be a non-empty list.")
    for card in cards:
        name = card.get("name") if isinstance(card, dict) else None
        if not isinstance(name, dict) or not name.get("formatted_name"):
            raise _Reject(131008, "Each contact needs name.formatted_name.")


def _check_reaction(obj: dict) -> None:
    _require_str(obj, "message_id", "reaction")
    if "emoji" not in obj or not isinstance(obj["emoji"], str):
        # An empty emoji is valid (it removes the reaction), a missing one is not.
        raise _Reject(131008, "The parameter reaction.emoji is required.")


def _check_interactive(obj: dict) -> None:
    itype = obj.get("type")
    if itype is None:
        raise _Reject(131008, "The parameter interactive.type is required.")
    if itype not in _INTERACTIVE_TYPES:
        raise _Reject(131009, f"Interactive type '{itype}' is not supported.")
    if itype in {"button", "list", "cta_url", "flow", "location_request_message"}:
        body = obj.get("body")
        if not isinstance(body, dict):
            raise _Reject(131008, "The parameter interactive.body is required.")
        _require_str(body, "text", "interactive.body", max_len=1024)
    for part in ("header", "footer"):
        if part in obj and not isinstance(obj[part], dict):
            raise _Reject(131009, f"interactive.{part} must be an object.")
    header = obj.get("header")
    if header is not None:
        if header.get("type") not in {"text", "image", "video", "document"}:
            raise _Reject(131009, "interactive.header.type is not valid.")
        if header["type"] == "text":
            _require_str(header, "text", "interactive.header", max_len=60)
    if obj.get("footer") is not None:
        _require_str(obj["footer"], "text", "interactive.footer", max_len=60)
    action = obj.get("action")
    if itype == "location_request_message" and action is None:
        return
    if not isinstance(action, dict):
        raise _Reject(131008, "The parameter interactive.action is required.")
    if itype == "button":
        _check_reply_buttons(action)
    elif itype == "list":
        _check_list(action)


def _check_reply_buttons(action: dict) -> None:
    buttons = action.get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise _Reject(131009, "Reply buttons: between 1 and 3 buttons are required.")
    titles, ids = set(), set()
    for button in buttons:
        reply = button.get("reply") if isinstance(button, dict) else None
        if button.get("type") != "reply" or not isinstance(reply, dict):
            raise _Reject(131009, "Each button must be {'type': 'reply', 'reply': {}}.")
        title = _require_str(reply, "title", "button.reply", max_len=20)
        button_id = _require_str(reply, "id", "button.reply", max_len=256)
        if title in titles or button_id in ids:
            raise _Reject(131009, "Button titles and ids must be unique.")
        titles.add(title)
        ids.add(button_id)


def _check_list(action: dict) -> None:
    _require_str(action, "button", "interactive.action", max_len=20)
    sections = action.get("sections")
    if not isinstance(sections, list) or not 1 <= len(sections) <= 10:
        raise _Reject(131009, "A list needs between 1 and 10 sections.")
    rows_total = 0
    for section in sections:
        rows = section.get("rows") if isinstance(section, dict) else None
        if not isinstance(rows, list) or not rows:
            raise _Reject(131009, "Each list section needs rows.")
        if len(sections) > 1:
            _require_str(section, "title", "section", max_len=24)
        for row in rows:
            if not isinstance(row, dict):
                raise _Reject(131009, "Each list row must be an object.")
            _require_str(row, "id", "row", max_len=200)
            _require_str(row, "title", "row", max_len=24)
            if len(str(row.get("description") or "")) > 72:
                raise _Reject(131009, "A row description is at most 72 characters.")
        rows_total += len(rows)
    if rows_total > 10:
        raise _Reject(131009, "A list has at most 10 rows in total.")


def _check_template_shape(obj: dict) -> None:
    _require_str(obj, "name", "template", max_len=512)
    language = obj.get("language")
    if not isinstance(language, dict) or not language.get("code"):
        raise _Reject(131008, "The parameter template.language.code is required.")
    components = obj.get("components", [])
    if not isinstance(components, list):
        raise _Reject(131009, "template.components must be a list.")
    for component in components:
        ctype = component.get("type") if isinstance(component, dict) else None
        if ctype not in {"header", "body", "button", "footer", "limited_time_offer"}:
            raise _Reject(131009, f"Template component type '{ctype}' is not valid.")
        if ctype == "button" and (
            "sub_type" not in component or "index" not in component
        ):
            raise _Reject(131008, "Template buttons need sub_type and index.")
        params = component.get("parameters", [])
        if not isinstance(params, list):
            raise _Reject(131009, "Template parameters must be a list.")
        for param in params:
            if not isinstance(param, dict) or "type" not in param:
                raise _Reject(131008, "Each template parameter needs a type.")
            text = param.get("text")
            if isinstance(text, str) and (
                "\n" in text or "\t" in text or "     " in text
            ):
                raise _Reject(
                    131009,
                    "Parameter text cannot have new lines, tabs or more than 4 "
                    "consecutive spaces.",
                )


def _check_template_params(template: dict, sent: dict) -> None:
    """132000 / 132012 checks of the parameters against the stored template."""
    given: dict[str, list] = {}
    for component in sent.get("components") or []:
        if component.get("type") in {"header", "body"}:
            given[component["type"]] = list(component.get("parameters") or [])
    stored = {c["type"]: c for c in template.get("components", [])}
    body_vars = _template_vars(stored.get("BODY", {}).get("text"))
    body_params = given.get("body", [])
    if len(body_params) != len(body_vars):
        raise _Reject(
            132000,
            f"The body expects {len(body_vars)} parameters, {len(body_params)} given.",
        )
    if template.get("parameter_format") == "NAMED":
        names = {p.get("parameter_name") for p in body_params}
        if names != set(body_vars):
            raise _Reject(132000, "The named parameters do not match the template.")
    header = stored.get("HEADER")
    header_params = given.get("header", [])
    expected_type = None
    if header and header.get("format", "TEXT") != "TEXT":
        expected_type = header["format"].lower()
    elif header and _template_vars(header.get("text")):
        expected_type = "text"
    if len(header_params) != (1 if expected_type else 0):
        raise _Reject(132000, "The header parameters do not match the template.")
    if expected_type and header_params[0].get("type") != expected_type:
        raise _Reject(132012, f"The header expects a {expected_type} parameter.")


_TYPE_CHECKS: dict[str, Callable[[dict], None]] = {
    "text": _check_text,
    "location": _check_location,
    "interactive": _check_interactive,
    "reaction": _check_reaction,
    "template": _check_template_shape,
}


def _validate_send(payload: dict) -> str:
    """Check a send body like Meta does; return its message type."""
    if payload.get("recipient_type", "individual") not in {"individual", "group"}:
        raise _Reject(131009, "recipient_type must be 'individual' or 'group'.")
    if not payload.get("to") and not payload.get("recipient"):
        raise _Reject(131008, "The parameter 'to' (or 'recipient') is required.")
    if payload.get("to"):
        to = payload["to"]
        if not isinstance(to, str):
            raise _Reject(131009, "'to' must be a string.")
        digits = _digits(to)
        if payload.get("recipient_type") != "group" and (
            not digits.isdigit() or not 6 <= len(digits) <= 15
        ):
            raise _Reject(131009, "'to' is not a valid phone number.")
    elif not isinstance(payload["recipient"], str):
        raise _Reject(131009, "'recipient' must be a string.")
    # Meta's reference makes `type` optional with "text" as the default.
    mtype = payload.get("type", "text")
    if mtype not in MESSAGE_TYPES:
        raise _Reject(131051, f"Message type '{mtype}' is not supported.")
    obj = payload.get(mtype)
    if obj is None:
        raise _Reject(131008, f"The parameter '{mtype}' is required.")
    if mtype == "contacts":
        _check_contacts(obj)
    elif not isinstance(obj, dict):
        raise _Reject(100, f"The parameter '{mtype}' must be an object.")
    elif mtype in MEDIA_TYPES:
        _check_media(mtype, obj)
    else:
        _TYPE_CHECKS.get(mtype, lambda _obj: None)(obj)
    context = payload.get("context")
    if context is not None and (
        not isinstance(context, dict) or not context.get("message_id")
    ):
        raise _Reject(131009, "context.message_id must be a wamid.")
    opaque = payload.get("biz_opaque_callback_data")
    if opaque is not None and (not isinstance(opaque, str) or len(opaque) > 512):
        raise _Reject(100, "biz_opaque_callback_data is at most 512 characters.")
    return mtype


# ---------------------------------------------------------------------------
# Multipart parsing (stdlib's cgi module is deprecated)


@dataclass
class _Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def _disposition_param(disposition: str, key: str) -> str | None:
    match = re.search(rf'(?:^|;)\s*{key}="([^"]*)"', disposition)
    return match.group(1) if match else None


def _parse_multipart(raw: bytes, content_type: str) -> dict[str, _Part]:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise _Reject(100, "The multipart body has no boundary.")
    delimiter = b"\r\n--" + match.group(1).encode("latin-1")
    parts: dict[str, _Part] = {}
    # The first delimiter has no CRLF before it; prepending one makes them uniform.
    for chunk in (b"\r\n" + raw).split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip():
                headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        name = _disposition_param(disposition, "name")
        if name is not None:
            parts[name] = _Part(
                name,
                _disposition_param(disposition, "filename"),
                headers.get("content-type"),
                data,
            )
    return parts


# ---------------------------------------------------------------------------
# HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeGraph, port: int):
        self.fake = fake
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request, client_address):
        # A client hanging up mid-request is normal in tests; keep stderr quiet.
        _logger.debug("fake graph: connection error", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like graph.facebook.com
    server_version = "FakeGraph/1.0"
    sys_version = ""
    timeout = 30  # idle keep-alive connections must not pin threads forever
    # One buffered write per response and no Nagle: otherwise every keep-alive
    # call pays the ~40 ms delayed-ACK stall between headers and body.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        # The stdlib line holds the full path, which may carry ?access_token=.
        pass

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_DELETE(self):
        self._serve("DELETE")

    def do_PUT(self):
        self._serve("PUT")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self, method: str) -> None:
        try:
            raw = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        reply = self.server.fake._handle(method, self.path, self.headers, raw)
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)


def _json_reply(payload: object, status: int = 200, headers=()) -> _Reply:
    body = json.dumps(payload, separators=(",", ":")).encode("ascii")
    return _Reply(status, body, headers=list(headers))


_AUTO = object()  # "compute the default" marker for send_status(pricing=...)


# ---------------------------------------------------------------------------
# The server


class FakeGraph:
    """In-process fake of graph.facebook.com for one or more WhatsApp numbers.

    Listens on 127.0.0.1 only. ``start()``/``stop()`` or use it as a context
    manager. See the module docstring for routes and the CLI.
    """

    def __init__(
        self,
        accounts: Sequence[FakeAccount] | None = None,
        *,
        port: int = 0,
        rate_limit: int | None = 80,
        rate_limit_status: int = 400,
        retry_after: float | None = None,
        enforce_window: bool = True,
        window_error: str = "sync",
        failure_rate: float = 0.0,
        failure_kinds: Sequence[str] = FAILURE_KINDS,
        failure_sends_only: bool = False,
        latency: float | tuple[float, float] = 0.0,
        errors_for: Mapping[str, tuple[int, int] | int] | None = None,
        templates: Iterable[dict] | None = None,
        wa_id_aliases: Mapping[str, str] | None = None,
        auto_statuses: bool = False,
        status_sequence: Sequence[str] = ("sent", "delivered", "read"),
        status_order: str = "in_order",
        duplicate_statuses: bool = False,
        status_delay: float = 0.0,
        escape_slashes: bool = False,
        webhook_timeout: float = 10.0,
        sandbox: bool = False,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        """Configure the fake; nothing listens until ``start()``.

        - ``rate_limit``: accepted sends per phone number in any sliding 1 s
          window (None or 0 disables); excess sends get 130429 with HTTP
          ``rate_limit_status`` (400 or 429) and a ``Retry-After`` header when
          ``retry_after`` is set.
        - ``enforce_window``: non-template sends need an inbound message from
          that customer in the last 24 h, else 131047 -- synchronously with
          ``window_error="sync"``, or accepted then a ``failed`` status webhook
          with ``window_error="async"``.
        - ``failure_rate``: share of Graph calls that fail before anything is
          accepted, picked from ``failure_kinds`` ("server_error" 500/131000,
          "bad_gateway" HTML 502, "unavailable" 503/2); with
          ``failure_sends_only`` only ``POST .../messages`` calls fail.
        - ``latency``: seconds added to each Graph call, or a (min, max) range.
        - ``errors_for``: recipient digits (or BSUID) -> ``(http_status, code)``
          or ``code``. A 200 status means "accept, then post a failed status
          webhook with that code" (an asynchronous failure).
        - ``templates``: template dicts as Graph returns them (default:
          ``DEFAULT_TEMPLATES``).
        - ``wa_id_aliases``: input digits -> the wa_id Meta answers (52 -> 521).
        - ``auto_statuses``: after each accepted send, a worker thread posts
          ``status_sequence`` webhooks (``status_order`` "in_order" or
          "shuffled", each twice with ``duplicate_statuses``), after
          ``status_delay`` seconds. As with Meta, the first status can reach
          the webhook before the sender has read the HTTP answer.
        - ``escape_slashes``: write "/" as "\\/" in webhook JSON, which some
          Meta payloads do; signatures stay valid since they cover raw bytes.
        - ``sandbox``: enable ``POST /_sandbox/inbound`` (no token).
        - ``seed``: seeds the random choices (failures, shuffled statuses).
        - ``clock``/``wall_clock``: injectable time sources (rate limit /
          24-hour window and webhook timestamps).
        """
        self.accounts: list[FakeAccount] = (
            [FakeAccount()] if accounts is None else list(accounts)
        )
        if not self.accounts:
            raise ValueError("FakeGraph needs at least one account")
        if window_error not in {"sync", "async"}:
            raise ValueError("window_error must be 'sync' or 'async'")
        if status_order not in {"in_order", "shuffled"}:
            raise ValueError("status_order must be 'in_order' or 'shuffled'")
        unknown_kinds = set(failure_kinds) - set(FAILURE_KINDS)
        if unknown_kinds or not failure_kinds:
            raise ValueError(f"failure_kinds must be taken from {FAILURE_KINDS}")
        self.rate_limit = rate_limit
        self.rate_limit_status = rate_limit_status
        self.retry_after = retry_after
        self.enforce_window = enforce_window
        self.window_error = window_error
        self.failure_rate = failure_rate
        self.failure_kinds = tuple(failure_kinds)
        self.failure_sends_only = failure_sends_only
        self.latency = latency
        self.errors_for: dict = dict(errors_for or {})
        self.templates: list[dict] = [
            json.loads(json.dumps(t))
            for t in (DEFAULT_TEMPLATES if templates is None else templates)
        ]
        self.wa_id_aliases = dict(wa_id_aliases or {})
        self.auto_statuses = auto_statuses
        self.status_sequence = tuple(status_sequence)
        self.status_order = status_order
        self.duplicate_statuses = duplicate_statuses
        self.status_delay = status_delay
        self.escape_slashes = escape_slashes
        self.webhook_timeout = webhook_timeout
        self.sandbox = sandbox
        self._requested_port = port
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = random.Random(seed)

        self._lock = threading.RLock()
        self._counter = itertools.count(1)
        self._received: list[RecordedRequest] = []
        self._sent: list[SentMessage] = []
        self._sent_by_wamid: dict[str, SentMessage] = {}
        self._send_times: dict[str, list[float]] = collections.defaultdict(list)
        self._recent: dict[str, collections.deque] = collections.defaultdict(
            collections.deque
        )
        self._windows: dict[tuple[str, str], float] = {}
        self._inbound_wamids: set[str] = set()
        self._read_receipts: list[dict] = []
        self._media: dict[str, _Media] = {}
        self._subscriptions: dict[str, list[dict]] = collections.defaultdict(list)
        self._deliveries: list[WebhookDelivery] = []

        self._server: _Server | None = None
        self._server_thread: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._jobs: queue.Queue = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._stopping = threading.Event()
        self._http = threading.local()  # one requests.Session per posting thread

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakeGraph:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self, self._requested_port)
        self._server_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # fast shutdown keeps test runs short
            name="fake-graph-http",
            daemon=True,
        )
        self._server_thread.start()
        self._worker = threading.Thread(
            target=self._worker_loop, name="fake-graph-webhooks", daemon=True
        )
        self._worker.start()
        _logger.debug("fake graph listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # also cuts latency and status_delay waits short
        self._server.shutdown()
        self._server.server_close()
        self._jobs.put(None)
        if self._worker is not None:
            self._worker.join(timeout=self.webhook_timeout + 1)
        if self._server_thread is not None:
            self._server_thread.join(timeout=5)
        self._server = self._server_thread = self._worker = None

    def __enter__(self) -> FakeGraph:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeGraph is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL to use instead of https://graph.facebook.com."""
        return f"http://127.0.0.1:{self.port}"

    def graph_url(self, path: str, version: str = "v26.0") -> str:
        return f"{self.url}/{version}/{path.lstrip('/')}"

    # -- inspection --------------------------------------------------------

    @property
    def received(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._received)

    def requests_to(
        self, path_contains: str = "", method: str | None = None
    ) -> list[RecordedRequest]:
        """Recorded requests whose path contains ``path_contains``."""
        return [
            r
            for r in self.received
            if path_contains in r.path and (method is None or r.method == method)
        ]

    @property
    def sent_messages(self) -> list[SentMessage]:
        with self._lock:
            return list(self._sent)

    @property
    def read_receipts(self) -> list[dict]:
        """Accepted mark-as-read bodies."""
        with self._lock:
            return list(self._read_receipts)

    @property
    def inbound_wamids(self) -> set[str]:
        """Wamids of the inbound messages the fake injected."""
        with self._lock:
            return set(self._inbound_wamids)

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        with self._lock:
            return list(self._deliveries)

    def accepted_send_times(self, phone_number_id: str | None = None) -> list[float]:
        with self._lock:
            if phone_number_id is not None:
                return list(self._send_times.get(phone_number_id, []))
            return sorted(t for times in self._send_times.values() for t in times)

    def max_sends_in_window(
        self, window: float = 1.0, phone_number_id: str | None = None
    ) -> int:
        """Most accepted sends within any half-open ``window`` seconds.

        Per phone number (the throughput limit is per number); the maximum over
        all numbers when ``phone_number_id`` is None.
        """
        with self._lock:
            if phone_number_id is not None:
                series = [self._send_times.get(phone_number_id, [])]
            else:
                series = list(self._send_times.values())
            return max((most_in_window(times, window) for times in series), default=0)

    def max_sends_received_in_window(
        self, window: float = 1.0, phone_number_id: str | None = None
    ) -> int:
        """Most sends the fake accepted, counted on *arrival*, in any ``window``.

        What Meta counts is what it receives: the acceptance stamps of
        :meth:`max_sends_in_window` come after the simulated latency, and on a
        busy machine the fake's own threads wake late from it, which bunches them.
        Marking as read (a POST to /messages with a ``status``) is not a send.
        """
        path = f"/{phone_number_id}/messages" if phone_number_id else "/messages"
        return most_in_window(
            [
                r.timestamp
                for r in self.requests_to(path, "POST")
                if r.status == 200
                and not (isinstance(r.body, dict) and "status" in r.body)
            ],
            window,
        )

    def reset_records(self) -> None:
        """Forget recorded requests, sends and deliveries (not media/windows)."""
        with self._lock:
            self._received.clear()
            self._sent.clear()
            self._sent_by_wamid.clear()
            self._send_times.clear()
            self._recent.clear()
            self._read_receipts.clear()
            self._deliveries.clear()

    # -- configuration helpers ----------------------------------------------

    def account(self, phone_number_id: str | None = None) -> FakeAccount:
        if phone_number_id is None:
            return self.accounts[0]
        for account in self.accounts:
            if account.phone_number_id == phone_number_id:
                return account
        raise KeyError(f"unknown phone number id {phone_number_id}")

    def add_template(
        self,
        name: str,
        language: str,
        body_text: str,
        *,
        status: str = "APPROVED",
        category: str = "UTILITY",
        parameter_format: str = "POSITIONAL",
        header: dict | None = None,
        footer: str | None = None,
        buttons: list | None = None,
    ) -> dict:
        """Add a template (Graph GET shape) and return it."""
        with self._lock:
            template_id = str(774400120000 + next(self._counter))
            template = _template(
                template_id,
                name,
                language,
                body_text,
                category=category,
                status=status,
                parameter_format=parameter_format,
                header=header,
                footer=footer,
                buttons=buttons,
            )
            self.templates.append(template)
            return template

    def add_media(
        self,
        content: bytes,
        mime_type: str,
        *,
        phone_number_id: str | None = None,
        filename: str | None = None,
    ) -> str:
        """Register a file as if a customer had sent it; return its media id."""
        account = self.account(phone_number_id)
        with self._lock:
            media_id = str(1480000000000000 + next(self._counter))
            self._media[media_id] = _Media(
                media_id, account.phone_number_id, bytes(content), mime_type, filename
            )
            return media_id

    def media_content(self, media_id: str) -> bytes | None:
        with self._lock:
            media = self._media.get(media_id)
            return media.content if media else None

    def open_window(
        self, phone_number_id: str, wa_id: str, at: float | None = None
    ) -> None:
        """Mark an inbound message from ``wa_id`` at epoch ``at`` (default now)."""
        key = (phone_number_id, self._recipient_key(wa_id))
        with self._lock:
            self._windows[key] = self._wall_clock() if at is None else at

    def close_window(self, phone_number_id: str, wa_id: str) -> None:
        with self._lock:
            self._windows.pop((phone_number_id, self._recipient_key(wa_id)), None)

    def window_open(self, phone_number_id: str, wa_id: str) -> bool:
        with self._lock:
            last = self._windows.get((phone_number_id, self._recipient_key(wa_id)))
        return last is not None and self._wall_clock() - last < WINDOW_SECONDS

    # -- acting as Meta toward the webhook ------------------------------------

    def build_envelope(
        self, phone_number_id: str, value: dict, field_name: str = "messages"
    ) -> dict:
        """Wrap a ``value`` in the object/entry/changes envelope of a webhook."""
        account = self.account(phone_number_id)
        if field_name == "messages":
            value = {
                "messaging_product": "whatsapp",
                "metadata": {
                    "display_phone_number": account.display_phone_number,
                    "phone_number_id": account.phone_number_id,
                },
                **value,
            }
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": account.waba_id,
                    "changes": [{"value": value, "field": field_name}],
                }
            ],
        }

    def encode_webhook(self, body: object) -> bytes:
        """Serialise like Meta: compact, ASCII with lowercase \\uXXXX escapes."""
        text = json.dumps(body, ensure_ascii=True, separators=(",", ":"))
        if self.escape_slashes:
            text = text.replace("/", "\\/")
        return text.encode("ascii")

    def post_webhook(
        self,
        phone_number_id: str,
        body: dict | bytes,
        *,
        signature: str | None = None,
        sign: bool = True,
    ) -> tuple[int, str]:
        """POST a (signed) webhook body to the account's webhook_url.

        ``body`` is a full envelope dict, or raw bytes sent as they are.
        ``signature`` overrides the header value (to test bad signatures);
        ``sign=False`` leaves the header out. Returns ``(status_code, text)``,
        with status 0 when no URL is set or the connection failed.
        """
        account = self.account(phone_number_id)
        raw = body if isinstance(body, bytes) else self.encode_webhook(body)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "facebookexternalua",
        }
        if sign:
            headers["X-Hub-Signature-256"] = (
                signature
                if signature is not None
                else sign_body(raw, account.app_secret)
            )
        url = account.webhook_url
        if not url:
            status, text = 0, "no webhook_url configured"
        else:
            try:
                response = self._session().post(
                    url,
                    data=raw,
                    headers=headers,
                    timeout=self.webhook_timeout,
                    allow_redirects=False,
                )
                status, text = response.status_code, response.text
            except requests.RequestException as exc:
                # The URL holds the webhook key; log the number and error class only.
                _logger.warning(
                    "fake graph: webhook for %s failed: %s",
                    phone_number_id,
                    type(exc).__name__,
                )
                status, text = 0, type(exc).__name__
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        with self._lock:
            self._deliveries.append(
                WebhookDelivery(
                    phone_number_id,
                    url,
                    parsed,
                    raw,
                    headers,
                    status,
                    text,
                    self._clock(),
                )
            )
        return status, text

    def inject_inbound(
        self,
        phone_number_id: str,
        message: dict,
        *,
        profile_name: str | None = "Test Customer",
        user_id: str | None = None,
    ) -> str:
        """Post a signed inbound-message webhook; return the message wamid.

        ``message`` is the object that goes in ``value.messages[]``; missing
        ``id`` and ``timestamp`` are filled in. Opens the 24-hour window for the
        sender (at the message timestamp) unless it is a ``system`` message.
        """
        return self._inject(
            phone_number_id, message, profile_name=profile_name, user_id=user_id
        )[0]

    def _inject(
        self,
        phone_number_id: str,
        message: dict,
        *,
        profile_name: str | None,
        user_id: str | None = None,
    ) -> tuple[str, int]:
        account = self.account(phone_number_id)
        message = dict(message)
        with self._lock:
            message.setdefault("id", _new_wamid(next(self._counter)))
        message.setdefault("timestamp", str(int(self._wall_clock())))
        if user_id and "from_user_id" not in message:
            message["from_user_id"] = user_id
        wa_id = message.get("from")
        bsuid = message.get("from_user_id")
        contact: dict = {}
        if profile_name is not None:
            contact["profile"] = {"name": profile_name}
        if wa_id:
            contact["wa_id"] = wa_id
        if bsuid:
            contact["user_id"] = bsuid
        value: dict = {"messages": [message]}
        if wa_id or bsuid:
            value = {"contacts": [contact], **value}
        with self._lock:
            self._inbound_wamids.add(message["id"])
            if message.get("type") != "system":
                at = float(message["timestamp"])
                for key in filter(None, (wa_id, bsuid)):
                    slot = (account.phone_number_id, self._recipient_key(key))
                    self._windows[slot] = max(self._windows.get(slot, at), at)
        status, _text = self.post_webhook(
            account.phone_number_id, self.build_envelope(phone_number_id, value)
        )
        return message["id"], status

    def inject_inbound_text(
        self,
        phone_number_id: str,
        from_wa_id: str,
        body: str,
        *,
        profile_name: str | None = "Test Customer",
        context_wamid: str | None = None,
        timestamp: float | None = None,
        user_id: str | None = None,
    ) -> str:
        """Post an inbound text message webhook; return its wamid."""
        message: dict = {"from": from_wa_id, "type": "text", "text": {"body": body}}
        if timestamp is not None:
            message["timestamp"] = str(int(timestamp))
        if context_wamid:
            account = self.account(phone_number_id)
            message["context"] = {
                "from": account.display_phone_number,
                "id": context_wamid,
            }
        return self.inject_inbound(
            phone_number_id, message, profile_name=profile_name, user_id=user_id
        )

    def inject_inbound_media(
        self,
        phone_number_id: str,
        from_wa_id: str,
        content: bytes,
        mime_type: str,
        *,
        media_type: str | None = None,
        caption: str | None = None,
        filename: str | None = None,
        profile_name: str | None = "Test Customer",
    ) -> tuple[str, str]:
        """Register media, post an inbound media message; return (wamid, media_id)."""
        media_id = self.add_media(
            content, mime_type, phone_number_id=phone_number_id, filename=filename
        )
        if media_type is None:
            major = mime_type.split("/")[0]
            media_type = major if major in {"image", "audio", "video"} else "document"
        obj: dict = {
            "id": media_id,
            "mime_type": mime_type,
            # Webhooks carry the digest in base64 (GET /{media-id} answers hex).
            "sha256": base64.b64encode(hashlib.sha256(content).digest()).decode(),
            "url": f"{self.url}/media-download/{media_id}",
        }
        if caption is not None:
            obj["caption"] = caption
        if filename is not None and media_type == "document":
            obj["filename"] = filename
        message = {"from": from_wa_id, "type": media_type, media_type: obj}
        wamid = self.inject_inbound(phone_number_id, message, profile_name=profile_name)
        return wamid, media_id

    def status_body(
        self,
        wamid: str,
        status: str,
        *,
        timestamp: float | None = None,
        errors: Sequence[dict | int] | None = None,
        pricing: dict | object | None = _AUTO,
        phone_number_id: str | None = None,
        recipient_id: str | None = None,
    ) -> tuple[str, dict]:
        """Build a status webhook envelope; return (phone_number_id, body)."""
        with self._lock:
            sent = self._sent_by_wamid.get(wamid)
        if sent is not None:
            phone_number_id = phone_number_id or sent.phone_number_id
        phone_number_id = self.account(phone_number_id).phone_number_id
        now = self._wall_clock()
        item: dict = {
            "id": wamid,
            "status": status,
            "timestamp": str(int(now if timestamp is None else timestamp)),
        }
        recipient = recipient_id or (sent.wa_id if sent else None)
        if recipient:
            item["recipient_id"] = recipient
        if sent is not None and sent.user_id:
            item["recipient_user_id"] = sent.user_id
        if sent is not None and sent.biz_opaque_callback_data is not None:
            item["biz_opaque_callback_data"] = sent.biz_opaque_callback_data
        if status == "failed":
            items = errors if errors else [131026]
            item["errors"] = [
                async_error(e) if isinstance(e, int) else dict(e) for e in items
            ]
        else:
            if pricing is _AUTO:
                pricing = sent.pricing if sent is not None else None
            if pricing:
                item["pricing"] = dict(pricing)
            if errors:
                item["errors"] = [
                    async_error(e) if isinstance(e, int) else dict(e) for e in errors
                ]
        return phone_number_id, self.build_envelope(
            phone_number_id, {"statuses": [item]}
        )

    def send_status(
        self,
        wamid: str,
        status: str,
        *,
        timestamp: float | None = None,
        errors: Sequence[dict | int] | None = None,
        pricing: dict | object | None = _AUTO,
        duplicate: bool = False,
        phone_number_id: str | None = None,
        recipient_id: str | None = None,
    ) -> tuple[int, str]:
        """Post a signed status webhook for ``wamid`` now; return the last answer.

        For a wamid the fake accepted, the number, recipient, opaque data and
        pricing come from that send. ``failed`` statuses carry ``errors``
        (dicts, or bare codes; default 131026) and no pricing.
        ``duplicate=True`` posts the identical bytes twice, as Meta may.
        """
        pnid, body = self.status_body(
            wamid,
            status,
            timestamp=timestamp,
            errors=errors,
            pricing=pricing,
            phone_number_id=phone_number_id,
            recipient_id=recipient_id,
        )
        raw = self.encode_webhook(body)
        result = self.post_webhook(pnid, raw)
        if duplicate:
            result = self.post_webhook(pnid, raw)
        return result

    def verify_webhook(self, phone_number_id: str, verify_token: str) -> bool:
        """Do Meta's GET handshake; True when the challenge is echoed back."""
        account = self.account(phone_number_id)
        if not account.webhook_url:
            return False
        challenge = str(self._rng.randrange(10**8, 10**9))
        params = {
            "hub.mode": "subscribe",
            "hub.challenge": challenge,
            "hub.verify_token": verify_token,
        }
        try:
            response = self._session().get(
                account.webhook_url, params=params, timeout=self.webhook_timeout
            )
        except requests.RequestException:
            return False
        return response.status_code == 200 and response.text == challenge

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until queued status webhooks are all posted; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    # -- internals: webhooks worker ------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._http, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # a proxy from the environment must not see it
            self._http.session = session
        return session

    def _enqueue(self, job: list[tuple[str, bytes]]) -> None:
        with self._idle:
            self._pending += 1
        self._jobs.put(job)

    def _worker_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                if self.status_delay and not self._stopping.is_set():
                    self._stopping.wait(self.status_delay)
                for pnid, raw in job:
                    if self._stopping.is_set():
                        break
                    self.post_webhook(pnid, raw)
            except Exception:  # the worker must survive any single bad job
                _logger.exception("fake graph: status webhook job failed")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _schedule_statuses(self, sent: SentMessage, failure: dict | None) -> None:
        if failure is not None:
            statuses = ["failed"]
        elif self.auto_statuses:
            statuses = list(self.status_sequence)
        else:
            return
        base = self._wall_clock()
        # Timestamps follow the true sequence even when posting order is shuffled.
        bodies = []
        for offset, status in enumerate(statuses):
            _pnid, body = self.status_body(
                sent.wamid,
                status,
                timestamp=base + offset,
                errors=[failure] if failure else None,
            )
            bodies.append(self.encode_webhook(body))
        if self.duplicate_statuses and failure is None:
            bodies = [raw for raw in bodies for _copy in (0, 1)]
        if self.status_order == "shuffled":
            with self._lock:
                self._rng.shuffle(bodies)
        self._enqueue([(sent.phone_number_id, raw) for raw in bodies])

    # -- internals: request handling -----------------------------------------

    def _recipient_key(self, value: str) -> str:
        digits = _digits(value)
        if digits.isdigit():
            return self.wa_id_aliases.get(digits, digits)
        return value  # a BSUID

    def _record(self, method, path, query, headers, raw) -> RecordedRequest:
        body = None
        content_type = headers.get("Content-Type", "")
        if raw and "json" in content_type.lower():
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        version = None
        match = re.match(r"/(v\d+\.\d+)(/|$)", path)
        if match:
            version = match.group(1)
        record = RecordedRequest(
            method=method,
            path=path,
            query=query,
            headers=CaseInsensitiveDict(headers.items()),
            body=body,
            raw_body=raw,
            timestamp=self._clock(),
            version=version,
        )
        with self._lock:
            self._received.append(record)
        return record

    def _handle(self, method: str, target: str, headers, raw: bytes) -> _Reply:
        split = urlsplit(target)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        record = self._record(method, split.path, query, headers, raw)
        try:
            reply = self._route(method, split.path, query, headers, raw, record)
        except _Reject as exc:
            reply = _json_reply(
                error_body(
                    exc.code,
                    exc.details,
                    message=exc.message,
                    subcode=exc.subcode,
                    error_type=exc.error_type,
                ),
                exc.status,
                exc.headers,
            )
        except Exception:  # answer like Graph's code 1 instead of dropping the socket
            _logger.exception("fake graph: internal error on %s %s", method, split.path)
            reply = _json_reply(error_body(1), 500)
        record.status = reply.status
        # The path never carries a token (query strings are not logged).
        _logger.debug("fake graph: %s %s -> %s", method, split.path, reply.status)
        return reply

    def _route(self, method, path, query, headers, raw, record) -> _Reply:
        if path == "/_sandbox/inbound" and self.sandbox and method == "POST":
            return self._sandbox_inbound(record)
        parts = [p for p in path.split("/") if p]
        if record.version is not None:
            parts = parts[1:]
        download = path.startswith("/media-download/")
        is_send = method == "POST" and parts[-1:] == ["messages"]
        self._wait_latency()
        if not download and (is_send or not self.failure_sends_only):
            failure = self._maybe_fail()
            if failure is not None:
                return failure
        token_accounts = self._authenticate(headers, query)
        if download:
            return self._download(path.rsplit("/", 1)[-1], token_accounts)
        if not parts or len(parts) > 2:
            raise _Reject(100, "Unknown path components.")
        node, edge = parts[0], (parts[1] if len(parts) > 1 else None)
        pnids = {a.phone_number_id: a for a in token_accounts}
        wabas = {a.waba_id for a in token_accounts}
        if node in pnids:
            account = pnids[node]
            if edge is None and method == "GET":
                return self._phone_info(account, query)
            if edge == "messages" and method == "POST":
                return self._messages(account, headers, record)
            if edge == "media" and method == "POST":
                return self._upload(account, headers, raw, record)
        elif node in wabas:
            return self._waba(node, edge, method, query, record)
        elif edge is None:
            with self._lock:
                media = self._media.get(node)
            if media is not None and media.phone_number_id in pnids:
                return self._media_node(media, method, query)
            template = self._template_by_id(node)
            if template is not None and method == "GET":
                return _json_reply(self._render_template(template, query))
        raise _unknown_node(method, node)

    def _wait_latency(self) -> None:
        latency = self.latency
        if isinstance(latency, tuple):
            with self._lock:
                latency = self._rng.uniform(*latency)
        if latency and latency > 0:
            # Event.wait sleeps only this handler thread and ends early on stop().
            self._stopping.wait(latency)

    def _maybe_fail(self) -> _Reply | None:
        if self.failure_rate <= 0:
            return None
        with self._lock:
            if self._rng.random() >= self.failure_rate:
                return None
            kind = self._rng.choice(self.failure_kinds)
        if kind == "bad_gateway":
            return _Reply(502, _BAD_GATEWAY_HTML, "text/html; charset=utf-8")
        if kind == "unavailable":
            return _json_reply(error_body(2, "Please retry later."), 503)
        return _json_reply(error_body(131000, "Please retry later."), 500)

    def _authenticate(self, headers, query) -> list[FakeAccount]:
        auth = headers.get("Authorization", "")
        token = None
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
        elif query.get("access_token"):
            token = query["access_token"]
        www_auth = [("WWW-Authenticate", 'OAuth "Facebook Platform" "invalid_token"')]
        if not token:
            raise _Reject(
                190,
                status=401,
                subcode=467,
                message="An access token is required to request this resource.",
                headers=www_auth,
            )
        given = token.encode("utf-8", "surrogateescape")
        matching = [
            a
            for a in self.accounts
            if hmac.compare_digest(a.access_token.encode("utf-8"), given)
        ]
        if not matching:
            raise _Reject(
                190,
                status=401,
                subcode=467,
                message="Invalid OAuth access token - Cannot parse access token",
                headers=www_auth,
            )
        live = [a for a in matching if not a.token_expired]
        if not live:
            raise _Reject(
                190,
                status=401,
                subcode=463,
                message="Error validating access token: Session has expired.",
                headers=www_auth,
            )
        return live

    # -- routes -----------------------------------------------------------------

    def _sandbox_inbound(self, record: RecordedRequest) -> _Reply:
        data = record.body
        if not isinstance(data, dict) or not data.get("from") or not data.get("text"):
            hint = 'send JSON {"from": "<digits>", "text": "..."}'
            return _json_reply({"error": hint}, 400)
        try:
            account = self.account(data.get("phone_number_id"))
        except KeyError:
            return _json_reply({"error": "unknown phone_number_id"}, 400)
        message: dict = {
            "from": _digits(str(data["from"])),
            "type": "text",
            "text": {"body": str(data["text"])},
        }
        if data.get("context"):
            message["context"] = {
                "from": account.display_phone_number,
                "id": str(data["context"]),
            }
        wamid, status = self._inject(
            account.phone_number_id,
            message,
            profile_name=data.get("name") or "Sandbox Customer",
        )
        return _json_reply({"id": wamid, "webhook_status": status})

    def _phone_payload(self, account: FakeAccount) -> dict:
        tier = account.messaging_limit_tier
        return {
            "id": account.phone_number_id,
            "display_phone_number": "+" + account.display_phone_number,
            "verified_name": account.verified_name,
            "quality_rating": account.quality_rating,
            "messaging_limit_tier": tier,
            "whatsapp_business_manager_messaging_limit": tier,
            "code_verification_status": "VERIFIED",
            "name_status": "APPROVED",
            "platform_type": "CLOUD_API",
            "throughput": {"level": account.throughput_level},
            "status": "CONNECTED",
            "account_mode": "LIVE",
            "health_status": {"can_send_message": "AVAILABLE", "entities": []},
            "is_official_business_account": False,
        }

    def _phone_info(self, account: FakeAccount, query) -> _Reply:
        payload = self._phone_payload(account)
        fields = [f for f in query.get("fields", "").split(",") if f.strip()]
        if not fields:
            return _json_reply(payload)
        result = {}
        for name in (f.strip() for f in fields):
            if name not in _PHONE_FIELDS:
                raise _Reject(
                    100,
                    message=(
                        f"(#100) Tried accessing nonexisting field ({name}) on node "
                        "type (WhatsAppBusinessPhoneNumber)"
                    ),
                )
            result[name] = payload[name]
        result["id"] = account.phone_number_id
        return _json_reply(result)

    def _messages(self, account, headers, record: RecordedRequest) -> _Reply:
        content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _Reject(100, "The request body must be JSON (application/json).")
        payload = record.body
        if payload is None:
            try:
                payload = json.loads(record.raw_body)
            except ValueError as exc:
                raise _Reject(100, "The request body is not valid JSON.") from exc
        if not isinstance(payload, dict):
            raise _Reject(100, "The request body must be a JSON object.")
        product = payload.get("messaging_product")
        if product is None:
            raise _Reject(131008, "The parameter messaging_product is required.")
        if product != "whatsapp":
            raise _Reject(100, "messaging_product must be 'whatsapp'.")
        if "status" in payload:
            return self._mark_read(account, payload)
        mtype = _validate_send(payload)
        pnid = account.phone_number_id
        raw_to = payload.get("to") or payload["recipient"]
        by_phone = bool(payload.get("to"))
        key = self._recipient_key(raw_to)
        forced = self._forced_error(key)
        async_failure = None
        if forced is not None:
            status, code = forced
            if status != 200:
                raise _Reject(code, f"Forced error for recipient {key}.", status=status)
            async_failure = async_error(code)
        template = None
        window_open = self.window_open(pnid, key)
        if mtype == "template":
            template = self._check_template(payload["template"])
        elif self.enforce_window and not window_open:
            if self.window_error != "async":
                raise _Reject(
                    131047,
                    "Message failed to send because more than 24 hours have passed "
                    "since the customer last replied to this number.",
                )
            async_failure = async_failure or async_error(
                131047, "Customer last wrote more than 24 h ago."
            )
        sent = self._accept(
            account, payload, mtype, raw_to, key, by_phone, template, window_open
        )
        self._schedule_statuses(sent, async_failure)
        contact = {"input": raw_to}
        contact.update({"wa_id": key} if by_phone else {"user_id": key})
        return _json_reply(
            {
                "messaging_product": "whatsapp",
                "contacts": [contact],
                "messages": [{"id": sent.wamid, "message_status": "accepted"}],
            }
        )

    def _mark_read(self, account: FakeAccount, payload: dict) -> _Reply:
        if payload["status"] != "read":
            raise _Reject(131009, "Only status 'read' can be set.")
        wamid = payload.get("message_id")
        if not wamid:
            raise _Reject(131008, "The parameter message_id is required.")
        if not isinstance(wamid, str) or not wamid.startswith("wamid."):
            raise _Reject(131009, "message_id is not a valid message id.")
        indicator = payload.get("typing_indicator")
        if indicator is not None and indicator != {"type": "text"}:
            raise _Reject(131009, "typing_indicator must be {'type': 'text'}.")
        with self._lock:
            self._read_receipts.append(
                {"phone_number_id": account.phone_number_id, **payload}
            )
        return _json_reply({"success": True})

    def _forced_error(self, key: str) -> tuple[int, int] | None:
        for target, value in self.errors_for.items():
            if self._recipient_key(target) == key:
                return value if isinstance(value, tuple) else (400, int(value))
        return None

    def _check_template(self, sent_template: dict) -> dict:
        name = sent_template["name"]
        code = sent_template["language"]["code"]
        with self._lock:
            template = next(
                (
                    t
                    for t in self.templates
                    if t.get("name") == name and t.get("language") == code
                ),
                None,
            )
        if template is None:
            raise _Reject(132001, f"Template '{name}' does not exist in {code}.")
        status = template.get("status")
        if status == "PAUSED":
            raise _Reject(132015, f"Template '{name}' is paused.")
        if status == "DISABLED":
            raise _Reject(132016, f"Template '{name}' is disabled.")
        if status != "APPROVED":
            raise _Reject(132001, f"Template '{name}' is {status}, not APPROVED.")
        _check_template_params(template, sent_template)
        return template

    def _accept(
        self, account, payload, mtype, raw_to, key, by_phone, template, window_open
    ) -> SentMessage:
        """Rate-limit check and acceptance, atomically (the limiter's invariant)."""
        pnid = account.phone_number_id
        with self._lock:
            now = self._clock()
            recent = self._recent[pnid]
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            if self.rate_limit and len(recent) >= self.rate_limit:
                headers = []
                if self.retry_after is not None:
                    headers.append(("Retry-After", f"{self.retry_after:g}"))
                raise _Reject(
                    130429,
                    f"Throughput limit of {self.rate_limit} messages per second "
                    "reached for this phone number.",
                    status=self.rate_limit_status,
                    headers=headers,
                )
            recent.append(now)
            self._send_times[pnid].append(now)
            sent = SentMessage(
                wamid=_new_wamid(next(self._counter)),
                phone_number_id=pnid,
                to=raw_to,
                wa_id=key if by_phone else None,
                user_id=None if by_phone else key,
                type=mtype,
                payload=payload,
                timestamp=now,
                sent_at=self._wall_clock(),
                biz_opaque_callback_data=payload.get("biz_opaque_callback_data"),
                pricing=self._pricing(template, window_open),
            )
            self._sent.append(sent)
            self._sent_by_wamid[sent.wamid] = sent
        return sent

    @staticmethod
    def _pricing(template: dict | None, window_open: bool) -> dict:
        if template is None:
            category, ptype, billable = "service", "free_customer_service", False
        else:
            category = str(template.get("category", "UTILITY")).lower()
            # Utility templates inside an open service window are free (docs §6.3).
            free = category == "utility" and window_open
            ptype = "free_customer_service" if free else "regular"
            billable = not free
        return {
            "billable": billable,
            "pricing_model": "PMP",
            "type": ptype,
            "category": category,
        }

    def _upload(self, account, headers, raw, record: RecordedRequest) -> _Reply:
        content_type = headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise _Reject(100, "Media must be uploaded as multipart/form-data.")
        parts = _parse_multipart(raw, content_type)
        record.form = {
            name: (
                {
                    "filename": part.filename,
                    "content_type": part.content_type,
                    "size": len(part.data),
                }
                if part.filename is not None
                else part.data.decode("utf-8", "replace")
            )
            for name, part in parts.items()
        }
        product = parts.get("messaging_product")
        if product is None:
            raise _Reject(131008, "The parameter messaging_product is required.")
        if product.data.decode("utf-8", "replace") != "whatsapp":
            raise _Reject(100, "messaging_product must be 'whatsapp'.")
        file_part = parts.get("file")
        if file_part is None or file_part.filename is None:
            raise _Reject(131008, "The parameter file is required.")
        mime = (
            parts["type"].data.decode("utf-8", "replace")
            if "type" in parts
            else file_part.content_type
        )
        if not mime:
            raise _Reject(131008, "The parameter type is required.")
        limit = MEDIA_LIMITS.get(mime.split(";")[0].strip().lower())
        if limit is None:
            raise _Reject(131053, f"Unsupported media type {mime}.")
        if len(file_part.data) > limit:
            raise _Reject(131053, f"The file is larger than {limit} bytes.")
        if not file_part.data:
            raise _Reject(131053, "The file is empty.")
        media_id = self.add_media(
            file_part.data,
            mime,
            phone_number_id=account.phone_number_id,
            filename=file_part.filename,
        )
        return _json_reply({"id": media_id})

    def _media_node(self, media: _Media, method: str, query) -> _Reply:
        scope = query.get("phone_number_id")
        if scope and scope != media.phone_number_id:
            raise _unknown_node(method, media.media_id)
        if method == "GET":
            return _json_reply(
                {
                    "messaging_product": "whatsapp",
                    "url": f"{self.url}/media-download/{media.media_id}",
                    "mime_type": media.mime_type,
                    "sha256": media.sha256,
                    "file_size": len(media.content),
                    "id": media.media_id,
                }
            )
        if method == "DELETE":
            with self._lock:
                self._media.pop(media.media_id, None)
            return _json_reply({"success": True})
        raise _unknown_node(method, media.media_id)

    def _download(self, media_id: str, token_accounts) -> _Reply:
        with self._lock:
            media = self._media.get(media_id)
        owners = {a.phone_number_id for a in token_accounts}
        if media is None or media.phone_number_id not in owners:
            return _Reply(404, b"Not Found", "text/plain; charset=utf-8")
        headers = []
        if media.filename:
            headers.append(
                ("Content-Disposition", f'attachment; filename="{media.filename}"')
            )
        return _Reply(200, media.content, media.mime_type, headers)

    def _waba(self, waba_id, edge, method, query, record) -> _Reply:
        if edge is None and method == "GET":
            account = next(a for a in self.accounts if a.waba_id == waba_id)
            return _json_reply(
                {
                    "id": waba_id,
                    "name": account.verified_name,
                    "currency": "EUR",
                    "timezone_id": "1",
                    "message_template_namespace": "fake_namespace",
                }
            )
        if edge == "message_templates" and method == "GET":
            return self._list_templates(waba_id, query, record)
        if edge == "phone_numbers" and method == "GET":
            data = [
                self._phone_payload(a) for a in self.accounts if a.waba_id == waba_id
            ]
            return _json_reply({"data": data, "paging": {"cursors": {}}})
        if edge == "subscribed_apps":
            with self._lock:
                apps = self._subscriptions[waba_id]
                if method == "GET":
                    return _json_reply({"data": list(apps)})
                if method == "POST":
                    if not apps:
                        apps.append(
                            {
                                "whatsapp_business_api_data": {
                                    "id": _FAKE_APP_ID,
                                    "link": "https://www.facebook.com/games/?app_id="
                                    + _FAKE_APP_ID,
                                    "name": "Fake Graph App",
                                }
                            }
                        )
                    return _json_reply({"success": True})
                if method == "DELETE":
                    apps.clear()
                    return _json_reply({"success": True})
        raise _unknown_node(method, waba_id)

    def _template_by_id(self, template_id: str) -> dict | None:
        with self._lock:
            return next((t for t in self.templates if t.get("id") == template_id), None)

    @staticmethod
    def _render_template(template: dict, query) -> dict:
        fields = [f.strip() for f in query.get("fields", "").split(",") if f.strip()]
        if not fields:
            return json.loads(json.dumps(template))
        rendered = {"id": template["id"]}
        for name in fields:
            if name in template:
                rendered[name] = json.loads(json.dumps(template[name]))
        return rendered

    def _list_templates(self, waba_id, query, record: RecordedRequest) -> _Reply:
        filters = [
            (key, query[key])
            for key in ("status", "name", "language", "category")
            if query.get(key)
        ]
        with self._lock:
            items = [
                t
                for t in self.templates
                if all(str(t.get(k, "")).upper() == v.upper() for k, v in filters)
            ]
        try:
            limit = int(query.get("limit", 25))
        except ValueError as exc:
            raise _Reject(100, "limit must be an integer.") from exc
        limit = max(1, min(limit, 1000))
        start = _decode_cursor(query["after"]) + 1 if query.get("after") else 0
        page = items[start : start + limit]
        payload: dict = {"data": [self._render_template(t, query) for t in page]}
        if page:
            last = start + len(page) - 1
            cursors = {"before": _encode_cursor(start), "after": _encode_cursor(last)}
            paging: dict = {"cursors": cursors}
            if last + 1 < len(items):
                params = {k: v for k, v in query.items() if k != "before"}
                params["after"] = _encode_cursor(last)
                # Graph echoes a query-string token in paging.next; a header is not.
                prefix = f"/{record.version}" if record.version else ""
                paging["next"] = (
                    f"{self.url}{prefix}/{waba_id}/message_templates?"
                    + urlencode(params)
                )
            payload["paging"] = paging
        return _json_reply(payload)


# ---------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Fake WhatsApp Cloud API (Graph) server for local development."
    )
    defaults = FakeAccount()
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--phone-number-id", default=defaults.phone_number_id)
    parser.add_argument("--waba-id", default=defaults.waba_id)
    parser.add_argument("--display-phone-number", default=defaults.display_phone_number)
    parser.add_argument("--verified-name", default=defaults.verified_name)
    parser.add_argument("--token", default="sandbox-token")
    parser.add_argument("--app-secret", default="sandbox-secret")
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--rate-limit", type=int, default=80)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--auto-statuses", action="store_true")
    parser.add_argument(
        "--no-window",
        action="store_true",
        help="do not enforce the 24-hour customer-service window",
    )
    return parser


def graph_from_args(argv: Sequence[str] | None = None) -> FakeGraph:
    """Build (not start) the sandbox server from command-line arguments."""
    args = build_parser().parse_args(argv)
    account = FakeAccount(
        phone_number_id=args.phone_number_id,
        waba_id=args.waba_id,
        access_token=args.token,
        app_secret=args.app_secret,
        display_phone_number=args.display_phone_number,
        verified_name=args.verified_name,
        webhook_url=args.webhook_url,
    )
    return FakeGraph(
        [account],
        port=args.port,
        rate_limit=args.rate_limit,
        latency=args.latency,
        failure_rate=args.failure_rate,
        seed=args.seed,
        auto_statuses=args.auto_statuses,
        enforce_window=not args.no_window,
        sandbox=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    if ADDON_DIR.is_dir() and str(ADDON_DIR) not in sys.path:
        sys.path.insert(0, str(ADDON_DIR))  # lets sign_body use the addon's signer
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    fake = graph_from_args(argv).start()
    account = fake.account()
    print(  # noqa: T201 - the sandbox talks to a human
        f"Fake Graph API listening on {fake.url} (any /vNN.0 version)\n"
        "\nPaste into the Odoo WhatsApp account:\n"
        f"  Graph base URL      {fake.url}\n"
        f"  Phone number id     {account.phone_number_id}\n"
        f"  WABA id             {account.waba_id}\n"
        f"  Access token        {account.access_token}\n"
        f"  App secret          {account.app_secret}\n"
        f"\nWebhooks are posted to: {account.webhook_url or '(none: --webhook-url)'}\n"
        "\nSimulate a customer message:\n"
        f"  curl -X POST {fake.url}/_sandbox/inbound "
        "-H 'Content-Type: application/json' "
        """-d '{"from": "33612345678", "text": "Bonjour"}'\n"""
        "\nCtrl+C to stop.",
        flush=True,
    )
    done = threading.Event()
    # `kill <pid>` should stop as cleanly as Ctrl+C does.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: done.set())
    try:
        # Short waits keep the main thread responsive to Ctrl+C everywhere.
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
