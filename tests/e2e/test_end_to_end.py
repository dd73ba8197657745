"""End to end: a real Odoo HTTP server, the real webhook route, a fake Graph API.

Every message is created through the public composer (``whatsapp.composer``,
``action_send``) over JSON-RPC, sent by the real send-queue cron, and every
status or inbound message reaches Odoo as a signed webhook posted by the fake.
Nothing here asserts a duration: conditions are polled with a deadline.
"""

from __future__ import annotations

import json
import random
import re
import secrets
from collections import Counter

import pytest
import requests
from fake_graph import FakeAccount, FakeGraph, sign_body
from odoo_server import (
    FINAL_STATES,
    RpcError,
    configure_whatsapp,
    drive_queue,
    run_code,
    wait_for,
)

pytestmark = pytest.mark.e2e

SEND_PATH = "/messages"


# -- helpers ---------------------------------------------------------------------


def create_leads(rpc, numbers, name="E2E lead"):
    return rpc(
        "crm.lead",
        "create",
        [{"name": f"{name} {i}", "phone": number} for i, number in enumerate(numbers)],
    )


def compose(whatsapp, res_model, res_ids, **values):
    """Fill the composer like a user would and press Send; return its result."""
    rpc = whatsapp.rpc
    composer_id = rpc(
        "whatsapp.composer",
        "create",
        {
            "res_model": res_model,
            "res_ids": json.dumps(list(res_ids)),
            "account_id": whatsapp.account_id,
            **values,
        },
    )
    return rpc("whatsapp.composer", "action_send", [composer_id])


def send_template(whatsapp, res_model, res_ids, name="hello_world"):
    return compose(
        whatsapp,
        res_model,
        res_ids,
        mode="template",
        template_id=whatsapp.templates[name],
    )


def messages_of(rpc, res_model, res_ids, fields=("state",)):
    return rpc.search_read(
        "whatsapp.message",
        [
            ("res_model", "=", res_model),
            ("res_id", "in", list(res_ids)),
            ("direction", "=", "outbound"),
        ],
        list(fields),
        order="id",
    )


def send_requests(fake):
    return [r for r in fake.requests_to(SEND_PATH, "POST") if "status" not in r.body]


def inbox_processed(whatsapp, timeout=30):
    """Webhooks are stored by the route, then processed by a cron woken at once."""
    return wait_for(
        lambda: (
            not whatsapp.rpc(
                "whatsapp.webhook.event",
                "search_count",
                [("account_id", "=", whatsapp.account_id), ("state", "=", "pending")],
            )
        ),
        timeout,
        message="the webhook inbox to be processed",
    )


def wa_id(number):
    return number.lstrip("+")


# -- tests -----------------------------------------------------------------------


def test_send_from_lead_reaches_read_in_log_and_chatter(whatsapp, make_fake, numbers):
    rpc = whatsapp.rpc
    fake = make_fake(auto_statuses=True)  # Meta's sent, delivered, read
    number = numbers.next()
    [lead_id] = create_leads(rpc, [number], "Send and read")

    result = send_template(whatsapp, "crm.lead", [lead_id])
    assert result["params"]["type"] == "success", result

    [message] = messages_of(rpc, "crm.lead", [lead_id], ["id"])
    wait_for(lambda: fake.sent_messages, 30, message="the send to reach the fake")
    [request] = send_requests(fake)
    assert request.path == f"/v26.0/{whatsapp.phone_number_id}/messages"
    assert request.headers["Authorization"] == (
        f"Bearer {whatsapp.fake_account.access_token}"
    )
    assert request.headers["Content-Type"].startswith("application/json")
    expected = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": wa_id(number),
        "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}},
        "biz_opaque_callback_data": f"whatsapp.message:{message['id']}",
    }
    assert request.body == expected
    [sent] = fake.sent_messages

    def state():
        return rpc(
            "whatsapp.message",
            "read",
            [message["id"]],
            [
                "state",
                "wamid",
                "request_payload",
                "mail_message_id",
                "sent_date",
                "delivered_date",
                "read_date",
                "pricing_category",
            ],
        )[0]

    final = wait_for(
        lambda: (row := state())["state"] == "read" and row,
        30,
        message=lambda: f"the message to be read (now {state()['state']})",
    )
    assert fake.wait_idle(10)
    assert [d.status_code for d in fake.webhook_deliveries] == [200, 200, 200]
    assert final["wamid"] == sent.wamid
    assert final["request_payload"] == expected
    assert final["sent_date"] and final["delivered_date"] and final["read_date"]
    assert final["pricing_category"] == "utility"
    statuses = rpc.search_read(
        "whatsapp.message.status", [("message_id", "=", message["id"])], ["status"]
    )
    assert sorted(s["status"] for s in statuses) == ["delivered", "read", "sent"]

    # The lead's chatter message shows the delivery state.
    [chatter] = rpc(
        "mail.message",
        "read",
        [final["mail_message_id"][0]],
        ["model", "res_id", "body"],
    )
    assert (chatter["model"], chatter["res_id"]) == ("crm.lead", lead_id)
    assert "o_whatsapp_state_read" in chatter["body"]
    assert "Read" in chatter["body"]
    assert "Hello! This message comes from the WhatsApp sandbox." in chatter["body"]


