"""HTTP client for the WhatsApp Business Cloud API (Graph API).

One instance per account and per thread: it owns one ``requests.Session``
(``requests`` sessions are not meant to be shared between threads).
"""

import logging
import os
import re
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests

from . import payloads
from .const import (
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT,
    MIN_API_VERSION,
)
from .errors import (
    ConnectError,
    MediaError,
    ReadTimeoutError,
    ServerError,
    TransportError,
    error_from_payload,
    error_from_response,
    scrub_secrets,
)
from .retry import RetryPolicy
from .urls import UnsafeUrlError, is_token_destination, validate_base_url

__all__ = [
    "DEFAULT_USER_AGENT",
    "MAX_DOWNLOAD_BYTES",
    "PHONE_NUMBER_FIELDS",
    "TEMPLATE_FIELDS",
    "CloudApiClient",
    "MediaInfo",
    "PhoneNumberInfo",
    "SendResult",
    "normalize_api_version",
]

_logger = logging.getLogger(__name__)

# Several integrators saw media downloads refused without an explicit User-Agent.
DEFAULT_USER_AGENT = (
    f"whatsapp_business-wa_cloud/1.0 python-requests/{requests.__version__}"
)
TEMPLATE_FIELDS = (
    "id",
    "name",
    "language",
    "status",
    "category",
    "components",
    "parameter_format",
    "quality_score",
)
PHONE_NUMBER_FIELDS = (
    "id",
    "display_phone_number",
    "verified_name",
    "quality_rating",
    "code_verification_status",
    "name_status",
    "platform_type",
    "throughput",
    "status",
    "account_mode",
    "health_status",
)
# Inbound media is at most 100 MB; anything bigger is not WhatsApp media.
MAX_DOWNLOAD_BYTES = 100 * 1024 * 1024
# Guard against a server that keeps handing out new cursors.
MAX_PAGES = 1000
_CHUNK_SIZE = 64 * 1024
# Meta's media URL answers directly; a few hops leave room for a CDN.
MAX_MEDIA_REDIRECTS = 5


@dataclass(frozen=True)
class _Redirect:
    location: str


def _origin(url):
    """scheme://host of a URL, for error messages (never its query string)."""
    try:
        parts = urlsplit(str(url))
        return f"{parts.scheme}://{parts.hostname}" if parts.hostname else repr(url)
    except ValueError:
        return "an invalid URL"


_VERSION_RE = re.compile(r"^v(\d+)\.(\d+)$")
_QUERY_IN_TEXT = re.compile(r"\?[^\s'\")]*")
# urllib3 exceptions raised before any byte of the request was sent (1.26 and 2.x).
_CONNECT_PHASE_NAMES = frozenset({"NewConnectionError", "ConnectTimeoutError"})


@dataclass(frozen=True)
class SendResult:
    """Outcome of an accepted send; delivery is only known from status webhooks."""

    wamid: str
    wa_id: str | None = None
    user_id: str | None = None
    message_status: str | None = None
    payload: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class MediaInfo:
    """Download details of a media id; the URL lives about five minutes."""

    url: str
    mime_type: str | None = None
    sha256: str | None = None
    file_size: int | None = None
    id: str | None = None


@dataclass(frozen=True)
class PhoneNumberInfo:
    """The business phone number node, as shown by "Test connection"."""

    id: str | None
    display_phone_number: str | None = None
    verified_name: str | None = None
    quality_rating: str | None = None
    messaging_limit_tier: str | None = None
    code_verification_status: str | None = None
    name_status: str | None = None
    platform_type: str | None = None
    throughput_level: str | None = None
    status: str | None = None
    account_mode: str | None = None
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data):
        throughput = data.get("throughput")
        level = throughput.get("level") if isinstance(throughput, dict) else None
        return cls(
            id=_opt_str(data.get("id")),
            display_phone_number=data.get("display_phone_number"),
            verified_name=data.get("verified_name"),
            quality_rating=data.get("quality_rating"),
            messaging_limit_tier=data.get("messaging_limit_tier"),
            code_verification_status=data.get("code_verification_status"),
            name_status=data.get("name_status"),
            platform_type=data.get("platform_type"),
            throughput_level=level,
            status=data.get("status"),
            account_mode=data.get("account_mode"),
            raw=dict(data),
        )


