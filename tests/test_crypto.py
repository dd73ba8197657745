"""SecretBox: Fernet encryption of stored secrets, key loading and rotation."""

import base64

import pytest
from cryptography.fernet import Fernet

from wa_cloud.crypto import (
    CONFIG_OPTION,
    ENV_VAR,
    ConfigurationError,
    EncryptionKeyInvalidError,
    EncryptionKeyMissingError,
    SecretBox,
    generate_key,
    load_keys,
)

SECRET = "EAAGm0PX4ZCpsBAFakeAccessTokenForTests1234567890"
HINT = (
    "whatsapp_encryption_key in the Odoo configuration file or the "
    "WHATSAPP_ENCRYPTION_KEY environment variable"
)


@pytest.fixture
def key():
    return generate_key()


def test_names_match_the_documented_settings():
    assert (CONFIG_OPTION, ENV_VAR) == (
        "whatsapp_encryption_key",
        "WHATSAPP_ENCRYPTION_KEY",
    )


def test_generate_key_is_a_usable_fernet_key():
    first, second = generate_key(), generate_key()
    assert isinstance(first, str) and first != second
    assert len(base64.urlsafe_b64decode(first)) == 32
    Fernet(first.encode())


def test_round_trip(key):
    box = SecretBox(key)
    for plaintext in (SECRET, "", "Mot de passe accentué ✓"):
        assert box.decrypt(box.encrypt(plaintext)) == plaintext


def test_ciphertext_hides_plaintext_and_differs_between_calls(key):
    box = SecretBox(key)
    first, second = box.encrypt(SECRET), box.encrypt(SECRET)
    assert SECRET not in first
    assert first != second  # random IV and timestamp
    assert isinstance(first, str) and first.isascii()


def test_bytes_token_is_accepted(key):
    box = SecretBox(key)
    assert box.decrypt(box.encrypt(SECRET).encode()) == SECRET


def test_old_key_still_decrypts_after_a_new_key_is_put_first():
    old, new = generate_key(), generate_key()
    token = SecretBox(old).encrypt(SECRET)
    rotated_box = SecretBox([new, old])
    assert rotated_box.decrypt(token) == SECRET
    # New values are written with the first key only.
    assert SecretBox(new).decrypt(rotated_box.encrypt("fresh")) == "fresh"
    with pytest.raises(EncryptionKeyInvalidError):
        SecretBox(old).decrypt(rotated_box.encrypt("fresh"))


def test_rotate_reencrypts_for_the_new_key_alone():
    old, new = generate_key(), generate_key()
    token = SecretBox(old).encrypt(SECRET)
    rotated = SecretBox(f"{new},{old}").rotate(token)
    assert rotated != token
    assert SecretBox(new).decrypt(rotated) == SECRET
    with pytest.raises(EncryptionKeyInvalidError):
        SecretBox(old).decrypt(rotated)


def test_wrong_key_raises_invalid_error_with_hint(key):
    token = SecretBox(key).encrypt(SECRET)
    other = generate_key()
    with pytest.raises(EncryptionKeyInvalidError) as info:
        SecretBox(other).decrypt(token)
    message = str(info.value)
    assert HINT in message
    for leaked in (SECRET, key, other, token):
        assert leaked not in message


@pytest.mark.parametrize("token", ["", "not-a-token", "gAAAAAB" + "x" * 80, "é"])
def test_corrupt_token_raises_invalid_error(key, token):
    with pytest.raises(EncryptionKeyInvalidError):
        SecretBox(key).decrypt(token)
    with pytest.raises(EncryptionKeyInvalidError):
        SecretBox(key).rotate(token)


@pytest.mark.parametrize(
    "bad_key",
    [
        "short",
        "not base64 at all !!",
        base64.urlsafe_b64encode(b"x" * 31).decode(),  # wrong length
        "é" * 44,
    ],
)
def test_malformed_key_raises_invalid_error_without_echoing_it(bad_key):
    with pytest.raises(EncryptionKeyInvalidError) as info:
        SecretBox(bad_key)
    assert bad_key not in str(info.value)
    assert HINT in str(info.value)


def test_malformed_key_among_good_ones_is_reported_by_position(key):
    with pytest.raises(EncryptionKeyInvalidError) as info:
        SecretBox(f"{key},broken")
    assert "#2 of 2" in str(info.value)
    assert key not in str(info.value)


@pytest.mark.parametrize("keys", [None, "", " , ,", [], False])
def test_missing_key_raises_missing_error_with_hint(keys):
    with pytest.raises(EncryptionKeyMissingError) as info:
        SecretBox(keys)
    assert HINT in str(info.value)


def test_errors_share_the_configuration_base():
    assert issubclass(EncryptionKeyMissingError, ConfigurationError)
    assert issubclass(EncryptionKeyInvalidError, ConfigurationError)
    assert not issubclass(ConfigurationError, ValueError)


def test_plaintext_must_be_text(key):
    with pytest.raises(TypeError):
        SecretBox(key).encrypt(b"bytes")
    with pytest.raises(TypeError):
        SecretBox(key).decrypt(None)


def test_repr_hides_keys(key):
    box = SecretBox([key, generate_key()])
    assert key not in repr(box)
    assert repr(box) == "<SecretBox keys=2>"
    assert box.key_count == 2


# -- load_keys ---------------------------------------------------------------
def test_load_keys_config_wins_over_environment():
    assert load_keys("config-key", {ENV_VAR: "env-key"}) == ["config-key"]


@pytest.mark.parametrize("config_value", [None, False, "", "  ", " , "])
def test_load_keys_falls_back_to_environment(config_value):
    assert load_keys(config_value, {ENV_VAR: "env-key"}) == ["env-key"]


def test_load_keys_splits_strips_and_drops_empty_entries():
    assert load_keys(" new ,, old ,\n", {}) == ["new", "old"]
    assert load_keys(None, {ENV_VAR: "a,b , c"}) == ["a", "b", "c"]


def test_load_keys_nothing_configured():
    assert load_keys(None, {}) == []
    assert load_keys(None, {}) == []
    assert load_keys("", {"OTHER": "x"}) == []


def test_load_keys_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "from-os-environ")
    assert load_keys(None) == ["from-os-environ"]
    monkeypatch.delenv(ENV_VAR)
    assert load_keys(None) == []


def test_from_config_builds_a_working_box():
    old, new = generate_key(), generate_key()
    token = SecretBox(old).encrypt(SECRET)
    box = SecretBox.from_config(None, {ENV_VAR: f"{new}, {old}"})
    assert box.key_count == 2
    assert box.decrypt(token) == SECRET
    with pytest.raises(EncryptionKeyMissingError):
        SecretBox.from_config("", {})


def test_fingerprint_tells_key_sets_apart_without_revealing_them():
    first, second = generate_key(), generate_key()
    box = SecretBox([first])
    assert box.fingerprint == SecretBox(first).fingerprint
    assert box.fingerprint != SecretBox([second]).fingerprint
    # Adding or reordering keys is another set: caches keyed by it start afresh.
    assert SecretBox([second, first]).fingerprint != box.fingerprint
    assert (
        SecretBox([first, second]).fingerprint != SecretBox([second, first]).fingerprint
    )
    assert first not in box.fingerprint and box.fingerprint not in first