@pytest.mark.parametrize("create_lead", [True, False], ids=["lead", "partner-only"])
def test_inbound_from_unknown_number(whatsapp, make_fake, numbers, create_lead):
    rpc = whatsapp.rpc
    fake = make_fake()
    number = numbers.next()
    text = "Bonjour, je voudrais un devis pour 3 licences."
    with whatsapp.settings(create_lead=create_lead):
        wamid = fake.inject_inbound_text(
            whatsapp.phone_number_id, wa_id(number), text, profile_name="Amélie Dupont"
        )
        # The 200 leaves once the body is committed to the inbox.
        assert fake.webhook_deliveries[-1].status_code == 200
        inbox_processed(whatsapp)

    [message] = rpc.search_read(
        "whatsapp.message",
        [("account_id", "=", whatsapp.account_id), ("wamid", "=", wamid)],
        [
            "direction",
            "state",
            "body",
            "phone",
            "partner_id",
            "res_model",
            "res_id",
            "mail_message_id",
            "partner_mail_message_id",
            "message_type",
        ],
    )
    assert message["direction"] == "inbound"
    assert message["state"] == "received"
    assert message["message_type"] == "text"
    assert message["body"] == text
    assert message["phone"] == number

    partner_id = message["partner_id"][0]
    [partner] = rpc("res.partner", "read", [partner_id], ["name", "phone_sanitized"])
    assert partner["name"] == "Amélie Dupont"
    assert partner["phone_sanitized"] == number
    leads = rpc.search_read("crm.lead", [("partner_id", "=", partner_id)], ["name"])

    if create_lead:
        [lead] = leads
        assert (message["res_model"], message["res_id"]) == ("crm.lead", lead["id"])
        [chatter] = rpc(
            "mail.message",
            "read",
            [message["mail_message_id"][0]],
            ["model", "res_id", "body", "author_id"],
        )
        assert (chatter["model"], chatter["res_id"]) == ("crm.lead", lead["id"])
        assert chatter["author_id"][0] == partner_id
        assert text in chatter["body"]
        partner_chatter = message["partner_mail_message_id"][0]
    else:
        assert leads == []
        assert (message["res_model"], message["res_id"]) == ("res.partner", partner_id)
        partner_chatter = message["mail_message_id"][0]
    [chatter] = rpc(
        "mail.message", "read", [partner_chatter], ["model", "res_id", "body"]
    )
    assert (chatter["model"], chatter["res_id"]) == ("res.partner", partner_id)
    assert text in chatter["body"]

    # Meta redelivers: the same body again changes nothing.
    status, _text = fake.post_webhook(
        whatsapp.phone_number_id, fake.webhook_deliveries[-1].raw
    )
    assert status == 200
    assert rpc("whatsapp.message", "search_count", [("wamid", "=", wamid)]) == 1


