import base64
from datetime import timedelta

from odoo.exceptions import AccessError, UserError
from odoo.tests import Form, tagged
from odoo.tools.safe_eval import safe_eval

from .common import MOBILE, PHONE_A, mock_gateway
from .test_whatsapp_template import ORDER_UPDATE, TemplateCase, meta_template

PHONE_B = "+33698765432"


@tagged("post_install", "-at_install")
class TestWhatsAppComposer(TemplateCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Composer = cls.env["whatsapp.composer"]
        cls.Message = cls.env["whatsapp.message"]
        cls.template = cls.create_template(
            meta_template(
                "774400110040",
                "lead_followup",
                "fr",
                "Bonjour {{1}}, votre demande {{2}} avance.",
            )
        )
        variables = cls.template.variable_ids
        variables[0].write({"source": "field", "field_path": "partner_id.name"})
        variables[1].write({"source": "field", "field_path": "name"})
        # Salespeople only see their own (or unassigned) leads.
        cls.lead_a.user_id = cls.user_a

    def create_lead(self, **vals):
        return self.env["crm.lead"].create(dict(vals, user_id=self.user_a.id))

    def composer(self, records, user=None, **vals):
        context = {
            "active_model": records._name,
            "active_id": records[:1].id,
            "active_ids": records.ids,
        }
        Composer = self.Composer.with_user(user or self.user_a).with_context(**context)
        return Composer.create(vals)

    def messages_for(self, records):
        return self.Message.search(
            [("res_model", "=", records._name), ("res_id", "in", records.ids)],
            order="id",
        )

    def test_text_open_window_queues_and_posts(self):
        self.open_window(self.account_a, PHONE_A)
        composer = self.composer(self.lead_a)
        self.assertEqual(composer.account_id, self.account_a)
        self.assertTrue(composer.single)
        self.assertTrue(composer.window_open)
        self.assertEqual(composer.mode, "text")
        self.assertEqual(composer.recipient_phone, PHONE_A)
        composer.body = "Votre devis S00117 est prêt."
        with mock_gateway() as gateway:
            action = composer.action_send()
        self.assertEqual(gateway.sent, [], "nothing is sent before the queue runs")
        self.assertEqual(action["params"]["type"], "success")
        message = self.messages_for(self.lead_a)
        self.assertEqual(len(message), 1)
        self.assertEqual(message.state, "queued")
        self.assertEqual(message.phone, PHONE_A)
        self.assertEqual(message.partner_id, self.partner_a)
        self.assertEqual(message.author_id, self.user_a)
        self.assertEqual(message.body, "Votre devis S00117 est prêt.")
        self.assertEqual(message.mail_message_id.res_id, self.lead_a.id)
        self.assertIn("Votre devis S00117", str(self.lead_a.message_ids[0].body))

    def test_form_view_defaults(self):
        self.open_window(self.account_a, PHONE_A)
        action = self.env.ref("whatsapp_business.whatsapp_composer_action")
        self.assertEqual(action.res_model, "whatsapp.composer")
        form = Form(
            self.Composer.with_user(self.user_a).with_context(
                active_model="crm.lead", active_id=self.lead_a.id
            )
        )
        self.assertEqual(form.mode, "text")
        form.body = "Bonjour"
        composer = form.save()
        composer.action_send()
        self.assertEqual(self.messages_for(self.lead_a).body, "Bonjour")

    def test_form_template_lines_follow_the_template(self):
        form = Form(
            self.Composer.with_user(self.user_a).with_context(
                active_model="crm.lead", active_id=self.lead_a.id
            )
        )
        self.assertEqual(form.mode, "template", "the window is closed")
        form.template_id = self.template
        self.assertEqual(len(form.line_ids), 2)
        with form.line_ids.edit(1) as line:
            self.assertEqual(line.value, "Roof repair")
            line.value = "Toiture"
        self.assertIn("Toiture", str(form.preview))
        composer = form.save()
        composer.action_send()
        message = self.messages_for(self.lead_a)
        self.assertEqual(message.template_params["body"]["2"], "Toiture")

    def test_text_closed_window_refused_before_anything(self):
        self.open_window(
            self.account_a, PHONE_A, when=self.env.cr.now() - timedelta(hours=25)
        )
        composer = self.composer(self.lead_a)
        self.assertFalse(composer.window_open)
        self.assertEqual(composer.mode, "template")
        composer.write({"mode": "text", "body": "Une question ?"})
        chatter_before = len(self.lead_a.message_ids)
        with (
            mock_gateway() as gateway,
            self.assertRaisesRegex(UserError, "24-hour window.*approved template"),
        ):
            composer.action_send()
        self.assertEqual(gateway.sent, [])
        self.assertFalse(self.messages_for(self.lead_a))
        self.assertEqual(len(self.lead_a.message_ids), chatter_before)

    def test_template_renders_variables_from_record(self):
        composer = self.composer(self.lead_a, mode="template")
        composer.template_id = self.template
        self.assertEqual(
            composer.line_ids.mapped("value"), ["Amélie Dupont", "Roof repair"]
        )
        self.assertIn("Amélie Dupont", str(composer.preview))
        # A single recipient: the values can still be edited.
        composer.line_ids[1].value = "Roof repair (urgent)"
        composer.action_send()
        message = self.messages_for(self.lead_a)
        self.assertEqual(message.state, "queued")
        self.assertEqual(message.message_type, "template")
        self.assertEqual(message.template_id, self.template)
        self.assertEqual(
            message.template_params,
            {
                "header": {},
                "body": {"1": "Amélie Dupont", "2": "Roof repair (urgent)"},
                "buttons": {},
            },
        )
        self.assertEqual(
            message.body,
            "Bonjour Amélie Dupont, votre demande Roof repair (urgent) avance.",
        )
        with mock_gateway() as gateway:
            self.Message._cron_process_queue()
        self.assertEqual(message.state, "sent")
        self.assertEqual(
            gateway.sent[0]["template"],
            {
                "name": "lead_followup",
                "language": {"code": "fr"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "Amélie Dupont"},
                            {"type": "text", "text": "Roof repair (urgent)"},
                        ],
                    }
                ],
            },
        )
        self.assertEqual(gateway.sent[0]["to"], "33612345678")

    def test_template_wrong_values_refused(self):
        composer = self.composer(self.lead_a, mode="template")
        composer.template_id = self.template
        composer.line_ids[0].value = ""
        with self.assertRaisesRegex(UserError, "empty"):
            composer.action_send()
        composer.line_ids[0].value = "Amélie\nDupont"
        with self.assertRaisesRegex(UserError, "new lines"):
            composer.action_send()
        self.assertFalse(self.messages_for(self.lead_a))

    def test_template_not_approved_or_other_model_not_offered(self):
        pending = self.create_template(
            meta_template(
                "774400110041", "pending_one", "fr", "Hi {{1}}", status="PENDING"
            )
        )
        static = self.create_template(
            meta_template("774400110042", "static_one", "fr", "Hello!"),
            model_id=self.env["ir.model"]._get_id("res.partner"),
        )
        composer = self.composer(self.lead_a, mode="template")
        # The domain the form applies, evaluated with the wizard's values.
        domain = safe_eval(
            composer._fields["template_id"].domain,
            {"account_id": composer.account_id.id, "res_model": composer.res_model},
        )
        offered = self.env["whatsapp.template"].search(domain)
        self.assertIn(self.template, offered)
        self.assertIn(static, offered, "a template without variables fits any model")
        self.assertNotIn(pending, offered)
        composer.template_id = pending
        with self.assertRaisesRegex(UserError, "not approved"):
            composer.action_send()

    def test_several_records_invalid_numbers_listed_and_skipped(self):
        partner_b = self.env["res.partner"].create(
            {"name": "Bruno Martin", MOBILE: PHONE_B}
        )
        lead_b = self.create_lead(name="Solar panels", partner_id=partner_b.id)
        lead_none = self.create_lead(name="No number", type="lead")
        lead_bad = self.create_lead(
            name="Bad number", **{MOBILE: "12"}, contact_name="Carl"
        )
        leads = self.lead_a | lead_b | lead_none | lead_bad
        composer = self.composer(leads, mode="template")
        self.assertFalse(composer.single)
        self.assertEqual(composer.mode, "template")
        composer.template_id = self.template
        # Values come from each document at send time: mapped lines are locked.
        self.assertTrue(all(composer.line_ids.mapped("locked")))
        self.assertEqual(composer.valid_count, 2)
        self.assertEqual(composer.invalid_count, 2)
        summary = str(composer.recipients_summary)
        self.assertIn("No mobile or phone number", summary)
        self.assertIn("12 is not a valid international number", summary)
        self.assertIn("No number", summary)

        action = composer.action_send()
        self.assertEqual(action["params"]["type"], "warning")
        messages = self.messages_for(leads)
        self.assertEqual(len(messages), 4)
        by_lead = {m.res_id: m for m in messages}
        self.assertEqual(by_lead[self.lead_a.id].state, "queued")
        self.assertEqual(by_lead[self.lead_a.id].phone, PHONE_A)
        self.assertEqual(
            by_lead[self.lead_a.id].template_params["body"],
            {"1": "Amélie Dupont", "2": "Roof repair"},
        )
        self.assertEqual(by_lead[lead_b.id].state, "queued")
        self.assertEqual(by_lead[lead_b.id].phone, PHONE_B)
        self.assertEqual(
            by_lead[lead_b.id].template_params["body"],
            {"1": "Bruno Martin", "2": "Solar panels"},
        )
        for lead in (lead_none, lead_bad):
            message = by_lead[lead.id]
            self.assertEqual(message.state, "failed")
            self.assertEqual(message.failure_type, "invalid_number")
            self.assertFalse(message.phone)
        self.assertIn("not a valid", by_lead[lead_bad.id].failure_title)

    def test_several_records_missing_value_fails_that_one(self):
        partner_b = self.env["res.partner"].create({"name": "Bruno", MOBILE: PHONE_B})
        lead_b = self.create_lead(name="Solar panels", partner_id=partner_b.id)
        # A lead with a number but no partner: {{1}} would be empty.
        lead_c = self.create_lead(name="Direct", **{MOBILE: "+33611223344"})
        composer = self.composer(self.lead_a | lead_b | lead_c, mode="template")
        composer.template_id = self.template
        self.assertIn("empty", str(composer.recipients_summary))
        composer.action_send()
        by_lead = {
            m.res_id: m for m in self.messages_for(self.lead_a | lead_b | lead_c)
        }
        self.assertEqual(by_lead[lead_b.id].state, "queued")
        self.assertEqual(by_lead[lead_c.id].state, "failed")
        self.assertEqual(by_lead[lead_c.id].failure_type, "template")
        self.assertIn("empty", by_lead[lead_c.id].failure_title)

    def test_blacklisted_number_refused(self):
        self.env["phone.blacklist"].sudo().add(PHONE_A)
        self.open_window(self.account_a, PHONE_A)
        composer = self.composer(self.lead_a, body="Hello")
        self.assertIn("blacklisted", str(composer.recipients_summary))
        with self.assertRaisesRegex(UserError, "blacklisted"):
            composer.action_send()
        self.assertFalse(self.messages_for(self.lead_a))

        partner_b = self.env["res.partner"].create({"name": "Bruno", MOBILE: PHONE_B})
        lead_b = self.create_lead(name="Other", partner_id=partner_b.id)
        composer = self.composer(self.lead_a | lead_b, mode="template")
        composer.template_id = self.template
        composer.action_send()
        by_lead = {m.res_id: m for m in self.messages_for(self.lead_a | lead_b)}
        self.assertEqual(by_lead[self.lead_a.id].state, "failed")
        self.assertEqual(by_lead[self.lead_a.id].failure_type, "opted_out")
        self.assertEqual(by_lead[lead_b.id].state, "queued")

    def test_partner_composer_and_attachment(self):
        self.open_window(self.account_a, PHONE_A)
        composer = self.composer(
            self.partner_a,
            body="Le plan",
            attachment_file=base64.b64encode(b"%PDF-1.4 fake"),
            attachment_filename="plan.pdf",
        )
        self.assertEqual(composer.recipient_phone, PHONE_A)
        composer.action_send()
        message = self.messages_for(self.partner_a)
        self.assertEqual(message.message_type, "document")
        self.assertEqual(message.attachment_id.mimetype, "application/pdf")
        self.assertEqual(message.attachment_id.res_model, "whatsapp.message")
        self.assertEqual(message.attachment_id.res_id, message.id)
        self.assertEqual(message.partner_id, self.partner_a)

        composer = self.composer(
            self.partner_a,
            body="x",
            attachment_file=base64.b64encode(b"GIF89a"),
            attachment_filename="anim.gif",
        )
        with self.assertRaisesRegex(UserError, "does not accept"):
            composer.action_send()

    def test_other_company_account_refused(self):
        accounts = self.env["whatsapp.account"].with_user(self.user_a).search([])
        self.assertNotIn(self.account_b, accounts)
        template_b = self.create_template(ORDER_UPDATE, account=self.account_b)
        self.open_window(self.account_b, PHONE_A)
        # The wizard cannot even be opened on another company's account.
        with self.assertRaises(AccessError):
            self.composer(self.lead_a, account_id=self.account_b.id, body="Hi")
        composer = self.composer(self.lead_a, body="Hi")
        with self.assertRaises(AccessError):
            composer.write({"account_id": self.account_b.id})
        with self.assertRaises(UserError):  # AccessError is a UserError
            composer.write({"mode": "template", "template_id": template_b.id})
            composer.action_send()
        self.assertFalse(self.messages_for(self.lead_a))
