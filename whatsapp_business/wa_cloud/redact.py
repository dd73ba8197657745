"""Masking of credentials and phone numbers before text reaches a log.

What :func:`redact` masks:

* credentials: ``Bearer <token>``, Meta access tokens (``EAA`` followed by 20+
  letters/digits) anywhere, and the value of labelled secrets such as
  ``access_token=...``, ``"client_secret": "..."``, ``appsecret_proof``,
  ``verify_token``, ``app_secret``, ``input_token``, ``fb_exchange_token``;
* phone numbers, but only where they are recognisable as such:
  - a ``+`` followed by 8 to 15 digits (single spaces, dots, dashes or
    brackets between the digits allowed), e.g. ``+33 6 12 34 56 78``;
  - 8 to 15 digits (optionally after ``+``) labelled ``wa_id``, ``from``,
    ``to``, ``recipient_id``, ``phone``, ``phone_number`` or
    ``display_phone_number`` as in JSON (``"wa_id": "336..."``) or a query
    string (``to=336...``).

Bare digit runs are kept on purpose: phone number ids, WABA ids, media ids and
template ids are 15+ digit numbers that support needs to read. wamids are kept
too. A free-text phone number without ``+`` or label is therefore not masked.
"""

import logging
import re

ELLIPSIS = "…"

_SECRET_LABELS = (
    "access_token",
    "client_secret",
    "appsecret_proof",
    "app_secret",
    "verify_token",
    "input_token",
    "fb_exchange_token",
)
# Between a label and its value: quotes (maybe JSON-escaped), ':' or '=', spaces.
_SEPARATOR = r"([\\\"']*\s*[:=]\s*[\\\"']*)"
# label, separator (kept as written), value.
_LABELLED_SECRET = re.compile(
    r"(?i)(?<![A-Za-z0-9_])("
    + "|".join(_SECRET_LABELS)
    + r")"
    + _SEPARATOR
    + r"([^\s\\\"'&,;}\]]+)"
)
# The ellipsis is included so that an already masked token is seen whole.
_BEARER = re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=\u2026-]+)")
_META_TOKEN = re.compile(r"(?<![A-Za-z0-9])EAA[A-Za-z0-9]{20,}")

_PHONE_LABELS = (
    "wa_id",
    "from",
    "to",
    "recipient_id",
    "phone",
    "phone_number",
    "display_phone_number",
)
# '+' may arrive URL-encoded as %2B in query strings.
_PLUS = r"(?:\+|%2[Bb])"
_LABELLED_PHONE = re.compile(
    r"(?i)(?<![A-Za-z0-9_])("
    + "|".join(_PHONE_LABELS)
    + r")"
    + _SEPARATOR
    + r"("
    + _PLUS
    + r"?\d{8,15})(?!\d)"
)
# '+' then 8-15 digits, single separators allowed between digits.
_PLUS_PHONE = re.compile(r"(?<![\w+%])" + _PLUS + r"\d(?:[ .()-]?\d){7,14}(?!\d)")


def mask_token(token) -> str:
    """``'EAAGm0PX4ZCps...'`` -> ``'EAAG…(len 212)'``: at most 4 characters kept.

    Short values (under 16 characters) keep nothing, so a password-like value
    is never half revealed.
    """
    if token is None:
        return ""
    token = str(token)
    if not token:
        return ""
    prefix = token[:4] if len(token) >= 16 else ""
    return f"{prefix}{ELLIPSIS}(len {len(token)})"


def mask_phone(phone) -> str:
    """``'+33612345678'`` -> ``'+336******78'``: country code-ish head and 2 digits.

    Separators are dropped. Fewer than 6 digits are masked entirely.
    """
    if phone is None:
        return ""
    phone = str(phone)
    digits = "".join(char for char in phone if char.isdigit())
    plus = "+" if phone.lstrip().startswith("+") else ""
    if len(digits) < 6:
        return plus + "*" * len(digits)
    return plus + digits[:3] + "*" * (len(digits) - 5) + digits[-2:]


def _mask_phone_text(text: str) -> str:
    if text[:3].upper() == "%2B":
        return "%2B" + mask_phone(text[3:])
    return mask_phone(text)


def _mask_secret(value: str) -> str:
    # Already masked (redact() run twice): leave it alone.
    return value if ELLIPSIS in value else mask_token(value)


def redact(text) -> str:
    """Return ``text`` with credentials and recognisable phone numbers masked."""
    if text is None:
        return ""
    text = str(text)
    if not text:
        return text
    text = _BEARER.sub(lambda m: m.group(1) + _mask_secret(m.group(2)), text)
    text = _LABELLED_SECRET.sub(
        lambda m: m.group(1) + m.group(2) + _mask_secret(m.group(3)), text
    )
    text = _META_TOKEN.sub(lambda m: mask_token(m.group(0)), text)
    text = _LABELLED_PHONE.sub(
        lambda m: m.group(1) + m.group(2) + _mask_phone_text(m.group(3)), text
    )
    return _PLUS_PHONE.sub(lambda m: _mask_phone_text(m.group(0)), text)


class RedactingFilter(logging.Filter):
    """Logging filter that runs :func:`redact` over each record.

    The message is formatted first (so secrets inside ``%s`` arguments of any
    type are caught), then stored redacted with no arguments left. Tracebacks
    and stack info are redacted too. Attach it to a handler to cover every
    logger behind it, or to a logger for that logger only.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            # Bad %-arguments: let logging report it, but still scrub the format.
            record.msg = redact(record.msg)
            return True
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
