"""Error classification from realistic Graph error bodies (sync and async)."""

import json
from datetime import datetime, timezone

import pytest

from wa_cloud.errors import (
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
    parse_retry_after,
)

TOKEN = "EAAGm0PX4ZCpsBAKZBwZCvZAnb0ZBrandomZAtokenZBvalue1234567890"


def graph_body(code, message, *, subcode=None, details=None, transient=None, **extra):
    """A synchronous Graph error body as bytes, shaped like Meta's."""
    error = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if transient is not None:
        error["is_transient"] = transient
    error["fbtrace_id"] = f"Atrace{code}"
    error.update(extra)
    return json.dumps({"error": error}).encode()


# (http status, code, subcode, message, expected class, category, retryable)
CASES = [
    (
        401,
        190,
        463,
        "Access token rejected: session expired.",
        AuthenticationError,
        "authentication",
        False,
    ),
    (
        403,
        10,
        None,
        "(#10) Application does not have permission for this action",
        ApiPermissionError,
        "permission",
        False,
    ),
    (
        403,
        200,
        None,
        "(#200) Requires whatsapp_business_messaging permission",
        ApiPermissionError,
        "permission",
        False,
    ),
    (
        400,
        4,
        None,
        "(#4) Application request limit reached",
        RateLimitError,
        "rate_limit",
        True,
    ),
    (
        400,
        80007,
        None,
        "(#80007) Rate limit issues",
        RateLimitError,
        "rate_limit",
        True,
    ),
    (400, 130429, None, "(#130429) Rate limit hit", RateLimitError, "rate_limit", True),
    (429, 130429, None, "(#130429) Rate limit hit", RateLimitError, "rate_limit", True),
    (
        400,
        131056,
        None,
        "(#131056) (Business Account, Consumer Account) pair rate limit hit",
        RateLimitError,
        "rate_limit",
        True,
    ),
    (
        400,
        131026,
        None,
        "(#131026) Message undeliverable",
        RecipientError,
        "recipient",
        False,
    ),
    (
        400,
        131047,
        None,
        "(#131047) Re-engagement message",
        ReengagementRequiredError,
        "window_closed",
        False,
    ),
    (
        400,
        131050,
        None,
        "(#131050) Unable to deliver the marketing message",
        OptedOutError,
        "opted_out",
        False,
    ),
    (
        404,
        132001,
        None,
        "(#132001) Template name does not exist in the translation",
        TemplateError,
        "template",
        False,
    ),
    (
        400,
        132000,
        None,
        "(#132000) Number of parameters does not match",
        TemplateError,
        "template",
        False,
    ),
    (400, 131053, None, "(#131053) Media upload error", MediaError, "media", False),
    (
        400,
        100,
        33,
        "Unsupported get request. Object with ID '109' does not exist",
        # The number id is wrong or the token cannot reach it: account-level.
        ApiPermissionError,
        "permission",
        False,
    ),
    (
        400,
        100,
        None,
        "(#100) Invalid parameter",
        InvalidRequestError,
        "invalid_request",
        False,
    ),
    (400, 1, None, "An unknown error occurred", ServerError, "server", True),
    (503, 2, None, "Service temporarily unavailable", ServerError, "server", True),
    (500, 131000, None, "(#131000) Something went wrong", ServerError, "server", True),
    (
        403,
        368,
        None,
        "(#368) Temporarily blocked for policies violations",
        AccountBlockedError,
        "account",
        False,
    ),
    (
        400,
        131042,
        None,
        "(#131042) Business eligibility payment issue",
        AccountBlockedError,
        "account",
        False,
    ),
]


@pytest.mark.parametrize(
    "status,code,subcode,message,cls,category,retryable",
    CASES,
    ids=[f"{case[1]}-http{case[0]}" for case in CASES],
)
def test_graph_error_is_classified_by_code(
    status, code, subcode, message, cls, category, retryable
):
    body = graph_body(code, message, subcode=subcode, details="More detail here.")
    error = error_from_response(status, body, {})
    assert type(error) is cls
    assert isinstance(error, WhatsAppError)
    assert error.code == code
    assert error.subcode == subcode
    assert error.http_status == status
    assert error.category == category
    assert error.retryable is retryable
    assert error.fbtrace_id == f"Atrace{code}"
    assert error.details == "More detail here."
    assert error.message == message
    # The title drops Graph's "(#code) " prefix.
    assert not error.title.startswith("(#")


