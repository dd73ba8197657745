"""CloudApiClient against a mocked Graph API (``responses``); nothing leaves the box."""

import email.parser
import json
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from fake_time import FakeTime
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

import wa_cloud.payloads as payloads
from wa_cloud.client import CloudApiClient, MediaInfo, PhoneNumberInfo, SendResult
from wa_cloud.const import DEFAULT_TIMEOUT
from wa_cloud.errors import (
    AuthenticationError,
    ConnectError,
    InvalidRequestError,
    MediaError,
    RateLimitError,
    ReadTimeoutError,
    RecipientError,
    ReengagementRequiredError,
    ServerError,
    TransportError,
)
from wa_cloud.retry import RetryPolicy

TOKEN = "EAAGm0PX4ZCpsBAKZBwZCvZAnb0ZBsecretZAtokenZBvalue0123456789"
PNID = "109000000000001"
WABA = "104000000000001"
GRAPH = "https://graph.facebook.com/v26.0"
MESSAGES_URL = f"{GRAPH}/{PNID}/messages"
CUSTOMER = "33612345678"
WAMID = "wamid.HBgLMzM2MTIzNDU2NzgVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
SECRET_BODY = "Confidential quote S00117 for Amélie: 4242 EUR"


def ok_send(wa_id=CUSTOMER, wamid=WAMID, status="accepted", user_id=None):
    contact = {"input": wa_id or user_id}
    if wa_id:
        contact["wa_id"] = wa_id
    if user_id:
        contact["user_id"] = user_id
    return {
        "messaging_product": "whatsapp",
        "contacts": [contact],
        "messages": [{"id": wamid, "message_status": status}],
    }


def graph_error(code, message, status=400, subcode=None, **extra):
    error = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AXtrace42",
        **extra,
    }
    if subcode:
        error["error_subcode"] = subcode
    return {"json": {"error": error}, "status": status}


def connect_refused(url=MESSAGES_URL):
    """What requests raises when the TCP connection cannot even be opened."""
    reason = NewConnectionError(None, "Failed to establish a new connection: refused")
    return requests.exceptions.ConnectionError(MaxRetryError(None, url, reason))


@pytest.fixture
def fake_time():
    return FakeTime()


@pytest.fixture
def policy(fake_time):
    return RetryPolicy(
        max_attempts=4,
        base_delay=0.5,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        jitter=lambda delay: delay,
    )


@pytest.fixture
def client(policy):
    with CloudApiClient(TOKEN, PNID, WABA, retry_policy=policy) as api:
        yield api


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def sent_json(call):
    return json.loads(call.request.body)


def assert_auth_headers(call, *, json_body):
    headers = call.request.headers
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["User-Agent"].startswith("whatsapp_business-wa_cloud/")
    if json_body:
        assert headers["Content-Type"] == "application/json"
    else:
        assert "Content-Type" not in headers
    # The token only ever travels in the header.
    assert TOKEN not in call.request.url
    assert "access_token" not in call.request.url


# -- sending ---------------------------------------------------------------------------


def test_send_text_exact_request_and_result(client, mock):
    mock.post(MESSAGES_URL, json=ok_send())
    result = client.send_text("+33 6 12 34 56 78", "Bonjour", preview_url=True)

    assert isinstance(result, SendResult)
    assert result.wamid == WAMID
    assert result.wa_id == CUSTOMER
    assert result.user_id is None
    assert result.message_status == "accepted"
    call = mock.calls[0]
    assert call.request.method == "POST"
    assert call.request.url == MESSAGES_URL
    assert_auth_headers(call, json_body=True)
    assert call.request.headers["Accept"] == "application/json"
    expected = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CUSTOMER,
        "type": "text",
        "text": {"preview_url": True, "body": "Bonjour"},
    }
    assert sent_json(call) == expected
    assert result.payload == expected


def test_send_returns_normalised_wa_id(client, mock):
    # Mexico: Meta answers with 521... for an input of 52...
    mock.post(MESSAGES_URL, json=ok_send(wa_id="5215512345678"))
    result = client.send_text("525512345678", "Hola")
    assert sent_json(mock.calls[0])["to"] == "525512345678"
    assert result.wa_id == "5215512345678"


