"""README promises about what received webhooks do (sections 7 and 10)."""

import time
from datetime import datetime, timedelta
from unittest.mock import patch

from freezegun import freeze_time

from odoo.tests import tagged
from odoo.tools import mute_logger

from ..wa_cloud.client import CloudApiClient
from ..wa_cloud.errors import ConnectError
from .common import PHONE_A, WA_ID_A, WhatsAppCase, messages_entry, webhook_body

EVENT_LOGGER = "odoo.addons.whatsapp_business.models.whatsapp_webhook_event"
PROCESSOR_LOGGER = "odoo.addons.whatsapp_business.models.whatsapp_webhook_processor"


class WebhookCase(WhatsAppCase):
    """Deliver bodies the way the route and its cron do, without HTTP."""

    def deliver(self, body, account=None):
        raw = body.encode() if isinstance(body, str) else body
        Event = self.env["whatsapp.webhook.event"]
        event = Event._receive(account or self.account_a, raw)
        Event._cron_process_pending()
        return event

    def inbound(self, wamid, message_type="text", **content):
        message = {
            "from": WA_ID_A,
            "id": wamid,
            "timestamp": str(int(time.time())),
            "type": message_type,
        }
        message.update(content or {"text": {"body": "Bonjour"}})
        return webhook_body(
            messages_entry(
                self.account_a,
                messages=[message],
                contacts=[{"profile": {"name": "Amélie"}, "wa_id": WA_ID_A}],
            )
        )

    def received(self, wamid):
        return self.env["whatsapp.message"].search([("wamid", "=", wamid)])

    def is_blacklisted(self, number):
        return bool(
            self.env["phone.blacklist"]
            .sudo()
            .search_count([("number", "=", number), ("active", "=", True)])
        )

    def queue_text(self, phone=PHONE_A):
        return self.env["whatsapp.message"]._queue_outbound(
            self.account_a,
            [
                {
                    "record": self.lead_a,
                    "partner": self.partner_a,
                    "phone": phone,
                    "body": "Nouvelle offre",
                }
            ],
        )


@tagged("post_install", "-at_install")
class TestFailedEventRetries(WebhookCase):
    """README 10: "Failed events are retried automatically, with a growing delay,
    up to 8 attempts."
    """

    @mute_logger(EVENT_LOGGER, PROCESSOR_LOGGER)
    def test_retried_with_growing_delays_and_stopped_after_eight_attempts(self):
        Event = self.env["whatsapp.webhook.event"]
        processor = type(self.env["whatsapp.webhook.processor"])
        broken = patch.object(
            processor, "_handle_inbound", side_effect=RuntimeError("lock timeout")
        )
        now = datetime(2026, 3, 2, 9, 0, 0)
        with broken, freeze_time(now):
            event = self.deliver(self.inbound("wamid.RETRY"))
        self.assertEqual(event.state, "failed")
        self.assertEqual(event.attempts, 1)
        self.assertIn("lock timeout", event.last_error)

        delays = []
        with broken:
            while event.next_attempt_date and len(delays) < 20:
                due = event.next_attempt_date
                delays.append(due - now)
                with freeze_time(due - timedelta(seconds=1)):
                    Event._cron_retry_failed()
                self.assertEqual(
                    event.attempts, len(delays), "retried before its announced time"
                )
                now = due
                with freeze_time(now):
                    Event._cron_retry_failed()
                self.assertEqual(event.attempts, len(delays) + 1)
                self.assertEqual(event.state, "failed")
        self.assertEqual(event.attempts, 8)
        self.assertEqual(len(delays), 7)
        for shorter, longer in zip(delays, delays[1:], strict=False):
            self.assertGreater(longer, shorter, f"delays do not grow: {delays}")
        # After the eighth attempt, the cron leaves it alone for good.
        with broken, freeze_time(now + timedelta(days=30)):
            self.assertEqual(Event._cron_retry_failed(), 0)
        self.assertEqual(event.attempts, 8)
        self.assertEqual(event.state, "failed")
        self.assertFalse(self.received("wamid.RETRY"))
        # The manager's Retry still works once the cause is fixed.
        event.with_user(self.manager_a).action_retry()
        self.assertEqual(event.state, "done")
        self.assertEqual(self.received("wamid.RETRY").body, "Bonjour")


