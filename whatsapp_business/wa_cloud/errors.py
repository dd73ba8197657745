"""Typed errors of the Cloud API, built from Graph responses or webhook error objects.

Classification is done on Meta's ``code`` first (Meta says the HTTP status varies);
the HTTP status is only the fallback for unknown codes and non-JSON bodies.
``ConfigurationError`` lives in ``crypto`` and ``SignatureError`` in ``webhook``.
"""

import email.utils
import json
import re
import time
from collections.abc import Mapping
from http import HTTPStatus

from .redact import redact

__all__ = [
    "AUTH_SUBCODE_REASONS",
    "AccountBlockedError",
    "ApiPermissionError",
    "AuthenticationError",
    "ConnectError",
    "InvalidRequestError",
    "MediaError",
    "OptedOutError",
    "RateLimitError",
    "ReadTimeoutError",
    "RecipientError",
    "ReengagementRequiredError",
    "ServerError",
    "TemplateError",
    "TransportError",
    "WhatsAppError",
    "error_from_payload",
    "error_from_response",
    "holds_account",
    "parse_retry_after",
    "scrub_secrets",
]

# Meta's 190 subcodes, in our own words (Graph error-handling page).
AUTH_SUBCODE_REASONS = {
    458: "app_not_installed",
    459: "user_checkpointed",
    460: "password_changed",
    463: "expired",
    464: "user_unconfirmed",
    467: "invalid",
    492: "invalid_session",
}

_RATE_LIMIT_SCOPES = {
    4: "app",
    80007: "account",
    130429: "phone_number",
    131056: "recipient",
}

# Pair rate limit: Meta tolerates about one message every 6 s to the same user.
PAIR_RATE_LIMIT_DELAY = 6.0

# 100 with this subcode: the phone number id does not exist, or the token has no
# access to it. Every send of the account fails the same way.
UNKNOWN_OBJECT_SUBCODE = 33


def scrub_secrets(text):
    """Return ``text`` with tokens, secrets and phone numbers masked."""
    if not text:
        return text
    return redact(text)


class WhatsAppError(Exception):
    """Base of every error reported by (or on the way to) the Cloud API."""

    category = "unknown"
    retryable = False
    # True when every other send of the account would fail the same way: the
    # queue holds instead of failing messages one by one.
    account_level = False

    def __init__(
        self,
        message="",
        *,
        code=None,
        subcode=None,
        title="",
        details="",
        fbtrace_id=None,
        http_status=None,
        is_transient=None,
        retry_after=None,
        error_type=None,
        user_title=None,
        user_message=None,
        retryable=None,
    ):
        self.message = scrub_secrets(message or "")
        self.code = code
        self.subcode = subcode
        self.title = scrub_secrets(title or "")
        self.details = scrub_secrets(details or "")
        self.fbtrace_id = fbtrace_id
        self.http_status = http_status
        self.is_transient = is_transient
        self.retry_after = retry_after
        self.error_type = error_type
        self.user_title = scrub_secrets(user_title) if user_title else None
        self.user_message = scrub_secrets(user_message) if user_message else None
        if retryable is not None:
            # Instance override; the class attribute stays the documented default.
            self.retryable = bool(retryable)
        super().__init__(self.message)

    def __str__(self):
        head = []
        if self.code is not None:
            head.append(
                f"#{self.code}/{self.subcode}" if self.subcode else f"#{self.code}"
            )
        if self.http_status is not None:
            head.append(f"HTTP {self.http_status}")
        # The code is already in the head: drop Graph's "(#code) " prefix.
        text = _strip_code_prefix(self.message) or self.title or type(self).__name__
        if self.details and self.details not in text:
            text = f"{text}: {self.details}"
        if head:
            text = f"({', '.join(head)}) {text}"
        if self.fbtrace_id:
            text = f"{text} [fbtrace_id={self.fbtrace_id}]"
        # Defence in depth: messages come from the network and could echo a secret.
        return scrub_secrets(text)

    def __repr__(self):
        return (
            f"{type(self).__name__}(code={self.code!r}, subcode={self.subcode!r}, "
            f"http_status={self.http_status!r}, fbtrace_id={self.fbtrace_id!r})"
        )

    def to_dict(self):
        """Plain, JSON-serialisable description, safe to store."""
        return {
            "error_class": type(self).__name__,
            "category": self.category,
            "retryable": self.retryable,
            "code": self.code,
            "subcode": self.subcode,
            "title": self.title,
            "message": self.message,
            "details": self.details,
            "fbtrace_id": self.fbtrace_id,
            "http_status": self.http_status,
            "is_transient": self.is_transient,
            "retry_after": self.retry_after,
        }


