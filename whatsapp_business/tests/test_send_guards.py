"""README promises about what stops a send: the template check just before
sending, two queue workers at once, and the server action's disabled accounts.
"""

import time

from odoo import SUPERUSER_ID, api
from odoo.tests import TransactionCase, tagged

from .common import (
    PHONE_A,
    WhatsAppMixin,
    drop_committed_account,
    mock_gateway,
    webhook_body,
)
from .test_webhook_processing import WebhookCase
from .test_whatsapp_template import TemplateCase, meta_template

ACTION_LOGGER = "odoo.addons.whatsapp_business.models.ir_actions_server"


@tagged("post_install", "-at_install")
class TestTemplateCheckedBeforeSending(WebhookCase, TemplateCase):
    """README 8: "Only Approved templates can be sent. This is checked in the
    composer, when queueing and again just before sending."
    """

    def template_event(self, template, event):
        # A distinct time per notice: an identical body is a redelivery, ignored.
        self.notices = getattr(self, "notices", 0) + 1
        return {
            "id": self.account_a.waba_id,
            "time": int(time.time()) + self.notices,
            "changes": [
                {
                    "field": "message_template_status_update",
                    "value": {
                        "event": event,
                        "message_template_id": int(template.template_uid),
                        "message_template_name": template.name,
                        "message_template_language": template.language,
                        "reason": "NONE",
                    },
                }
            ],
        }

    def test_template_stopped_after_queueing_is_not_sent(self):
        template = self.create_template(
            meta_template("774400110077", "autumn_sale", "es", "¡Rebajas de otoño!")
        )
        for event, status in (
            ("PAUSED", "PAUSED"),
            ("REJECTED", "REJECTED"),
            ("DISABLED", "DISABLED"),
        ):
            with self.subTest(event=event):
                self.deliver(webhook_body(self.template_event(template, "APPROVED")))
                self.assertEqual(template.status, "APPROVED")
                message = self.env["whatsapp.message"]._queue_outbound(
                    self.account_a,
                    [
                        {
                            "record": self.lead_a,
                            "partner": self.partner_a,
                            "phone": PHONE_A,
                            "template": template,
                            "template_params": {},
                        }
                    ],
                )
                self.assertEqual(message.state, "queued")
                # Meta stops the template while the message waits in the queue.
                self.deliver(webhook_body(self.template_event(template, event)))
                self.assertEqual(template.status, status)
                with mock_gateway() as gateway:
                    self.env["whatsapp.message"]._cron_process_queue()
                self.assertEqual(gateway.sent, [])
                self.assertEqual(message.state, "failed")
                self.assertEqual(message.failure_type, "template")
                self.assertIn("autumn_sale", message.failure_title)
                self.assertIn("not approved", message.failure_title)
                chatter = str(message.mail_message_id.body)
                self.assertIn("Failed", chatter)
                self.assertIn("autumn_sale", chatter)