def test_reply_inside_the_window(whatsapp, make_fake, numbers):
    rpc = whatsapp.rpc
    fake = make_fake()  # enforces the 24-hour window with 131047
    number = numbers.next()
    partner_id = rpc("res.partner", "create", {"name": "Window", "phone": number})

    # No inbound yet: Odoo refuses free text before calling Meta.
    with pytest.raises(RpcError, match="24-hour window"):
        compose(whatsapp, "res.partner", [partner_id], mode="text", body="Hi")
    assert send_requests(fake) == []

    fake.inject_inbound_text(whatsapp.phone_number_id, wa_id(number), "Hello?")
    assert fake.webhook_deliveries[-1].status_code == 200
    inbox_processed(whatsapp)
    assert fake.window_open(whatsapp.phone_number_id, wa_id(number))
    reply = "Bonjour ! Oui, nous pouvons vous aider."
    compose(whatsapp, "res.partner", [partner_id], mode="text", body=reply)

    [message] = messages_of(rpc, "res.partner", [partner_id], ["id"])
    [row] = drive_queue(rpc, [message["id"]], 30, fields=("wamid", "failure_type"))
    assert row["state"] == "sent", row
    [sent] = fake.sent_messages
    assert sent.wamid == row["wamid"]
    assert sent.payload == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": wa_id(number),
        "type": "text",
        "text": {"preview_url": False, "body": reply},
        "biz_opaque_callback_data": f"whatsapp.message:{message['id']}",
    }
    assert [r.status for r in send_requests(fake)] == [200]


def test_window_closed_at_meta_fails_with_its_reason(whatsapp, make_fake, numbers):
    """Odoo saw an inbound, Meta disagrees (131047): failed, with Meta's reason."""
    rpc = whatsapp.rpc
    fake = make_fake()
    number = numbers.next()
    fake.inject_inbound_text(whatsapp.phone_number_id, wa_id(number), "Hi there")
    inbox_processed(whatsapp)
    [partner_id] = rpc(
        "res.partner", "search", [("phone_sanitized", "=", number)], limit=1
    )
    fake.close_window(whatsapp.phone_number_id, wa_id(number))

    compose(whatsapp, "res.partner", [partner_id], mode="text", body="Too late?")
    [message] = messages_of(rpc, "res.partner", [partner_id], ["id"])
    [row] = drive_queue(
        rpc, [message["id"]], 30, fields=("failure_type", "failure_code", "wamid")
    )
    assert row["state"] == "failed"
    assert row["failure_type"] == "window_closed"
    assert row["failure_code"] == 131047
    assert not row["wamid"]
    assert fake.sent_messages == []
    assert [r.status for r in send_requests(fake)] == [400]  # tried once, not retried


def test_webhook_route_checks_signature_and_handshake(whatsapp, make_fake):
    fake = make_fake()
    before = whatsapp.account("rejected_signature_count")["rejected_signature_count"]
    body = fake.build_envelope(whatsapp.phone_number_id, {"statuses": []})
    status, _text = fake.post_webhook(
        whatsapp.phone_number_id, body, signature="sha256=" + "0" * 64
    )
    assert status == 403
    status, _text = fake.post_webhook(whatsapp.phone_number_id, body, sign=False)
    assert status == 403
    after = whatsapp.account("rejected_signature_count")["rejected_signature_count"]
    assert after == before + 2
    status, _text = fake.post_webhook(whatsapp.phone_number_id, body)
    assert status == 200

    assert fake.verify_webhook(whatsapp.phone_number_id, whatsapp.verify_token)
    assert not fake.verify_webhook(whatsapp.phone_number_id, "not-the-token")


def test_burst_of_500_respects_the_rate_limit(whatsapp, make_fake, numbers):
    rpc = whatsapp.rpc
    # The fake refuses nothing: the pace it sees is Odoo's own doing.
    fake = make_fake(rate_limit=None)
    lead_ids = create_leads(rpc, numbers.many(500), "Burst")

    result = send_template(whatsapp, "crm.lead", lead_ids)
    assert result["params"]["type"] == "success", result
    ids = [m["id"] for m in messages_of(rpc, "crm.lead", lead_ids, ["id"])]
    assert len(ids) == 500

    rows = drive_queue(rpc, ids, 90, fields=("wamid", "failure_type"))
    assert Counter(row["state"] for row in rows) == {"sent": 500}
    wamids = {row["wamid"] for row in rows}
    assert len(wamids) == 500
    sent = fake.sent_messages
    assert len(sent) == 500
    assert {s.wamid for s in sent} == wamids
    callbacks = Counter(s.biz_opaque_callback_data for s in sent)
    assert set(callbacks) == {f"whatsapp.message:{i}" for i in ids}
    assert max(callbacks.values()) == 1  # none sent twice
    # The account's rate (80/s) in every 1-second window Meta would count.
    assert fake.max_sends_received_in_window(1.0, whatsapp.phone_number_id) <= 80
    assert len(send_requests(fake)) == 500  # each message sent in one request