class AuthenticationError(WhatsAppError):
    """Token expired, invalid or revoked (0, 190): never fixes itself."""

    category = "authentication"
    account_level = True

    @property
    def reason(self):
        """Short name for the 190 subcode (``'expired'``...), or None."""
        return AUTH_SUBCODE_REASONS.get(self.subcode)


class ApiPermissionError(WhatsAppError):
    """The token lacks a permission or asset access (3, 10, 200-299, 131005)."""

    category = "permission"
    account_level = True


class RateLimitError(WhatsAppError):
    """A throughput, pair-rate or Graph call limit was hit; retry later."""

    category = "rate_limit"
    retryable = True

    @property
    def scope(self):
        """Limit hit: 'app', 'account', 'phone_number', 'recipient' or 'http'."""
        return _RATE_LIMIT_SCOPES.get(self.code, "http")


class RecipientError(WhatsAppError):
    """The message cannot reach this recipient (not on WhatsApp, held back...)."""

    category = "recipient"


class ReengagementRequiredError(RecipientError):
    """131047: the 24 h customer-service window is closed; use a template."""

    category = "window_closed"


class OptedOutError(RecipientError):
    """131050: the user opted out of marketing messages from this business."""

    category = "opted_out"


class TemplateError(WhatsAppError):
    """Template missing, not approved, paused, or parameters do not match."""

    category = "template"


class MediaError(WhatsAppError):
    """Media could not be fetched, uploaded or downloaded."""

    category = "media"


class InvalidRequestError(WhatsAppError):
    """Bad parameter, unknown object, or any other client-side 4xx."""

    category = "invalid_request"


class AccountBlockedError(WhatsAppError):
    """Account-level block (policy, payment, registration): every send fails."""

    category = "account"
    account_level = True


class ServerError(WhatsAppError):
    """Meta-side failure or a 5xx (including non-JSON proxy pages)."""

    category = "server"
    retryable = True


class TransportError(WhatsAppError):
    """The HTTP exchange itself failed (no usable response)."""

    category = "network"

    def __init__(self, message="", *, reached_server=True, **kwargs):
        # Unknown means "maybe reached": the safe assumption against double sends.
        self.reached_server = reached_server
        super().__init__(message, **kwargs)

    def to_dict(self):
        data = super().to_dict()
        data["reached_server"] = self.reached_server
        return data


class ConnectError(TransportError):
    """No connection could be made: the request surely never reached Meta."""

    retryable = True

    def __init__(self, message="", **kwargs):
        kwargs["reached_server"] = False
        super().__init__(message, **kwargs)


class ReadTimeoutError(TransportError):
    """The request was sent but no answer came in time: it may have been processed."""

    retryable = True

    def __init__(self, message="", **kwargs):
        kwargs["reached_server"] = True
        super().__init__(message, **kwargs)


_CODE_CLASSES = {
    0: AuthenticationError,
    190: AuthenticationError,
    3: ApiPermissionError,
    10: ApiPermissionError,
    131005: ApiPermissionError,
    4: RateLimitError,
    80007: RateLimitError,
    130429: RateLimitError,
    131056: RateLimitError,
    131021: RecipientError,
    131026: RecipientError,
    131030: RecipientError,
    130472: RecipientError,
    131049: RecipientError,
    131062: RecipientError,
    137000: RecipientError,
    131047: ReengagementRequiredError,
    131050: OptedOutError,
    131052: MediaError,
    131053: MediaError,
    100: InvalidRequestError,
    131008: InvalidRequestError,
    131009: InvalidRequestError,
    # Outbound 131051 means we sent a type Meta does not know: our request is wrong.
    131051: InvalidRequestError,
    135000: InvalidRequestError,
    368: AccountBlockedError,
    131031: AccountBlockedError,
    131037: AccountBlockedError,
    131042: AccountBlockedError,
    131045: AccountBlockedError,
    131048: AccountBlockedError,
    131063: AccountBlockedError,
    131064: AccountBlockedError,
    133010: AccountBlockedError,
    133016: AccountBlockedError,
    1: ServerError,
    2: ServerError,
    131000: ServerError,
    131016: ServerError,
    131057: ServerError,
    133004: ServerError,
}


def holds_account(error):
    """True if ``error`` stops every send of the account until an admin acts.

    Authentication (0, 190, HTTP 401), permissions (3, 10, 200-299, 131005,
    100 with subcode 33) and account blocks (368, 131031, 131042...).
    """
    return bool(getattr(error, "account_level", False))


def _class_for_code(code):
    if code is None:
        return None
    cls = _CODE_CLASSES.get(code)
    if cls is not None:
        return cls
    if 200 <= code <= 299:
        return ApiPermissionError
    if 132000 <= code <= 132999:
        return TemplateError
    return None