def test_send_to_bsuid_returns_user_id(client, mock):
    bsuid = "FR.1304857236419057341"
    mock.post(MESSAGES_URL, json=ok_send(wa_id=None, user_id=bsuid))
    result = client.send_text(bsuid, "Bonjour")
    body = sent_json(mock.calls[0])
    assert body["recipient"] == bsuid and "to" not in body
    assert result.user_id == bsuid and result.wa_id is None


SEND_CASES = {
    "template": (
        lambda c: c.send_template(
            CUSTOMER,
            "order_update_v2",
            "fr",
            components=[payloads.body_component([payloads.text_param("S00117")])],
            reply_to="wamid.IN",
            biz_opaque_callback_data="whatsapp.message,9",
        ),
        lambda: payloads.template_payload(
            CUSTOMER,
            "order_update_v2",
            "fr",
            components=[payloads.body_component([payloads.text_param("S00117")])],
            reply_to="wamid.IN",
            biz_opaque_callback_data="whatsapp.message,9",
        ),
    ),
    "media": (
        lambda c: c.send_media(
            CUSTOMER,
            "document",
            media_id="1480001122334466",
            caption="Devis",
            filename="Devis.pdf",
        ),
        lambda: payloads.media_payload(
            CUSTOMER,
            "document",
            media_id="1480001122334466",
            caption="Devis",
            filename="Devis.pdf",
        ),
    ),
    "location": (
        lambda c: c.send_location(CUSTOMER, 45.764043, 4.835659, name="Agence Lyon"),
        lambda: payloads.location_payload(
            CUSTOMER, 45.764043, 4.835659, name="Agence Lyon"
        ),
    ),
    "contacts": (
        lambda c: c.send_contacts(CUSTOMER, [{"name": {"formatted_name": "Acme"}}]),
        lambda: payloads.contacts_payload(
            CUSTOMER, [{"name": {"formatted_name": "Acme"}}]
        ),
    ),
    "buttons": (
        lambda c: c.send_interactive_buttons(
            CUSTOMER, "RDV ?", [("ok", "Confirmer")], footer="Acme"
        ),
        lambda: payloads.interactive_buttons_payload(
            CUSTOMER, "RDV ?", [("ok", "Confirmer")], footer="Acme"
        ),
    ),
    "list": (
        lambda c: c.send_interactive_list(
            CUSTOMER, "Choisissez", "Créneaux", [{"rows": [("s1", "Lundi 10h")]}]
        ),
        lambda: payloads.interactive_list_payload(
            CUSTOMER, "Choisissez", "Créneaux", [{"rows": [("s1", "Lundi 10h")]}]
        ),
    ),
    "reaction": (
        lambda c: c.send_reaction(CUSTOMER, "wamid.IN-TEXT", "👍"),
        lambda: payloads.reaction_payload(CUSTOMER, "wamid.IN-TEXT", "👍"),
    ),
    "interactive spec": (
        lambda c: c.send_interactive(
            CUSTOMER,
            {
                "type": "button",
                "body": "RDV ?",
                "buttons": [{"id": "ok", "title": "Oui"}],
            },
            reply_to="wamid.IN-TEXT",
        ),
        lambda: payloads.interactive_buttons_payload(
            CUSTOMER, "RDV ?", [("ok", "Oui")], reply_to="wamid.IN-TEXT"
        ),
    ),
}


@pytest.mark.parametrize("kind", sorted(SEND_CASES))
def test_every_send_method_posts_its_builder_payload(client, mock, kind):
    call_client, build = SEND_CASES[kind]
    mock.post(MESSAGES_URL, json=ok_send())
    result = call_client(client)
    assert result.wamid == WAMID
    assert mock.calls[0].request.url == MESSAGES_URL
    assert_auth_headers(mock.calls[0], json_body=True)
    assert sent_json(mock.calls[0]) == build()


def test_send_message_raw_payload(client, mock):
    payload = {
        "messaging_product": "whatsapp",
        "to": CUSTOMER,
        "type": "text",
        "text": {"body": "raw"},
    }
    mock.post(MESSAGES_URL, json=ok_send(status="held_for_quality_assessment"))
    result = client.send_message(payload)
    assert sent_json(mock.calls[0]) == payload
    assert result.message_status == "held_for_quality_assessment"