def test_failing_graph_sends_each_message_once_or_fails_it(
    whatsapp, make_fake, numbers
):
    """20% of sends fail (seeded): each message ends sent, or failed with a reason."""
    rpc = whatsapp.rpc
    fake = make_fake(rate_limit=80, failure_rate=0.2, failure_sends_only=True, seed=7)
    lead_ids = create_leads(rpc, numbers.many(100), "Flaky")
    send_template(whatsapp, "crm.lead", lead_ids)
    ids = [m["id"] for m in messages_of(rpc, "crm.lead", lead_ids, ["id"])]

    rows = drive_queue(
        rpc,
        ids,
        120,
        fields=("wamid", "failure_type", "failure_title", "retry_count"),
    )
    assert {row["state"] for row in rows} <= {"sent", "failed"}
    sent_by_callback = Counter(s.biz_opaque_callback_data for s in fake.sent_messages)
    assert max(sent_by_callback.values()) == 1  # no message accepted twice
    attempts = Counter(
        r.body.get("biz_opaque_callback_data") for r in send_requests(fake)
    )
    for row in rows:
        callback = f"whatsapp.message:{row['id']}"
        if row["state"] == "sent":
            assert row["wamid"]
            assert sent_by_callback[callback] == 1, row
        else:
            assert row["failure_type"] and row["failure_title"], row
            assert sent_by_callback[callback] == 0, row  # the fake refused each try
    # The injected failures happened and some were retried successfully.
    assert any(count > 1 for count in attempts.values())
    assert any(row["state"] == "sent" and row["retry_count"] > 0 for row in rows), (
        "no message was sent after a retry"
    )
    assert all(row["state"] in FINAL_STATES for row in rows)


def test_statuses_racing_the_send_results(whatsapp, make_fake, numbers):
    """Meta's status webhooks often beat the HTTP answer; shuffled and repeated."""
    rpc = whatsapp.rpc
    fake = make_fake(
        auto_statuses=True, status_order="shuffled", duplicate_statuses=True, seed=3
    )
    lead_ids = create_leads(rpc, numbers.many(60), "Race")
    send_template(whatsapp, "crm.lead", lead_ids)
    ids = [m["id"] for m in messages_of(rpc, "crm.lead", lead_ids, ["id"])]
    drive_queue(rpc, ids, 60)
    assert fake.wait_idle(60)
    assert {d.status_code for d in fake.webhook_deliveries} == {200}
    inbox_processed(whatsapp, 60)
    # A conflict with the send queue is retried, never kept as a failed event.
    failed = rpc(
        "whatsapp.webhook.event",
        "search",
        [("account_id", "=", whatsapp.account_id), ("state", "=", "failed")],
    )
    assert failed == []
    rows = rpc("whatsapp.message", "read", ids, ["state", "wamid", "mail_message_id"])
    assert Counter(row["state"] for row in rows) == {"read": 60}
    assert {row["wamid"] for row in rows} == {s.wamid for s in fake.sent_messages}
    bodies = rpc(
        "mail.message", "read", [row["mail_message_id"][0] for row in rows], ["body"]
    )
    assert all("o_whatsapp_state_read" in body["body"] for body in bodies)


def test_chatter_shows_sent_once_the_batch_is_over(whatsapp, make_fake, numbers):
    """The batch's own chatter refresh must see the wamids written meanwhile.

    (It once ran in the transaction opened before the HTTP phase and wrote
    'Queued' into the chatter of every sent message.)
    """
    rpc = whatsapp.rpc
    make_fake()  # no status webhook: the batch's own refresh is the last word
    lead_ids = create_leads(rpc, numbers.many(10), "Chatter")
    send_template(whatsapp, "crm.lead", lead_ids)
    ids = [m["id"] for m in messages_of(rpc, "crm.lead", lead_ids, ["id"])]
    rows = drive_queue(rpc, ids, 30, fields=("mail_message_id",))
    assert Counter(row["state"] for row in rows) == {"sent": 10}
    # The batch refreshes the chatter at its very end.
    whatsapp.odoo.wait_cron_idle(whatsapp.send_cron_id)
    bodies = rpc(
        "mail.message", "read", [row["mail_message_id"][0] for row in rows], ["body"]
    )
    states = Counter(
        re.search(r"o_whatsapp_state_(\w+)", body["body"]).group(1) for body in bodies
    )
    assert states == {"sent": 10}


