"""Chat actions (README 7): quoted replies, reactions both ways, interactive
messages and the customer's choice, read receipts, canned responses, and the
one outbound path shared by the composer, the server action and the test
message."""

import json
import time
from datetime import timedelta
from unittest.mock import patch

from odoo import Command
from odoo.exceptions import AccessError, UserError
from odoo.tests import Form, tagged
from odoo.tools import mute_logger

from ..wa_cloud.errors import error_from_response
from .common import MOBILE, PHONE_A, mock_gateway
from .test_webhook_processing import WebhookCase
from .test_whatsapp_template import TemplateCase, meta_template

QUEUE_LOGGERS = (
    "odoo.addons.whatsapp_business.models.whatsapp_message",
    "odoo.addons.whatsapp_business.wa_cloud.sender",
)


class ChatCase(WebhookCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Message = cls.env["whatsapp.message"]
        # Salespeople only see their own (or unassigned) leads.
        cls.lead_a.user_id = cls.user_a

    def run_queue(self, **gateway_options):
        with mock_gateway(**gateway_options) as gateway:
            self.Message._cron_process_queue()
        return gateway

    def composer(self, records, user=None, **vals):
        context = {
            "active_model": records._name,
            "active_id": records[:1].id,
            "active_ids": records.ids,
        }
        Composer = self.env["whatsapp.composer"].with_user(user or self.user_a)
        return Composer.with_context(**context).create(
            dict(vals, account_id=self.account_a.id)
        )

    def customer_writes(self, wamid, message_type="text", when=None, **content):
        """Deliver an inbound message of the customer through the webhook path."""
        if message_type == "text" and "text" not in content:
            content["text"] = {"body": "Bonjour"}
        if when:
            content["timestamp"] = str(int(when))
        self.deliver(self.inbound(wamid, message_type, **content))
        return self.received(wamid)

    def sent_text(self, body="Nouvelle offre"):
        """An outbound text about lead_a, sent (it has its wamid)."""
        self.window_open()
        message = self.Message._queue_outbound(
            self.account_a,
            [
                {
                    "record": self.lead_a,
                    "partner": self.partner_a,
                    "phone": PHONE_A,
                    "body": body,
                }
            ],
        )
        self.run_queue()
        self.assertEqual(message.state, "sent")
        return message

    def mine(self, domain):
        """Messages of this test's account (the database may hold others)."""
        return self.Message.search([("account_id", "=", self.account_a.id), *domain])

    def window_open(self):
        if not self.Message._window_open_map(self.account_a, [PHONE_A])[PHONE_A]:
            self.open_window(self.account_a, PHONE_A)

    def chatter(self, message):
        return str(message.mail_message_id.body)


@tagged("post_install", "-at_install")
class TestQuotedReplies(ChatCase):
    def test_reply_from_the_composer_quotes_the_customers_message(self):
        question = self.customer_writes(
            "wamid.IN-Q", text={"body": "Le devis inclut-il la pose ?"}
        )
        composer = self.composer(
            self.lead_a, reply_to_message_id=question.id, body="Oui, pose comprise."
        )
        composer.action_send()
        reply = self.mine([("body", "=", "Oui, pose comprise.")])
        self.assertEqual(reply.reply_to_message_id, question)
        self.assertIn("Le devis inclut-il la pose ?", self.chatter(reply))
        gateway = self.run_queue()
        (payload,) = gateway.sent
        self.assertEqual(payload["context"], {"message_id": "wamid.IN-Q"})
        self.assertEqual(payload["text"]["body"], "Oui, pose comprise.")

    def test_reply_button_opens_the_composer_quoting_the_message(self):
        question = self.customer_writes("wamid.IN-R", text={"body": "Un devis ?"})
        action = question.with_user(self.user_a).action_reply()
        composer = Form(
            self.env["whatsapp.composer"]
            .with_user(self.user_a)
            .with_context(**action["context"])
        )
        self.assertEqual(composer.reply_to_message_id, question)
        self.assertEqual(composer.mode, "text")
        composer.body = "Oui, demain."
        composer.save().action_send()
        reply = self.mine([("body", "=", "Oui, demain.")])
        self.assertEqual(reply.reply_to_message_id, question)
        self.assertEqual((reply.res_model, reply.res_id), ("crm.lead", self.lead_a.id))
        with self.assertRaisesRegex(UserError, "received from a contact"):
            reply.action_reply()

    def test_inbound_reply_links_the_quoted_message(self):
        offer = self.sent_text()
        answer = self.customer_writes(
            "wamid.IN-ANSWER",
            text={"body": "Oui, ça m'intéresse"},
            context={"from": "15550100001", "id": offer.wamid},
        )
        self.assertEqual(answer.reply_to_message_id, offer)
        self.assertEqual(answer.reply_to_wamid, offer.wamid)
        self.assertEqual(
            (answer.res_model, answer.res_id), ("crm.lead", self.lead_a.id)
        )
        self.assertIn("Nouvelle offre", self.chatter(answer))

    def test_a_reply_quotes_one_contact_only(self):
        question = self.customer_writes("wamid.IN-Q2")
        other = self.env["crm.lead"].create(
            {"name": "Other", MOBILE: "+33698765432", "user_id": self.user_a.id}
        )
        composer = self.composer(
            self.lead_a | other, reply_to_message_id=question.id, body="Oui"
        )
        composer.mode = "text"
        with self.assertRaisesRegex(UserError, "one contact only"):
            composer.action_send()


@tagged("post_install", "-at_install")
class TestReactions(ChatCase):
    def test_customer_reaction_shows_on_our_message_without_a_post(self):
        offer = self.sent_text()
        posts = len(self.lead_a.message_ids)
        now = time.time()
        reaction = self.customer_writes(
            "wamid.IN-REACT-1",
            "reaction",
            when=now,
            reaction={"message_id": offer.wamid, "emoji": "👍"},
        )
        self.assertEqual(reaction.message_type, "reaction")
        self.assertEqual(reaction.reply_to_message_id, offer)
        self.assertFalse(reaction.mail_message_id)
        self.assertEqual(offer.reaction_emoji, "👍")
        self.assertIn("👍", self.chatter(offer))
        self.assertEqual(len(self.lead_a.message_ids), posts, "no chatter post")

        # Removed, then an older reaction delivered late changes nothing.
        self.customer_writes(
            "wamid.IN-REACT-2",
            "reaction",
            when=now + 5,
            reaction={"message_id": offer.wamid, "emoji": ""},
        )
        self.assertFalse(offer.reaction_emoji)
        self.assertNotIn("👍", self.chatter(offer))
        self.customer_writes(
            "wamid.IN-REACT-0",
            "reaction",
            when=now - 5,
            reaction={"message_id": offer.wamid, "emoji": "😡"},
        )
        self.assertFalse(offer.reaction_emoji)
        self.assertEqual(len(self.lead_a.message_ids), posts)

    def test_reaction_creates_no_lead(self):
        self.account_a.create_lead = True
        self.lead_a.active = False
        leads = self.env["crm.lead"].search_count([])
        self.customer_writes(
            "wamid.IN-REACT-X",
            "reaction",
            reaction={"message_id": "wamid.UNKNOWN", "emoji": "👍"},
        )
        self.assertEqual(self.env["crm.lead"].search_count([]), leads)

    def test_we_react_to_a_customer_message(self):
        question = self.customer_writes("wamid.IN-HELLO")
        posts = len(self.lead_a.message_ids)
        reaction = question.with_user(self.user_a)._send_reaction("❤️")
        self.assertEqual(reaction.message_type, "reaction")
        self.assertEqual(reaction.state, "queued")
        self.assertEqual(reaction.reply_to_message_id, question)
        self.assertEqual(question.reaction_emoji, "❤️")
        self.assertIn("❤️", self.chatter(question))
        self.assertEqual(len(self.lead_a.message_ids), posts, "no chatter post")
        with mock_gateway() as gateway:
            self.Message._cron_process_queue()
            (payload,) = gateway.sent
            self.assertEqual(payload["type"], "reaction")
            self.assertEqual(
                payload["reaction"], {"message_id": "wamid.IN-HELLO", "emoji": "❤️"}
            )
            self.assertNotIn("context", payload)
            self.assertEqual(reaction.state, "sent")

            # An empty emoji takes our reaction back.
            removal = question._send_reaction("")
            self.assertFalse(question.reaction_emoji)
            self.Message._cron_process_queue()
        self.assertEqual(gateway.sent[1]["reaction"]["emoji"], "")
        self.assertEqual(removal.state, "sent")

    def test_reactions_that_cannot_go(self):
        offer = self.sent_text()
        with self.assertRaisesRegex(UserError, "received from the customer"):
            offer._send_reaction("👍")
        question = self.customer_writes("wamid.IN-HI")
        with self.assertRaisesRegex(UserError, "one emoji"):
            question._send_reaction("ok")
        # Outside the 24-hour window a reaction is refused like free text.
        self.mine([("direction", "=", "inbound")]).write(
            {"received_date": self.env.cr.now() - timedelta(hours=25)}
        )
        reaction = question._send_reaction("👍")
        self.assertEqual(reaction.failure_type, "window_closed")
        self.assertFalse(question.reaction_emoji)


@tagged("post_install", "-at_install")
class TestInteractive(ChatCase):
    def interactive_composer(self, choices, **vals):
        self.window_open()
        return self.composer(
            self.lead_a,
            mode="interactive",
            body=vals.pop("body", "Confirmez-vous le RDV du 23/11 à 10h ?"),
            choice_ids=[
                Command.create(
                    dict(
                        zip(
                            ("title", "reply_id", "description")[: len(c)],
                            c,
                            strict=True,
                        )
                    )
                )
                for c in choices
            ],
            **vals,
        )

    def test_buttons_from_the_composer_and_the_customers_choice(self):
        composer = self.interactive_composer(
            [("Confirmer", "appt_confirm"), ("Déplacer", "appt_move")],
            interactive_footer="Acme",
        )
        composer.action_send()
        message = self.Message.search(
            [
                ("account_id", "=", self.account_a.id),
                ("message_type", "=", "interactive"),
            ]
        )
        self.assertEqual(message.state, "queued")
        self.assertEqual(message.body, "Confirmez-vous le RDV du 23/11 à 10h ?")
        chatter = self.chatter(message)
        for text in ("Confirmez-vous", "Confirmer", "Déplacer"):
            self.assertIn(text, chatter)
        gateway = self.run_queue()
        (payload,) = gateway.sent
        self.assertEqual(
            payload["interactive"],
            {
                "type": "button",
                "body": {"text": "Confirmez-vous le RDV du 23/11 à 10h ?"},
                "footer": {"text": "Acme"},
                "action": {
                    "buttons": [
                        {
                            "type": "reply",
                            "reply": {"id": "appt_confirm", "title": "Confirmer"},
                        },
                        {
                            "type": "reply",
                            "reply": {"id": "appt_move", "title": "Déplacer"},
                        },
                    ]
                },
            },
        )
        answer = self.customer_writes(
            "wamid.IN-BTN",
            "interactive",
            context={"from": "15550100001", "id": message.wamid},
            interactive={
                "type": "button_reply",
                "button_reply": {"id": "appt_confirm", "title": "Confirmer"},
            },
        )
        self.assertEqual(answer.interactive_reply_id, "appt_confirm")
        self.assertEqual(answer.interactive_reply_title, "Confirmer")
        self.assertEqual(answer.reply_to_message_id, message)
        self.assertEqual(answer.lead_id, self.lead_a)
        self.assertIn("Confirmer", self.chatter(answer))
        self.assertEqual(
            self.mine([("interactive_reply_id", "=", "appt_confirm")]), answer
        )

    def test_list_from_the_composer_and_the_customers_row(self):
        composer = self.interactive_composer(
            [
                ("Lun. 23/11 10:00", "slot_mon_10", "Agence Lyon"),
                ("Mar. 24/11 14:00", False, False),
            ],
            body="Choisissez un créneau",
            interactive_type="list",
            list_button="Créneaux",
        )
        composer.action_send()
        gateway = self.run_queue()
        interactive = gateway.sent[0]["interactive"]
        self.assertEqual(interactive["type"], "list")
        self.assertEqual(interactive["action"]["button"], "Créneaux")
        self.assertEqual(
            interactive["action"]["sections"],
            [
                {
                    "rows": [
                        {
                            "id": "slot_mon_10",
                            "title": "Lun. 23/11 10:00",
                            "description": "Agence Lyon",
                        },
                        # Without an id, the title is the id.
                        {"id": "Mar. 24/11 14:00", "title": "Mar. 24/11 14:00"},
                    ]
                }
            ],
        )
        answer = self.customer_writes(
            "wamid.IN-LIST",
            "interactive",
            interactive={
                "type": "list_reply",
                "list_reply": {"id": "slot_mon_10", "title": "Lun. 23/11 10:00"},
            },
        )
        self.assertEqual(
            (answer.interactive_reply_id, answer.interactive_reply_title),
            ("slot_mon_10", "Lun. 23/11 10:00"),
        )

    def test_template_quick_reply_is_stored_as_a_choice(self):
        answer = self.customer_writes(
            "wamid.IN-QR",
            "button",
            button={"text": "Rappelez-moi", "payload": "CALL_ME"},
        )
        self.assertEqual(answer.interactive_reply_id, "CALL_ME")
        self.assertEqual(answer.interactive_reply_title, "Rappelez-moi")

    def test_automation_rule_on_the_reply_id(self):
        if "base.automation" not in self.env:
            self.skipTest("base_automation is not installed")
        model = self.env["ir.model"]._get("whatsapp.message")
        action = self.env["ir.actions.server"].create(
            {
                "name": "Hot lead on confirmation",
                "model_id": model.id,
                "state": "code",
                "code": "record.lead_id.write({'priority': '3'})",
            }
        )
        self.env["base.automation"].create(
            {
                "name": "Appointment confirmed on WhatsApp",
                "model_id": model.id,
                "trigger": "on_create_or_write",
                "filter_domain": "[('interactive_reply_id', '=', 'appt_confirm')]",
                "action_server_ids": [Command.link(action.id)],
            }
        )
        self.lead_a.priority = "0"
        self.customer_writes(
            "wamid.IN-MOVE",
            "interactive",
            interactive={
                "type": "button_reply",
                "button_reply": {"id": "appt_move", "title": "Déplacer"},
            },
        )
        self.assertEqual(self.lead_a.priority, "0")
        self.customer_writes(
            "wamid.IN-OK",
            "interactive",
            interactive={
                "type": "button_reply",
                "button_reply": {"id": "appt_confirm", "title": "Confirmer"},
            },
        )
        self.assertEqual(self.lead_a.priority, "3")

    def test_composer_refuses_what_meta_would(self):
        cases = [
            ([("A", "a"), ("B", "b"), ("C", "c"), ("D", "d")], {}, "4 buttons given"),
            ([("Oui", "a"), ("Oui", "b")], {}, "button title 'Oui' is used twice"),
            ([("x" * 21, "a")], {}, r"button 1 title is 21 characters long \(max 20\)"),
            ([], {}, "0 buttons given"),
            (
                [(f"Row {i}", f"r{i}") for i in range(11)],
                {"interactive_type": "list", "list_button": "Menu"},
                "11 rows given",
            ),
            ([("A", "a")], {"body": ""}, "Write the message"),
        ]
        for choices, vals, error in cases:
            with self.subTest(error):
                composer = self.interactive_composer(choices, **vals)
                with self.assertRaisesRegex(UserError, error):
                    composer.action_send()
        self.assertFalse(
            self.Message.search(
                [
                    ("account_id", "=", self.account_a.id),
                    ("message_type", "=", "interactive"),
                ]
            )
        )

    def test_buttons_only_in_an_open_window(self):
        composer = self.interactive_composer([("Oui", "yes")])
        self.mine([("direction", "=", "inbound")]).write(
            {"received_date": self.env.cr.now() - timedelta(hours=25)}
        )
        composer.invalidate_recordset()
        with self.assertRaisesRegex(UserError, "24-hour window"):
            composer.action_send()


@tagged("post_install", "-at_install")
class TestReadReceipts(ChatCase):
    def test_one_receipt_per_conversation_and_only_once(self):
        first = self.customer_writes("wamid.IN-1", when=time.time() - 60)
        second = self.customer_writes("wamid.IN-2", when=time.time())
        conversation = first | second
        queued = conversation._mark_as_read()
        self.assertEqual(queued, second, "the newest marks the earlier ones")
        self.assertEqual(first.read_receipt_state, "skipped")
        self.assertEqual(second.read_receipt_state, "pending")
        gateway = self.run_queue()
        self.assertEqual(gateway.reads, ["wamid.IN-2"])
        self.assertEqual(second.read_receipt_state, "sent")
        # Opening the conversation again sends nothing more.
        self.assertFalse(conversation._mark_as_read())
        self.assertEqual(self.run_queue().reads, [])
        # A new message gets its own receipt.
        third = self.customer_writes("wamid.IN-3")
        self.assertEqual((conversation | third)._mark_as_read(), third)
        self.assertEqual(self.run_queue().reads, ["wamid.IN-3"])

    def test_account_switch_off_sends_none(self):
        self.account_a.send_read_receipts = False
        message = self.customer_writes("wamid.IN-OFF")
        self.assertFalse(message._mark_as_read())
        self.assertFalse(message.read_receipt_state)
        self.assertEqual(self.run_queue().reads, [])
        # Switched back on, the next opening marks it.
        self.account_a.send_read_receipts = True
        self.assertEqual(message._mark_as_read(), message)
        self.assertEqual(self.run_queue().reads, ["wamid.IN-OFF"])

    def test_outbound_and_old_messages_get_no_receipt(self):
        offer = self.sent_text()
        old = self.customer_writes("wamid.IN-OLD", when=time.time() - 31 * 86400)
        self.assertFalse((offer | old)._mark_as_read())
        self.assertFalse(offer.read_receipt_state)
        self.assertEqual(old.read_receipt_state, "skipped")

    @mute_logger(*QUEUE_LOGGERS)
    def test_refused_receipt_is_failed_and_tried_at_the_next_opening(self):
        message = self.customer_writes("wamid.IN-REFUSED")
        message._mark_as_read()
        refused = error_from_response(
            400,
            json.dumps(
                {"error": {"code": 131009, "message": "Parameter value is not valid"}}
            ).encode(),
            {},
        )
        gateway = self.run_queue(read_error=refused)
        self.assertEqual(gateway.reads, [])
        self.assertEqual(message.read_receipt_state, "failed")
        self.assertEqual(message._mark_as_read(), message)
        self.assertEqual(self.run_queue().reads, ["wamid.IN-REFUSED"])

    def test_receipts_go_with_the_send_queue_and_its_account_hold(self):
        message = self.customer_writes("wamid.IN-HELD")
        self.account_a.sudo().sending_paused = True
        message._mark_as_read()
        self.assertEqual(self.run_queue().reads, [])
        self.assertEqual(message.read_receipt_state, "pending")
        self.account_a.sudo().sending_paused = False
        self.assertEqual(self.run_queue().reads, ["wamid.IN-HELD"])


@tagged("post_install", "-at_install")
class TestCannedResponses(ChatCase):
    def test_canned_response_fills_the_body(self):
        self.open_window(self.account_a, PHONE_A)
        canned = (
            self.env["mail.canned.response"]
            .with_user(self.user_a)
            .create({"source": "devis", "substitution": "Votre devis est prêt."})
        )
        form = Form(
            self.env["whatsapp.composer"]
            .with_user(self.user_a)
            .with_context(active_model="crm.lead", active_id=self.lead_a.id)
        )
        self.assertEqual(form.mode, "text")
        form.canned_response_id = canned
        self.assertEqual(form.body, "Votre devis est prêt.")
        form.body = "Bonjour,"
        form.canned_response_id = self.env["mail.canned.response"]
        form.canned_response_id = canned
        self.assertEqual(form.body, "Bonjour,\nVotre devis est prêt.")
        form.save().action_send()
        message = self.mine(
            [("res_model", "=", "crm.lead"), ("res_id", "=", self.lead_a.id)]
        )
        self.assertEqual(message.body, "Bonjour,\nVotre devis est prêt.")

    def test_someone_elses_private_response_cannot_be_used(self):
        private = self.env["mail.canned.response"].create(
            {"source": "secret", "substitution": "Prix plancher : 4 200 €"}
        )
        shared = self.env["mail.canned.response"].create(
            {
                "source": "hello",
                "substitution": "Bonjour !",
                "group_ids": [Command.link(self.env.ref("base.group_user").id)],
            }
        )
        composer = self.composer(self.lead_a)
        composer.canned_response_id = shared
        composer._onchange_canned_response_id()
        self.assertEqual(composer.body, "Bonjour !")
        composer.canned_response_id = private
        with self.assertRaises(AccessError):
            composer._onchange_canned_response_id()


@tagged("post_install", "-at_install")
class TestOneOutboundPath(TemplateCase):
    """Composer, server action and test message build messages the same way."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.template = cls.create_template(
            meta_template(
                "774400110090", "lead_hello", "fr", "Bonjour {{1}}, merci pour {{2}}."
            )
        )
        variables = cls.template.variable_ids
        variables[0].write({"source": "field", "field_path": "partner_id.name"})
        variables[1].write({"source": "field", "field_path": "name"})
        cls.lead_a.user_id = cls.user_a
        cls.plain = cls.create_template(
            meta_template("774400110091", "plain_hello", "fr", "Bonjour !")
        )

    def spies(self):
        """Count the calls of the recipient lookup and of _queue_outbound."""
        calls = {"recipients": 0, "queue": 0}
        Lead = type(self.env["crm.lead"])
        Message = type(self.env["whatsapp.message"])
        lookup = Lead._whatsapp_get_recipients_info
        queue = Message._queue_outbound

        def spy_lookup(records, *args, **kwargs):
            calls["recipients"] += 1
            return lookup(records, *args, **kwargs)

        def spy_queue(model, account, items):
            calls["queue"] += 1
            return queue(model, account, items)

        Composer = type(self.env["whatsapp.composer"])

        def no_composer(*args, **kwargs):
            raise AssertionError("the server action must not use the composer")

        patches = [
            patch.object(Lead, "_whatsapp_get_recipients_info", spy_lookup),
            patch.object(Message, "_queue_outbound", spy_queue),
        ]
        composer_patches = [
            patch.object(Composer, name, no_composer)
            for name in ("create", "new", "default_get", "action_send")
        ]
        return calls, patches, composer_patches

    def test_server_action_uses_the_base_lookup_and_the_queue_not_the_composer(self):
        action = self.env["ir.actions.server"].create(
            {
                "name": "Hello on WhatsApp",
                "model_id": self.env["ir.model"]._get_id("crm.lead"),
                "state": "whatsapp",
                "whatsapp_account_id": self.account_a.id,
                "whatsapp_template_id": self.template.id,
            }
        )
        calls, patches, composer_patches = self.spies()
        for patcher in patches + composer_patches:
            patcher.start()
            self.addCleanup(patcher.stop)
        action.with_context(
            active_model="crm.lead",
            active_id=self.lead_a.id,
            active_ids=self.lead_a.ids,
        ).run()
        self.assertEqual(calls, {"recipients": 1, "queue": 1})
        message = self.env["whatsapp.message"].search(
            [("res_model", "=", "crm.lead"), ("res_id", "=", self.lead_a.id)]
        )
        self.assertEqual(message.state, "queued")
        self.assertEqual(message.phone, PHONE_A)

    def test_composer_uses_the_same_lookup_and_queue(self):
        composer = (
            self.env["whatsapp.composer"]
            .with_user(self.user_a)
            .with_context(active_model="crm.lead", active_id=self.lead_a.id)
            .create({"mode": "template", "template_id": self.template.id})
        )
        calls, patches, _composer_patches = self.spies()
        for patcher in patches:
            patcher.start()
            self.addCleanup(patcher.stop)
        composer.action_send()
        self.assertEqual(calls["queue"], 1)
        self.assertGreaterEqual(calls["recipients"], 1)

    def test_test_message_queues_through_the_same_path(self):
        wizard = (
            self.env["whatsapp.test.message"]
            .with_user(self.manager_a)
            .create(
                {"account_id": self.account_a.id, "phone": PHONE_A, "mode": "template"}
            )
        )
        wizard.template_id = self.plain
        calls, patches, _composer_patches = self.spies()
        for patcher in patches:
            patcher.start()
            self.addCleanup(patcher.stop)
        wizard.action_send()
        self.assertEqual(calls["queue"], 1)
        self.assertEqual(wizard.message_id.state, "queued")

    def test_recipient_lookup_on_any_model(self):
        partner = self.env["res.partner"].create({"name": "Sans numéro"})
        info = self.lead_a._whatsapp_get_recipients_info()[self.lead_a.id]
        self.assertEqual(info["phone"], PHONE_A)
        self.assertEqual(info["partner"], self.partner_a)
        self.assertFalse(info["reason"])
        info = partner._whatsapp_get_recipients_info()[partner.id]
        self.assertFalse(info["phone"])
        self.assertIn("No mobile or phone number", info["invalid_reason"])
        self.env["phone.blacklist"].sudo()._add([PHONE_A])
        info = self.lead_a._whatsapp_get_recipients_info()[self.lead_a.id]
        self.assertTrue(info["blacklisted"])
        self.assertEqual(info["phone"], PHONE_A, "kept: the queue logs it as opted out")
        self.assertFalse(info["invalid_reason"])
