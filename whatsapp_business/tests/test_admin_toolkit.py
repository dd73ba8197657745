"""The agency administrator's toolkit: test message, ad attribution, costs."""

import time

from odoo.exceptions import AccessError, UserError
from odoo.tests import Form, tagged

from .common import PHONE_A, WA_ID_A, mock_gateway, webhook_body
from .test_webhook_processing import WebhookCase
from .test_whatsapp_template import meta_template


class ToolkitCase(WebhookCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        Template = cls.env["whatsapp.template"]
        cls.hello = Template.create(
            Template._values_from_meta(
                meta_template(
                    "774400000001",
                    "hello_world",
                    "en_US",
                    "Hello! This message comes from the WhatsApp sandbox.",
                )
            )
            | {"account_id": cls.account_a.id}
        )

    def status(self, wamid, status, pricing=None, recipient=WA_ID_A):
        item = {
            "id": wamid,
            "status": status,
            "timestamp": str(int(time.time())),
            "recipient_id": recipient,
        }
        if pricing:
            item["pricing"] = {"pricing_model": "PMP", **pricing}
        entry = {
            "id": self.account_a.waba_id,
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": "15550100001",
                            "phone_number_id": self.account_a.phone_number_id,
                        },
                        "statuses": [item],
                    },
                }
            ],
        }
        return webhook_body(entry)


@tagged("post_install", "-at_install")
class TestTestMessage(ToolkitCase):
    def open_wizard(self, user=None):
        account = self.account_a.with_user(user or self.manager_a)
        action = account.action_send_test_message()
        self.assertEqual(action["res_model"], "whatsapp.test.message")
        return Form(
            self.env[action["res_model"]]
            .with_user(user or self.manager_a)
            .with_context(action["context"])
        )

    def test_template_test_message_goes_through_the_queue(self):
        self.company_a.country_id = self.env.ref("base.fr")
        form = self.open_wizard()
        self.assertEqual(form.template_id, self.hello, "hello_world is the default")
        self.assertEqual(form.mode, "template")
        form.phone = "06 12 34 56 78"  # national: the company's country (France)
        self.assertEqual(form.phone_e164, PHONE_A)
        wizard = form.save()
        action = wizard.action_send()
        self.assertEqual(action["res_id"], wizard.id, "the wizard stays open")
        message = wizard.message_id
        self.assertEqual(message.state, "queued")
        self.assertEqual(message.template_id, self.hello)
        self.assertEqual(message.phone, PHONE_A)
        self.assertEqual((message.res_model, message.res_id), (
            "whatsapp.account",
            self.account_a.id,
        ))
        with mock_gateway() as gateway:
            self.env["whatsapp.message"]._cron_process_queue()
        self.assertEqual(len(gateway.sent), 1)
        self.assertEqual(gateway.sent[0]["template"]["name"], "hello_world")
        wizard.action_refresh()
        self.assertEqual(wizard.message_state, "sent")
        self.deliver(self.status(message.wamid, "delivered"))
        wizard.invalidate_recordset()
        self.assertEqual(wizard.message_state, "delivered")
        self.assertIn("Delivered", message.mail_message_id.body)
        self.assertEqual(message.mail_message_id.model, "whatsapp.account")

    def test_free_text_only_inside_the_window(self):
        form = self.open_wizard()
        form.phone = PHONE_A
        form.mode = "text"
        form.body = "Ping from the test button"
        self.assertFalse(form.window_open)
        wizard = form.save()
        with self.assertRaisesRegex(UserError, "last 24 hours"):
            wizard.action_send()
        self.assertFalse(self.env["whatsapp.message"].search_count(
            [("body", "=", "Ping from the test button")]
        ))
        self.open_window(self.account_a, PHONE_A)
        wizard.invalidate_recordset()
        self.assertTrue(wizard.window_open)
        wizard.action_send()
        self.assertEqual(wizard.message_id.message_type, "text")
        self.assertEqual(wizard.message_id.state, "queued")

    def test_invalid_number_and_unapproved_template_refused(self):
        form = self.open_wizard()
        form.phone = "12"
        wizard = form.save()
        with self.assertRaisesRegex(UserError, "not a valid international number"):
            wizard.action_send()
        wizard.phone = PHONE_A
        self.hello.status = "PENDING"
        with self.assertRaisesRegex(UserError, "not an approved template"):
            wizard.action_send()

    def test_only_managers_send_test_messages(self):
        with self.assertRaises(AccessError):
            self.account_a.with_user(self.user_a).action_send_test_message()
        with self.assertRaises(AccessError):
            self.account_b.with_user(self.manager_a).action_send_test_message()