def test_attributes_of_a_full_graph_error():
    body = graph_body(
        131009,
        "(#131009) Parameter value is not valid",
        subcode=2494010,
        details="Template parameter contains a line break.",
        transient=False,
        error_user_title="Invalid parameter",
        error_user_msg="Remove the line break.",
    )
    error = error_from_response(400, body, {"Content-Type": "application/json"})
    assert isinstance(error, InvalidRequestError)
    assert error.title == "Parameter value is not valid"
    assert error.details == "Template parameter contains a line break."
    assert error.is_transient is False
    assert error.error_type == "OAuthException"
    assert error.user_title == "Invalid parameter"
    assert error.user_message == "Remove the line break."
    assert error.retry_after is None


def test_authentication_error_reason_from_subcode():
    error = error_from_response(401, graph_body(190, "Token expired", subcode=463))
    assert error.reason == "expired"
    invalid = error_from_response(400, graph_body(190, "Bad token", subcode=467))
    assert invalid.reason == "invalid"
    assert error_from_response(401, graph_body(0, "Auth failed")).category == (
        "authentication"
    )


def test_code_wins_over_http_status():
    # Meta documents 131000 as HTTP 500 but the code decides, whatever the status.
    assert isinstance(error_from_response(400, graph_body(131000, "x")), ServerError)
    assert isinstance(error_from_response(500, graph_body(3, "x")), ApiPermissionError)
    assert isinstance(error_from_response(400, graph_body(132015, "x")), TemplateError)
    assert isinstance(
        error_from_response(403, graph_body(250, "x")), ApiPermissionError
    )


@pytest.mark.parametrize(
    "status,cls",
    [
        (401, AuthenticationError),
        (403, ApiPermissionError),
        (404, InvalidRequestError),
        (429, RateLimitError),
        (500, ServerError),
        (418, InvalidRequestError),
    ],
)
def test_unknown_code_falls_back_to_http_status(status, cls):
    error = error_from_response(status, graph_body(999999, "Brand new error"))
    assert type(error) is cls
    assert error.code == 999999


def test_unknown_code_trusts_meta_transient_flag():
    error = error_from_payload({"code": 987654, "message": "odd", "is_transient": True})
    assert type(error) is WhatsAppError
    assert error.category == "unknown"
    assert error.retryable is True
    assert WhatsAppError.retryable is False


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_html_5xx_body_is_a_retryable_server_error(status):
    body = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    error = error_from_response(status, body, {"Content-Type": "text/html"})
    assert type(error) is ServerError
    assert error.retryable is True
    assert error.code is None
    assert error.http_status == status
    # The unparsed body is never echoed into the message.
    assert "nginx" not in str(error)


@pytest.mark.parametrize("body", [None, b"", "", b"   "])
def test_empty_body_is_classified_by_status(body):
    assert type(error_from_response(502, body)) is ServerError
    assert type(error_from_response(401, body)) is AuthenticationError


@pytest.mark.parametrize(
    "body",
    [
        b'{"error": {"code": 1',
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'{"error": "no"}',
        b'{"foo": "bar"}',
        "not json at all",
    ],
)
def test_garbage_bodies_never_raise(body):
    error = error_from_response(400, body, None)
    assert type(error) is InvalidRequestError
    assert error.http_status == 400


def test_retry_after_seconds_header_is_parsed():
    error = error_from_response(429, b"", {"Retry-After": "12"})
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 12.0
    # Header names are case-insensitive even in a plain dict.
    lower = error_from_response(400, graph_body(130429, "x"), {"retry-after": "3.5"})
    assert lower.retry_after == 3.5