def test_two_agencies_send_in_parallel_on_two_servers(whatsapp, odoo, numbers):
    """A second agency, and a second server (prefork, one cron worker) on the same
    database: both numbers progress at the same time, each within its own rate,
    and no message is sent twice whichever server sends it."""
    rpc = whatsapp.rpc
    second = FakeAccount(
        phone_number_id=f"109{random.randrange(10**12):012d}",
        waba_id=f"104{random.randrange(10**12):012d}",
        access_token="EAAfake" + secrets.token_urlsafe(32),
        app_secret=secrets.token_hex(16),
    )
    fake = FakeGraph(
        [whatsapp.fake_account, second], port=whatsapp.graph_port, rate_limit=None
    ).start()
    other_server = None
    try:
        company_b = rpc(
            "res.company", "create", {"name": "E2E agency B", "whatsapp_enabled": True}
        )
        # configure_whatsapp creates the account in the admin's current company.
        rpc(
            "res.users",
            "write",
            [rpc.uid],
            {"company_ids": [(4, company_b)], "company_id": company_b},
        )
        try:
            info = configure_whatsapp(
                rpc,
                odoo.url,
                name="E2E agency B number",
                phone_number_id=second.phone_number_id,
                waba_id=second.waba_id,
                access_token=second.access_token,
                app_secret=second.app_secret,
                graph_url=fake.url,
            )
        finally:
            rpc("res.users", "write", [rpc.uid], {"company_id": whatsapp.company_id})
        rpc("whatsapp.account", "action_sync_templates", [info["id"]])
        [template_b] = rpc(
            "whatsapp.template",
            "search",
            [("account_id", "=", info["id"]), ("name", "=", "hello_world")],
        )
        other_server = odoo.instance.start(
            workers=1, max_cron_threads=1, name="odoo-e2e-second"
        )
        pairs = [
            (whatsapp.account_id, whatsapp.templates["hello_world"], numbers.many(240)),
            (info["id"], template_b, numbers.many(240)),
        ]
        code = f"""
ids = []
for account_id, template_id, phones in {pairs!r}:
    account = env['whatsapp.account'].sudo().browse(account_id)
    template = env['whatsapp.template'].sudo().browse(template_id)
    items = [{{'phone': p, 'template': template, 'template_params': {{}}}}
             for p in phones]
    ids += env['whatsapp.message'].sudo()._queue_outbound(account, items).ids
action = {{'ids': ids}}
"""
        ids = run_code(rpc, "whatsapp.message", code)["ids"]
        rows = drive_queue(rpc, ids, 90)
        assert Counter(row["state"] for row in rows) == {"sent": 480}
        callbacks = Counter(s.biz_opaque_callback_data for s in fake.sent_messages)
        assert len(callbacks) == 480
        assert max(callbacks.values()) == 1  # none sent twice
        spans = []
        for number in (whatsapp.fake_account, second):
            times = fake.accepted_send_times(number.phone_number_id)
            assert len(times) == 240
            assert fake.max_sends_received_in_window(1.0, number.phone_number_id) <= 80
            spans.append((times[0], times[-1]))
        # Each number needs 3 s at 80/s: served one after the other, the spans
        # would not overlap.
        assert max(start for start, _end in spans) < min(end for _start, end in spans)
    finally:
        if other_server is not None:
            odoo.instance.stop(other_server)
        fake.wait_idle(15)
        fake.stop()


def test_inbound_for_an_archived_account_waits_then_arrives(
    whatsapp, make_fake, numbers
):
    """Nothing dropped: Meta's call is kept on hold with a reason while the account
    is archived, and processed once it is active again."""
    rpc = whatsapp.rpc
    fake = make_fake()
    number = numbers.next()
    with whatsapp.settings(active=False):
        wamid = fake.inject_inbound_text(
            whatsapp.phone_number_id, wa_id(number), "¿Siguen abiertos?"
        )
        assert fake.webhook_deliveries[-1].status_code == 200
        inbox_processed(whatsapp)
        [event] = rpc.search_read(
            "whatsapp.webhook.event",
            [("account_id", "=", whatsapp.account_id)],
            ["state", "last_error"],
            order="id desc",
            limit=1,
        )
        assert event["state"] == "held"
        assert "archived" in event["last_error"]
        assert not rpc("whatsapp.message", "search_count", [("wamid", "=", wamid)])
    # Unarchived: the event goes back to the inbox and is processed.
    inbox_processed(whatsapp)
    wait_for(
        lambda: rpc("whatsapp.message", "search_count", [("wamid", "=", wamid)]),
        30,
        message="the held message to be processed",
    )
    [event] = rpc.search_read(
        "whatsapp.webhook.event", [("id", "=", event["id"])], ["state"]
    )
    assert event["state"] == "done"


