import bisect
import json
import time
from datetime import timedelta
from unittest.mock import patch

from odoo import fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..wa_cloud.client import CloudApiClient
from ..wa_cloud.errors import ConnectError, ReadTimeoutError, error_from_response
from .common import MOBILE, PHONE_A, WhatsAppCase, mock_gateway, mock_media_download


def meta_error(status, code, title="Error", details=""):
    body = json.dumps(
        {
            "error": {
                "message": f"(#{code}) {title}",
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": details},
                "fbtrace_id": "Ftrace",
            }
        }
    )
    return error_from_response(status, body.encode(), {})


@tagged("post_install", "-at_install")
class TestMessageQueue(WhatsAppCase):
    def _queue_text(self, record=None, phone=PHONE_A, body="Votre devis est prêt."):
        record = record or self.lead_a
        return self.env["whatsapp.message"]._queue_outbound(
            self.account_a,
            [
                {
                    "record": record,
                    "partner": self.partner_a,
                    "phone": phone,
                    "body": body,
                }
            ],
        )

    def _run_queue(self):
        return self.env["whatsapp.message"]._cron_process_queue()

    def _due_now(self, messages):
        messages.write({"next_attempt_date": self.env.cr.now() - timedelta(seconds=1)})

    def test_text_send_reaches_sent_with_exact_json(self):
        self.open_window(self.account_a, PHONE_A)
        message = self._queue_text()
        self.assertEqual(message.state, "queued")
        self.assertIn("Votre devis", str(self.lead_a.message_ids[0].body))
        with mock_gateway() as gateway:
            self._run_queue()
        self.assertEqual(message.state, "sent")
        self.assertEqual(message.wamid, "wamid.OUT-1")
        self.assertEqual(
            gateway.sent,
            [
                {
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": "33612345678",
                    "type": "text",
                    "text": {"preview_url": False, "body": "Votre devis est prêt."},
                    "biz_opaque_callback_data": f"whatsapp.message:{message.id}",
                }
            ],
        )
        self.assertEqual(message.request_payload, gateway.sent[0])
        chatter = message.mail_message_id
        self.assertEqual(chatter.model, "crm.lead")
        self.assertIn("o_whatsapp_state_sent", str(chatter.body))
        self.assertTrue(message.partner_mail_message_id)
        self.assertEqual(self.lead_a.whatsapp_message_count, 1)

    def test_window_closed_refused_before_http(self):
        self.open_window(
            self.account_a, PHONE_A, when=self.env.cr.now() - timedelta(hours=25)
        )
        with mock_gateway() as gateway:
            message = self._queue_text()
            self._run_queue()
        self.assertEqual(message.state, "failed")
        self.assertEqual(message.failure_type, "window_closed")
        self.assertIn("template", message.failure_title)
        self.assertEqual(gateway.sent, [])

    def test_window_enforced_again_at_send_time(self):
        inbound = self.open_window(self.account_a, PHONE_A)
        message = self._queue_text()
        # The window closes while the message waits in the queue.
        inbound.received_date = self.env.cr.now() - timedelta(hours=30)
        with mock_gateway() as gateway:
            self._run_queue()
        self.assertEqual(message.state, "failed")
        self.assertEqual(message.failure_type, "window_closed")
        self.assertEqual(gateway.calls, [])  # refused before any HTTP call

    def test_blacklisted_and_missing_numbers_refused(self):
        self.open_window(self.account_a, PHONE_A)
        self.env["phone.blacklist"].sudo()._add([PHONE_A])
        blocked = self._queue_text()
        self.assertEqual(blocked.failure_type, "opted_out")
        missing = self._queue_text(phone=False)
        self.assertEqual(missing.failure_type, "invalid_number")

    def test_bulk_send_respects_rate_limit(self):
        """1,000 records queued at once: one run sends them all, within the rate."""
        self.account_a.rate_limit = 400
        partners = self.env["res.partner"].create(
            [{"name": f"Client {i}", MOBILE: f"+3361000{i:04d}"} for i in range(1000)]
        )
        self.env["whatsapp.message"].create(
            [
                {
                    "account_id": self.account_a.id,
                    "direction": "inbound",
                    "state": "received",
                    "phone": partner[MOBILE],
                    "received_date": self.env.cr.now(),
                    "wamid": f"wamid.IN-BULK-{partner.id}",
                }
                for partner in partners
            ]
        )
        messages = self.env["whatsapp.message"]._queue_outbound(
            self.account_a,
            [
                {"record": p, "partner": p, "phone": p[MOBILE], "body": "Promo"}
                for p in partners
            ],
        )
        self.assertEqual(set(messages.mapped("state")), {"queued"})
        stamps = []
        with mock_gateway() as gateway:
            original = gateway._outcome

            def timed(to, payload):
                stamps.append(time.monotonic())
                return original(to, payload)

            gateway._outcome = timed
            # Nothing caps a run below the rate: only the pacing keeps it there.
            self.env["whatsapp.message"]._cron_process_queue()
        self.assertEqual(set(messages.mapped("state")), {"sent"})
        self.assertEqual(len(gateway.sent), 1000)
        self.assertEqual(len(set(messages.mapped("wamid"))), 1000)
        stamps.sort()
        window_max = max(
            bisect.bisect_left(stamps, start + 1.0) - i
            for i, start in enumerate(stamps)
        )
        self.assertLessEqual(window_max, 400)

    def test_error_classes(self):
        numbers = {
            "transient": "+33600000001",
            "invalid": "+33600000002",
            "timeout": "+33600000004",
            "connect": "+33600000005",
            "throttled": "+33600000003",
        }
        for number in numbers.values():
            self.open_window(self.account_a, number)
        errors = {
            "33600000001": [meta_error(500, 131000, "Something went wrong")],
            "33600000002": [meta_error(400, 131026, "Message undeliverable")],
            "33600000003": [meta_error(429, 130429, "Rate limit hit")],
            "33600000004": [ReadTimeoutError("read timed out")],
            "33600000005": [ConnectError("connection refused")],
        }
        messages = {
            key: self._queue_text(phone=number) for key, number in numbers.items()
        }
        with mock_gateway(errors=errors) as gateway:
            self._run_queue()
            self.assertEqual(messages["invalid"].state, "failed")
            self.assertEqual(messages["invalid"].failure_type, "invalid_number")
            self.assertEqual(messages["invalid"].failure_code, 131026)
            self.assertEqual(messages["timeout"].state, "failed")
            self.assertEqual(messages["timeout"].failure_type, "network")
            # A refused send never went out: it waits and is tried again.
            for key in ("transient", "connect", "throttled"):
                self.assertEqual(messages[key].state, "queued", key)
                self.assertEqual(messages[key].retry_count, 1, key)
                self.assertTrue(messages[key].next_attempt_date, key)
            self.assertEqual(messages["throttled"].failure_type, "rate_limit")
            retried = (
                messages["transient"] | messages["connect"] | messages["throttled"]
            )
            self._due_now(retried)
            self._run_queue()
        for key in ("transient", "throttled", "connect"):
            self.assertEqual(messages[key].state, "sent", key)
        self.assertEqual(messages["invalid"].state, "failed")
        self.assertEqual(len(gateway.sent), 3)

    def test_pair_rate_limit_delays_only_that_recipient(self):
        other = "+33600000099"
        self.open_window(self.account_a, PHONE_A)
        self.open_window(self.account_a, other)
        limited = self._queue_text() | self._queue_text(body="Second message")
        unaffected = self._queue_text(phone=other)
        errors = {"33612345678": meta_error(400, 131056, "Pair rate limit hit")}
        now = fields.Datetime.now().replace(microsecond=0)
        with (
            mock_gateway(errors=errors) as gateway,
            patch.object(fields.Datetime, "now", return_value=now),
        ):
            self._run_queue()
        self.assertEqual(unaffected.state, "sent")
        self.assertEqual(len(gateway.sent), 1)
        for message in limited:
            self.assertEqual(message.state, "queued")
            self.assertEqual(message.failure_type, "rate_limit")
            self.assertEqual(message.failure_code, 131056)
            # Meta's pair limit: one message every 6 s to the same user.
            self.assertEqual(message.next_attempt_date, now + timedelta(seconds=6))

    def test_rate_limit_refusals_are_bounded(self):
        self.open_window(self.account_a, PHONE_A)
        self.account_a.rate_limit_retries = 2
        message = self._queue_text()
        errors = {"33612345678": meta_error(400, 130429, "Rate limit hit")}
        with mock_gateway(errors=errors) as gateway:
            for _attempt in range(3):
                self._run_queue()
                self._due_now(message.filtered(lambda m: m.state == "queued"))
        self.assertEqual(len(gateway.calls), 3)
        self.assertEqual(message.state, "failed")
        self.assertEqual(message.failure_type, "rate_limit")
        self.assertIn("3 attempts", message.failure_title)

    def test_transient_gives_up_after_max_retries(self):
        self.open_window(self.account_a, PHONE_A)
        self.account_a.max_retries = 2
        message = self._queue_text()
        errors = {"33612345678": [meta_error(503, 2, "Service unavailable")] * 5}
        with mock_gateway(errors=errors):
            for _attempt in range(3):
                self._run_queue()
                self._due_now(message.filtered(lambda m: m.state == "queued"))
        self.assertEqual(message.state, "failed")
        self.assertEqual(message.failure_type, "server")
        self.assertEqual(message.retry_count, 2)

    def test_interrupted_send_is_not_repeated(self):
        self.open_window(self.account_a, PHONE_A)
        message = self._queue_text()
        message.claim_date = self.env.cr.now() - timedelta(minutes=30)
        with mock_gateway() as gateway:
            self._run_queue()
        self.assertEqual(message.state, "failed")
        self.assertEqual(message.failure_type, "network")
        self.assertEqual(gateway.sent, [])

    def test_wamid_written_before_batch_end(self):
        """Accepted sends are written while the round still runs, not after it."""
        numbers = [f"+3360000{i:04d}" for i in range(45)]
        for number in numbers:
            self.open_window(self.account_a, number)
        messages = self.env["whatsapp.message"]
        for number in numbers:
            messages |= self._queue_text(phone=number)
        self.account_a.rate_limit = 100  # 0.45 s of sends: several flushes
        written = []
        model = type(self.env["whatsapp.message"])
        original = model._record_outcomes

        def spy(records, account, outcomes):
            written.append([o.key for o in outcomes if o.kind == "sent"])
            return original(records, account, outcomes)

        with mock_gateway(), patch.object(model, "_record_outcomes", spy):
            self._run_queue()
        flushed = [ids for ids in written if ids]
        self.assertGreater(len(flushed), 1)  # several commits, not one at the end
        self.assertEqual(sorted(sum(flushed, [])), sorted(messages.ids))
        self.assertEqual(set(messages.mapped("state")), {"sent"})

    def test_manager_cancel_and_retry(self):
        self.open_window(self.account_a, PHONE_A)
        message = self._queue_text()
        with self.assertRaises(AccessError):
            message.with_user(self.user_a).action_cancel()
        message.with_user(self.manager_a).action_cancel()
        self.assertEqual(message.state, "cancelled")
        with self.assertRaises(UserError):
            message.with_user(self.manager_a).action_retry()
        failed = self._queue_text(phone=False)
        failed.with_user(self.manager_a).action_retry()
        self.assertEqual(failed.state, "queued")

    def test_user_cannot_use_other_company_account(self):
        self.open_window(self.account_b, PHONE_A)
        with self.assertRaises(AccessError):
            self.env["whatsapp.message"].with_user(self.user_a)._queue_outbound(
                self.account_b,
                [{"record": self.lead_a, "phone": PHONE_A, "body": "Hi"}],
            )

    def test_user_sends_and_reads_own_log(self):
        self.open_window(self.account_a, PHONE_A)
        message = (
            self.env["whatsapp.message"]
            .with_user(self.user_a)
            ._queue_outbound(
                self.account_a,
                [
                    {
                        "record": self.lead_a.with_user(self.user_a),
                        "phone": PHONE_A,
                        "body": "Hi",
                    }
                ],
            )
        )
        self.assertEqual(message.with_user(self.user_a).state, "queued")
        with self.assertRaises(AccessError):
            message.with_user(self.user_a).write({"body": "tampered"})

    def test_disabled_company_refused(self):
        self.company_a.whatsapp_enabled = False
        with self.assertRaises(UserError):
            self._queue_text()

    def test_media_download(self):
        message = self.env["whatsapp.message"].create(
            {
                "account_id": self.account_a.id,
                "direction": "inbound",
                "state": "received",
                "message_type": "image",
                "phone": PHONE_A,
                "wamid": "wamid.IN-IMG",
                "media_id": "1480001122334455",
                "media_state": "pending",
            }
        )
        with mock_media_download(ConnectError("down"), b"\xff\xd8jpeg-bytes"):
            self.env["whatsapp.message"]._cron_download_media()
            self.assertEqual(message.media_state, "pending")
            self.assertEqual(message.media_attempts, 1)
            message.next_attempt_date = False
            self.env["whatsapp.message"]._cron_download_media()
        self.assertEqual(message.media_state, "done")
        self.assertEqual(message.attachment_id.raw, b"\xff\xd8jpeg-bytes")
        self.assertEqual(message.attachment_id.mimetype, "image/jpeg")

    def test_media_download_skips_a_message_that_keeps_failing(self):
        broken, fine = self.env["whatsapp.message"].create(
            [
                {
                    "account_id": self.account_a.id,
                    "direction": "inbound",
                    "state": "received",
                    "message_type": "image",
                    "phone": PHONE_A,
                    "wamid": f"wamid.IN-IMG-{index}",
                    "media_id": f"14800011223344{index}",
                    "media_state": "pending",
                }
                for index in range(2)
            ]
        )
        from ..wa_cloud.client import MediaInfo

        def media_url(client, media_id, **_kwargs):
            if media_id == broken.media_id:
                raise RuntimeError("a bug")
            return MediaInfo(url="https://lookaside.example/x", mime_type="image/jpeg")

        with (
            patch.object(CloudApiClient, "get_media_url", media_url),
            patch.object(CloudApiClient, "download_media", return_value=b"jpeg"),
            mute_logger("odoo.addons.whatsapp_business.models.whatsapp_message"),
        ):
            self.env["whatsapp.message"]._cron_download_media(limit=1)
            self.assertEqual(broken.media_attempts, 1)
            self.assertTrue(broken.next_attempt_date)
            broken.next_attempt_date = False
            # Due again, yet it waits behind the message never tried.
            self.env["whatsapp.message"]._cron_download_media(limit=1)
        self.assertEqual(fine.media_state, "done")
        self.assertEqual(broken.media_state, "pending")
