"""Tests of the fake Graph API server itself (tests/fake_graph.py).

Plain pytest, real HTTP over 127.0.0.1 with `requests`, and a small stdlib
receiver standing in for the Odoo webhook. No assertion depends on timing:
rate limits use a frozen clock, the 24-hour window an injected wall clock, and
asynchronous webhooks are awaited with ``wait_idle``.
"""

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from fake_graph import (
    FakeAccount,
    FakeGraph,
    graph_from_args,
    hmac_signature,
    most_in_window,
    sign_body,
)

PNID = "109000000000001"
WABA = "104000000000001"
TOKEN = "test-token"
SECRET = "test-app-secret"
CUSTOMER = "33612345678"


class Receiver:
    """A stdlib HTTP server recording the webhooks the fake posts."""

    def __init__(self, status=200):
        self.status = status
        self.posts = []  # (headers dict, raw bytes)
        self.gets = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def log_message(self, fmt, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((dict(self.headers.items()), raw))
                self._answer(receiver.status, b"OK")

            def do_GET(self):
                receiver.gets.append(self.path)
                challenge = self.path.split("hub.challenge=")[-1].split("&")[0]
                ok = "hub.verify_token=right" in self.path
                self._answer(200 if ok else 403, challenge.encode() if ok else b"")

            def _answer(self, status, body):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook/key"

    def bodies(self):
        return [json.loads(raw) for _headers, raw in self.posts]

    def statuses(self):
        found = []
        for body in self.bodies():
            value = body["entry"][0]["changes"][0]["value"]
            found.extend(value.get("statuses", []))
        return found

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


# Only a guard against a hang: wait_idle returns as soon as the webhooks are posted.
IDLE_GUARD = 60.0


class FrozenClock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def http():
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture
def receiver():
    recv = Receiver()
    yield recv
    recv.close()


def make_fake(webhook_url=None, **options):
    account = FakeAccount(
        phone_number_id=PNID,
        waba_id=WABA,
        access_token=TOKEN,
        app_secret=SECRET,
        display_phone_number="15550100001",
        verified_name="Acme Lyon",
        webhook_url=webhook_url,
    )
    return FakeGraph([account], **options)


@pytest.fixture
def fake():
    with make_fake(enforce_window=False) as server:
        yield server


def auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def send(http, fake, payload, token=TOKEN):
    return http.post(
        fake.graph_url(f"{PNID}/messages"), json=payload, headers=auth(token)
    )


def text_payload(to=CUSTOMER, body="Bonjour"):
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"body": body},
    }


def template_payload(name="hello_world", code="en_US", components=None):
    template = {"name": name, "language": {"code": code}}
    if components is not None:
        template["components"] = components
    return {
        "messaging_product": "whatsapp",
        "to": CUSTOMER,
        "type": "template",
        "template": template,
    }


def assert_meta_error(response, status, code, subcode=None):
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] in {"OAuthException", "GraphMethodException"}
    assert error["message"]
    assert error["fbtrace_id"]
    if subcode is not None:
        assert error["error_subcode"] == subcode
    return error


# -- authentication and routing --------------------------------------------------------


def test_missing_token_is_401_oauth_190(http, fake):
    response = http.get(fake.graph_url(PNID))
    assert_meta_error(response, 401, 190, subcode=467)
    assert "WWW-Authenticate" in response.headers


def test_wrong_and_expired_tokens_are_rejected(http, fake):
    assert_meta_error(http.get(fake.graph_url(PNID), headers=auth("nope")), 401, 190)
    fake.account().token_expired = True
    response = http.get(fake.graph_url(PNID), headers=auth())
    assert_meta_error(response, 401, 190, subcode=463)


def test_unknown_node_is_100_subcode_33(http, fake):
    response = http.get(fake.graph_url("123456789"), headers=auth())
    error = assert_meta_error(response, 400, 100, subcode=33)
    assert error["type"] == "GraphMethodException"


def test_token_only_sees_its_own_numbers(http):
    other = FakeAccount(phone_number_id="109000000000002", access_token="other")
    with FakeGraph([make_fake().account(), other]) as server:
        response = http.get(server.graph_url(PNID), headers=auth("other"))
        assert_meta_error(response, 400, 100, subcode=33)
        ok = http.get(server.graph_url("109000000000002"), headers=auth("other"))
        assert ok.status_code == 200