def test_webhook_route_refuses_nested_and_oversized_chunked_bodies(whatsapp, make_fake):
    fake = make_fake()
    account = fake.account(whatsapp.phone_number_id)
    # Signed, so that it reaches the JSON parser (the fake cannot parse it).
    nested = b'{"object":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = requests.post(
        account.webhook_url,
        data=nested,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign_body(nested, account.app_secret),
        },
        timeout=60,
    )
    assert response.status_code == 400

    def chunks():
        # A generator is sent chunked, without Content-Length: 4 MB > 3 MB.
        for _ in range(64):
            yield b" " * 65536

    response = requests.post(
        account.webhook_url,
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413


def test_buttons_choice_reaction_and_read_receipt(whatsapp, make_fake, numbers):
    """Buttons go out, the customer's tap comes back with its id, their reaction
    lands on our message, and opening the conversation sends one read receipt."""
    rpc = whatsapp.rpc
    fake = make_fake()
    number = numbers.next()
    question = fake.inject_inbound_text(
        whatsapp.phone_number_id, wa_id(number), "Un rendez-vous ?"
    )
    inbox_processed(whatsapp)
    [partner_id] = rpc(
        "res.partner", "search", [("phone_sanitized", "=", number)], limit=1
    )
    compose(
        whatsapp,
        "res.partner",
        [partner_id],
        mode="interactive",
        body="Mardi 10h ?",
        choice_ids=[
            (0, 0, {"title": "Oui", "reply_id": "slot_yes"}),
            (0, 0, {"title": "Non", "reply_id": "slot_no"}),
        ],
    )
    [message] = messages_of(rpc, "res.partner", [partner_id], ["id"])
    [row] = drive_queue(rpc, [message["id"]], 30, fields=("wamid",))
    assert row["state"] == "sent", row
    [sent] = fake.sent_messages
    assert sent.payload["interactive"]["action"]["buttons"] == [
        {"type": "reply", "reply": {"id": "slot_yes", "title": "Oui"}},
        {"type": "reply", "reply": {"id": "slot_no", "title": "Non"}},
    ]

    context = {"from": "15550100001", "id": row["wamid"]}
    tap = fake.inject_inbound(
        whatsapp.phone_number_id,
        {
            "from": wa_id(number),
            "type": "interactive",
            "context": context,
            "interactive": {
                "type": "button_reply",
                "button_reply": {"id": "slot_yes", "title": "Oui"},
            },
        },
    )
    fake.inject_inbound(
        whatsapp.phone_number_id,
        {
            "from": wa_id(number),
            "type": "reaction",
            "reaction": {"message_id": row["wamid"], "emoji": "👍"},
        },
    )
    inbox_processed(whatsapp)
    [answer] = rpc.search_read(
        "whatsapp.message",
        [("wamid", "=", tap)],
        ["interactive_reply_id", "interactive_reply_title", "reply_to_message_id"],
    )
    assert answer["interactive_reply_id"] == "slot_yes"
    assert answer["interactive_reply_title"] == "Oui"
    assert answer["reply_to_message_id"][0] == message["id"]
    [ours] = rpc("whatsapp.message", "read", [message["id"]], ["reaction_emoji"])
    assert ours["reaction_emoji"] == "👍"

    # Opening the conversation: one receipt, for the newest message (the tap).
    run_code(
        rpc,
        "whatsapp.message",
        f"model.search([('partner_id', '=', {partner_id}),"
        " ('direction', '=', 'inbound')])._mark_as_read()",
    )
    receipts = wait_for(
        lambda: fake.read_receipts, 30, message="the read receipt to reach Meta"
    )
    assert [receipt["message_id"] for receipt in receipts] == [tap]

    def receipt_states():
        rows = rpc.search_read(
            "whatsapp.message",
            [("wamid", "in", [question, tap])],
            ["wamid", "read_receipt_state"],
        )
        return {row["wamid"]: row["read_receipt_state"] for row in rows}

    # Written once the queue run that sent it commits.
    wait_for(lambda: receipt_states()[tap] == "sent", 30, message="the receipt's state")
    # The older message is marked by the receipt of the newer one.
    assert receipt_states()[question] == "skipped"
    assert len(fake.read_receipts) == 1
