"""Masking of tokens and phone numbers, and the logging filter that applies it."""

import json
import logging

import pytest
from conftest import FIXTURES

from wa_cloud.redact import RedactingFilter, mask_phone, mask_token, redact

TOKEN = "EAAGm0PX4ZCpsBA" + "Zx9" * 60 + "ZDZD"  # made up, Meta's usual shape
PHONE = "33612345678"


# -- mask_token / mask_phone -------------------------------------------------
def test_mask_token_keeps_at_most_four_characters():
    masked = mask_token(TOKEN)
    assert masked == f"EAAG…(len {len(TOKEN)})"
    assert TOKEN[4:10] not in masked


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, ""), ("", ""), ("hunter2", "…(len 7)"), ("a" * 15, "…(len 15)")],
)
def test_mask_token_short_values_show_nothing(value, expected):
    assert mask_token(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+33612345678", "+336******78"),
        (PHONE, "336******78"),
        ("+33 6 12 34 56 78", "+336******78"),
        ("12345", "*****"),
        (None, ""),
    ],
)
def test_mask_phone(value, expected):
    assert mask_phone(value) == expected


# -- redact --------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {TOKEN}",
        f"GET https://graph.facebook.com/v26.0/me?fields=id&access_token={TOKEN}&x=1",
        f'{{"access_token": "{TOKEN}"}}',
        f"requests error for token {TOKEN} (code 190)",
        f"authorization: bearer {TOKEN}",
    ],
)
def test_tokens_are_masked(text):
    result = redact(text)
    assert TOKEN not in result
    assert TOKEN[4:20] not in result
    assert "EAAG…" in result


@pytest.mark.parametrize(
    "text",
    [
        "client_secret=5f2b8c0e9d4a7b1c3e6f8a0b2c4d6e8f&grant_type=x",
        '{"app_secret": "5f2b8c0e9d4a7b1c3e6f8a0b2c4d6e8f"}',
        "appsecret_proof=5f2b8c0e9d4a7b1c3e6f8a0b2c4d6e8f",
        "hub.verify_token=5f2b8c0e9d4a7b1c3e6f8a0b2c4d6e8f",
        '{\\"access_token\\": \\"5f2b8c0e9d4a7b1c3e6f8a0b2c4d6e8f\\"}',
    ],
)
def test_labelled_secrets_are_masked(text):
    assert "5f2b8c0e9d4a7b1c3e6f8a0b2c4d6e8f" not in redact(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"wa_id": "33612345678"}', '{"wa_id": "336******78"}'),
        ("{'from': '33612345678'}", "{'from': '336******78'}"),
        ("to=33612345678&type=text", "to=336******78&type=text"),
        ("recipient_id: 33612345678", "recipient_id: 336******78"),
        ("call +33 6 12 34 56 78 now", "call +336******78 now"),
        ("to=%2B33612345678", "to=%2B336******78"),
        ("sent to +33612345678.", "sent to +336******78."),
    ],
)
def test_phone_numbers_are_masked(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"phone_number_id": "109000000000001"}',
        "POST /v26.0/109000000000001/messages",
        "media 1480001122334455 template 774400112244",
        "wamid.HBgLMzM2MTIzNDU2NzgVAgARGBI",
        "order #20261120 of 3 items",
    ],
)
def test_ids_and_plain_numbers_are_kept(text):
    assert redact(text) == text


def test_webhook_body_is_scrubbed():
    body = (FIXTURES / "statuses.json").read_text()
    result = redact(body)
    assert PHONE not in result
    assert '"phone_number_id": "109000000000001"' in result
    assert json.loads(result)["entry"][0]["id"] == "104000000000001"


def test_redact_is_idempotent():
    text = f'Bearer {TOKEN} access_token={TOKEN} {{"wa_id": "{PHONE}"}} +{PHONE}'
    once = redact(text)
    assert redact(once) == once


@pytest.mark.parametrize(("value", "expected"), [(None, ""), ("", ""), (42, "42")])
def test_redact_odd_inputs(value, expected):
    assert redact(value) == expected


# -- RedactingFilter -----------------------------------------------------------
@pytest.fixture
def logger():
    log = logging.getLogger("tests.redact.filter")
    redacting = RedactingFilter()
    log.addFilter(redacting)
    yield log
    log.removeFilter(redacting)


def test_filter_redacts_message_and_arguments(logger, caplog):
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("calling Graph with %s for %s", f"Bearer {TOKEN}", f"+{PHONE}")
        logger.warning("payload %s", {"to": PHONE, "access_token": TOKEN})
        # A message formatted before logging reaches the filter without args.
        preformatted = f"inline access_token={TOKEN}"
        logger.info(preformatted)
    assert TOKEN not in caplog.text
    assert PHONE not in caplog.text
    assert "EAAG…" in caplog.text and "336******78" in caplog.text
    assert all(record.args is None for record in caplog.records)


def test_filter_redacts_tracebacks(logger, caplog):
    with caplog.at_level(logging.ERROR, logger=logger.name):
        try:
            raise RuntimeError(f"401 for access_token={TOKEN}")
        except RuntimeError:
            logger.exception("Graph call failed")
    assert "Graph call failed" in caplog.text
    assert "RuntimeError" in caplog.text
    assert TOKEN not in caplog.text


def test_filter_keeps_records_and_survives_bad_arguments(logger, caplog):
    redacting = RedactingFilter()
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "%s and %s", (TOKEN,), None
    )
    assert redacting.filter(record) is True
    assert TOKEN not in str(record.msg)
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("plain message")
    assert caplog.records[-1].getMessage() == "plain message"


def test_filter_on_a_handler_covers_child_loggers(caplog):
    handler_filter = RedactingFilter()
    caplog.handler.addFilter(handler_filter)
    try:
        with caplog.at_level(logging.INFO):
            logging.getLogger("odoo.addons.whatsapp_business.models").info(
                "wa_id=%s", PHONE
            )
    finally:
        caplog.handler.removeFilter(handler_filter)
    assert PHONE not in caplog.text
    assert "wa_id=336******78" in caplog.text
