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
            .with_context(**action["context"])
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
        self.assertEqual(
            (message.res_model, message.res_id),
            (
                "whatsapp.account",
                self.account_a.id,
            ),
        )
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
        self.assertFalse(form.window_open)
        with self.assertRaises(AssertionError):
            form.mode = "text"  # read-only in the form while the window is closed
        # The server refuses it too (RPC does not go through the form).
        wizard = (
            self.env["whatsapp.test.message"]
            .with_user(self.manager_a)
            .create(
                {
                    "account_id": self.account_a.id,
                    "phone": PHONE_A,
                    "mode": "text",
                    "body": "Ping from the test button",
                }
            )
        )
        with self.assertRaisesRegex(UserError, "last 24 hours"):
            wizard.action_send()
        self.assertFalse(
            self.env["whatsapp.message"].search_count(
                [("body", "=", "Ping from the test button")]
            )
        )
        self.open_window(self.account_a, PHONE_A)
        form = self.open_wizard()
        form.phone = PHONE_A
        self.assertTrue(form.window_open)
        form.mode = "text"
        form.body = "Ping from the test button"
        wizard = form.save()
        wizard.action_send()
        self.assertEqual(wizard.message_id.message_type, "text")
        self.assertEqual(wizard.message_id.body, "Ping from the test button")
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


AD = {
    "source_url": "https://www.instagram.com/p/Cx1AbCdEf/",
    "source_id": "120210000000000001",
    "source_type": "ad",
    "headline": "Spring kitchens -20%",
    "body": "Design your kitchen with us",
    "media_type": "image",
    "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEk"
    "R7JwFF4XvnO2E4Nx0-eM-GABDLOPaOdRMv-_zfUQ2a",
}


@tagged("post_install", "-at_install")
class TestAdAttribution(ToolkitCase):
    def test_ad_reply_fills_the_lead_and_the_message(self):
        self.deliver(self.inbound("wamid.AD-1", text={"body": "Hi!"}, referral=AD))
        message = self.received("wamid.AD-1")
        self.assertEqual(message.ad_id, AD["source_id"])
        self.assertEqual(message.ad_headline, AD["headline"])
        self.assertEqual(message.ad_source_url, AD["source_url"])
        self.assertEqual(message.ad_ctwa_clid, AD["ctwa_clid"])
        lead = self.lead_a  # the contact's open lead is updated, not duplicated
        self.assertEqual((message.res_model, message.res_id), ("crm.lead", lead.id))
        self.assertEqual(lead.source_id.name, "Instagram")
        self.assertEqual(lead.medium_id.name, "Click-to-WhatsApp")
        self.assertEqual(
            lead.campaign_id.name, "Spring kitchens -20% (120210000000000001)"
        )
        self.assertEqual(lead.whatsapp_ad_id, AD["source_id"])
        self.assertEqual(lead.whatsapp_ad_headline, AD["headline"])
        self.assertEqual(lead.whatsapp_ad_source_url, AD["source_url"])
        self.assertEqual(lead.whatsapp_ctwa_clid, AD["ctwa_clid"])

    def test_ad_reply_creates_a_lead_and_leads_group_by_ad(self):
        self.account_a.create_lead = False
        self.lead_a.active = False
        facebook_ad = dict(AD, source_url="https://fb.me/2Kx9", headline="Roofs")
        self.deliver(self.inbound("wamid.AD-2", referral=facebook_ad))
        lead = self.env["crm.lead"].browse(self.received("wamid.AD-2").res_id)
        self.assertEqual(lead.partner_id, self.partner_a)
        self.assertEqual(lead.source_id.name, "Facebook")
        self.assertEqual(lead.campaign_id.name, "Roofs (120210000000000001)")
        groups = self.env["crm.lead"]._read_group(
            [("id", "=", lead.id)], ["whatsapp_ad_headline"], ["__count"]
        )
        self.assertEqual(groups, [("Roofs", 1)])
        # The same ad again: same campaign, no duplicate.
        self.deliver(self.inbound("wamid.AD-3", referral=facebook_ad))
        self.assertEqual(
            self.env["utm.campaign"].search_count(
                [("name", "=", "Roofs (120210000000000001)")]
            ),
            1,
        )

    def test_message_without_referral_keeps_the_lead_utm(self):
        source = self.env["utm.source"].create({"name": "Trade fair"})
        self.lead_a.source_id = source
        self.deliver(self.inbound("wamid.PLAIN-1"))
        self.assertEqual(self.lead_a.source_id, source)
        self.assertFalse(self.received("wamid.PLAIN-1").ad_id)