def test_retry_after_http_date_is_relative_to_now():
    now = datetime(2026, 11, 23, 10, 0, 0, tzinfo=timezone.utc).timestamp()
    header = "Mon, 23 Nov 2026 10:01:30 GMT"
    error = error_from_response(503, b"", {"Retry-After": header}, now=now)
    assert error.retry_after == pytest.approx(90.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") == 0.0


def test_pair_rate_limit_defaults_to_a_six_second_wait():
    error = error_from_response(400, graph_body(131056, "pair rate limit hit"))
    assert error.retry_after == 6.0
    assert error.scope == "recipient"
    assert error_from_response(400, graph_body(130429, "x")).scope == "phone_number"


@pytest.mark.parametrize(
    "code,cls,category",
    [
        (131026, RecipientError, "recipient"),
        (131047, ReengagementRequiredError, "window_closed"),
        (131050, OptedOutError, "opted_out"),
        (131053, MediaError, "media"),
        (131000, ServerError, "server"),
    ],
)
def test_async_webhook_error_payload(code, cls, category):
    payload = {
        "code": code,
        "title": "Message undeliverable",
        "message": "Message undeliverable",
        "error_data": {"details": "Customer last wrote more than 24 h ago."},
        "href": "https://developers.facebook.com/documentation/error-codes/",
    }
    error = error_from_payload(payload)
    assert type(error) is cls
    assert error.category == category
    assert error.title == "Message undeliverable"
    assert error.details == "Customer last wrote more than 24 h ago."
    assert error.http_status is None
    assert isinstance(error, RecipientError) == (
        category in {"recipient", "window_closed", "opted_out"}
    )


def test_error_from_payload_accepts_envelope_strings_and_junk():
    wrapped = error_from_payload({"error": {"code": "131047", "message": "x"}}, 400)
    assert type(wrapped) is ReengagementRequiredError
    assert wrapped.code == 131047
    assert wrapped.http_status == 400
    assert type(error_from_payload(None)) is WhatsAppError
    assert type(error_from_payload(["oops"], http_status=502)) is ServerError
    assert error_from_payload({"code": "abc"}).code is None


def test_transport_errors_flags():
    connect = ConnectError("NewConnectionError: refused")
    timeout = ReadTimeoutError("ReadTimeout")
    generic = TransportError("SSLError", reached_server=False)
    assert connect.reached_server is False and connect.retryable is True
    assert timeout.reached_server is True and timeout.retryable is True
    assert generic.retryable is False
    assert {e.category for e in (connect, timeout, generic)} == {"network"}
    assert connect.to_dict()["reached_server"] is False
    assert timeout.to_dict()["reached_server"] is True


def test_str_and_dict_never_contain_the_token():
    body = graph_body(
        190,
        f"Malformed access token {TOKEN}",
        subcode=467,
        details=f"GET /me?access_token={TOKEN}&fields=id with Bearer {TOKEN}",
    )
    error = error_from_response(401, body, {"Retry-After": "1"})
    texts = [
        str(error),
        repr(error),
        error.message,
        error.details,
        json.dumps(error.to_dict()),
        str(error.args),
    ]
    for text in texts:
        assert TOKEN not in text
    assert "access_token=EAAG…(len" in error.details
    assert "#190/467" in str(error)
    assert "Atrace190" in str(error)


def test_to_dict_is_plain_and_complete():
    error = error_from_response(
        429, graph_body(130429, "(#130429) Rate limit hit"), {"Retry-After": "2"}
    )
    data = error.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data == {
        "error_class": "RateLimitError",
        "category": "rate_limit",
        "retryable": True,
        "code": 130429,
        "subcode": None,
        "title": "Rate limit hit",
        "message": "(#130429) Rate limit hit",
        "details": "",
        "fbtrace_id": "Atrace130429",
        "http_status": 429,
        "is_transient": None,
        "retry_after": 2.0,
    }


def test_errors_are_raisable_exceptions():
    with pytest.raises(RecipientError) as info:
        raise error_from_payload({"code": 131047, "message": "Re-engagement message"})
    assert info.value.category == "window_closed"
