"""X-Hub-Signature-256 verification and the GET subscription handshake."""

import hashlib
import hmac

import pytest
from conftest import FIXTURES

from wa_cloud.webhook import (
    SignatureError,
    compute_signature,
    is_valid_signature,
    verify_signature,
    verify_subscription,
)

# A made-up app secret in the shape Meta issues (32 hex characters).
SECRET = "5f2b8c0e9d4a7b1c3e6f8a0b2c4d6e8f"
BODY = (FIXTURES / "messages_text.json").read_bytes()


def _reference(raw: bytes, secret: str) -> str:
    """Independent signer: the secret as UTF-8 text, never hex-decoded."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def _reason(raw, header, secret):
    with pytest.raises(SignatureError) as info:
        verify_signature(raw, header, secret)
    return info.value.reason


def test_compute_signature_format():
    signature = compute_signature(BODY, SECRET)
    assert signature == _reference(BODY, SECRET)
    assert signature.startswith("sha256=")
    assert len(signature) == len("sha256=") + 64
    assert signature[7:] == signature[7:].lower()


def test_valid_signature_passes():
    assert verify_signature(BODY, _reference(BODY, SECRET), SECRET) is None
    assert is_valid_signature(BODY, _reference(BODY, SECRET), SECRET)


def test_surrounding_whitespace_in_header_and_secret_is_tolerated():
    header = "  " + _reference(BODY, SECRET) + "\n"
    assert is_valid_signature(BODY, header, SECRET + "\n")


def test_wrong_secret_fails():
    header = _reference(BODY, "another-app-secret")
    assert _reason(BODY, header, SECRET) == "signature mismatch"
    assert not is_valid_signature(BODY, header, SECRET)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header_fails(header):
    assert _reason(BODY, header, SECRET) == "missing signature header"


@pytest.mark.parametrize(
    "transform",
    [
        lambda sig: "sha1=" + sig[7:],  # legacy X-Hub-Signature scheme
        lambda sig: sig[7:],  # bare hex, no prefix
        lambda sig: "sha512=" + sig[7:],
    ],
    ids=["sha1", "no-prefix", "sha512"],
)
def test_wrong_prefix_fails(transform):
    header = transform(_reference(BODY, SECRET))
    assert _reason(BODY, header, SECRET) == "unsupported signature scheme"


@pytest.mark.parametrize(
    "digest",
    ["zz" * 32, "abc", "0" * 63, "0" * 65, "é" * 64, "00 " * 21 + "0"],
    ids=["non-hex", "short", "63", "65", "non-ascii", "spaces"],
)
def test_malformed_hex_fails(digest):
    assert _reason(BODY, "sha256=" + digest, SECRET) == "malformed signature"


def test_uppercase_hex_is_accepted_by_policy():
    signature = _reference(BODY, SECRET)
    assert is_valid_signature(BODY, "sha256=" + signature[7:].upper(), SECRET)


def test_non_ascii_body_escaped_form():
    # Meta delivers non-ASCII as lowercase \uXXXX escapes and signs those bytes.
    raw = b'{"text":{"body":"Am\\u00e9lie"}}'
    assert is_valid_signature(raw, _reference(raw, SECRET), SECRET)


def test_non_ascii_body_raw_utf8_bytes():
    raw = '{"text":{"body":"Amélie 👍"}}'.encode()
    assert is_valid_signature(raw, _reference(raw, SECRET), SECRET)
    # Signing the escaped form does not validate the UTF-8 form: raw bytes only.
    escaped = b'{"text":{"body":"Am\\u00e9lie \\ud83d\\udc4d"}}'
    assert not is_valid_signature(raw, _reference(escaped, SECRET), SECRET)


def test_body_modified_by_one_byte_fails():
    header = _reference(BODY, SECRET)
    tampered = bytearray(BODY)
    tampered[len(tampered) // 2] ^= 0x01
    assert _reason(bytes(tampered), header, SECRET) == "signature mismatch"
    assert _reason(BODY + b" ", header, SECRET) == "signature mismatch"


@pytest.mark.parametrize("secret", [None, "", "   "])
def test_no_secret_fails_closed(secret):
    # Even a signature made with an empty key must not pass.
    header = "sha256=" + hmac.new(b"", BODY, hashlib.sha256).hexdigest()
    assert _reason(BODY, header, secret) == "app secret not configured"
    assert not is_valid_signature(BODY, header, secret)


def test_error_never_contains_secret_or_body():
    header = _reference(BODY, "wrong")
    with pytest.raises(SignatureError) as info:
        verify_signature(BODY, header, SECRET)
    text = str(info.value) + repr(info.value)
    assert SECRET not in text
    assert "Bonjour" not in text
    assert header[7:] not in text


def test_decoded_string_body_is_refused():
    # Hashing a decoded body is the classic bug: make it impossible.
    with pytest.raises(TypeError):
        verify_signature(BODY.decode(), _reference(BODY, SECRET), SECRET)


def test_compute_signature_requires_secret():
    with pytest.raises(SignatureError):
        compute_signature(BODY, "")


# -- GET handshake ---------------------------------------------------------
TOKEN = "odoo-verify-8c1f0a"


def _params(**overrides):
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": TOKEN,
        "hub.challenge": "1158201444",
    }
    params.update(overrides)
    return {key: value for key, value in params.items() if value is not None}


def test_subscription_right_token_returns_challenge():
    assert verify_subscription(_params(), TOKEN) == "1158201444"


def test_subscription_accepts_parse_qs_lists():
    params = {key: [value] for key, value in _params().items()}
    assert verify_subscription(params, TOKEN) == "1158201444"


def test_subscription_wrong_token():
    assert verify_subscription(_params(**{"hub.verify_token": "guess"}), TOKEN) is None
    assert (
        verify_subscription(_params(**{"hub.verify_token": TOKEN + "x"}), TOKEN) is None
    )


def test_subscription_non_ascii_token_does_not_crash():
    assert (
        verify_subscription(_params(**{"hub.verify_token": "jeton-é"}), TOKEN) is None
    )
    assert verify_subscription(
        _params(**{"hub.verify_token": "jeton-é"}), "jeton-é"
    ) == ("1158201444")


@pytest.mark.parametrize("mode", ["unsubscribe", "SUBSCRIBE", "", None])
def test_subscription_wrong_mode(mode):
    assert verify_subscription(_params(**{"hub.mode": mode}), TOKEN) is None


@pytest.mark.parametrize("challenge", [None, ""])
def test_subscription_missing_challenge(challenge):
    assert verify_subscription(_params(**{"hub.challenge": challenge}), TOKEN) is None


def test_subscription_missing_token_param():
    assert verify_subscription(_params(**{"hub.verify_token": None}), TOKEN) is None


@pytest.mark.parametrize("expected", [None, "", "  "])
def test_subscription_fails_closed_without_expected_token(expected):
    params = _params(**{"hub.verify_token": expected or ""})
    assert verify_subscription(params, expected) is None


def test_subscription_repeated_parameter_is_refused():
    params = {key: [value] for key, value in _params().items()}
    params["hub.verify_token"] = ["guess", TOKEN]
    assert verify_subscription(params, TOKEN) is None
