"""Inbound messages are applied per batch (issue 10): the senders' contacts are
found or created together, and the conversation copies are posted once every
message of the batch is stored, in arrival order.
"""

import time
from unittest.mock import patch

from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import messages_entry, webhook_body
from .test_webhook_inbox import PROCESSOR_LOGGER
from .test_webhook_processing import EVENT_LOGGER, WebhookCase


@tagged("post_install", "-at_install")
class TestInboundBatches(WebhookCase):
    def text_body(self, number, wamid, text, name="Client"):
        return webhook_body(
            messages_entry(
                self.account_a,
                messages=[
                    {
                        "from": number,
                        "id": wamid,
                        "timestamp": str(int(time.time())),
                        "type": "text",
                        "text": {"body": text},
                    }
                ],
                contacts=[{"profile": {"name": name}, "wa_id": number}],
            )
        )

    def receive(self, *bodies):
        Event = self.env["whatsapp.webhook.event"]
        return [Event._receive(self.account_a, body.encode()) for body in bodies]

    def partners_of(self, *numbers):
        return (
            self.env["res.partner"]
            .with_context(active_test=False)
            .search([("phone_sanitized", "in", [f"+{n}" for n in numbers])])
        )

    def test_new_numbers_of_one_batch_get_one_contact_each(self):
        one, two = "33612300001", "33612300002"
        events = self.receive(
            self.text_body(one, "wamid.N1a", "premier", name="Une"),
            self.text_body(two, "wamid.N2a", "second", name="Deux"),
            self.text_body(one, "wamid.N1b", "encore", name="Une"),
        )
        self.env["whatsapp.webhook.event"]._cron_process_pending()
        self.assertEqual({e.state for e in events}, {"done"})
        partners = self.partners_of(one, two)
        self.assertEqual(len(partners), 2, "one contact per number, no duplicate")
        first = partners.filtered(lambda p: p.phone_sanitized == f"+{one}")
        self.assertEqual(first.name, "Une")
        self.assertEqual(
            (self.received("wamid.N1a") | self.received("wamid.N1b")).partner_id, first
        )
        # Each conversation shows its customer's messages in arrival order.
        channel = self.env["discuss.channel"].search(
            [("channel_type", "=", "whatsapp"), ("whatsapp_partner_id", "=", first.id)]
        )
        self.assertEqual(len(channel), 1)
        bodies = channel.message_ids.sorted("id").mapped("body")
        self.assertEqual(len(bodies), 2)
        self.assertIn("premier", bodies[0])
        self.assertIn("encore", bodies[1])

    def test_known_number_keeps_its_contact(self):
        self.receive(self.text_body("33612345678", "wamid.K1", "Bonjour"))
        before = self.partners_of("33612345678")
        self.env["whatsapp.webhook.event"]._cron_process_pending()
        self.assertEqual(self.received("wamid.K1").partner_id, self.partner_a)
        self.assertEqual(self.partners_of("33612345678"), before)

    def process_counting_queries(self, first_number, count):
        bodies = [
            self.text_body(
                str(first_number + i), f"wamid.Q{first_number + i}", "Bonjour"
            )
            for i in range(count)
        ]
        self.receive(*bodies)
        self.env.flush_all()
        before = self.env.cr.sql_log_count
        self.env["whatsapp.webhook.event"]._cron_process_pending()
        return self.env.cr.sql_log_count - before

    def test_queries_per_new_customer_message_are_bounded(self):
        # Warm the caches (subtypes, templates of the chatter body, account).
        self.process_counting_queries(33612310000, 1)
        small = self.process_counting_queries(33612320000, 2)
        big = self.process_counting_queries(33612330000, 12)
        per_message = (big - small) / 10
        # A new customer's message: stored, its contact, lead, chatter posts and
        # conversation (created, assigned, posted): 16 queries on Odoo 18, 18 on
        # Odoo 19; 2 more when each copy looked up its Reply-To and scheduled date,
        # 23 (Odoo 18) when each conversation was created on its own, 30 when each
        # copy was a Discuss message_post of its own, 41 when contacts were
        # matched message by message too.
        self.assertLessEqual(per_message, 18, f"{per_message} queries per message")

    @mute_logger(EVENT_LOGGER, PROCESSOR_LOGGER)
    def test_a_failing_conversation_copy_hides_no_other_message(self):
        Message = type(self.env["whatsapp.message"])
        real = Message._conversation_copy_values

        def flaky(self_, date=None):
            if self_.wamid == "wamid.CBAD":
                raise RuntimeError("copy failed")
            return real(self_, date=date)

        bad, good = self.receive(
            self.text_body("33612340001", "wamid.CBAD", "un"),
            self.text_body("33612340002", "wamid.CGOOD", "deux"),
        )
        with patch.object(Message, "_conversation_copy_values", flaky):
            self.env["whatsapp.webhook.event"]._cron_process_pending()
        self.assertEqual((bad.state, good.state), ("failed", "done"))
        self.assertIn("copy failed", bad.last_error)
        self.assertTrue(self.received("wamid.CGOOD").channel_message_id)
        self.assertFalse(self.received("wamid.CBAD").channel_message_id)
        # The failed event is retried: its message, stored already, now gets its
        # copy (the redelivery of a copied message changes nothing).
        copied = self.received("wamid.CGOOD").channel_message_id
        (bad | good)._process()
        self.assertEqual((bad.state, good.state), ("done", "done"))
        self.assertTrue(self.received("wamid.CBAD").channel_message_id)
        self.assertEqual(self.received("wamid.CGOOD").channel_message_id, copied)
        self.assertEqual(
            self.env["mail.message"].search_count(
                [("model", "=", "discuss.channel"), ("body", "ilike", "deux")]
            ),
            1,
        )