def test_any_version_and_query_token_are_accepted(http, fake):
    for version in ("v22.0", "v27.0"):
        response = http.get(fake.graph_url(PNID, version), headers=auth())
        assert response.status_code == 200
    response = http.get(fake.graph_url(PNID), params={"access_token": TOKEN})
    assert response.status_code == 200
    assert [r.version for r in fake.received] == ["v22.0", "v27.0", "v26.0"]


# -- sending ---------------------------------------------------------------------------


def test_send_text_answers_unique_wamids_and_is_recorded(http, fake):
    first = send(http, fake, text_payload(to="+33 6 12 34 56 78"))
    second = send(http, fake, text_payload())
    assert first.status_code == second.status_code == 200
    body = first.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": "+33 6 12 34 56 78", "wa_id": CUSTOMER}]
    wamid = body["messages"][0]["id"]
    assert wamid.startswith("wamid.")
    assert wamid != second.json()["messages"][0]["id"]

    sent = fake.sent_messages
    assert sent[0].wamid == wamid
    assert sent[0].wa_id == CUSTOMER and sent[0].type == "text"
    record = fake.requests_to("/messages", "POST")[0]
    assert record.body["text"]["body"] == "Bonjour"
    assert record.headers["authorization"] == f"Bearer {TOKEN}"
    assert record.status == 200
    assert record.timestamp <= fake.received[-1].timestamp


def test_send_by_bsuid_answers_user_id(http, fake):
    payload = text_payload()
    del payload["to"]
    payload["recipient"] = "FR.1304857236419057341"
    response = send(http, fake, payload)
    assert response.status_code == 200
    assert response.json()["contacts"][0]["user_id"] == "FR.1304857236419057341"


def test_wa_id_alias_is_answered(http):
    with make_fake(
        enforce_window=False, wa_id_aliases={"525512345678": "5215512345678"}
    ) as server:
        response = send(http, server, text_payload(to="525512345678"))
        assert response.json()["contacts"][0]["wa_id"] == "5215512345678"


def _buttons(count):
    return [
        {"type": "reply", "reply": {"id": f"b{i}", "title": f"Choice {i}"}}
        for i in range(count)
    ]


MALFORMED = [
    ("no messaging_product", {"to": CUSTOMER, "text": {"body": "x"}}, 131008),
    ("wrong product", {**text_payload(), "messaging_product": "sms"}, 100),
    ("no recipient", {"messaging_product": "whatsapp", "text": {"body": "x"}}, 131008),
    ("bad number", text_payload(to="hello"), 131009),
    ("unknown type", {**text_payload(), "type": "hologram"}, 131051),
    ("missing object", {**text_payload(), "text": None}, 131008),
    ("empty body", text_payload(body=""), 131009),
    ("body too long", text_payload(body="x" * 4097), 131009),
    ("template no name", template_payload(name=""), 131009),
    (
        "template no language",
        {**template_payload(), "template": {"name": "hello_world"}},
        131008,
    ),
    (
        "media id and link",
        {
            **text_payload(),
            "type": "image",
            "image": {"id": "1", "link": "https://x.example/a.png"},
        },
        131009,
    ),
    ("media neither", {**text_payload(), "type": "image", "image": {}}, 131008),
    (
        "sticker caption",
        {**text_payload(), "type": "sticker", "sticker": {"id": "1", "caption": "x"}},
        100,
    ),
    (
        "four buttons",
        {
            **text_payload(),
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "Pick"},
                "action": {"buttons": _buttons(4)},
            },
        },
        131009,
    ),
    (
        "location without longitude",
        {**text_payload(), "type": "location", "location": {"latitude": 45.7}},
        131008,
    ),
    (
        "reaction without emoji",
        {**text_payload(), "type": "reaction", "reaction": {"message_id": "wamid.X"}},
        131008,
    ),
]