def test_success_without_wamid_is_an_error_and_not_resent(client, mock):
    mock.post(MESSAGES_URL, json={"messaging_product": "whatsapp", "messages": []})
    with pytest.raises(ServerError) as info:
        client.send_text(CUSTOMER, "x")
    assert info.value.retryable is False
    assert len(mock.calls) == 1


def test_non_json_success_body_is_not_retried(client, mock):
    mock.post(MESSAGES_URL, body="<html>ok?</html>", status=200)
    with pytest.raises(ServerError) as info:
        client.send_text(CUSTOMER, "x")
    assert info.value.retryable is False
    assert len(mock.calls) == 1


def test_mark_as_read_with_typing_indicator(client, mock):
    mock.post(MESSAGES_URL, json={"success": True})
    assert client.mark_as_read("wamid.IN-TEXT", typing_indicator=True) is True
    assert_auth_headers(mock.calls[0], json_body=True)
    assert sent_json(mock.calls[0]) == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN-TEXT",
        "typing_indicator": {"type": "text"},
    }


def test_mark_as_read_is_retried_on_5xx_unlike_sends(client, mock, fake_time):
    mock.post(MESSAGES_URL, body="<html>502</html>", status=502)
    mock.post(MESSAGES_URL, json={"success": True})
    assert client.mark_as_read("wamid.IN-TEXT") is True
    assert len(mock.calls) == 2
    assert fake_time.sleeps == [0.5]


# -- errors and retries ----------------------------------------------------------------


@pytest.mark.parametrize(
    "response,cls",
    [
        (
            graph_error(190, "Session expired", status=401, subcode=463),
            AuthenticationError,
        ),
        (
            graph_error(131047, "(#131047) Re-engagement message"),
            ReengagementRequiredError,
        ),
        (graph_error(100, "Invalid parameter"), InvalidRequestError),
        ({"body": "<html><body>Bad Gateway</body></html>", "status": 502}, ServerError),
        ({"body": "", "status": 503}, ServerError),
    ],
)
def test_error_responses_raise_typed_errors_without_resending(
    client, mock, response, cls
):
    mock.post(MESSAGES_URL, **response)
    with pytest.raises(cls) as info:
        client.send_text(CUSTOMER, "Bonjour")
    assert type(info.value) is cls
    assert info.value.http_status == response["status"]
    # Sends are never retried after a 4xx/5xx: a 5xx may hide a delivered message.
    assert len(mock.calls) == 1


def test_fbtrace_id_falls_back_to_header(client, mock):
    mock.post(
        MESSAGES_URL,
        body="<html>oops</html>",
        status=500,
        headers={"x-fb-trace-id": "HdrTrace9"},
    )
    with pytest.raises(ServerError) as info:
        client.send_text(CUSTOMER, "x")
    assert info.value.fbtrace_id == "HdrTrace9"


def test_get_is_retried_on_5xx(client, mock, fake_time):
    url = f"{GRAPH}/{PNID}"
    mock.get(url, body="<html>Bad Gateway</html>", status=502)
    mock.get(url, **graph_error(2, "Service temporarily unavailable", status=503))
    mock.get(url, json={"id": PNID, "verified_name": "Acme Lyon"})
    info = client.get_phone_number_info()
    assert info.verified_name == "Acme Lyon"
    assert len(mock.calls) == 3
    assert fake_time.sleeps == [0.5, 1.0]


def test_get_gives_up_after_max_attempts(client, mock, fake_time):
    mock.get(f"{GRAPH}/{PNID}", body="", status=500)
    with pytest.raises(ServerError):
        client.get_phone_number_info()
    assert len(mock.calls) == 4
    assert fake_time.sleeps == [0.5, 1.0, 2.0]


def test_get_is_retried_after_read_timeout(client, mock):
    url = f"{GRAPH}/{PNID}"
    mock.get(url, body=requests.exceptions.ReadTimeout("read timed out"))
    mock.get(url, json={"id": PNID})
    assert client.get_phone_number_info().id == PNID
    assert len(mock.calls) == 2


