"""Encryption of stored secrets (access tokens, app secrets) with Fernet.

The key never lives in the database: it comes from the Odoo configuration file
(``whatsapp_encryption_key``) or, failing that, from the environment
(``WHATSAPP_ENCRYPTION_KEY``). Several comma-separated keys allow rotation: the
first one encrypts, all of them decrypt. This protects database dumps and
backups; it does not protect against a compromised server, which has the key.

Error messages name the setting to fix and never contain key material or
plaintext.
"""

import hashlib
import os
from collections.abc import Iterable, Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

CONFIG_OPTION = "whatsapp_encryption_key"
ENV_VAR = "WHATSAPP_ENCRYPTION_KEY"
KEY_HINT = (
    f"set {CONFIG_OPTION} in the Odoo configuration file or the {ENV_VAR} "
    "environment variable"
)


class ConfigurationError(Exception):
    """The server is not configured the way this feature needs."""


class EncryptionKeyMissingError(ConfigurationError):
    """No encryption key is configured."""


class EncryptionKeyInvalidError(ConfigurationError):
    """A configured key is malformed, or a stored value cannot be decrypted."""


def generate_key() -> str:
    """A new random Fernet key, as the text to put in the configuration."""
    return Fernet.generate_key().decode("ascii")


def _split(value) -> list[str]:
    """Keys from a comma-separated string (or an iterable of strings)."""
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        parts = [part for part in value if isinstance(part, str)]
    else:
        # Odoo's config gives None or False for an unset option.
        return []
    return [part.strip() for part in parts if part.strip()]


def load_keys(config_value, environ: Mapping | None = None) -> list[str]:
    """The configured keys, newest (encrypting) first.

    The Odoo configuration option wins; the environment variable is only read
    when the option is unset or blank; ``environ`` defaults to ``os.environ``
    (pass an empty mapping to ignore it).
    """
    keys = _split(config_value)
    if environ is None:
        environ = os.environ
    if keys:
        return keys
    try:
        return _split(environ.get(ENV_VAR))
    except Exception:  # an odd mapping is the same as no variable
        return []


class SecretBox:
    """Encrypt and decrypt short text secrets with one or more Fernet keys."""

    def __init__(self, keys: list[str] | str):
        keys = _split(keys)
        if not keys:
            raise EncryptionKeyMissingError(
                f"No encryption key is configured: {KEY_HINT}."
            )
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode("utf-8")))
            except (ValueError, TypeError):
                # The key itself is deliberately not quoted.
                raise EncryptionKeyInvalidError(
                    f"Encryption key #{position} of {len(keys)} is not a valid Fernet "
                    "key (32 url-safe base64-encoded bytes, as made by "
                    f"generate_key()): {KEY_HINT}."
                ) from None
        self._fernet = MultiFernet(fernets)
        self._count = len(fernets)
        # Identifies this set of keys (for caches) without revealing any of them.
        self._fingerprint = hashlib.sha256(
            b"whatsapp_business-keys\0" + ",".join(keys).encode("utf-8")
        ).hexdigest()[:16]

    @classmethod
    def from_config(cls, config_value, environ: Mapping | None = None) -> "SecretBox":
        """A box built from :func:`load_keys`."""
        return cls(load_keys(config_value, environ))

    @property
    def key_count(self) -> int:
        return self._count

    @property
    def fingerprint(self) -> str:
        """A short digest of the keys: two boxes share it only with the same keys."""
        return self._fingerprint

    def __repr__(self) -> str:
        return f"<SecretBox keys={self._count}>"

    def encrypt(self, plaintext: str) -> str:
        if not isinstance(plaintext, str):
            raise TypeError("SecretBox.encrypt() takes text")
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        data = self._run(self._fernet.decrypt, token)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise EncryptionKeyInvalidError(
                "The stored value was decrypted but is not text; it was not written "
                "by this module."
            ) from None

    def rotate(self, token: str) -> str:
        """Re-encrypt ``token`` with the first key (after adding a new key)."""
        return self._run(self._fernet.rotate, token).decode("ascii")

    @staticmethod
    def _run(operation, token) -> bytes:
        if isinstance(token, str):
            token = token.encode("utf-8")
        if not isinstance(token, bytes):
            raise TypeError("SecretBox expects the encrypted value as text")
        try:
            return operation(token)
        except InvalidToken:
            raise EncryptionKeyInvalidError(
                "A stored secret cannot be decrypted with the configured encryption "
                "key(s): the key was changed or removed, or the value is corrupt. To "
                "keep reading it, list the previous key after the new one "
                f"(comma-separated): {KEY_HINT}."
            ) from None