@pytest.mark.parametrize(
    ("payload", "code"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_sends_get_meta_shaped_errors(http, fake, payload, code):
    error = assert_meta_error(send(http, fake, payload), 400, code)
    assert error["message"].startswith(f"(#{code})")
    assert error["error_data"]["details"]
    assert fake.sent_messages == []


def test_non_json_bodies_are_rejected(http, fake):
    url = fake.graph_url(f"{PNID}/messages")
    form = http.post(url, data={"messaging_product": "whatsapp"}, headers=auth())
    assert_meta_error(form, 400, 100)
    broken = http.post(
        url, data=b"{not json", headers={**auth(), "Content-Type": "application/json"}
    )
    assert_meta_error(broken, 400, 100)
    assert fake.sent_messages == []


def test_valid_message_types_are_accepted(http, fake):
    payloads = [
        {"type": "image", "image": {"id": "1480001122339999", "caption": "Plan"}},
        {
            "type": "document",
            "document": {"link": "https://x.example/a.pdf", "filename": "a.pdf"},
        },
        {"type": "location", "location": {"latitude": 45.76, "longitude": 4.83}},
        {"type": "contacts", "contacts": [{"name": {"formatted_name": "Support"}}]},
        {"type": "reaction", "reaction": {"message_id": "wamid.IN", "emoji": ""}},
        {
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": {"text": "Choose"},
                "action": {
                    "button": "Slots",
                    "sections": [{"rows": [{"id": "s1", "title": "Monday 10:00"}]}],
                },
            },
        },
    ]
    for extra in payloads:
        payload = {"messaging_product": "whatsapp", "to": CUSTOMER, **extra}
        assert send(http, fake, payload).status_code == 200, extra["type"]
    assert len(fake.sent_messages) == len(payloads)


def test_mark_as_read(http, fake):
    body = {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN1",
    }
    response = send(http, fake, {**body, "typing_indicator": {"type": "text"}})
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert fake.read_receipts[0]["message_id"] == "wamid.IN1"
    assert_meta_error(send(http, fake, {**body, "message_id": "nope"}), 400, 131009)
    assert fake.sent_messages == []


def test_forced_error_per_recipient(http, fake):
    fake.errors_for = {"+33600000000": (400, 131026)}
    error = assert_meta_error(
        send(http, fake, text_payload(to="33600000000")), 400, 131026
    )
    assert error["error_data"]["details"]
    assert send(http, fake, text_payload()).status_code == 200


# -- rate limit ------------------------------------------------------------------------


def test_rate_limit_in_one_instant_accepts_exactly_the_limit(http):
    clock = FrozenClock(1000.0)
    with make_fake(enforce_window=False, rate_limit=5, clock=clock) as server:
        codes = [send(http, server, text_payload()).status_code for _ in range(10)]
        assert codes.count(200) == 5
        rejected = send(http, server, text_payload())
        error = assert_meta_error(rejected, 400, 130429)
        assert error["is_transient"] is True
        assert server.max_sends_in_window(1.0) == 5

        clock.now += 1.0  # the window slides: sends are accepted again
        assert send(http, server, text_payload()).status_code == 200
        assert len(server.sent_messages) == 6


def test_rate_limit_status_429_and_retry_after(http):
    options = {"rate_limit": 1, "rate_limit_status": 429, "retry_after": 2}
    with make_fake(enforce_window=False, clock=FrozenClock(5.0), **options) as server:
        assert send(http, server, text_payload()).status_code == 200
        response = send(http, server, text_payload())
        assert_meta_error(response, 429, 130429)
        assert response.headers["Retry-After"] == "2"


def test_concurrent_burst_never_exceeds_the_limit(http):
    # A frozen clock: all 40 sends fall in one second whatever the machine's speed.
    with make_fake(
        enforce_window=False, rate_limit=10, clock=FrozenClock(5.0)
    ) as server:
        results = []

        def burst():
            with requests.Session() as session:
                session.trust_env = False
                for _ in range(10):
                    results.append(send(session, server, text_payload()).status_code)

        threads = [threading.Thread(target=burst) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 40
        assert set(results) == {200, 400}
        assert results.count(200) == len(server.sent_messages) == 10
        assert server.max_sends_in_window(1.0) == 10


# -- 24-hour window and templates ------------------------------------------------------


def test_window_131047_then_ok_after_inbound(http, receiver):
    with make_fake(receiver.url) as server:
        error = assert_meta_error(send(http, server, text_payload()), 400, 131047)
        assert "24 hours" in error["error_data"]["details"]
        assert send(http, server, template_payload()).status_code == 200

        server.inject_inbound_text(PNID, CUSTOMER, "Bonjour")
        assert send(http, server, text_payload()).status_code == 200
        assert [s.type for s in server.sent_messages] == ["template", "text"]


def test_window_expires_after_24_hours(http):
    wall = FrozenClock(1_795_000_000.0)
    with make_fake(wall_clock=wall) as server:
        server.inject_inbound_text(PNID, CUSTOMER, "Hi", timestamp=wall.now - 25 * 3600)
        assert_meta_error(send(http, server, text_payload()), 400, 131047)
        server.open_window(PNID, CUSTOMER, at=wall.now - 23 * 3600)
        assert send(http, server, text_payload()).status_code == 200
        wall.now += 3600
        assert_meta_error(send(http, server, text_payload()), 400, 131047)


def test_async_window_error_posts_failed_status(http, receiver):
    with make_fake(receiver.url, window_error="async") as server:
        response = send(http, server, text_payload())
        assert response.status_code == 200
        assert server.wait_idle(IDLE_GUARD)
        [status] = receiver.statuses()
        assert status["status"] == "failed"
        assert status["errors"][0]["code"] == 131047
        assert "pricing" not in status


def test_template_checks(http, fake):
    fake.enforce_window = True
    assert_meta_error(send(http, fake, template_payload("missing")), 400, 132001)
    assert_meta_error(
        send(http, fake, template_payload("hello_world", "fr")), 400, 132001
    )
    assert_meta_error(
        send(http, fake, template_payload("new_offer", "fr")), 400, 132001
    )
    body = {"type": "body", "parameters": [{"type": "text", "text": "Amélie"}]}
    short = template_payload("order_update", "fr", [body])
    assert_meta_error(send(http, fake, short), 400, 132000)
    two = {**body, "parameters": body["parameters"] * 2}
    assert (
        send(http, fake, template_payload("order_update", "fr", [two])).status_code
        == 200
    )
    bad_text = {"type": "body", "parameters": [{"type": "text", "text": "a\nb"}] * 2}
    bad = template_payload("order_update", "fr", [bad_text])
    assert_meta_error(send(http, fake, bad), 400, 131009)


# -- templates listing -----------------------------------------------------------------


def test_templates_pagination_across_three_pages(http, fake):
    fake.templates = []
    names = [f"template_{i}" for i in range(7)]
    for name in names:
        fake.add_template(name, "fr", "Bonjour {{1}}")
    url = fake.graph_url(f"{WABA}/message_templates")
    params = {"limit": 3, "fields": "name,status"}
    seen, pages = [], 0
    while url:
        response = http.get(url, params=params, headers=auth())
        assert response.status_code == 200
        body = response.json()
        pages += 1
        seen += [item["name"] for item in body["data"]]
        assert set(body["data"][0]) == {"id", "name", "status"}
        url = body["paging"].get("next")
        if url:
            assert url.startswith(fake.url + "/v26.0/")
            assert TOKEN not in url
        params = None  # paging.next is a full URL
    assert pages == 3
    assert seen == names


def test_templates_status_filter(http, fake):
    response = http.get(
        fake.graph_url(f"{WABA}/message_templates"),
        params={"status": "APPROVED", "limit": 100},
        headers=auth(),
    )
    data = response.json()["data"]
    assert data and all(t["status"] == "APPROVED" for t in data)
    assert "next" not in response.json()["paging"]
    order = next(t for t in data if t["name"] == "order_update")
    body = next(c for c in order["components"] if c["type"] == "BODY")
    assert "{{1}}" in body["text"] and "{{2}}" in body["text"]


# -- media -----------------------------------------------------------------------------


def test_media_round_trip(http, fake):
    content = b"%PDF-1.4 fake document"
    response = http.post(
        fake.graph_url(f"{PNID}/media"),
        headers=auth(),
        data={"messaging_product": "whatsapp", "type": "application/pdf"},
        files={"file": ("devis.pdf", content, "application/pdf")},
    )
    assert response.status_code == 200
    media_id = response.json()["id"]
    assert fake.received[-1].form["file"]["size"] == len(content)

    info = http.get(fake.graph_url(media_id), headers=auth()).json()
    assert info["id"] == media_id and info["mime_type"] == "application/pdf"
    assert info["sha256"] == hashlib.sha256(content).hexdigest()
    assert info["file_size"] == len(content)
    assert info["url"].startswith(fake.url + "/media-download/")

    assert http.get(info["url"]).status_code == 401
    download = http.get(info["url"], headers=auth())
    assert download.status_code == 200 and download.content == content

    deleted = http.delete(fake.graph_url(media_id), headers=auth())
    assert deleted.json() == {"success": True}
    assert_meta_error(http.get(fake.graph_url(media_id), headers=auth()), 400, 100, 33)


def test_media_upload_rejects_bad_input(http, fake):
    url = fake.graph_url(f"{PNID}/media")
    exe = http.post(
        url,
        headers=auth(),
        data={"messaging_product": "whatsapp", "type": "application/x-msdownload"},
        files={"file": ("a.exe", b"MZ", "application/x-msdownload")},
    )
    assert_meta_error(exe, 400, 131053)
    no_file = http.post(
        url, headers=auth(), files={"messaging_product": (None, "whatsapp")}
    )
    assert_meta_error(no_file, 400, 131008)


def test_pre_registered_inbound_media_downloads(http, fake):
    media_id = fake.add_media(b"\xff\xd8jpeg", "image/jpeg")
    info = http.get(fake.graph_url(media_id), headers=auth()).json()
    assert http.get(info["url"], headers=auth()).content == b"\xff\xd8jpeg"


# -- phone number and WABA -------------------------------------------------------------


def test_phone_number_info(http, fake):
    fields = "id,display_phone_number,verified_name,quality_rating,platform_type,"
    fields += "throughput,status,messaging_limit_tier"
    response = http.get(fake.graph_url(PNID), params={"fields": fields}, headers=auth())
    info = response.json()
    assert info["id"] == PNID
    assert info["verified_name"] == "Acme Lyon"
    assert info["quality_rating"] == "GREEN"
    assert info["platform_type"] == "CLOUD_API"
    assert info["status"] == "CONNECTED"
    assert info["throughput"] == {"level": "STANDARD"}
    assert set(info) == set(fields.split(","))
    unknown = http.get(fake.graph_url(PNID), params={"fields": "nope"}, headers=auth())
    assert_meta_error(unknown, 400, 100)


def test_subscribed_apps_and_phone_numbers(http, fake):
    url = fake.graph_url(f"{WABA}/subscribed_apps")
    assert http.get(url, headers=auth()).json() == {"data": []}
    assert http.post(url, headers=auth()).json() == {"success": True}
    apps = http.get(url, headers=auth()).json()["data"]
    assert len(apps) == 1 and apps[0]["whatsapp_business_api_data"]["id"]
    numbers = http.get(fake.graph_url(f"{WABA}/phone_numbers"), headers=auth()).json()
    assert [n["id"] for n in numbers["data"]] == [PNID]


# -- webhooks --------------------------------------------------------------------------


def assert_signed(headers, raw):
    expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == expected
    assert headers["Content-Type"] == "application/json"


def test_inbound_webhook_is_signed_enveloped_and_ascii_escaped(receiver):
    with make_fake(receiver.url) as server:
        wamid = server.inject_inbound_text(
            PNID,
            CUSTOMER,
            "Réponse reçue",
            profile_name="Amélie",
            context_wamid="wamid.OUT",
        )
    [(headers, raw)] = receiver.posts
    assert_signed(headers, raw)
    assert b"\\u00e9" in raw and raw.isascii()
    body = json.loads(raw)
    assert body["object"] == "whatsapp_business_account"
    [entry] = body["entry"]
    assert entry["id"] == WABA
    change = entry["changes"][0]
    assert change["field"] == "messages"
    value = change["value"]
    assert value["metadata"] == {
        "display_phone_number": "15550100001",
        "phone_number_id": PNID,
    }
    assert value["contacts"][0] == {"profile": {"name": "Amélie"}, "wa_id": CUSTOMER}
    message = value["messages"][0]
    assert message["id"] == wamid and message["from"] == CUSTOMER
    assert message["text"]["body"] == "Réponse reçue"
    assert message["context"] == {"from": "15550100001", "id": "wamid.OUT"}
    assert message["timestamp"].isdigit()


def test_auto_statuses_arrive_signed_and_in_order(http, receiver):
    with make_fake(receiver.url, auto_statuses=True) as server:
        server.inject_inbound_text(PNID, CUSTOMER, "Bonjour")
        payload = {**text_payload(), "biz_opaque_callback_data": "whatsapp.message,42"}
        wamid = send(http, server, payload).json()["messages"][0]["id"]
        assert server.wait_idle(IDLE_GUARD)
    assert len(receiver.posts) == 4  # the inbound message, then three statuses
    for headers, raw in receiver.posts:
        assert_signed(headers, raw)
    statuses = receiver.statuses()
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    assert {s["id"] for s in statuses} == {wamid}
    assert all(s["recipient_id"] == CUSTOMER for s in statuses)
    assert all(s["biz_opaque_callback_data"] == "whatsapp.message,42" for s in statuses)
    assert statuses[0]["pricing"]["type"] == "free_customer_service"
    stamps = [int(s["timestamp"]) for s in statuses]
    assert stamps == sorted(stamps)


def test_shuffled_duplicate_statuses(http, receiver):
    options = {"status_order": "shuffled", "duplicate_statuses": True, "seed": 7}
    with make_fake(
        receiver.url, enforce_window=False, auto_statuses=True, **options
    ) as server:
        send(http, server, text_payload())
        assert server.wait_idle(IDLE_GUARD)
    statuses = [s["status"] for s in receiver.statuses()]
    assert sorted(statuses) == sorted(["sent", "delivered", "read"] * 2)


def test_send_status_failed_and_duplicate(http, receiver):
    with make_fake(receiver.url, enforce_window=False) as server:
        wamid = send(http, server, text_payload()).json()["messages"][0]["id"]
        code, _text = server.send_status(
            wamid, "failed", errors=[131026], timestamp=1_795_165_600, duplicate=True
        )
    assert code == 200
    first, second = receiver.posts
    assert first[1] == second[1]  # the identical bytes, twice
    [status, _again] = receiver.statuses()
    assert status["timestamp"] == "1795165600"
    assert status["errors"][0]["code"] == 131026
    assert status["errors"][0]["error_data"]["details"]
    assert "pricing" not in status


def test_post_webhook_signature_override_and_status(receiver):
    receiver.status = 403
    with make_fake(receiver.url) as server:
        body = server.build_envelope(PNID, {"statuses": []})
        code, _ = server.post_webhook(PNID, body, signature="sha256=" + "0" * 64)
        assert code == 403
        server.post_webhook(PNID, body, sign=False)
        assert server.webhook_deliveries[-1].status_code == 403
    assert receiver.posts[0][0]["X-Hub-Signature-256"] == "sha256=" + "0" * 64
    assert "X-Hub-Signature-256" not in receiver.posts[1][0]


def test_verify_webhook_handshake(receiver):
    with make_fake(receiver.url) as server:
        assert server.verify_webhook(PNID, "right") is True
        assert server.verify_webhook(PNID, "wrong") is False
    assert "hub.mode=subscribe" in receiver.gets[0]


def test_sign_body_matches_a_plain_hmac():
    raw = b'{"a":"\\u00e9"}'
    assert sign_body(raw, SECRET) == hmac_signature(raw, SECRET)


# -- failure injection and latency -----------------------------------------------------


def test_failure_rate_one_always_fails_before_accepting(http, receiver):
    with make_fake(
        receiver.url, enforce_window=False, failure_rate=1.0, seed=3, auto_statuses=True
    ) as server:
        responses = [send(http, server, text_payload()) for _ in range(15)]
        assert server.wait_idle(IDLE_GUARD)
        statuses = {r.status_code for r in responses}
        assert statuses <= {500, 502, 503}
        assert len(statuses) > 1  # the seeded mix covers several kinds
        for response in responses:
            if response.status_code == 502:
                assert response.headers["Content-Type"].startswith("text/html")
            else:
                assert response.json()["error"]["code"] in {131000, 2}
        assert server.sent_messages == []
        assert server.max_sends_in_window(1.0) == 0
    assert receiver.posts == []


def test_failure_sends_only_leaves_reads_alone(http):
    with make_fake(failure_rate=1.0, failure_sends_only=True) as server:
        assert http.get(server.graph_url(PNID), headers=auth()).status_code == 200
        assert send(http, server, text_payload()).status_code in {500, 502, 503}


def test_latency_waits_are_concurrent_and_cut_short_by_stop():
    # The latency outlasts any test run: a handler that served the calls one
    # after the other would never let the second one in before stop().
    server = make_fake(latency=3600.0).start()
    results = []

    def call():
        with requests.Session() as session:
            session.trust_env = False
            response = session.get(server.graph_url(PNID), headers=auth(), timeout=300)
            results.append(response.status_code)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    # Only a guard against a hang: the eight calls arrive whatever the speed.
    guard = time.monotonic() + 120
    while len(server.received) < 8 and time.monotonic() < guard:
        time.sleep(0.01)
    # All eight calls are inside the server at once: handlers do not serialise.
    assert len(server.received) == 8
    assert results == []
    server.stop()  # ends the latency waits instead of holding the threads
    for thread in threads:
        thread.join(timeout=120)
    assert results == [200] * 8


# -- sandbox and lifecycle -------------------------------------------------------------


def test_sandbox_inbound_endpoint(http, receiver):
    with make_fake(receiver.url, sandbox=True) as server:
        response = http.post(
            server.url + "/_sandbox/inbound",
            json={"from": "+33 6 12 34 56 78", "text": "Salut"},
        )
        assert response.status_code == 200
        assert response.json()["webhook_status"] == 200
        assert server.window_open(PNID, CUSTOMER)
    message = receiver.bodies()[0]["entry"][0]["changes"][0]["value"]["messages"][0]
    assert message["from"] == CUSTOMER and message["text"]["body"] == "Salut"


def test_sandbox_endpoint_is_off_by_default(http, fake):
    response = http.post(
        fake.url + "/_sandbox/inbound", json={"from": "1", "text": "x"}
    )
    assert response.status_code == 401


def test_stop_closes_the_port(http):
    with make_fake() as server:
        url = server.graph_url(PNID)
    with pytest.raises(requests.ConnectionError):
        http.get(url, headers=auth(), timeout=2)


def test_cli_arguments_build_a_sandbox():
    server = graph_from_args(
        [
            "--port", "0",
            "--phone-number-id", "109000000000009",
            "--waba-id", "104000000000009",
            "--token", "sandbox-token",
            "--app-secret", "sandbox-secret",
            "--webhook-url", "http://localhost:8069/whatsapp/webhook/abc",
            "--rate-limit", "20",
            "--auto-statuses",
        ]
    )  # fmt: skip
    account = server.account()
    assert account.phone_number_id == "109000000000009"
    assert account.access_token == "sandbox-token"
    assert account.webhook_url.endswith("/abc")
    assert server.rate_limit == 20 and server.auto_statuses and server.sandbox


def test_forced_async_failure_and_inbound_media(http, receiver):
    options = {"errors_for": {"33699999999": (200, 131026)}, "escape_slashes": True}
    with make_fake(receiver.url, enforce_window=False, **options) as server:
        response = send(http, server, text_payload(to="33699999999"))
        assert response.status_code == 200
        assert server.wait_idle(IDLE_GUARD)
        _wamid, media_id = server.inject_inbound_media(
            PNID, CUSTOMER, b"voice", "audio/ogg", caption=None
        )
        info = http.get(server.graph_url(media_id), headers=auth()).json()
        assert http.get(info["url"], headers=auth()).content == b"voice"
    failed, inbound = receiver.posts
    status = json.loads(failed[1])["entry"][0]["changes"][0]["value"]["statuses"][0]
    assert status["status"] == "failed" and status["errors"][0]["code"] == 131026
    assert_signed(*inbound)
    assert b"\\/media-download\\/" in inbound[1]  # Meta-style escaped slashes
    audio = json.loads(inbound[1])["entry"][0]["changes"][0]["value"]["messages"][0]
    assert audio["type"] == "audio" and audio["audio"]["id"] == media_id


def test_bsuid_inbound_opens_the_window_for_recipient_sends(http, receiver):
    bsuid = "FR.1304857236419057341"
    with make_fake(receiver.url) as server:
        message = {"from_user_id": bsuid, "type": "text", "text": {"body": "Hi"}}
        wamid = server.inject_inbound(PNID, message, profile_name=None)
        assert wamid in server.inbound_wamids
        payload = {**text_payload(), "recipient": bsuid}
        del payload["to"]
        assert send(http, server, payload).status_code == 200
    value = receiver.bodies()[0]["entry"][0]["changes"][0]["value"]
    assert value["contacts"] == [{"user_id": bsuid}]


def test_most_in_window_is_half_open_and_order_free():
    # 0.0 and 1.0 are one full second apart: never in the same window.
    assert most_in_window([1.0, 0.0, 0.5, 0.999]) == 3
    assert most_in_window([0.0, 0.25, 0.5, 0.75], window=0.5) == 2
    assert most_in_window([]) == 0