@tagged("post_install", "-at_install")
class TestOptOutSources(WebhookCase):
    """README 7.5: a STOP-like quick-reply payload, and Meta's user_preferences
    "stop", put the number on the blacklist; blacklisted numbers get nothing more.
    """

    def assert_opted_out(self, number):
        self.assertTrue(self.is_blacklisted(number))
        self.open_window(self.account_a, number)
        message = self.queue_text(phone=number)
        self.assertEqual(message.state, "failed")
        self.assertEqual(message.failure_type, "opted_out")

    def test_user_preferences_stop_blacklists(self):
        value = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": "15550100001",
                "phone_number_id": self.account_a.phone_number_id,
            },
            "contacts": [{"wa_id": WA_ID_A, "profile": {"name": "Amélie"}}],
            "user_preferences": [
                {
                    "wa_id": WA_ID_A,
                    "detail": "User requested to stop marketing messages",
                    "category": "marketing_messages",
                    "value": "stop",
                    "timestamp": int(time.time()),
                }
            ],
        }
        body = webhook_body(
            {
                "id": self.account_a.waba_id,
                "changes": [{"field": "user_preferences", "value": value}],
            }
        )
        self.assertFalse(self.is_blacklisted(PHONE_A))
        event = self.deliver(body)
        self.assertEqual(event.state, "done")
        self.assert_opted_out(PHONE_A)

    def test_quick_reply_payload_blacklists(self):
        # The button's label is free text; its payload carries the keyword.
        self.deliver(
            self.inbound(
                "wamid.BTN-OK",
                "button",
                button={"payload": "MORE_INFO", "text": "Más información"},
                context={"from": "15550100001", "id": "wamid.OUT-TPL"},
            )
        )
        self.assertTrue(self.received("wamid.BTN-OK"))
        self.assertFalse(self.is_blacklisted(PHONE_A), "a non-keyword payload")
        self.deliver(
            self.inbound(
                "wamid.BTN-STOP",
                "button",
                button={"payload": "BAJA", "text": "No más ofertas"},
                context={"from": "15550100001", "id": "wamid.OUT-TPL"},
            )
        )
        self.assertEqual(self.received("wamid.BTN-STOP").message_type, "button")
        self.assert_opted_out(PHONE_A)


@tagged("post_install", "-at_install")
class TestInboundRouting(WebhookCase):
    """README 7 "Inbound messages": a message goes to the contact's most recently
    updated open lead (not won, not archived), else a new lead or the contact.
    """

    def won_and_archived_leads(self):
        # Created after lead_a: they would come first if they were not skipped.
        won = self.env["crm.lead"].create(
            {"name": "Won deal", "partner_id": self.partner_a.id, "type": "opportunity"}
        )
        won.action_set_won()
        archived = self.env["crm.lead"].create(
            {"name": "Lost deal", "partner_id": self.partner_a.id}
        )
        archived.action_archive()
        self.assertTrue(won.stage_id.is_won)
        self.assertFalse(archived.active)
        return won | archived

    def test_reply_goes_to_open_lead_not_won_or_archived(self):
        closed = self.won_and_archived_leads()
        self.deliver(self.inbound("wamid.ROUTE-1"))
        message = self.received("wamid.ROUTE-1")
        self.assertEqual(
            (message.res_model, message.res_id), ("crm.lead", self.lead_a.id)
        )
        self.assertIn("Bonjour", str(self.lead_a.message_ids[0].body))
        for lead in closed:
            self.assertNotIn(
                "Bonjour", " ".join(map(str, lead.message_ids.mapped("body")))
            )

    def test_only_closed_leads_go_to_contact_or_new_lead(self):
        closed = self.won_and_archived_leads()
        self.lead_a.action_set_won()
        closed |= self.lead_a
        self.deliver(self.inbound("wamid.ROUTE-2"))
        message = self.received("wamid.ROUTE-2")
        self.assertEqual(
            (message.res_model, message.res_id), ("res.partner", self.partner_a.id)
        )
        self.account_a.create_lead = True
        self.deliver(self.inbound("wamid.ROUTE-3"))
        message = self.received("wamid.ROUTE-3")
        self.assertEqual(message.res_model, "crm.lead")
        lead = self.env["crm.lead"].browse(message.res_id)
        self.assertNotIn(lead, closed)
        self.assertEqual(lead.partner_id, self.partner_a)
        self.assertTrue(lead.active)
        self.assertFalse(lead.stage_id.is_won)


@tagged("post_install", "-at_install")
class TestMediaUnavailable(WebhookCase):
    """README 7.4: "A file that still cannot be downloaded after 5 attempts is
    marked Unavailable."
    """

    def test_unavailable_after_five_attempts(self):
        now = datetime(2026, 3, 2, 9, 0, 0)
        with freeze_time(now):
            self.deliver(
                self.inbound(
                    "wamid.IMG",
                    "image",
                    image={
                        "id": "1480001122334455",
                        "mime_type": "image/jpeg",
                        "caption": "Photo du toit",
                    },
                )
            )
        message = self.received("wamid.IMG")
        self.assertEqual(message.media_state, "pending")
        Message = self.env["whatsapp.message"]
        states = dict(Message._fields["media_state"]._description_selection(self.env))
        calls = []

        def unreachable(client, media_id):
            calls.append(media_id)
            raise ConnectError("Meta unreachable")

        with patch.object(CloudApiClient, "get_media_url", unreachable):
            for attempt in range(1, 6):
                self.assertEqual(message.media_state, "pending")
                due = message.next_attempt_date or now
                with freeze_time(due):
                    Message._cron_download_media()
                self.assertEqual(len(calls), attempt)
                now = due
            self.assertEqual(states[message.media_state], "Unavailable")
            # Never tried again afterwards.
            with freeze_time(now + timedelta(days=7)):
                Message._cron_download_media()
        self.assertEqual(len(calls), 5)
        self.assertEqual(message.media_state, "failed")
        self.assertFalse(message.attachment_id)
