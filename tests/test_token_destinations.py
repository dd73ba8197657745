"""The bearer token travels only to Meta or to the configured Graph URL (issue 11)."""

import pytest
import responses

from wa_cloud.client import CloudApiClient
from wa_cloud.urls import (
    UnsafeUrlError,
    is_loopback_host,
    is_token_destination,
    validate_base_url,
)

TOKEN = "EAAGsecretTokenValue0123456789abcdef"
MEDIA = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=148&hash=abc"


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://graph.facebook.com", "https://graph.facebook.com"),
        ("https://graph.facebook.com/", "https://graph.facebook.com"),
        ("  https://proxy.example/graph/ ", "https://proxy.example/graph"),
        ("http://127.0.0.1:8899", "http://127.0.0.1:8899"),
        ("http://127.3.4.5", "http://127.3.4.5"),
        ("http://localhost:8069/graph", "http://localhost:8069/graph"),
        ("http://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_base_url_accepted(url, expected):
    assert validate_base_url(url) == expected
    assert CloudApiClient(TOKEN, base_url=url).base_url == expected


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://attacker.example", "https"),
        ("http://10.0.0.5:8080", "https"),
        ("http://graph.facebook.com", "https"),
        ("ftp://graph.facebook.com", "expected https"),
        ("graph.facebook.com", "expected https"),
        ("", "expected https"),
        ("https://", "expected https"),
        ("https://user:pw@graph.facebook.com", "credentials"),
        ("https://graph.facebook.com/?next=x", "query"),
        ("https://graph.facebook.com:notaport", "invalid"),
    ],
)
def test_base_url_refused_with_reason(url, reason):
    with pytest.raises(UnsafeUrlError, match=reason):
        validate_base_url(url)
    with pytest.raises(ValueError, match=reason):
        CloudApiClient(TOKEN, base_url=url)


def test_loopback_hosts():
    assert is_loopback_host("127.0.0.1")
    assert is_loopback_host("localhost")
    assert is_loopback_host("[::1]")
    assert not is_loopback_host("localhost.attacker.example")
    assert not is_loopback_host("192.168.1.10")


@pytest.mark.parametrize(
    "url, allowed",
    [
        (MEDIA, True),
        ("https://scontent.xx.fbcdn.net/v/t61/abc", True),
        ("https://mmg.whatsapp.net/d/f/abc.enc", True),
        ("https://graph.facebook.com/v26.0/123", True),
        ("http://lookaside.fbsbx.com/whatsapp_business/attachments/", False),
        ("https://fbsbx.com.attacker.example/x", False),
        ("https://evilfbsbx.com/x", False),
        ("https://attacker.example/x?u=lookaside.fbsbx.com", False),
        ("https://user@lookaside.fbsbx.com/x", False),
        ("https://proxy.example/graph/media/1", True),  # the configured origin
        ("https://proxy.example:8443/graph/media/1", False),  # another port
        ("not a url", False),
    ],
)
def test_token_destinations(url, allowed):
    assert is_token_destination(url, "https://proxy.example/graph") is allowed


def test_download_refuses_foreign_host_before_any_request(mock):
    client = CloudApiClient(TOKEN)
    with pytest.raises(UnsafeUrlError, match="https://attacker.example"):
        client.download_media("https://attacker.example/steal?mid=1")
    assert len(mock.calls) == 0


def test_download_refuses_redirect_to_foreign_host(mock):
    client = CloudApiClient(TOKEN)
    mock.get(
        MEDIA,
        status=302,
        headers={"Location": "https://attacker.example/collect?x=1"},
    )
    with pytest.raises(UnsafeUrlError, match="attacker.example"):
        client.download_media(MEDIA)
    # One request, to Meta; none to the redirect target, token or not.
    assert [call.request.url for call in mock.calls] == [MEDIA]


def test_download_follows_redirect_within_meta_with_token(mock):
    client = CloudApiClient(TOKEN)
    cdn = "https://scontent.whatsapp.net/media/abc.jpg"
    mock.get(MEDIA, status=302, headers={"Location": cdn})
    mock.get(cdn, body=b"jpeg-bytes", content_type="image/jpeg")
    assert client.download_media(MEDIA) == b"jpeg-bytes"
    assert [call.request.url for call in mock.calls] == [MEDIA, cdn]
    for call in mock.calls:
        assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_download_relative_redirect_stays_on_host(mock):
    client = CloudApiClient(TOKEN)
    second = "https://lookaside.fbsbx.com/other/path?mid=148"
    mock.get(MEDIA, status=301, headers={"Location": "/other/path?mid=148"})
    mock.get(second, body=b"ok")
    assert client.download_media(MEDIA) == b"ok"


def test_download_redirect_loop_is_bounded(mock):
    client = CloudApiClient(TOKEN)
    mock.get(MEDIA, status=302, headers={"Location": MEDIA})
    with pytest.raises(Exception, match="redirects"):
        client.download_media(MEDIA)
    assert 1 < len(mock.calls) <= 6


def test_download_from_loopback_sandbox(mock):
    client = CloudApiClient(TOKEN, base_url="http://127.0.0.1:8899")
    url = "http://127.0.0.1:8899/media-download/148"
    mock.get(url, body=b"sandbox")
    assert client.download_media(url) == b"sandbox"
    # A sandbox client still refuses plain http elsewhere.
    with pytest.raises(UnsafeUrlError):
        client.download_media("http://127.0.0.2:8899/media-download/148")