@tagged("post_install", "-at_install")
class TestMessageCost(ToolkitCase):
    def sent_message(self, wamid, phone=PHONE_A, account=None):
        return self.env["whatsapp.message"].create(
            {
                "account_id": (account or self.account_a).id,
                "direction": "outbound",
                "state": "sent",
                "message_type": "template",
                "phone": phone,
                "wamid": wamid,
                "sent_date": self.env.cr.now(),
            }
        )

    def priced(self, wamid, category, pricing_type="regular", phone=PHONE_A):
        message = self.sent_message(wamid, phone=phone)
        self.deliver(
            self.status(
                wamid,
                "delivered",
                pricing={"billable": True, "category": category, "type": pricing_type},
                recipient=phone.lstrip("+"),
            )
        )
        return message

    def test_billable_message_costs_its_market_and_category_rate(self):
        shipped = self.env.ref("whatsapp_business.rate_france_marketing")
        self.assertEqual(shipped.currency_id, self.env.ref("base.USD"))
        self.assertTrue(shipped.source)
        message = self.priced("wamid.COST-1", "marketing")
        self.assertEqual(message.pricing_market, "france")
        self.assertEqual(message.cost_state, "billed")
        self.assertAlmostEqual(message.cost, shipped.price)
        self.assertGreater(message.cost, 0)
        self.assertEqual(message.cost_currency_id, shipped.currency_id)
        spain = self.priced("wamid.COST-2", "utility", phone="+34612000111")
        self.assertEqual(spain.pricing_market, "spain")
        self.assertAlmostEqual(
            spain.cost, self.env.ref("whatsapp_business.rate_spain_utility").price
        )

    def test_free_messages_cost_nothing(self):
        for wamid, category, pricing_type in (
            ("wamid.FREE-1", "service", "free_customer_service"),
            ("wamid.FREE-2", "utility", "free_customer_service"),
            ("wamid.FREE-3", "marketing", "free_entry_point"),
        ):
            with self.subTest(category=category, type=pricing_type):
                message = self.priced(wamid, category, pricing_type)
                self.assertEqual(message.cost_state, "free")
                self.assertEqual(message.cost, 0.0)
        unpriced = self.sent_message("wamid.NOT-YET")
        self.assertFalse(unpriced.cost_state, "not priced before Meta says so")

    def test_company_and_later_rates_win(self):
        Rate = self.env["whatsapp.pricing.rate"]
        eur = self.env.ref("base.EUR")
        Rate.create(
            {
                "market": "france",
                "category": "marketing",
                "price": 0.07,
                "currency_id": eur.id,
                "date_start": "2025-07-01",
                "company_id": self.company_a.id,
                "source": "Negotiated with Meta's partner",
            }
        )
        Rate.create(
            {
                "market": "france",
                "category": "marketing",
                "price": 9.0,
                "date_start": "2099-01-01",  # not yet valid
                "company_id": self.company_a.id,
            }
        )
        message = self.priced("wamid.COST-3", "marketing")
        self.assertAlmostEqual(message.cost, 0.07)
        self.assertEqual(message.cost_currency_id, eur)
        missing = self.priced("wamid.COST-4", "authentication_international")
        self.assertEqual(missing.cost_state, "unrated")
        self.assertEqual(missing.cost, 0.0)

    def test_month_cost_on_the_account_and_report(self):
        first = self.priced("wamid.MONTH-1", "marketing")
        second = self.priced("wamid.MONTH-2", "authentication")
        self.priced("wamid.MONTH-3", "service", "free_customer_service")
        old = self.priced("wamid.MONTH-4", "marketing")
        old.sent_date = "2020-01-15 10:00:00"  # another month
        self.account_a.invalidate_recordset(["month_cost"])
        self.assertAlmostEqual(self.account_a.month_cost, first.cost + second.cost)
        self.assertEqual(self.account_a.month_cost_currency_id, first.cost_currency_id)
        action = self.account_a.action_open_costs()
        rows = self.env["whatsapp.message"]._read_group(
            action["domain"],
            ["company_id", "account_id", "cost_date:month", "pricing_category"],
            ["cost:sum"],
        )
        by_category = {
            (row[2].strftime("%Y-%m"), row[3]): row[4]
            for row in rows
            if row[1] == self.account_a
        }
        this_month = first.cost_date.strftime("%Y-%m")
        self.assertAlmostEqual(by_category[(this_month, "marketing")], first.cost)
        self.assertAlmostEqual(by_category[("2020-01", "marketing")], old.cost)
        self.assertEqual(by_category[(this_month, "service")], 0.0)

    def test_rate_card_rights(self):
        shared = self.env.ref("whatsapp_business.rate_france_marketing")
        self.assertTrue(shared.with_user(self.user_a).read(["price"]))
        with self.assertRaises(AccessError):
            shared.with_user(self.user_a).write({"price": 0.01})
        with self.assertRaises(AccessError):
            shared.with_user(self.manager_a).write({"price": 0.01})
        own = (
            self.env["whatsapp.pricing.rate"]
            .with_user(self.manager_a)
            .create(
                {
                    "market": "france",
                    "category": "utility",
                    "price": 0.02,
                    "date_start": "2026-01-01",
                    "company_id": self.company_a.id,
                }
            )
        )
        own.write({"price": 0.03})
        with self.assertRaises(AccessError):
            self.env["whatsapp.pricing.rate"].with_user(self.manager_a).create(
                {
                    "market": "france",
                    "category": "utility",
                    "price": 0.02,
                    "date_start": "2026-01-01",
                    "company_id": self.company_b.id,
                }
            )
        admin = self.env.ref("base.user_admin")
        shared.with_user(admin).write({"price": 0.09})
        self.assertAlmostEqual(shared.price, 0.09)
