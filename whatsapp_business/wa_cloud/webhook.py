"""Webhook authentication: the ``X-Hub-Signature-256`` check and the GET handshake.

Both checks fail closed: a missing secret or token never lets a request through.
Nothing here logs, and no error message carries the secret, the token or the body.
"""

import hashlib
import hmac
import re
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Hub-Signature-256"
SIGNATURE_PREFIX = "sha256="

# Exactly one SHA-256 digest in hex. Uppercase is accepted on purpose: Meta sends
# lowercase, and folding case costs nothing in security (the digest is the same).
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


class SignatureError(Exception):
    """The webhook body could not be authenticated.

    ``reason`` is a short, fixed phrase that is safe to log.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _secret_bytes(app_secret: str | bytes | None) -> bytes | None:
    """Return the app secret as the HMAC key, or None when none is configured.

    The secret is used as its UTF-8 characters (never hex-decoded). Surrounding
    whitespace is dropped because it only ever comes from config-file or env noise.
    """
    if isinstance(app_secret, bytes | bytearray):
        return bytes(app_secret).strip() or None
    if not isinstance(app_secret, str):
        return None
    app_secret = app_secret.strip()
    return app_secret.encode("utf-8") if app_secret else None


def _raw_bytes(raw: bytes) -> bytes:
    # Hashing a decoded or re-serialised body is the classic cause of mismatches,
    # so only the bytes as received are accepted.
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw)
    raise TypeError("raw must be the request body bytes exactly as received")


def compute_signature(raw: bytes, app_secret: str) -> str:
    """Return the ``X-Hub-Signature-256`` value Meta would send for ``raw``.

    Meant for tests and local tools that sign fake notifications.
    """
    key = _secret_bytes(app_secret)
    if key is None:
        raise SignatureError("app secret not configured")
    digest = hmac.new(key, _raw_bytes(raw), hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(raw: bytes, header: str | None, app_secret: str | None) -> None:
    """Check ``header`` (the X-Hub-Signature-256 value) against ``raw``.

    Returns None on success and raises :class:`SignatureError` otherwise,
    including when no app secret is configured.
    """
    body = _raw_bytes(raw)
    key = _secret_bytes(app_secret)
    if key is None:
        raise SignatureError("app secret not configured")
    if not isinstance(header, str) or not header.strip():
        raise SignatureError("missing signature header")
    header = header.strip()
    if not header.startswith(SIGNATURE_PREFIX):
        raise SignatureError("unsupported signature scheme")
    received = header[len(SIGNATURE_PREFIX) :]
    if not _HEX_DIGEST.fullmatch(received):
        raise SignatureError("malformed signature")
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    # Both sides are ASCII hex of equal length: compare_digest runs in constant time.
    if not hmac.compare_digest(expected, received.lower()):
        raise SignatureError("signature mismatch")


def is_valid_signature(raw: bytes, header: str | None, app_secret: str | None) -> bool:
    """Boolean form of :func:`verify_signature`."""
    try:
        verify_signature(raw, header, app_secret)
    except SignatureError:
        return False
    return True


def _param(params: Mapping, name: str) -> str | None:
    """Read one query parameter from a dict, a MultiDict or a parse_qs() result."""
    try:
        value = params.get(name)
    except Exception:  # an odd mapping must not turn the handshake into a 500
        return None
    if isinstance(value, list | tuple):
        # parse_qs() gives lists; a repeated parameter is ambiguous, so refuse it.
        if len(value) != 1:
            return None
        value = value[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def verify_subscription(params: Mapping, expected_token: str | None) -> str | None:
    """Answer Meta's GET verification handshake.

    Returns the ``hub.challenge`` string to send back as the whole body when
    ``hub.mode`` is ``subscribe`` and ``hub.verify_token`` matches
    ``expected_token``; returns None otherwise (the caller answers 403).
    """
    if not isinstance(params, Mapping) and not hasattr(params, "get"):
        return None
    if not isinstance(expected_token, str) or not expected_token.strip():
        return None
    if _param(params, "hub.mode") != "subscribe":
        return None
    token = _param(params, "hub.verify_token")
    challenge = _param(params, "hub.challenge")
    if token is None or not challenge:
        return None
    # Compare bytes: compare_digest refuses non-ASCII str.
    if not hmac.compare_digest(
        token.encode("utf-8"), expected_token.strip().encode("utf-8")
    ):
        return None
    return challenge
