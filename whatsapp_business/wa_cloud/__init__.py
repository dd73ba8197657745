"""Pure-Python client for Meta's WhatsApp Business Cloud API.

This package never imports Odoo: it is tested with plain pytest and used by the addon.
"""

from .client import CloudApiClient, MediaInfo, PhoneNumberInfo, SendResult
from .crypto import (
    ConfigurationError,
    EncryptionKeyInvalidError,
    EncryptionKeyMissingError,
    SecretBox,
    generate_key,
    load_keys,
)
from .errors import (
    AccountBlockedError,
    ApiPermissionError,
    AuthenticationError,
    ConnectError,
    InvalidRequestError,
    MediaError,
    OptedOutError,
    RateLimitError,
    ReadTimeoutError,
    RecipientError,
    ReengagementRequiredError,
    ServerError,
    TemplateError,
    TransportError,
    WhatsAppError,
    error_from_payload,
    error_from_response,
)
from .events import parse_webhook
from .ratelimit import SlidingWindowLimiter
from .retry import NO_RETRY, RetryPolicy
from .webhook import (
    SignatureError,
    compute_signature,
    is_valid_signature,
    verify_signature,
    verify_subscription,
)

__all__ = [
    "NO_RETRY",
    "AccountBlockedError",
    "ApiPermissionError",
    "AuthenticationError",
    "CloudApiClient",
    "ConfigurationError",
    "ConnectError",
    "EncryptionKeyInvalidError",
    "EncryptionKeyMissingError",
    "InvalidRequestError",
    "MediaError",
    "MediaInfo",
    "OptedOutError",
    "PhoneNumberInfo",
    "RateLimitError",
    "ReadTimeoutError",
    "RecipientError",
    "ReengagementRequiredError",
    "RetryPolicy",
    "SecretBox",
    "SendResult",
    "ServerError",
    "SignatureError",
    "SlidingWindowLimiter",
    "TemplateError",
    "TransportError",
    "WhatsAppError",
    "compute_signature",
    "error_from_payload",
    "error_from_response",
    "generate_key",
    "is_valid_signature",
    "load_keys",
    "parse_webhook",
    "verify_signature",
    "verify_subscription",
]