def _opt_str(value):
    return None if value is None else str(value)


def _opt_int(value):
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def normalize_api_version(version):
    """The Graph API version as the client uses it; ValueError when refused."""
    return _normalize_version(version)


def _normalize_version(version):
    text = str(version or "").strip()
    if text and not text.startswith("v"):
        text = f"v{text}"
    match = _VERSION_RE.match(text)
    if not match:
        raise ValueError(f"invalid Graph API version {version!r} (expected 'v26.0')")
    minimum = _VERSION_RE.match(MIN_API_VERSION)
    current = (int(match.group(1)), int(match.group(2)))
    if current < (int(minimum.group(1)), int(minimum.group(2))):
        raise ValueError(
            f"Graph API version {text} is expired or about to be; "
            f"use {MIN_API_VERSION} or later"
        )
    return text


def _normalize_timeout(timeout):
    if isinstance(timeout, int | float):
        timeout = (timeout, timeout)
    try:
        connect, read = (float(value) for value in timeout)
    except (TypeError, ValueError) as exc:
        raise ValueError("timeout must be a number or a (connect, read) pair") from exc
    if connect <= 0 or read <= 0:
        raise ValueError("timeouts must be positive")
    return (connect, read)


def _exception_chain(exc, depth=0):
    """The exception and what it wraps (args, urllib3 ``reason``, causes)."""
    if exc is None or depth > 6:
        return
    yield exc
    nested = list(getattr(exc, "args", ()) or ())
    nested += [getattr(exc, "reason", None), exc.__cause__, exc.__context__]
    for item in nested:
        if isinstance(item, BaseException) and item is not exc:
            yield from _exception_chain(item, depth + 1)


def _is_connect_phase(exc):
    for item in _exception_chain(exc):
        names = {klass.__name__ for klass in type(item).__mro__}
        if names & _CONNECT_PHASE_NAMES:
            return True
        if isinstance(item, ConnectionRefusedError):
            return True
    return False


def _transport_error(exc):
    """Map a ``requests`` exception to our typed transport errors."""
    # Keep the cause readable but drop query strings (signed media URLs).
    text = _QUERY_IN_TEXT.sub("?...", scrub_secrets(str(exc)))[:300]
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    rex = requests.exceptions
    if isinstance(exc, rex.ConnectTimeout | rex.ProxyError):
        return ConnectError(message)
    if isinstance(exc, rex.SSLError):
        # A TLS failure does not go away by retrying.
        return TransportError(message, reached_server=False, retryable=False)
    if isinstance(exc, rex.ReadTimeout):
        return ReadTimeoutError(message)
    if isinstance(exc, rex.ConnectionError):
        if _is_connect_phase(exc):
            return ConnectError(message)
        # Reset or aborted after the request went out: Meta may have processed it.
        return TransportError(message, reached_server=True, retryable=True)
    if isinstance(exc, rex.ChunkedEncodingError | rex.ContentDecodingError):
        return TransportError(message, reached_server=True, retryable=True)
    if isinstance(exc, rex.Timeout):
        return ReadTimeoutError(message)
    return TransportError(message, reached_server=True, retryable=False)


def _new_session(base_url):
    """A session that reads the environment once, not on every request.

    With ``trust_env`` requests scans the whole of ``os.environ`` for proxies on
    each call: a third of a send's CPU. The proxies for the Graph host and the
    CA bundle variables are read here instead, with the same meaning.
    """
    session = requests.Session()
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False
    return session