def test_post_read_timeout_is_never_retried(client, mock, fake_time):
    mock.post(MESSAGES_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(ReadTimeoutError) as info:
        client.send_text(CUSTOMER, "Bonjour")
    assert info.value.reached_server is True
    assert isinstance(info.value.__cause__, requests.exceptions.ReadTimeout)
    assert len(mock.calls) == 1
    assert fake_time.sleeps == []


def test_post_connection_reset_after_sending_is_not_retried(client, mock):
    reset = requests.exceptions.ConnectionError(
        ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
    )
    mock.post(MESSAGES_URL, body=reset)
    with pytest.raises(TransportError) as info:
        client.send_text(CUSTOMER, "Bonjour")
    assert not isinstance(info.value, ConnectError)
    assert info.value.reached_server is True
    assert len(mock.calls) == 1


@pytest.mark.parametrize(
    "exc",
    [connect_refused(), requests.exceptions.ConnectTimeout("connect timed out")],
    ids=["refused", "connect-timeout"],
)
def test_post_connect_error_is_retried(client, mock, fake_time, exc):
    mock.post(MESSAGES_URL, body=exc)
    mock.post(MESSAGES_URL, json=ok_send())
    result = client.send_text(CUSTOMER, "Bonjour")
    assert result.wamid == WAMID
    assert len(mock.calls) == 2
    assert fake_time.sleeps == [0.5]


def test_connect_error_exhausts_attempts(client, mock):
    mock.post(MESSAGES_URL, body=connect_refused())
    with pytest.raises(ConnectError) as info:
        client.send_text(CUSTOMER, "Bonjour")
    assert info.value.reached_server is False
    assert len(mock.calls) == 4


def test_throughput_limit_on_send_is_retried_then_succeeds(client, mock, fake_time):
    mock.post(
        MESSAGES_URL,
        **graph_error(130429, "(#130429) Rate limit hit"),
        headers={"Retry-After": "3"},
    )
    mock.post(
        MESSAGES_URL, **graph_error(130429, "(#130429) Rate limit hit", status=429)
    )
    mock.post(MESSAGES_URL, json=ok_send())
    assert client.send_text(CUSTOMER, "Bonjour").wamid == WAMID
    assert len(mock.calls) == 3
    # Retry-After (3 s) beats the 0.5 s backoff; then plain backoff (1 s).
    assert fake_time.sleeps == [3.0, 1.0]
    # The very same message is re-sent: Meta refused it, so no duplicate.
    assert all(sent_json(c) == sent_json(mock.calls[0]) for c in mock.calls)


def test_no_retry_policy_makes_one_attempt(mock):
    api = CloudApiClient(TOKEN, PNID, retry_policy=RetryPolicy(max_attempts=1))
    mock.post(MESSAGES_URL, **graph_error(130429, "Rate limit hit"))
    with pytest.raises(RateLimitError):
        api.send_text(CUSTOMER, "x")
    assert len(mock.calls) == 1


def test_error_json_inside_a_200_is_still_an_error(client, mock):
    mock.get(f"{GRAPH}/{PNID}", json={"error": {"code": 190, "message": "expired"}})
    with pytest.raises(AuthenticationError):
        client.get_phone_number_info()


# -- templates, phone number, subscriptions --------------------------------------------


def test_list_templates_follows_every_page(client, mock):
    first_url = f"{GRAPH}/{WABA}/message_templates"
    page2 = f"{first_url}?fields=id%2Cname&limit=2&after=CURSOR1"
    # Graph may echo the token in its links: it must be dropped, not followed.
    page3 = f"{first_url}?fields=id%2Cname&limit=2&access_token={TOKEN}&after=CURSOR2"
    mock.get(
        first_url,
        json={
            "data": [{"id": "1", "name": "a"}, {"id": "2", "name": "b"}],
            "paging": {"cursors": {"after": "CURSOR1"}, "next": page2},
        },
    )
    mock.get(
        page2,
        json={
            "data": [{"id": "3", "name": "c"}, {"id": "4", "name": "d"}],
            "paging": {"cursors": {"after": "CURSOR2"}, "next": page3},
        },
    )
    mock.get(
        f"{first_url}?fields=id%2Cname&limit=2&after=CURSOR2",
        json={
            "data": [{"id": "5", "name": "e"}],
            "paging": {"cursors": {"before": "CURSOR2"}},
        },
    )
    templates = client.list_templates(fields=("id", "name"), limit=2, status="APPROVED")

    assert [t["id"] for t in templates] == ["1", "2", "3", "4", "5"]
    assert len(mock.calls) == 3
    first = urlsplit(mock.calls[0].request.url)
    assert f"{first.scheme}://{first.netloc}{first.path}" == first_url
    assert parse_qs(first.query) == {
        "fields": ["id,name"],
        "limit": ["2"],
        "status": ["APPROVED"],
    }
    assert mock.calls[1].request.url == page2
    assert parse_qs(urlsplit(mock.calls[2].request.url).query) == {
        "fields": ["id,name"],
        "limit": ["2"],
        "after": ["CURSOR2"],
    }
    for call in mock.calls:
        assert_auth_headers(call, json_body=False)


def test_list_templates_default_fields(client, mock):
    mock.get(f"{GRAPH}/{WABA}/message_templates", json={"data": []})
    assert client.list_templates() == []
    query = parse_qs(urlsplit(mock.calls[0].request.url).query)
    assert query["fields"] == [
        "id,name,language,status,category,components,parameter_format,quality_score"
    ]
    assert query["limit"] == ["100"]


def test_paging_link_to_other_host_stays_on_base_url(policy, mock):
    api = CloudApiClient(
        TOKEN, PNID, WABA, base_url="https://proxy.example/graph", retry_policy=policy
    )
    first = f"https://proxy.example/graph/v26.0/{WABA}/message_templates"
    mock.get(
        first,
        json={
            "data": [{"id": "1"}],
            "paging": {"next": f"{GRAPH}/{WABA}/message_templates?after=X"},
        },
    )
    mock.get(f"{first}?after=X", json={"data": [{"id": "2"}]})
    assert [t["id"] for t in api.list_templates()] == ["1", "2"]
    assert mock.calls[1].request.url == f"{first}?after=X"


def test_paging_loop_is_detected(client, mock):
    url = f"{GRAPH}/{WABA}/message_templates"
    looping = f"{url}?after=SAME"
    mock.get(url, json={"data": [{"id": "1"}], "paging": {"next": looping}})
    mock.get(looping, json={"data": [{"id": "2"}], "paging": {"next": looping}})
    assert [t["id"] for t in client.list_templates()] == ["1", "2"]
    assert len(mock.calls) == 2


def test_get_phone_number_info(client, mock):
    raw = {
        "id": PNID,
        "display_phone_number": "+1 555-010-0001",
        "verified_name": "Acme Lyon",
        "quality_rating": "GREEN",
        "code_verification_status": "VERIFIED",
        "name_status": "APPROVED",
        "platform_type": "CLOUD_API",
        "throughput": {"level": "STANDARD"},
        "status": "CONNECTED",
        "account_mode": "LIVE",
    }
    mock.get(f"{GRAPH}/{PNID}", json=raw)
    info = client.get_phone_number_info()
    assert info == PhoneNumberInfo(
        id=PNID,
        display_phone_number="+1 555-010-0001",
        verified_name="Acme Lyon",
        quality_rating="GREEN",
        messaging_limit_tier=None,
        code_verification_status="VERIFIED",
        name_status="APPROVED",
        platform_type="CLOUD_API",
        throughput_level="STANDARD",
        status="CONNECTED",
        account_mode="LIVE",
        raw=raw,
    )
    query = parse_qs(urlsplit(mock.calls[0].request.url).query)
    assert "verified_name" in query["fields"][0].split(",")
    assert "throughput" in query["fields"][0].split(",")
    assert_auth_headers(mock.calls[0], json_body=False)


def test_subscribe_app_and_list_subscriptions(client, mock):
    url = f"{GRAPH}/{WABA}/subscribed_apps"
    mock.post(url, json={"success": True})
    mock.get(
        url,
        json={
            "data": [
                {"whatsapp_business_api_data": {"id": "5550001", "name": "Acme Odoo"}}
            ]
        },
    )
    assert client.subscribe_app() is True
    apps = client.get_subscribed_apps()
    assert apps[0]["whatsapp_business_api_data"]["name"] == "Acme Odoo"
    post, get = mock.calls
    assert post.request.method == "POST" and post.request.url == url
    assert post.request.body is None
    assert_auth_headers(post, json_body=False)
    assert get.request.method == "GET" and get.request.url == url


def test_missing_ids_are_reported_before_any_call(mock):
    api = CloudApiClient(TOKEN)
    with pytest.raises(ValueError, match="phone number id"):
        api.send_text(CUSTOMER, "x")
    with pytest.raises(ValueError, match="Business Account"):
        api.list_templates()
    assert len(mock.calls) == 0


# -- media -----------------------------------------------------------------------------


def test_upload_media_multipart(client, mock):
    mock.post(f"{GRAPH}/{PNID}/media", json={"id": "1480001122339999"})
    content = b"%PDF-1.7 fake pdf bytes \x00\xff"
    media_id = client.upload_media(content, "application/pdf", "Devis-S00117.pdf")

    assert media_id == "1480001122339999"
    call = mock.calls[0]
    assert call.request.url == f"{GRAPH}/{PNID}/media"
    assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
    content_type = call.request.headers["Content-Type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    message = email.parser.BytesParser().parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + call.request.body
    )
    parts = {
        part.get_param("name", header="content-disposition"): part
        for part in message.get_payload()
    }
    assert set(parts) == {"messaging_product", "type", "file"}
    assert parts["messaging_product"].get_payload() == "whatsapp"
    assert parts["type"].get_payload() == "application/pdf"
    assert parts["file"].get_filename() == "Devis-S00117.pdf"
    assert parts["file"].get_content_type() == "application/pdf"
    assert parts["file"].get_payload(decode=True) == content


def test_get_media_url(client, mock):
    url = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=148&hash=abc"
    mock.get(
        f"{GRAPH}/1480001122334455",
        json={
            "messaging_product": "whatsapp",
            "url": url,
            "mime_type": "image/jpeg",
            "sha256": "q3G2abc=",
            "file_size": "20480",
            "id": "1480001122334455",
        },
    )
    info = client.get_media_url("1480001122334455")
    assert info == MediaInfo(
        url=url,
        mime_type="image/jpeg",
        sha256="q3G2abc=",
        file_size=20480,
        id="1480001122334455",
    )
    assert mock.calls[0].request.url == f"{GRAPH}/1480001122334455"
    assert_auth_headers(mock.calls[0], json_body=False)


def test_download_media_sends_bearer_and_user_agent(client, mock):
    url = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=148&hash=abc"
    data = bytes(range(256)) * 1000
    mock.get(url, body=data, content_type="image/jpeg")
    assert client.download_media(url) == data
    call = mock.calls[0]
    assert call.request.url == url
    assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.request.headers["User-Agent"].startswith("whatsapp_business-wa_cloud/")
    assert call.request.headers["Accept"] == "*/*"


def test_download_media_expired_url_and_size_limit(client, mock):
    url = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1"
    mock.get(url, body="", status=404)
    with pytest.raises(InvalidRequestError):
        client.download_media(url)
    big = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=2"
    mock.get(big, body=b"x" * 5000)
    with pytest.raises(MediaError):
        client.download_media(big, max_bytes=4096)


def test_download_media_refuses_plain_http(client, mock):
    with pytest.raises(ValueError):
        client.download_media("http://evil.example/steal")
    assert len(mock.calls) == 0


def test_delete_media(client, mock):
    mock.delete(f"{GRAPH}/1480001122339999", json={"success": True})
    assert client.delete_media("1480001122339999") is True
    assert mock.calls[0].request.method == "DELETE"
    assert_auth_headers(mock.calls[0], json_body=False)


# -- configuration, session, hygiene ---------------------------------------------------


def test_base_url_and_api_version_are_configurable(mock):
    api = CloudApiClient(
        TOKEN, PNID, base_url="https://graph.example.test/", api_version="25.0"
    )
    mock.post(f"https://graph.example.test/v25.0/{PNID}/messages", json=ok_send())
    api.send_text(CUSTOMER, "x")
    assert api.api_version == "v25.0"
    assert mock.calls[0].request.url == (
        f"https://graph.example.test/v25.0/{PNID}/messages"
    )


@pytest.mark.parametrize("version", ["v17.0", "v21.0", "latest", "26"])
def test_expired_or_malformed_versions_are_refused(version):
    with pytest.raises(ValueError):
        CloudApiClient(TOKEN, PNID, api_version=version)


def test_timeouts_are_always_passed(client, mock):
    mock.get(f"{GRAPH}/{PNID}", json={"id": PNID})
    mock.post(MESSAGES_URL, json=ok_send())
    client.get_phone_number_info()
    client.send_text(CUSTOMER, "x")
    assert [c.request.req_kwargs["timeout"] for c in mock.calls] == [
        DEFAULT_TIMEOUT,
        DEFAULT_TIMEOUT,
    ]
    custom = CloudApiClient(TOKEN, PNID, timeout=(2, 9))
    assert custom.timeout == (2.0, 9.0)


def test_one_session_is_reused_for_every_call(client, mock, monkeypatch):
    seen = []
    original = requests.Session.send

    def spy(session, request, **kwargs):
        seen.append(session)
        return original(session, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", spy)
    mock.get(f"{GRAPH}/{PNID}", json={"id": PNID})
    mock.post(MESSAGES_URL, json=ok_send())
    mock.get(f"{GRAPH}/{WABA}/message_templates", json={"data": []})
    client.get_phone_number_info()
    client.send_text(CUSTOMER, "x")
    client.list_templates()
    assert len(seen) == 3
    assert all(session is client.session for session in seen)


def test_context_manager_closes_only_its_own_session(monkeypatch):
    closed = []
    monkeypatch.setattr(requests.Session, "close", lambda self: closed.append(self))
    with CloudApiClient(TOKEN, PNID) as api:
        own = api.session
    assert closed == [own]
    shared = requests.Session()
    with CloudApiClient(TOKEN, PNID, session=shared) as api:
        assert api.session is shared
    assert closed == [own]


def test_injected_session_never_carries_the_token():
    shared = requests.Session()
    CloudApiClient(TOKEN, PNID, session=shared)
    assert "Authorization" not in shared.headers


def test_repr_hides_the_token():
    api = CloudApiClient(TOKEN, PNID, WABA)
    assert TOKEN not in repr(api)
    assert TOKEN[:8] not in repr(api)
    assert PNID in repr(api)


def test_empty_token_is_refused():
    with pytest.raises(ValueError):
        CloudApiClient("  ", PNID)


def test_logs_never_contain_token_phone_or_body(client, mock, caplog):
    caplog.set_level(logging.DEBUG)
    media_url = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=9"
    mock.post(MESSAGES_URL, json=ok_send())
    mock.post(
        MESSAGES_URL,
        **graph_error(
            131030,
            f"(#131030) Recipient phone number {CUSTOMER} not in allowed list",
            error_data={"details": f"{SECRET_BODY} / Bearer {TOKEN}"},
        ),
    )
    mock.post(
        MESSAGES_URL,
        body=requests.exceptions.ReadTimeout(
            f"HTTPSConnectionPool: Read timed out. {CUSTOMER}"
        ),
    )
    mock.post(MESSAGES_URL, body=connect_refused())
    mock.post(MESSAGES_URL, json=ok_send())
    mock.get(media_url, body=b"img")

    client.send_text(CUSTOMER, SECRET_BODY)
    with pytest.raises(RecipientError):
        client.send_text(CUSTOMER, SECRET_BODY)
    with pytest.raises(ReadTimeoutError):
        client.send_text(f"+{CUSTOMER}", SECRET_BODY)
    client.send_text(CUSTOMER, SECRET_BODY)  # connect error, retried, then sent
    client.download_media(media_url)

    records = [r for r in caplog.records if r.name.startswith("wa_cloud")]
    assert records, "the client is expected to log its calls"
    assert {r.name for r in records} == {"wa_cloud.client"}
    assert any(r.levelno == logging.DEBUG for r in records)
    assert any(r.levelno == logging.WARNING for r in records)
    assert any("fbtrace_id=AXtrace42" in r.getMessage() for r in records)
    assert any("code=131030" in r.getMessage() for r in records)
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + (record.exc_text or "")
        for secret in (TOKEN, CUSTOMER, SECRET_BODY, "Amélie", "mid=9"):
            assert secret not in text, (secret, text)


def test_environment_proxies_are_read_once(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "")
    client = CloudApiClient(TOKEN, PNID, WABA)
    assert client.session.proxies["https"] == "http://proxy.internal:3128"
    assert client.session.trust_env is False
    client.close()
    monkeypatch.setenv("NO_PROXY", "graph.facebook.com")
    client = CloudApiClient(TOKEN, PNID, WABA)
    assert "https" not in client.session.proxies
    client.close()
