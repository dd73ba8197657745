from datetime import timedelta

from odoo.exceptions import ValidationError
from odoo.tests import tagged

from .common import MOBILE, PHONE_A, mock_gateway
from .test_whatsapp_template import TemplateCase, meta_template

PHONE_B = "+33698765432"


@tagged("post_install", "-at_install")
class TestWhatsAppServerAction(TemplateCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.template = cls.create_template(
            meta_template(
                "774400110050",
                "lead_welcome",
                "fr",
                "Bonjour {{1}}, merci pour votre demande {{2}}.",
            )
        )
        variables = cls.template.variable_ids
        variables[0].write({"source": "field", "field_path": "partner_id.name"})
        variables[1].write({"source": "field", "field_path": "name"})
        cls.lead_model = cls.env["ir.model"]._get("crm.lead")

    def create_action(self, **vals):
        values = {
            "name": "Welcome on WhatsApp",
            "model_id": self.lead_model.id,
            "state": "whatsapp",
            "whatsapp_account_id": self.account_a.id,
        }
        values.update(vals)
        return self.env["ir.actions.server"].create(values)

    def run_action(self, action, records):
        return action.with_context(
            active_model=records._name,
            active_id=records[:1].id,
            active_ids=records.ids,
        ).run()

    def messages_for(self, records):
        return self.env["whatsapp.message"].search(
            [("res_model", "=", records._name), ("res_id", "in", records.ids)]
        )

    def test_template_enqueued_for_the_right_number(self):
        action = self.create_action(whatsapp_template_id=self.template.id)
        partner_b = self.env["res.partner"].create({"name": "Bruno", MOBILE: PHONE_B})
        lead_b = self.env["crm.lead"].create(
            {"name": "Solar panels", "partner_id": partner_b.id, MOBILE: False}
        )
        leads = self.lead_a | lead_b
        with mock_gateway() as gateway:
            self.assertFalse(self.run_action(action, leads))
            # Enqueue only: no HTTP call while the action runs.
            self.assertEqual(gateway.sent, [])
        messages = self.messages_for(leads)
        self.assertEqual(len(messages), 2)
        by_lead = {m.res_id: m for m in messages}
        message = by_lead[self.lead_a.id]
        self.assertEqual(message.state, "queued")
        self.assertEqual(message.phone, PHONE_A)
        self.assertEqual(message.template_id, self.template)
        self.assertEqual(
            message.template_params["body"], {"1": "Amélie Dupont", "2": "Roof repair"}
        )
        self.assertEqual(by_lead[lead_b.id].phone, PHONE_B)
        self.assertIn("Bonjour Amélie Dupont", str(self.lead_a.message_ids[0].body))

    def test_recipient_field(self):
        partner_b = self.env["res.partner"].create({"name": "Bruno", MOBILE: PHONE_B})
        # On Odoo 18 the lead's mobile (tried first without a field) differs.
        self.lead_a.write(
            {"phone": PHONE_B} | ({MOBILE: PHONE_A} if MOBILE != "phone" else {})
        )
        action = self.create_action(
            whatsapp_template_id=self.template.id, whatsapp_recipient_field="phone"
        )
        self.run_action(action, self.lead_a)
        self.assertEqual(self.messages_for(self.lead_a).phone, PHONE_B)

        lead = self.env["crm.lead"].create({"name": "Other", MOBILE: PHONE_A})
        lead.partner_id = partner_b
        if MOBILE != "phone":
            # Odoo 19 has only "phone", which a lead shares with its contact.
            lead[MOBILE] = PHONE_A
        action.whatsapp_recipient_field = "partner_id"
        self.run_action(action, lead)
        message = self.messages_for(lead)
        self.assertEqual(message.phone, PHONE_B, "the contact's number, not the lead's")
        self.assertEqual(message.partner_id, partner_b)

    def test_free_text_respects_window(self):
        action = self.create_action(whatsapp_body="Merci, nous revenons vers vous.")
        self.open_window(
            self.account_a, PHONE_A, when=self.env.cr.now() - timedelta(hours=30)
        )
        self.run_action(action, self.lead_a)
        message = self.messages_for(self.lead_a)
        self.assertEqual(message.state, "failed")
        self.assertEqual(message.failure_type, "window_closed")

        self.open_window(self.account_a, PHONE_A)
        self.run_action(action, self.lead_a)
        message = self.messages_for(self.lead_a) - message
        self.assertEqual(message.state, "queued")
        self.assertEqual(message.body, "Merci, nous revenons vers vous.")

    def test_missing_value_logged_as_failed(self):
        action = self.create_action(whatsapp_template_id=self.template.id)
        lead = self.env["crm.lead"].create({"name": "No partner", MOBILE: PHONE_B})
        self.run_action(action, lead)
        message = self.messages_for(lead)
        self.assertEqual(message.state, "failed")
        self.assertEqual(message.failure_type, "template")

    def test_constraints(self):
        with self.assertRaises(ValidationError):
            self.create_action()  # neither template nor text
        with self.assertRaises(ValidationError):
            self.create_action(whatsapp_body="Hi", whatsapp_account_id=False)
        with self.assertRaises(ValidationError):
            self.create_action(whatsapp_body="Hi", whatsapp_recipient_field="name_x")
        with self.assertRaises(ValidationError):
            self.create_action(whatsapp_body="Hi", whatsapp_recipient_field="user_id")
        with self.assertRaises(ValidationError):
            self.create_action(
                whatsapp_template_id=self.template.id,
                model_id=self.env["ir.model"]._get_id("res.partner"),
            )
        template_b = self.create_template(
            meta_template("774400110051", "other", "fr", "Hello"),
            account=self.account_b,
        )
        with self.assertRaises(ValidationError):
            self.create_action(whatsapp_template_id=template_b.id)
        self.create_action(whatsapp_body="Hi", whatsapp_recipient_field=MOBILE)

    def test_automation_rule(self):
        if "base.automation" not in self.env:
            self.skipTest("base_automation is not installed")
        action = self.create_action(whatsapp_template_id=self.template.id)
        self.env["base.automation"].create(
            {
                "name": "WhatsApp welcome",
                "model_id": self.lead_model.id,
                "trigger": "on_create",
                "action_server_ids": [(4, action.id)],
            }
        )
        partner = self.env["res.partner"].create({"name": "Chloé", MOBILE: PHONE_B})
        lead = self.env["crm.lead"].create(
            {"name": "Kitchen", "partner_id": partner.id}
        )
        message = self.messages_for(lead)
        self.assertEqual(message.state, "queued")
        self.assertEqual(message.phone, PHONE_B)