def _read_json(response):
    if not response.content:
        return {}
    try:
        data = response.json()
    except ValueError:
        # A 2xx was accepted by Meta: retrying could duplicate a send.
        raise ServerError(
            "Graph API answered with a body that is not JSON",
            http_status=response.status_code,
            retryable=False,
        ) from None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        raise error_from_payload(data["error"], http_status=response.status_code)
    if not isinstance(data, dict):
        raise ServerError(
            "Graph API answered with an unexpected JSON shape",
            http_status=response.status_code,
            retryable=False,
        )
    return data


class CloudApiClient:
    """Client for one WhatsApp business phone number / account."""

    def __init__(
        self,
        access_token,
        phone_number_id=None,
        waba_id=None,
        *,
        base_url=DEFAULT_BASE_URL,
        api_version=DEFAULT_API_VERSION,
        timeout=DEFAULT_TIMEOUT,
        retry_policy=None,
        session=None,
        user_agent=DEFAULT_USER_AGENT,
    ):
        if not access_token or not str(access_token).strip():
            raise ValueError("a WhatsApp access token is required")
        base = validate_base_url(base_url)
        self._access_token = str(access_token).strip()
        self.phone_number_id = _opt_str(phone_number_id)
        self.waba_id = _opt_str(waba_id)
        self.base_url = base
        self.api_version = _normalize_version(api_version)
        self.timeout = _normalize_timeout(timeout)
        self.retry_policy = retry_policy if retry_policy is not None else RetryPolicy()
        self.user_agent = user_agent or DEFAULT_USER_AGENT
        self._owns_session = session is None
        self.session = session if session is not None else _new_session(base)

    def __repr__(self):
        return (
            f"CloudApiClient(phone_number_id={self.phone_number_id!r}, "
            f"waba_id={self.waba_id!r}, base_url={self.base_url!r}, "
            f"api_version={self.api_version!r}, access_token='***')"
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        """Close the session if this client created it."""
        if self._owns_session:
            self.session.close()

    # -- plumbing -----------------------------------------------------------------

    def _url(self, path):
        return f"{self.base_url}/{self.api_version}/{str(path).lstrip('/')}"

    def _require_phone(self):
        if not self.phone_number_id:
            raise ValueError("this call needs the phone number id")
        return self.phone_number_id

    def _require_waba(self):
        if not self.waba_id:
            raise ValueError("this call needs the WhatsApp Business Account id")
        return self.waba_id

    def _headers(self, *, json_body=False, accept="application/json"):
        headers = {
            "Authorization": f"Bearer {self._access_token}",
            "User-Agent": self.user_agent,
            "Accept": accept,
        }
        if json_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _attempt(self, method, url, *, reader, stream=False, accept=None, **kwargs):
        """One HTTP exchange: raises typed errors, logs only non-sensitive facts."""
        path = urlsplit(url).path
        headers = self._headers(
            json_body=kwargs.get("json") is not None,
            accept=accept or "application/json",
        )
        started = time.monotonic()
        try:
            response = self.session.request(
                method,
                url,
                headers=headers,
                timeout=self.timeout,
                stream=stream,
                **kwargs,
            )
        except requests.exceptions.RequestException as exc:
            error = _transport_error(exc)
            _logger.warning(
                "WhatsApp API %s %s failed after %.0f ms: %s (%s)",
                method,
                path,
                (time.monotonic() - started) * 1000,
                type(exc).__name__,
                type(error).__name__,
            )
            raise error from exc
        try:
            elapsed_ms = (time.monotonic() - started) * 1000
            trace_header = response.headers.get("x-fb-trace-id")
            if response.status_code >= 400:
                error = error_from_response(
                    response.status_code, response.content, response.headers
                )
                if error.fbtrace_id is None:
                    error.fbtrace_id = trace_header
                _logger.warning(
                    "WhatsApp API %s %s -> %s in %.0f ms: %s code=%s subcode=%s "
                    "fbtrace_id=%s",
                    method,
                    path,
                    response.status_code,
                    elapsed_ms,
                    type(error).__name__,
                    error.code,
                    error.subcode,
                    error.fbtrace_id,
                )
                raise error
            result = reader(response)
            _logger.debug(
                "WhatsApp API %s %s -> %s in %.0f ms fbtrace_id=%s",
                method,
                path,
                response.status_code,
                elapsed_ms,
                trace_header,
            )
            return result
        except requests.exceptions.RequestException as exc:
            # Raised while streaming the body: the request did reach the server.
            raise _transport_error(exc) from exc
        finally:
            response.close()

    def _log_retry(self, error, attempt, delay):
        _logger.info(
            "WhatsApp API retry %d/%d in %.2f s after %s code=%s fbtrace_id=%s",
            attempt + 1,
            self.retry_policy.max_attempts,
            delay,
            type(error).__name__,
            error.code,
            error.fbtrace_id,
        )

    def _call(self, method, url, *, is_send=False, reader=_read_json, **kwargs):
        """Run ``_attempt`` under the retry policy."""

        def attempt():
            return self._attempt(method, url, reader=reader, **kwargs)

        return self.retry_policy.run(attempt, is_send=is_send, on_retry=self._log_retry)

    def _next_page_url(self, next_url):
        """Follow Graph's full ``paging.next`` URL, but only towards our base URL.

        The token travels in the header only, so any ``access_token`` that Graph
        put in the link is dropped (it would end up in proxy logs).
        """
        parts = urlsplit(next_url)
        base = urlsplit(self.base_url)
        query = urlencode(
            [
                (k, v)
                for k, v in parse_qsl(parts.query, keep_blank_values=True)
                if k != "access_token"
            ]
        )
        if (parts.scheme, parts.netloc) == (base.scheme, base.netloc):
            return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
        # Another host (e.g. base_url is a proxy): keep the path, use our origin.
        path = base.path.rstrip("/") + parts.path
        return urlunsplit((base.scheme, base.netloc, path, query, ""))

    def _collect(self, url, params):
        """GET every page of a Graph edge and return all ``data`` items."""
        items = []
        seen = set()
        for _page in range(MAX_PAGES):
            data = self._call("GET", url, params=params)
            page = data.get("data")
            if isinstance(page, list):
                items.extend(page)
            paging = data.get("paging")
            next_url = paging.get("next") if isinstance(paging, dict) else None
            if not next_url:
                return items
            url = self._next_page_url(next_url)
            if url in seen:
                _logger.warning("WhatsApp API paging loops on %s", urlsplit(url).path)
                return items
            seen.add(url)
            params = None  # the next link carries the whole query
        _logger.warning("WhatsApp API paging stopped after %d pages", MAX_PAGES)
        return items

    # -- messages -----------------------------------------------------------------

    def send_message(self, payload):
        """POST a ready-made message payload; returns the wamid and the wa_id."""
        url = self._url(f"{self._require_phone()}/messages")
        data = self._call("POST", url, json=payload, is_send=True)
        messages = data.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else {}
        wamid = first.get("id") if isinstance(first, dict) else None
        if not wamid:
            # Maybe sent after all: never flag it for an automatic re-send.
            raise ServerError(
                "Graph API accepted the message but returned no message id",
                http_status=200,
                retryable=False,
            )
        contacts = data.get("contacts")
        contact = contacts[0] if isinstance(contacts, list) and contacts else {}
        if not isinstance(contact, dict):
            contact = {}
        return SendResult(
            wamid=wamid,
            wa_id=contact.get("wa_id"),
            user_id=contact.get("user_id"),
            message_status=first.get("message_status"),
            payload=payload,
        )

    def send_text(
        self,
        to,
        body,
        *,
        preview_url=False,
        reply_to=None,
        biz_opaque_callback_data=None,
    ):
        return self.send_message(
            payloads.text_payload(
                to,
                body,
                preview_url=preview_url,
                reply_to=reply_to,
                biz_opaque_callback_data=biz_opaque_callback_data,
            )
        )

    def send_template(
        self,
        to,
        name,
        language,
        *,
        components=None,
        reply_to=None,
        biz_opaque_callback_data=None,
    ):
        return self.send_message(
            payloads.template_payload(
                to,
                name,
                language,
                components=components,
                reply_to=reply_to,
                biz_opaque_callback_data=biz_opaque_callback_data,
            )
        )

    def send_media(
        self,
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
        return self.send_message(
            payloads.media_payload(
                to,
                media_type,
                media_id=media_id,
                link=link,
                caption=caption,
                filename=filename,
                reply_to=reply_to,
                biz_opaque_callback_data=biz_opaque_callback_data,
            )
        )

    def send_location(
        self,
        to,
        latitude,
        longitude,
        *,
        name=None,
        address=None,
        reply_to=None,
        biz_opaque_callback_data=None,
    ):
        return self.send_message(
            payloads.location_payload(
                to,
                latitude,
                longitude,
                name=name,
                address=address,
                reply_to=reply_to,
                biz_opaque_callback_data=biz_opaque_callback_data,
            )
        )

    def send_contacts(
        self, to, contacts, *, reply_to=None, biz_opaque_callback_data=None
    ):
        return self.send_message(
            payloads.contacts_payload(
                to,
                contacts,
                reply_to=reply_to,
                biz_opaque_callback_data=biz_opaque_callback_data,
            )
        )

    def send_interactive_buttons(
        self,
        to,
        body,
        buttons,
        *,
        header=None,
        footer=None,
        reply_to=None,
        biz_opaque_callback_data=None,
    ):
        return self.send_message(
            payloads.interactive_buttons_payload(
                to,
                body,
                buttons,
                header=header,
                footer=footer,
                reply_to=reply_to,
                biz_opaque_callback_data=biz_opaque_callback_data,
            )
        )

    def send_interactive_list(
        self,
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
        return self.send_message(
            payloads.interactive_list_payload(
                to,
                body,
                button,
                sections,
                header=header,
                footer=footer,
                reply_to=reply_to,
                biz_opaque_callback_data=biz_opaque_callback_data,
            )
        )

    def send_interactive(
        self, to, spec, *, reply_to=None, biz_opaque_callback_data=None
    ):
        """Reply buttons or a list, from a spec (see payloads.interactive_spec)."""
        return self.send_message(
            payloads.interactive_payload(
                to,
                spec,
                reply_to=reply_to,
                biz_opaque_callback_data=biz_opaque_callback_data,
            )
        )

    def send_reaction(self, to, message_id, emoji, *, biz_opaque_callback_data=None):
        """React to a message; an empty emoji removes our reaction."""
        return self.send_message(
            payloads.reaction_payload(
                to,
                message_id,
                emoji,
                biz_opaque_callback_data=biz_opaque_callback_data,
            )
        )

    def mark_as_read(self, message_id, *, typing_indicator=False):
        """Mark an inbound message (and the earlier ones) as read."""
        url = self._url(f"{self._require_phone()}/messages")
        payload = payloads.read_payload(message_id, typing_indicator=typing_indicator)
        # Idempotent, so the normal retry rules apply (not the send rules).
        data = self._call("POST", url, json=payload)
        return bool(data.get("success"))

    # -- media --------------------------------------------------------------------

    def upload_media(self, content, mime_type, filename):
        """Upload a file for this phone number; returns the media id (valid 30 days)."""
        if not content:
            raise ValueError("media content is empty")
        if not mime_type:
            raise ValueError("mime_type is required")
        url = self._url(f"{self._require_phone()}/media")
        data = self._call(
            "POST",
            url,
            data={"messaging_product": "whatsapp", "type": mime_type},
            files={"file": (filename or "file", bytes(content), mime_type)},
        )
        media_id = data.get("id")
        if not media_id:
            raise ServerError("Graph API returned no media id", http_status=200)
        return str(media_id)

    def get_media_url(self, media_id, *, phone_number_id=None):
        """Resolve a media id to a short-lived download URL and its metadata."""
        if not media_id:
            raise ValueError("media_id is required")
        params = {"phone_number_id": phone_number_id} if phone_number_id else None
        data = self._call("GET", self._url(str(media_id)), params=params)
        if not data.get("url"):
            raise MediaError("Graph API returned no media URL", http_status=200)
        return MediaInfo(
            url=data["url"],
            mime_type=data.get("mime_type"),
            sha256=data.get("sha256"),
            file_size=_opt_int(data.get("file_size")),
            id=_opt_str(data.get("id")),
        )

    def download_media(self, url, *, max_bytes=MAX_DOWNLOAD_BYTES):
        """Download media bytes from a URL given by :meth:`get_media_url`.

        The bearer token goes only to Meta's media hosts or to the configured Graph
        origin: redirects are followed by hand so that every hop is checked.
        """

        def read_body(response):
            if response.is_redirect:
                return _Redirect(response.headers.get("Location") or "")
            length = _opt_int(response.headers.get("Content-Length"))
            if max_bytes and length is not None and length > max_bytes:
                raise MediaError(f"media is larger than {max_bytes} bytes")
            chunks = []
            total = 0
            for chunk in response.iter_content(_CHUNK_SIZE):
                total += len(chunk)
                if max_bytes and total > max_bytes:
                    raise MediaError(f"media is larger than {max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

        current = str(url or "")
        for _hop in range(MAX_MEDIA_REDIRECTS + 1):
            if not is_token_destination(current, self.base_url):
                raise UnsafeUrlError(
                    f"refusing to send the access token to {_origin(current)}: media "
                    "is downloaded only from Meta's hosts or the configured Graph URL"
                )
            result = self._call(
                "GET",
                current,
                reader=read_body,
                stream=True,
                accept="*/*",
                allow_redirects=False,
            )
            if not isinstance(result, _Redirect):
                return result
            current = urljoin(current, result.location)
        raise MediaError(f"more than {MAX_MEDIA_REDIRECTS} redirects for a media URL")

    def delete_media(self, media_id, *, phone_number_id=None):
        if not media_id:
            raise ValueError("media_id is required")
        params = {"phone_number_id": phone_number_id} if phone_number_id else None
        data = self._call("DELETE", self._url(str(media_id)), params=params)
        return bool(data.get("success"))

    # -- account management ----------------------------------------------------------

    def list_templates(
        self,
        *,
        fields=TEMPLATE_FIELDS,
        limit=100,
        status=None,
        name=None,
        language=None,
        category=None,
    ):
        """Every message template of the WABA, following ``paging.next`` to the end."""
        params = {
            "fields": fields if isinstance(fields, str) else ",".join(fields),
            "limit": int(limit),
        }
        for key, value in (
            ("status", status),
            ("name", name),
            ("language", language),
            ("category", category),
        ):
            if value:
                params[key] = value
        url = self._url(f"{self._require_waba()}/message_templates")
        return self._collect(url, params)

    def get_phone_number_info(self, *, fields=PHONE_NUMBER_FIELDS):
        params = {"fields": fields if isinstance(fields, str) else ",".join(fields)}
        data = self._call("GET", self._url(self._require_phone()), params=params)
        return PhoneNumberInfo.from_dict(data)

    def subscribe_app(self):
        """Subscribe our app to the WABA's webhooks (without it nothing arrives)."""
        url = self._url(f"{self._require_waba()}/subscribed_apps")
        return bool(self._call("POST", url).get("success"))

    def get_subscribed_apps(self):
        url = self._url(f"{self._require_waba()}/subscribed_apps")
        return self._collect(url, None)