def _class_for_status(http_status):
    if http_status is None:
        return WhatsAppError
    if http_status == 401:
        return AuthenticationError
    if http_status == 403:
        return ApiPermissionError
    if http_status == 429:
        return RateLimitError
    if http_status >= 500:
        return ServerError
    if http_status >= 400:
        return InvalidRequestError
    return WhatsAppError


def _to_int(value):
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _header(headers, name):
    """Case-insensitive lookup working on plain dicts as well as requests' headers."""
    if not headers:
        return None
    try:
        value = headers.get(name)
    except AttributeError:
        return None
    if value is not None:
        return value
    lowered = name.lower()
    for key, value in headers.items():
        if str(key).lower() == lowered:
            return value
    return None


def parse_retry_after(value, now=None):
    """Seconds to wait from a Retry-After value (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        current = time.time() if now is None else now
        seconds = when.timestamp() - current
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _strip_code_prefix(message):
    # Graph messages look like "(#131009) Parameter value is not valid".
    match = re.match(r"^\(#\d+\)\s*(.*)$", message or "", re.DOTALL)
    return match.group(1) if match else (message or "")


def _build(cls, error, http_status, retry_after):
    code = _to_int(error.get("code"))
    subcode = _to_int(error.get("error_subcode"))
    message = error.get("message") or ""
    if not isinstance(message, str):
        message = str(message)
    # Async errors carry a title; sync ones only "(#code) Title" in the message.
    title = error.get("title") or _strip_code_prefix(message)
    error_data = error.get("error_data")
    details = ""
    if isinstance(error_data, Mapping):
        details = error_data.get("details") or ""
    elif isinstance(error_data, str):
        details = error_data
    is_transient = error.get("is_transient")
    if not isinstance(is_transient, bool):
        is_transient = None
    if cls is None and code == 100 and subcode == UNKNOWN_OBJECT_SUBCODE:
        cls = ApiPermissionError
    if cls is None:
        cls = _class_for_code(code)
    if cls is None:
        cls = _class_for_status(http_status)
    if retry_after is None and cls is RateLimitError and code == 131056:
        retry_after = PAIR_RATE_LIMIT_DELAY
    kwargs = {}
    if cls is WhatsAppError and is_transient:
        # Unknown code: trust Meta's own "transient" flag.
        kwargs["retryable"] = True
    return cls(
        message,
        code=code,
        subcode=subcode,
        title=str(title),
        details=str(details),
        fbtrace_id=error.get("fbtrace_id"),
        http_status=http_status,
        is_transient=is_transient,
        retry_after=retry_after,
        error_type=error.get("type"),
        user_title=error.get("error_user_title"),
        user_message=error.get("error_user_msg"),
        **kwargs,
    )


def error_from_payload(error_dict, http_status=None):
    """Build an error from a Graph/webhook error object (``{"code": ..., ...}``).

    Accepts the asynchronous webhook shape, the synchronous ``error`` object, or
    the whole ``{"error": {...}}`` envelope. Never raises.
    """
    if isinstance(error_dict, Mapping) and isinstance(error_dict.get("error"), Mapping):
        error_dict = error_dict["error"]
    if not isinstance(error_dict, Mapping):
        cls = _class_for_status(http_status)
        return cls("Malformed error object", http_status=http_status)
    return _build(None, error_dict, http_status, None)


def error_from_response(status_code, body, headers=None, *, now=None):
    """Build an error from an HTTP error response; tolerant of any body.

    ``body`` may be bytes, str or None (HTML 502 pages, empty bodies and broken
    JSON are classified by status). ``now`` (epoch seconds) only serves tests of
    HTTP-date Retry-After values.
    """
    retry_after = parse_retry_after(_header(headers, "Retry-After"), now=now)
    error = None
    if body:
        try:
            if isinstance(body, bytes | bytearray):
                body = body.decode("utf-8", errors="replace")
            decoded = json.loads(body)
        except (ValueError, TypeError):
            decoded = None
        if isinstance(decoded, Mapping) and isinstance(decoded.get("error"), Mapping):
            error = decoded["error"]
    if error is not None:
        return _build(None, error, status_code, retry_after)
    cls = _class_for_status(status_code)
    try:
        phrase = HTTPStatus(status_code).phrase
    except ValueError:
        phrase = "Unexpected status"
    # Never echo a body we could not parse: it could be anything, of any size.
    return cls(
        f"HTTP {status_code} {phrase} (no Graph error in the response body)",
        title=phrase,
        http_status=status_code,
        retry_after=retry_after,
    )
