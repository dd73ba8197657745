import json
import time
from datetime import timedelta
from unittest.mock import patch

from odoo.tests import HttpCase, tagged
from odoo.tools import mute_logger

from .common import (
    MOBILE,
    PHONE_A,
    WA_ID_A,
    WhatsAppMixin,
    messages_entry,
    sign,
    webhook_body,
)

CONTROLLER_LOGGER = "odoo.addons.whatsapp_business.controllers.main"


@tagged("post_install", "-at_install")
class TestWebhookController(WhatsAppMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_whatsapp()
        cls.url_a = f"/whatsapp/webhook/{cls.account_a.sudo().webhook_key}"

    def _post(self, raw, secret="app-secret-a", url=None, signature=None, headers=None):
        if isinstance(raw, str):
            raw = raw.encode()
        all_headers = {"Content-Type": "application/json"}
        if signature is None and secret is not None:
            signature = sign(raw, secret)
        if signature is not None:
            all_headers["X-Hub-Signature-256"] = signature
        all_headers.update(headers or {})
        response = self.url_open(url or self.url_a, data=raw, headers=all_headers)
        # What the cron woken by the route does in a running server.
        self.env["whatsapp.webhook.event"]._cron_process_pending()
        return response

    def _events(self):
        return self.env["whatsapp.webhook.event"].sudo().search([])

    def _inbound(self, wamid="wamid.IN-1", body="Bonjour", context=None, wa_id=WA_ID_A):
        message = {
            "from": wa_id,
            "id": wamid,
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": body},
        }
        if context:
            message["context"] = {"from": "15550100001", "id": context}
        return message

    def _text_body(self, account=None, **kwargs):
        return webhook_body(
            messages_entry(
                account or self.account_a,
                messages=[self._inbound(**kwargs)],
                contacts=[{"profile": {"name": "Amélie"}, "wa_id": WA_ID_A}],
            )
        )

    def _status(self, wamid, status, ts, errors=None):
        item = {
            "id": wamid,
            "status": status,
            "timestamp": str(ts),
            "recipient_id": WA_ID_A,
            "pricing": {
                "billable": True,
                "pricing_model": "PMP",
                "category": "utility",
                "type": "regular",
            },
        }
        if errors:
            item["errors"] = errors
        return webhook_body(messages_entry(self.account_a, statuses=[item]))

    def _outbound(self, wamid="wamid.OUT-1", **vals):
        return self.env["whatsapp.message"].create(
            dict(
                {
                    "account_id": self.account_a.id,
                    "direction": "outbound",
                    "state": "sent",
                    "phone": PHONE_A,
                    "body": "Quote ready",
                    "wamid": wamid,
                    "res_model": "crm.lead",
                    "res_id": self.lead_a.id,
                },
                **vals,
            )
        )

    # ------------------------------------------------------------------ GET

    def test_get_verification(self):
        token = self.account_a.sudo().verify_token
        response = self.url_open(
            f"{self.url_a}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.text, "1158201444")
        self.assertTrue(response.headers["Content-Type"].startswith("text/plain"))

    @mute_logger(CONTROLLER_LOGGER)
    def test_get_verification_wrong_token_or_mode(self):
        token = self.account_a.sudo().verify_token
        for query in (
            "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
            f"hub.mode=unsubscribe&hub.verify_token={token}&hub.challenge=1",
            f"hub.mode=subscribe&hub.verify_token={self.account_b.sudo().verify_token}"
            "&hub.challenge=1",
        ):
            response = self.url_open(f"{self.url_a}?{query}")
            self.assertEqual(response.status_code, 403, query)
        response = self.url_open("/whatsapp/webhook/unknown-key?hub.mode=subscribe")
        self.assertEqual(response.status_code, 403)

    # ------------------------------------------------------------------ POST refusals

    @mute_logger(CONTROLLER_LOGGER)
    def test_bad_signatures_refused_and_counted(self):
        raw = self._text_body().encode()
        good = sign(raw, "app-secret-a")
        cases = {
            "missing": dict(secret=None),
            "wrong secret": dict(secret="app-secret-b"),
            "wrong prefix": dict(signature=good.replace("sha256=", "sha1=")),
            "no prefix": dict(signature=good.split("=", 1)[1]),
            "truncated": dict(signature=good[:-2]),
        }
        for label, kwargs in cases.items():
            response = self._post(raw, **kwargs)
            self.assertEqual(response.status_code, 403, label)
        self.assertFalse(self._events())
        self.assertFalse(
            self.env["whatsapp.message"].search([("wamid", "=", "wamid.IN-1")])
        )
        self.account_a.invalidate_recordset(["rejected_signature_count"])
        self.assertEqual(self.account_a.rejected_signature_count, len(cases))

    @mute_logger(CONTROLLER_LOGGER)
    def test_signature_of_other_account_refused(self):
        # Signed with B's secret, posted to A's URL, for B's number: never accepted.
        raw = self._text_body(account=self.account_b).encode()
        response = self._post(raw, secret="app-secret-b")
        self.assertEqual(response.status_code, 403)
        self.assertFalse(self._events())

    def test_not_json(self):
        response = self._post(b"hub=1&form=encoded")
        self.assertEqual(response.status_code, 400)
        response = self._post(b"[1, 2]")
        self.assertEqual(response.status_code, 400)
        self.assertFalse(self._events())

    def test_oversize(self):
        self.env["ir.config_parameter"].sudo().set_param(
            "whatsapp_business.webhook_max_bytes", 1000
        )
        raw = json.dumps({"object": "x", "pad": "a" * 2000}).encode()
        response = self._post(raw)
        self.assertEqual(response.status_code, 413)
        self.assertFalse(self._events())

    def test_unknown_url(self):
        response = self._post(b"{}", url="/whatsapp/webhook/nope")
        self.assertEqual(response.status_code, 404)

    @mute_logger(CONTROLLER_LOGGER)
    def test_new_app_secret_and_deleted_account_apply_at_once(self):
        # The route remembers each URL's account and secret between requests: an
        # admin's change must still count from the very next POST.
        self.assertEqual(self._post(self._text_body(wamid="wamid.S1")).status_code, 200)
        self.account_a.sudo().app_secret = "app-secret-new"
        old = self._post(self._text_body(wamid="wamid.S2"))
        self.assertEqual(old.status_code, 403)
        new = self._post(self._text_body(wamid="wamid.S3"), secret="app-secret-new")
        self.assertEqual(new.status_code, 200)
        self.assertEqual(
            self.env["whatsapp.message"]
            .search([("wamid", "in", ["wamid.S1", "wamid.S2", "wamid.S3"])])
            .mapped("wamid"),
            ["wamid.S3", "wamid.S1"],
        )
        other = self.account_b.copy({"phone_number_id": "109000000000077"})
        other.sudo().app_secret = "app-secret-other"
        url = f"/whatsapp/webhook/{other.sudo().webhook_key}"
        raw = webhook_body(messages_entry(other))
        self.assertEqual(self._post(raw, "app-secret-other", url=url).status_code, 200)
        other.sudo().unlink()
        self.assertEqual(self._post(raw, "app-secret-other", url=url).status_code, 404)

    # ------------------------------------------------------------------ inbound

    def test_inbound_text_stored_once(self):
        raw = self._text_body()
        response = self._post(raw)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(len(self._events()), 1)
        self.assertEqual(self._events().state, "done")
        message = self.env["whatsapp.message"].search([("wamid", "=", "wamid.IN-1")])
        self.assertEqual(len(message), 1)
        self.assertEqual(message.direction, "inbound")
        self.assertEqual(message.state, "received")
        self.assertEqual(message.partner_id, self.partner_a)
        self.assertEqual(message.phone, PHONE_A)
        # The open lead of the partner gets the message in its chatter.
        self.assertEqual(
            (message.res_model, message.res_id), ("crm.lead", self.lead_a.id)
        )
        self.assertIn("Bonjour", str(self.lead_a.message_ids[0].body))
        self.assertTrue(self.account_a.last_webhook_date)
        # Same body again: 200, nothing new.
        response = self._post(raw)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(len(self._events()), 1)
        # Same wamid in another batch: nothing new either.
        other = webhook_body(
            messages_entry(self.account_a, messages=[self._inbound(body="Bonjour")]),
            {"id": "0", "changes": []},
        )
        self.assertEqual(self._post(other).status_code, 200)
        self.assertEqual(
            self.env["whatsapp.message"].search_count([("wamid", "=", "wamid.IN-1")]), 1
        )

    def test_inbound_unknown_number_creates_partner_and_lead(self):
        self.account_a.write({"create_lead": True})
        raw = self._text_body(wamid="wamid.IN-NEW", wa_id="34611222333")
        self.assertEqual(self._post(raw).status_code, 200)
        message = self.env["whatsapp.message"].search([("wamid", "=", "wamid.IN-NEW")])
        partner = message.partner_id
        self.assertEqual(partner.phone_sanitized, "+34611222333")
        self.assertEqual(partner.company_id, self.company_a)
        lead = self.env["crm.lead"].search([("partner_id", "=", partner.id)])
        self.assertEqual(len(lead), 1)
        self.assertEqual(
            lead.source_id, self.env.ref("whatsapp_business.utm_source_whatsapp")
        )
        self.assertEqual(lead.company_id, self.company_a)
        self.assertIn("Bonjour", str(lead.message_ids[0].body))

    def test_reply_goes_to_the_lead_we_wrote_from(self):
        other_lead = self.env["crm.lead"].create(
            {"name": "Second project", "partner_id": self.partner_a.id}
        )
        self._outbound(res_id=other_lead.id)
        raw = self._text_body(wamid="wamid.IN-R", context="wamid.OUT-1")
        self.assertEqual(self._post(raw).status_code, 200)
        message = self.env["whatsapp.message"].search([("wamid", "=", "wamid.IN-R")])
        self.assertEqual(message.res_id, other_lead.id)

    def test_bsuid_only_sender(self):
        body = webhook_body(
            messages_entry(
                self.account_a,
                messages=[
                    {
                        "from_user_id": "FR.1304857236419057341",
                        "id": "wamid.IN-BSUID",
                        "timestamp": str(int(time.time())),
                        "type": "text",
                        "text": {"body": "Salut"},
                    }
                ],
                contacts=[
                    {
                        "profile": {"name": "Anon", "username": "@anon"},
                        "user_id": "FR.1304857236419057341",
                    }
                ],
            )
        )
        self.assertEqual(self._post(body).status_code, 200)
        message = self.env["whatsapp.message"].search(
            [("wamid", "=", "wamid.IN-BSUID")]
        )
        self.assertEqual(message.wa_user_id, "FR.1304857236419057341")
        self.assertFalse(message.phone)
        self.assertEqual(message.partner_id.whatsapp_user_id, "FR.1304857236419057341")
        # A second message from the same user id lands on the same partner.
        body2 = body.replace("wamid.IN-BSUID", "wamid.IN-BSUID-2")
        self._post(body2)
        second = self.env["whatsapp.message"].search(
            [("wamid", "=", "wamid.IN-BSUID-2")]
        )
        self.assertEqual(second.partner_id, message.partner_id)

    def test_stop_blacklists_number(self):
        self.assertEqual(
            self._post(self._text_body(wamid="wamid.S", body=" stop ")).status_code, 200
        )
        blacklist = (
            self.env["phone.blacklist"].sudo().search([("number", "=", PHONE_A)])
        )
        self.assertTrue(blacklist.active)
        # Writing again does not lift it unless the account allows it.
        self._post(self._text_body(wamid="wamid.S2", body="Hello again"))
        blacklist.invalidate_recordset()
        self.assertTrue(blacklist.active)
        self.account_a.unblacklist_on_inbound = True
        self._post(self._text_body(wamid="wamid.S3", body="Hello again"))
        blacklist.invalidate_recordset()
        self.assertFalse(blacklist.active)

    def test_mexican_reply_matches_stored_contact(self):
        partner = self.env["res.partner"].create(
            {
                "name": "Lupita",
                MOBILE: "+52 55 8765 4321",
                "company_id": self.company_a.id,
            }
        )
        raw = self._text_body(wamid="wamid.MX", wa_id="5215587654321")
        self.assertEqual(self._post(raw).status_code, 200)
        message = self.env["whatsapp.message"].search([("wamid", "=", "wamid.MX")])
        self.assertEqual(message.partner_id, partner)
        self.assertEqual(message.phone, "+525587654321")
        window = self.env["whatsapp.message"]._window_open_map(
            self.account_a, phones=["+525587654321"]
        )
        self.assertTrue(window["+525587654321"])

    # ------------------------------------------------------------------ statuses

    def test_status_monotonic(self):
        message = self._outbound()
        now = int(time.time())
        self.assertEqual(
            self._post(self._status("wamid.OUT-1", "read", now + 5)).status_code, 200
        )
        self.assertEqual(message.state, "read")
        self._post(self._status("wamid.OUT-1", "delivered", now + 3))
        self._post(self._status("wamid.OUT-1", "sent", now + 1))
        message.invalidate_recordset()
        self.assertEqual(message.state, "read")
        # Late notifications still fill their timestamps.
        self.assertTrue(message.delivered_date)
        self.assertEqual(message.pricing_category, "utility")

    def test_failed_status_is_final(self):
        message = self._outbound(wamid="wamid.OUT-F")
        now = int(time.time())
        errors = [
            {
                "code": 131026,
                "title": "Message undeliverable",
                "message": "Message undeliverable",
                "error_data": {"details": "Receiver is incapable of receiving"},
            }
        ]
        self._post(self._status("wamid.OUT-F", "failed", now, errors))
        self.assertEqual(message.state, "failed")
        self.assertEqual(message.failure_code, 131026)
        self.assertEqual(message.failure_type, "invalid_number")
        self.assertIn("incapable", message.failure_details)
        self._post(self._status("wamid.OUT-F", "delivered", now + 2))
        message.invalidate_recordset()
        self.assertEqual(message.state, "failed")

    def test_late_status_recovers_unanswered_send(self):
        message = self._outbound(
            wamid=False,
            state="failed",
            failure_type="network",
            failure_title="Meta did not answer in time",
        )
        item = {
            "id": "wamid.LATE",
            "status": "delivered",
            "timestamp": str(int(time.time())),
            "recipient_id": WA_ID_A,
            "biz_opaque_callback_data": f"whatsapp.message:{message.id}",
        }
        self._post(webhook_body(messages_entry(self.account_a, statuses=[item])))
        self.assertEqual(message.state, "delivered")
        self.assertEqual(message.wamid, "wamid.LATE")
        self.assertFalse(message.failure_type)

    def test_duplicate_status_in_other_batch(self):
        message = self._outbound(wamid="wamid.OUT-D")
        now = int(time.time())
        self._post(self._status("wamid.OUT-D", "delivered", now))
        message.invalidate_recordset()
        first_date = message.delivered_date
        self.assertTrue(first_date)
        # Same wamid and status inside a different body (new batch).
        other = json.loads(self._status("wamid.OUT-D", "delivered", now + 60))
        other["entry"].append({"id": "x", "changes": []})
        self._post(json.dumps(other))
        message.invalidate_recordset()
        self.assertEqual(message.delivered_date, first_date)
        self.assertEqual(
            self.env["whatsapp.message.status"]
            .sudo()
            .search_count([("message_id", "=", message.id)]),
            1,
        )

    def test_unknown_status_ignored(self):
        count = self.env["whatsapp.message"].search_count([])
        response = self._post(self._status("wamid.NOT-OURS", "delivered", 1))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(self.env["whatsapp.message"].search_count([]), count)
        self.assertEqual(self._events().state, "ignored")

    def test_unknown_phone_number_id_ignored(self):
        entry = messages_entry(
            self.account_a, messages=[self._inbound(wamid="wamid.X")]
        )
        entry["changes"][0]["value"]["metadata"]["phone_number_id"] = "999"
        self.assertEqual(self._post(webhook_body(entry)).status_code, 200)
        self.assertEqual(self._events().state, "ignored")
        self.assertFalse(
            self.env["whatsapp.message"].search([("wamid", "=", "wamid.X")])
        )

    def test_batch_two_companies_same_app(self):
        # Both numbers belong to one Meta app: one secret signs for both.
        self.account_b.app_secret = "app-secret-a"
        body = webhook_body(
            messages_entry(self.account_a, messages=[self._inbound(wamid="wamid.A")]),
            messages_entry(self.account_b, messages=[self._inbound(wamid="wamid.B")]),
        )
        self.assertEqual(self._post(body).status_code, 200)
        message_a = (
            self.env["whatsapp.message"].sudo().search([("wamid", "=", "wamid.A")])
        )
        message_b = (
            self.env["whatsapp.message"].sudo().search([("wamid", "=", "wamid.B")])
        )
        self.assertEqual(message_a.company_id, self.company_a)
        self.assertEqual(message_b.company_id, self.company_b)
        self.assertEqual(message_b.account_id, self.account_b)
        self.assertEqual(message_b.partner_id.company_id, self.company_b)

    def test_number_of_another_app_never_written(self):
        body = webhook_body(
            messages_entry(self.account_a, messages=[self._inbound(wamid="wamid.A2")]),
            messages_entry(self.account_b, messages=[self._inbound(wamid="wamid.B2")]),
        )
        self.assertEqual(self._post(body).status_code, 200)
        self.assertTrue(
            self.env["whatsapp.message"].sudo().search([("wamid", "=", "wamid.A2")])
        )
        self.assertFalse(
            self.env["whatsapp.message"].sudo().search([("wamid", "=", "wamid.B2")])
        )

    @mute_logger(
        "odoo.addons.whatsapp_business.models.whatsapp_webhook_event",
        "odoo.addons.whatsapp_business.models.whatsapp_webhook_processor",
    )
    def test_processing_error_kept_and_retried(self):
        processor = type(self.env["whatsapp.webhook.processor"])
        with patch.object(
            processor, "_handle_inbound", side_effect=RuntimeError("boom")
        ):
            response = self._post(self._text_body(wamid="wamid.E"))
        self.assertEqual(response.status_code, 200)
        event = self._events()
        self.assertEqual(event.state, "failed")
        self.assertIn("boom", event.last_error)
        self.assertTrue(event.next_attempt_date)
        self.assertFalse(
            self.env["whatsapp.message"].search([("wamid", "=", "wamid.E")])
        )
        # The retry (button or cron) processes it once the cause is gone.
        event.with_user(self.manager_a).action_retry()
        self.assertEqual(event.state, "done")
        self.assertEqual(event.attempts, 2)
        self.assertTrue(
            self.env["whatsapp.message"].search([("wamid", "=", "wamid.E")])
        )

    def test_template_status_event(self):
        if "whatsapp.template" not in self.env:
            self.skipTest("templates not installed")
        template = self.env["whatsapp.template"].create(
            {
                "name": "order_update",
                "language": "es",
                "account_id": self.account_a.id,
                "template_uid": "774400112233",
                "status": "PENDING",
            }
        )
        body = webhook_body(
            {
                "id": self.account_a.waba_id,
                "time": int(time.time()),
                "changes": [
                    {
                        "field": "message_template_status_update",
                        "value": {
                            "event": "APPROVED",
                            "message_template_id": 774400112233,
                            "message_template_name": "order_update",
                            "message_template_language": "es",
                            "reason": "NONE",
                        },
                    }
                ],
            }
        )
        self.assertEqual(self._post(body).status_code, 200)
        template.invalidate_recordset()
        self.assertEqual(template.status, "APPROVED")

    def test_purge_keeps_message_log(self):
        self._post(self._text_body(wamid="wamid.P"))
        event = self._events()
        event.received_date = "2020-01-01 00:00:00"
        self.env["whatsapp.webhook.event"]._cron_purge_payloads()
        self.assertFalse(event.exists())
        self.assertTrue(
            self.env["whatsapp.message"].search([("wamid", "=", "wamid.P")])
        )

    def test_purge_deletes_only_old_processed_events(self):
        """Old done and ignored events go; failed, pending and recent ones stay."""
        Event = self.env["whatsapp.webhook.event"].sudo()
        self.env["ir.config_parameter"].sudo().set_param(
            "whatsapp_business.webhook_retention_days", "30"
        )
        now = self.env.cr.now()
        events = {}
        for name, state, age_days in [
            ("old done", "done", 31),
            ("old ignored", "ignored", 31),
            ("old failed", "failed", 31),
            ("old pending", "pending", 31),
            ("recent done", "done", 29),
            ("recent ignored", "ignored", 29),
        ]:
            event = Event._receive(self.account_a, json.dumps({"name": name}).encode())
            event.write(
                {"state": state, "received_date": now - timedelta(days=age_days)}
            )
            events[name] = event
        Event._cron_purge_payloads()
        kept = sorted(name for name, event in events.items() if event.exists())
        self.assertEqual(
            kept, ["old failed", "old pending", "recent done", "recent ignored"]
        )


@tagged("post_install", "-at_install")
class TestLogPrivacy(WhatsAppMixin, HttpCase):
    """Logs carry ids, counts and states: never a token, secret, number or body."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_whatsapp()

    def test_no_secret_or_content_in_logs(self):
        from .common import mock_gateway

        url = f"/whatsapp/webhook/{self.account_a.sudo().webhook_key}"
        secret_body = "Mi número de cuenta es 1234"
        raw = webhook_body(
            messages_entry(
                self.account_a,
                messages=[
                    {
                        "from": "34611999888",
                        "id": "wamid.PRIV",
                        "timestamp": "1",
                        "type": "text",
                        "text": {"body": secret_body},
                    }
                ],
                contacts=[{"profile": {"name": "Secret Name"}, "wa_id": "34611999888"}],
            )
        ).encode()
        with self.assertLogs("odoo.addons.whatsapp_business", level="DEBUG") as logs:
            self.url_open(
                url,
                data=raw,
                headers={
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": sign(raw, "app-secret-a"),
                },
            )
            self.url_open(
                url,
                data=raw,
                headers={
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": "sha256=" + "0" * 64,
                },
            )
            self.env["whatsapp.webhook.event"]._cron_process_pending()
            self.open_window(self.account_a, "+34611999888")
            self.env["whatsapp.message"]._queue_outbound(
                self.account_a,
                [{"record": self.lead_a, "phone": "+34611999888", "body": secret_body}],
            )
            with mock_gateway():
                self.env["whatsapp.message"]._cron_process_queue()
        text = "\n".join(logs.output)
        for needle in (
            secret_body,
            "34611999888",
            "Secret Name",
            "EAAtokenA",
            "app-secret-a",
            self.account_a.sudo().verify_token,
        ):
            self.assertNotIn(needle, text)