@tagged("post_install", "-at_install")
class TestTwoQueueWorkers(WhatsAppMixin, TransactionCase):
    """README 14 "Sending": each cron run claims due messages with FOR UPDATE SKIP
    LOCKED before any HTTP call; two workers never send one message twice.

    Two real cursors stand for two Odoo workers, on committed data (a test
    transaction is invisible to other connections): nothing here writes in the
    test's own transaction, so neither worker can wait for it.
    """

    MESSAGES = 6

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._ensure_encryption_key()

    def setUp(self):
        super().setUp()
        self.phones = [f"+3361000{i:04d}" for i in range(self.MESSAGES)]
        with self.registry.cursor() as cr:
            cr.execute("SELECT COALESCE(MAX(id), 0) FROM ir_cron_trigger")
            self.last_trigger_id = cr.fetchone()[0]
            env = api.Environment(cr, SUPERUSER_ID, {})
            company = env.ref("base.main_company")
            was_enabled = company.whatsapp_enabled
            company.whatsapp_enabled = True
            account = env["whatsapp.account"].create(
                {
                    "name": "Two workers",
                    "company_id": company.id,
                    "phone_number_id": "109000000000777",
                    "waba_id": "104000000000777",
                    "access_token": "EAAtwo-workers",
                    "app_secret": "two-workers-secret",
                    # Slow enough that the first worker is still busy with the
                    # account when the second one starts.
                    "rate_limit": 3,
                    "max_concurrency": 1,
                }
            )
            # Recently connected: neither worker needs to write the account row,
            # which the other would then wait for (tests never commit mid-run).
            account.write({"state": "connected", "last_success_date": cr.now()})
            self.account_id = account.id
            self.addCleanup(self._drop_committed_data, was_enabled)
            Message = env["whatsapp.message"]
            for phone in self.phones:
                Message.create(
                    {
                        "account_id": account.id,
                        "direction": "inbound",
                        "state": "received",
                        "phone": phone,
                        "body": "Hola",
                        "wamid": f"wamid.IN-TWO-{phone}",
                        "received_date": cr.now(),
                    }
                )
            messages = Message._queue_outbound(
                account,
                [{"phone": phone, "body": "Su pedido"} for phone in self.phones],
            )
            self.assertEqual(set(messages.mapped("state")), {"queued"})
            self.message_ids = messages.ids

    def _drop_committed_data(self, was_enabled):
        with self.registry.cursor() as cr:
            cr.execute(
                "DELETE FROM whatsapp_message WHERE account_id = %s", [self.account_id]
            )
            drop_committed_account(
                cr, self.account_id, self.last_trigger_id, was_enabled
            )

    def _worker(self, cr):
        # A worker that waited for the other's locks would fail here, not hang.
        cr.execute("SET LOCAL lock_timeout = '5s'")
        env = api.Environment(cr, SUPERUSER_ID, {})
        return env["whatsapp.message"]._cron_process_queue(batch_seconds=1)

    def _states(self):
        with self.registry.cursor() as cr:
            cr.execute(
                "SELECT state, wamid FROM whatsapp_message WHERE id IN %s",
                [tuple(self.message_ids)],
            )
            return cr.fetchall()

    def test_each_message_sent_once(self):
        with (
            mock_gateway() as gateway,
            self.registry.cursor() as cr_a,
            self.registry.cursor() as cr_b,
        ):
            # Worker A claims and sends, and has not committed yet when B runs.
            done_a = self._worker(cr_a)
            done_b = self._worker(cr_b)
            cr_a.commit()
            cr_b.commit()
            # How the work splits is the engine's business (an account is served
            # by one runner at a time); that nothing is sent twice is not.
            self.assertGreater(done_a, 0)
            self.assertEqual(done_a + done_b, self.MESSAGES)
            # A third run finds nothing left to send.
            with self.registry.cursor() as cr_c:
                self.assertEqual(self._worker(cr_c), 0)
        recipients = [payload["to"] for payload in gateway.sent]
        # Meta gets the digits of each number, once.
        self.assertEqual(sorted(recipients), [p.lstrip("+") for p in self.phones])
        states = self._states()
        self.assertEqual({state for state, _wamid in states}, {"sent"})
        self.assertEqual(len({wamid for _state, wamid in states}), self.MESSAGES)


@tagged("post_install", "-at_install")
class TestServerActionDisabledAccount(TemplateCase):
    """README 9: "If the account is archived, or WhatsApp is disabled for its
    company, nothing is queued and a warning is logged."
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.template = cls.create_template(
            meta_template("774400110078", "welcome", "fr", "Bienvenue !")
        )
        cls.action = cls.env["ir.actions.server"].create(
            {
                "name": "WhatsApp welcome",
                "model_id": cls.env["ir.model"]._get_id("crm.lead"),
                "state": "whatsapp",
                "whatsapp_account_id": cls.account_a.id,
                "whatsapp_template_id": cls.template.id,
            }
        )

    def run_on_lead(self):
        before = self.lead_a.message_ids
        with self.assertLogs(ACTION_LOGGER, "WARNING") as logs:
            result = self.action.with_context(
                active_model="crm.lead",
                active_id=self.lead_a.id,
                active_ids=self.lead_a.ids,
            ).run()
        self.assertFalse(result)
        self.assertIn("archived or disabled", "\n".join(logs.output))
        self.assertFalse(
            self.env["whatsapp.message"].search(
                [("res_model", "=", "crm.lead"), ("res_id", "=", self.lead_a.id)]
            )
        )
        self.assertEqual(self.lead_a.message_ids, before)

    def test_archived_account(self):
        self.account_a.active = False
        self.run_on_lead()

    def test_company_disabled(self):
        self.company_a.whatsapp_enabled = False
        self.run_on_lead()

    def test_automation_rule_not_blocked(self):
        if "base.automation" not in self.env:
            self.skipTest("base_automation is not installed")
        self.env["base.automation"].create(
            {
                "name": "WhatsApp welcome",
                "model_id": self.env["ir.model"]._get_id("crm.lead"),
                "trigger": "on_create",
                "action_server_ids": [(4, self.action.id)],
            }
        )
        self.account_a.active = False
        with self.assertLogs(ACTION_LOGGER, "WARNING"):
            lead = self.env["crm.lead"].create(
                {"name": "Kitchen", "partner_id": self.partner_a.id}
            )
        self.assertTrue(lead.exists())
        self.assertFalse(
            self.env["whatsapp.message"].search(
                [("res_model", "=", "crm.lead"), ("res_id", "=", lead.id)]
            )
        )
