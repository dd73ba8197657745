"""README 7, "The WhatsApp inbox": conversations in Discuss, their responsible,
replies through the queue, live updates over the bus, and tenant isolation."""

import base64
import json
import time
from datetime import timedelta
from unittest.mock import patch

from psycopg2.errors import SerializationFailure

from odoo import Command, fields
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tools import format_datetime

from odoo.addons.mail.models.mail_thread import MailThread

from .common import (
    MOBILE,
    PHONE_A,
    WA_ID_A,
    WhatsAppMixin,
    messages_entry,
    mock_media_download,
    webhook_body,
)
from .test_webhook_inbox import status_item
from .test_webhook_processing import WebhookCase

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


class InboxCase(WebhookCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lead_a.user_id = cls.user_a
        cls.agent_1 = cls._user("wa_agent_1", "whatsapp_business.group_whatsapp_user")
        cls.agent_2 = cls._user("wa_agent_2", "whatsapp_business.group_whatsapp_user")
        cls.user_b = new_test_user(
            cls.env,
            login="wa_inbox_b",
            groups="sales_team.group_sale_salesman",
            company_id=cls.company_b.id,
            company_ids=[Command.set(cls.company_b.ids)],
        )

    @classmethod
    def _user(cls, login, groups):
        return new_test_user(
            cls.env,
            login=login,
            groups=groups,
            company_id=cls.company_a.id,
            company_ids=[Command.set(cls.company_a.ids)],
        )

    def conversation(self, partner, account=None):
        return self.env["discuss.channel"].search(
            [
                ("channel_type", "=", "whatsapp"),
                ("whatsapp_account_id", "=", (account or self.account_a).id),
                ("whatsapp_partner_id", "=", partner.id),
            ]
        )

    def conversations_of(self, partner, account=None):
        return self.env["discuss.channel"]._whatsapp_conversations(
            {(account or self.account_a, partner): None}
        )[account or self.account_a, partner]

    def inbound_from(self, wa_id, wamid, text="Bonjour", name="Nouveau client"):
        return webhook_body(
            messages_entry(
                self.account_a,
                messages=[
                    {
                        "from": wa_id,
                        "id": wamid,
                        "timestamp": str(int(time.time())),
                        "type": "text",
                        "text": {"body": text},
                    }
                ],
                contacts=[{"profile": {"name": name}, "wa_id": wa_id}],
            )
        )

    def channel_messages(self, channel):
        return self.env["mail.message"].search(
            [
                ("model", "=", "discuss.channel"),
                ("res_id", "=", channel.id),
                ("message_type", "=", "comment"),
            ],
            order="id",
        )

    def member(self, channel, user):
        return channel.channel_member_ids.filtered(
            lambda m: m.partner_id == user.partner_id
        )

    def reply(self, channel, user, body, attachments=None):
        """What Discuss's post route does: the channel is checked as the user, then
        posted on in sudo."""
        channel.with_user(user).check_access("read")
        return (
            channel.with_user(user)
            .sudo()
            .message_post(
                body=body,
                message_type="comment",
                subtype_xmlid="mail.mt_comment",
                attachment_ids=(attachments or self.env["ir.attachment"]).ids,
            )
        )

    def bus_mark(self):
        self.env.cr.precommit.run()
        return self.env["bus.bus"].sudo().search([], order="id desc", limit=1).id or 0

    def bus_since(self, mark):
        """[(target model, target id, type, payload)] of the notifications sent."""
        self.env.cr.precommit.run()  # the bus rows are written at commit
        found = []
        for notif in self.env["bus.bus"].sudo().search([("id", ">", mark)], order="id"):
            channel = json.loads(notif.channel)
            message = json.loads(notif.message)
            if len(channel) == 3:
                found.append(
                    (channel[1], channel[2], message["type"], message["payload"])
                )
        return found


@tagged("post_install", "-at_install")
class TestConversations(InboxCase):
    def test_one_conversation_per_account_and_customer(self):
        Event = self.env["whatsapp.webhook.event"]
        # Two bodies of a number nobody knows, processed in one pass.
        Event._receive(
            self.account_a, self.inbound_from("34699000111", "wamid.N1").encode()
        )
        Event._receive(
            self.account_a, self.inbound_from("34699000111", "wamid.N2").encode()
        )
        Event._cron_process_pending()
        partner = self.received("wamid.N1").partner_id
        self.assertTrue(partner)
        self.assertEqual(self.received("wamid.N2").partner_id, partner)
        channel = self.conversation(partner)
        self.assertEqual(len(channel), 1)
        self.assertEqual(len(self.channel_messages(channel)), 2)
        self.assertEqual(channel.whatsapp_phone, "+34699000111")
        # Later messages, either way, go to the same conversation.
        self.deliver(self.inbound_from("34699000111", "wamid.N3"))
        self.queue_text()  # to Amélie: her own conversation
        self.assertEqual(len(self.conversation(partner)), 1)
        self.assertEqual(len(self.channel_messages(channel)), 3)
        self.assertNotEqual(self.conversation(self.partner_a), channel)
        # Created meanwhile by another transaction (which this one cannot see):
        # not the constraint's error, but a conflict Odoo runs again (below).
        with self.assertRaises(SerializationFailure):
            self.env["discuss.channel"]._whatsapp_create_many(
                [(self.account_a, partner, None)]
            )
        self.assertEqual(self.conversation(partner), channel)

    def test_inbound_is_authored_by_customer_and_unread_for_responsible(self):
        mark = self.bus_mark()
        self.deliver(self.inbound("wamid.IN1"))
        channel = self.conversation(self.partner_a)
        self.assertEqual(channel.whatsapp_user_id, self.user_a)
        (copy,) = self.channel_messages(channel)
        self.assertEqual(copy.author_id, self.partner_a)
        self.assertIn("Bonjour", copy.body)
        self.assertEqual(self.received("wamid.IN1").channel_message_id, copy)
        member = self.member(channel, self.user_a)
        self.assertEqual(member.message_unread_counter, 1)
        self.deliver(self.inbound("wamid.IN2", text={"body": "Encore moi"}))
        member.invalidate_recordset(["message_unread_counter"])
        self.assertEqual(member.message_unread_counter, 2)
        # The lead's chatter keeps its log, and its open chatters are told.
        self.assertEqual(self.received("wamid.IN2").mail_message_id.model, "crm.lead")
        sent = self.bus_since(mark)
        chatter = [
            payload
            for model, target, kind, payload in sent
            if kind == "whatsapp_business/chatter_messages"
            and (model, target) == ("res.partner", self.user_a.partner_id.id)
        ]
        self.assertIn(
            {"model": "crm.lead", "id": self.lead_a.id}, chatter[0]["threads"]
        )
        self.assertIn(
            ("discuss.channel", channel.id, "discuss.channel/new_message"),
            [(model, target, kind) for model, target, kind, _p in sent],
        )
        # The window's end, 24 hours after the customer's last message.
        values = channel._whatsapp_store_values()
        self.assertTrue(channel.whatsapp_window_open)
        self.assertAlmostEqual(
            channel.whatsapp_window_expires_at,
            self.received("wamid.IN2").received_date + timedelta(hours=24),
            delta=timedelta(seconds=1),
        )
        self.assertEqual(values["whatsapp_user_id"], self.user_a.id)
        self.assertTrue(values["whatsapp_window_expires_at"])

    def test_window_label_in_each_members_language_and_time_zone(self):
        """The header's "free text until" is a time of day: each member gets it
        in their language and time zone, also when it is pushed by the webhook
        cron (which runs in English and UTC)."""
        self.env["res.lang"]._activate_lang("es_ES")
        self.env["ir.module.module"]._load_module_terms(
            ["whatsapp_business"], ["es_ES"], overwrite=True
        )
        self.user_a.write({"lang": "es_ES", "tz": "America/Argentina/Buenos_Aires"})
        self.deliver(self.inbound("wamid.TZ1"))
        channel = self.conversation(self.partner_a)
        mark = self.bus_mark()
        self.deliver(self.inbound("wamid.TZ2", text={"body": "¿Siguen ahí?"}))
        expires = channel.whatsapp_window_expires_at
        local = format_datetime(
            self.env,
            expires,
            tz="America/Argentina/Buenos_Aires",
            dt_format="short",
            lang_code="es_ES",
        )
        pushed = [
            values["description"]
            for model, target, kind, payload in self.bus_since(mark)
            if kind == "mail.record/insert"
            and (model, target) == ("res.partner", self.user_a.partner_id.id)
            for values in payload.get("discuss.channel", [])
            if values["id"] == channel.id and "description" in values
        ]
        self.assertEqual(
            pushed, [f"Texto libre hasta el {local} (ventana de 24 horas)"]
        )
        # Three hours behind UTC: not the server's clock.
        utc = format_datetime(
            self.env, expires, tz="UTC", dt_format="short", lang_code="es_ES"
        )
        self.assertNotEqual(local, utc)
        # What the client loads for a member in another zone and language.
        paris = format_datetime(
            self.env, expires, tz="Europe/Paris", dt_format="short", lang_code="en_US"
        )
        label = channel.with_context(
            lang="en_US", tz="Europe/Paris"
        )._whatsapp_window_label()
        self.assertEqual(label, f"Free text until {paris} (24-hour window)")

    def test_media_downloaded_later_is_shown_live(self):
        """A customer's photo is posted before its download (a cron job): once it
        is downloaded, open conversations and chatters show it without a reload."""
        self.deliver(
            self.inbound(
                "wamid.IMG1",
                message_type="image",
                image={"id": "1480001122334455", "mime_type": "image/jpeg"},
            )
        )
        message = self.received("wamid.IMG1")
        channel = self.conversation(self.partner_a)
        self.assertEqual(message.channel_message_id.res_id, channel.id)
        mark = self.bus_mark()
        with mock_media_download(b"\xff\xd8jpeg"):
            self.env["whatsapp.message"]._cron_download_media()
        attachment = message.attachment_id
        self.assertTrue(attachment)

        def attachments_shown(model, target):
            shown = {}
            for sent_model, sent_target, kind, payload in self.bus_since(mark):
                if kind != "mail.record/insert" or (sent_model, sent_target) != (
                    model,
                    target,
                ):
                    continue
                for values in payload.get("mail.message", []):
                    if "attachment_ids" in values:
                        shown[values["id"]] = [
                            a["id"] if isinstance(a, dict) else a
                            for a in values["attachment_ids"]
                        ]
            return shown

        self.assertEqual(
            attachments_shown("discuss.channel", channel.id),
            {message.channel_message_id.id: [attachment.id]},
        )
        # The lead's salesperson (an internal follower) has its chatter open.
        self.assertEqual(
            attachments_shown("res.partner", self.user_a.partner_id.id),
            {message.mail_message_id.id: [attachment.id]},
        )

    def send_from_lead(self, body):
        return (
            self.env["whatsapp.message"]
            .with_user(self.user_a)
            ._queue_outbound(
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
        )

    def test_outbound_from_a_lead_appears_in_the_conversation(self):
        channel = self.conversations_of(self.partner_a)
        message = self.send_from_lead("Votre devis")
        self.assertEqual(message.channel_message_id, self.channel_messages(channel))
        self.assertEqual(message.channel_message_id.author_id, self.user_a.partner_id)
        self.assertIn("Votre devis", message.channel_message_id.body)
        self.assertEqual(message.mail_message_id.model, "crm.lead")

    def test_a_send_opens_no_conversation_until_the_customer_answers(self):
        """A campaign to many contacts must not open one conversation each; the
        customer's answer opens it, with what was sent before, oldest first."""
        first = self.send_from_lead("Votre devis")
        second = self.send_from_lead("Le devis expire demain")
        self.assertFalse(self.conversation(self.partner_a))
        self.assertFalse(first.channel_message_id)
        self.env["whatsapp.webhook.event"].sudo()._receive(
            self.account_a,
            self.inbound_from(
                PHONE_A.lstrip("+"), "wamid.ANSWER", text="D'accord"
            ).encode(),
        )
        self.env["whatsapp.webhook.event"].sudo()._cron_process_pending()
        channel = self.conversation(self.partner_a)
        self.assertEqual(len(channel), 1)
        copies = self.channel_messages(channel)
        self.assertEqual(
            copies[:2], first.channel_message_id | second.channel_message_id
        )
        self.assertIn("D'accord", copies[2].body)
        self.assertEqual(copies[2].author_id, self.partner_a)
        # Dated as sent, so the thread reads in order.
        self.assertEqual(copies[0].date, first.queued_date)


@tagged("post_install", "-at_install")
class TestAssignment(InboxCase):
    def new_partner(self, name):
        return self.env["res.partner"].create(
            {"name": name, "company_id": self.company_a.id}
        )

    def test_lead_salesperson_then_default_then_agents_in_turn(self):
        self.account_a.inbox_agent_ids = self.agent_1 | self.agent_2
        self.account_a.inbox_user_id = self.manager_a
        # The customer's open lead decides first.
        self.assertEqual(
            self.conversations_of(self.partner_a).whatsapp_user_id, self.user_a
        )
        # No lead: the account's default responsible.
        self.assertEqual(
            self.conversations_of(self.new_partner("P1")).whatsapp_user_id,
            self.manager_a,
        )
        # No default: the agents in turn.
        self.account_a.inbox_user_id = False
        channels = [self.conversations_of(self.new_partner(f"R{i}")) for i in range(3)]
        self.assertEqual(
            [channel.whatsapp_user_id for channel in channels],
            [self.agent_1, self.agent_2, self.agent_1],
        )
        self.assertTrue(self.member(channels[0], self.agent_1))
        self.assertFalse(self.member(channels[0], self.agent_2))
        # An agent who cannot work for the company any more is skipped.
        self.agent_2.write(
            {
                "company_id": self.company_b.id,
                "company_ids": [Command.set(self.company_b.ids)],
            }
        )
        with self.assertRaises(ValidationError):
            self.account_a.inbox_user_id = self.agent_2
        self.assertEqual(
            self.conversations_of(self.new_partner("R4")).whatsapp_user_id, self.agent_1
        )
        # Nobody to give it to: unassigned, given to the next one who answers.
        self.account_a.inbox_agent_ids = False
        self.assertFalse(self.conversations_of(self.new_partner("R5")).whatsapp_user_id)

    def test_reassign_moves_membership_and_posts_a_note(self):
        channel = self.conversations_of(self.partner_a)
        self.assertTrue(self.member(channel, self.user_a))
        channel.with_user(self.manager_a).whatsapp_user_id = self.agent_1
        self.assertTrue(self.member(channel, self.agent_1))
        self.assertFalse(self.member(channel, self.user_a))
        notes = self.env["mail.message"].search(
            [("model", "=", "discuss.channel"), ("res_id", "=", channel.id)]
        )
        self.assertTrue(
            any(self.agent_1.name in (note.body or "") for note in notes),
            "the reassignment is noted in the conversation",
        )
        with self.assertRaises(ValidationError):
            channel.whatsapp_user_id = self.user_b  # another company's user

    def test_agent_takes_an_unassigned_conversation(self):
        channel = self.conversations_of(self.new_partner("Walk-in"))
        self.assertFalse(channel.whatsapp_user_id)
        channel.with_user(self.agent_2).action_whatsapp_assign_to_me()
        self.assertEqual(channel.whatsapp_user_id, self.agent_2)
        self.assertTrue(self.member(channel, self.agent_2))
        # Now assigned to someone else: out of sight of the other agents.
        with self.assertRaises(AccessError):
            channel.with_user(self.agent_1).action_whatsapp_assign_to_me()


@tagged("post_install", "-at_install")
class TestReplies(InboxCase):
    def test_reply_queues_one_message_linked_to_the_open_lead(self):
        self.deliver(self.inbound("wamid.IN1"))
        channel = self.conversation(self.partner_a)
        before = self.env["whatsapp.message"].search([("direction", "=", "outbound")])
        posted = self.reply(channel, self.user_a, "Je vous rappelle demain")
        sent = (
            self.env["whatsapp.message"].search([("direction", "=", "outbound")])
            - before
        )
        self.assertEqual(len(sent), 1)
        self.assertEqual(sent.state, "queued")
        self.assertEqual((sent.res_model, sent.res_id), ("crm.lead", self.lead_a.id))
        self.assertEqual(sent.body, "Je vous rappelle demain")
        self.assertEqual(sent.author_id, self.user_a)
        self.assertEqual(sent.channel_message_id, posted)
        # Logged in the lead's chatter; the conversation's copy shows the state.
        self.assertEqual(sent.mail_message_id.model, "crm.lead")
        self.assertIn("o_whatsapp_state_queued", posted.body)
        # Once sent it cannot be edited any more.
        with self.assertRaises(UserError):
            channel._message_update_content(posted, body="Autre chose")

    def test_reply_with_a_file_sends_it_with_the_text_as_caption(self):
        self.deliver(self.inbound("wamid.IN1"))
        channel = self.conversation(self.partner_a)
        image = self.env["ir.attachment"].create(
            {
                "name": "plan.png",
                "raw": PNG,
                "mimetype": "image/png",
                "res_model": "discuss.channel",
                "res_id": 0,
            }
        )
        self.reply(channel, self.user_a, "Le plan", image)
        sent = self.env["whatsapp.message"].search(
            [("direction", "=", "outbound")], order="id desc", limit=1
        )
        self.assertEqual(
            (sent.message_type, sent.attachment_id, sent.body),
            ("image", image, "Le plan"),
        )

    def test_reply_refused_outside_the_window(self):
        channel = self.conversations_of(self.partner_a)
        self.open_window(
            self.account_a, PHONE_A, when=self.env.cr.now() - timedelta(hours=25)
        )
        count = self.env["whatsapp.message"].search_count([])
        with self.assertRaises(UserError) as caught:
            self.reply(channel, self.user_a, "Vous êtes là ?")
        self.assertIn("template", str(caught.exception))
        self.assertEqual(self.env["whatsapp.message"].search_count([]), count)
        self.assertFalse(self.channel_messages(channel))
        action = channel.with_user(self.user_a).action_whatsapp_send_template()
        self.assertEqual(action["res_model"], "whatsapp.composer")
        self.assertEqual(action["context"]["default_mode"], "template")
        self.assertEqual(action["context"]["active_id"], self.lead_a.id)
        composer = (
            self.env[action["res_model"]]
            .with_user(self.user_a)
            .with_context(**action["context"])
            .create({})
        )
        self.assertEqual(composer.mode, "template")
        self.assertEqual(composer.account_id, self.account_a)
        self.assertEqual(composer.recipient_name, self.partner_a.display_name)

    def test_unassigned_conversation_goes_to_who_answers(self):
        self.lead_a.user_id = False
        self.deliver(self.inbound("wamid.IN1"))
        channel = self.conversation(self.partner_a)
        self.assertFalse(channel.whatsapp_user_id)
        self.reply(channel, self.agent_1, "Bonjour, je m'en occupe")
        self.assertEqual(channel.whatsapp_user_id, self.agent_1)

    def test_open_from_a_lead_or_a_contact(self):
        action = self.lead_a.with_user(self.user_a).action_open_whatsapp_conversation()
        channel = self.env["discuss.channel"].search(
            [
                ("channel_type", "=", "whatsapp"),
                ("whatsapp_partner_id", "=", self.partner_a.id),
            ]
        )
        # On the company's default account (the first one).
        self.assertEqual(
            channel.whatsapp_account_id, self.company_a._get_whatsapp_account()
        )
        self.assertEqual(channel.whatsapp_user_id, self.user_a)
        self.assertEqual(action["tag"], "mail.action_discuss")
        self.assertEqual(action["params"]["active_id"], f"discuss.channel_{channel.id}")
        again = self.partner_a.with_user(
            self.user_a
        ).action_open_whatsapp_conversation()
        self.assertEqual(again["params"], action["params"])
        # Opened from a document they may read: another salesperson joins it.
        colleague = self._user(
            "wa_colleague", "sales_team.group_sale_salesman_all_leads"
        )
        self.lead_a.with_user(colleague).action_open_whatsapp_conversation()
        self.assertTrue(self.member(channel, colleague))
        self.assertEqual(channel.whatsapp_user_id, self.user_a)


@tagged("post_install", "-at_install")
class TestLiveUpdates(InboxCase):
    def test_status_refreshes_the_copies_with_one_notification_per_target(self):
        self.deliver(self.inbound("wamid.IN1"))
        messages = self.env["whatsapp.message"]
        for index in range(3):
            messages |= (
                self.env["whatsapp.message"]
                .with_user(self.user_a)
                ._queue_outbound(
                    self.account_a,
                    [
                        {
                            "record": self.lead_a,
                            "partner": self.partner_a,
                            "phone": PHONE_A,
                            "body": f"Message {index}",
                        }
                    ],
                )
            )
        for index, message in enumerate(messages):
            message.sudo().write({"state": "sent", "wamid": f"wamid.LIVE{index}"})
        channel = self.conversation(self.partner_a)
        mark = self.bus_mark()
        self.deliver(
            webhook_body(
                messages_entry(
                    self.account_a,
                    statuses=[
                        status_item(m.wamid, "delivered", int(time.time()))
                        for m in messages
                    ],
                )
            )
        )
        for message in messages:
            self.assertIn("o_whatsapp_state_delivered", message.channel_message_id.body)
            self.assertIn("o_whatsapp_state_delivered", message.mail_message_id.body)
            # Written in SQL, unsanitized: a self-closing <i/> would open an
            # element in the browser and put the rest of the body inside it.
            self.assertNotRegex(message.channel_message_id.body, r"<i\b[^>]*/>")
        updates = [
            (model, target, payload)
            for model, target, kind, payload in self.bus_since(mark)
            if kind == "mail.record/insert" and "mail.message" in payload
        ]
        on_channel = [u for u in updates if u[:2] == ("discuss.channel", channel.id)]
        self.assertEqual(len(on_channel), 1, "one notification for the whole batch")
        pushed = on_channel[0][2]["mail.message"]
        self.assertEqual(
            sorted(m["id"] for m in pushed), sorted(messages.channel_message_id.ids)
        )
        self.assertEqual({m["whatsapp_state"] for m in pushed}, {"delivered"})
        # The lead's chatter: to the salesperson (follower and sender), once.
        to_user = [
            u for u in updates if u[:2] == ("res.partner", self.user_a.partner_id.id)
        ]
        self.assertEqual(len(to_user), 1)
        self.assertTrue(
            set(messages.mail_message_id.ids)
            <= {m["id"] for m in to_user[0][2]["mail.message"]}
        )
        # Nobody outside: the customer is not sent the internal chatter.
        self.assertFalse(
            [u for u in updates if u[:2] == ("res.partner", self.partner_a.id)]
        )


@tagged("post_install", "-at_install")
class TestCopiesInBatch(InboxCase):
    """The copies of a batch are posted together (one insert, one notification
    per message): they must be what Discuss's message_post would have made."""

    def deliver_batch(self):
        """Three texts of two customers (one new) in one webhook body."""
        now = str(int(time.time()))
        texts = [
            (WA_ID_A, "wamid.B1", "Bonjour"),
            ("33699887766", "wamid.B2", "Hola"),
            (WA_ID_A, "wamid.B3", "Encore moi"),
        ]
        self.deliver(
            webhook_body(
                messages_entry(
                    self.account_a,
                    messages=[
                        {
                            "from": wa_id,
                            "id": wamid,
                            "timestamp": now,
                            "type": "text",
                            "text": {"body": text},
                        }
                        for wa_id, wamid, text in texts
                    ],
                    contacts=[
                        {"profile": {"name": "Amélie"}, "wa_id": WA_ID_A},
                        {"profile": {"name": "Nuevo"}, "wa_id": "33699887766"},
                    ],
                )
            )
        )
        return self.env["whatsapp.message"].search(
            [("wamid", "in", [wamid for _w, wamid, _t in texts])], order="id"
        )

    def test_copies_have_the_values_of_a_discuss_post(self):
        self.partner_a.email = "amelie@example.com"
        received = self.deliver_batch()
        copies = received.channel_message_id
        self.assertEqual(len(copies), 3)
        self.assertEqual(copies.sorted("id"), copies, "posted in arrival order")
        channel = self.conversation(self.partner_a)
        # Discuss's own post of the same message, for reference (mail's class, not
        # the addon's: no reply path, nothing sent).
        discuss = next(
            cls
            for cls in type(channel).__mro__
            if cls.__module__ == "odoo.addons.mail.models.discuss.discuss_channel"
        )
        reference = discuss.message_post(
            channel.sudo(),
            body="Bonjour",
            message_type="comment",
            subtype_xmlid="mail.mt_comment",
            author_id=self.partner_a.id,
        )
        compared = [
            "author_id",
            "email_from",
            "message_type",
            "subtype_id",
            "model",
            "res_id",
            "record_company_id",
            "record_alias_domain_id",
            "reply_to",
            "record_name",
        ]
        first = received[0].channel_message_id
        self.assertEqual(
            first.read(compared)[0] | {"id": 0},
            reference.read(compared)[0] | {"id": 0},
        )
        self.assertIn("Bonjour", first.body)
        self.assertTrue(first.message_id, "a Message-Id, as every post")
        self.assertEqual(received[1].channel_message_id.author_id.name, "Nuevo")

    def test_copies_reply_to_the_catchall_as_a_discuss_post(self):
        # With an alias domain, message_post's Reply-To is the company's catchall
        # named after the conversation, not the author's address: the batch
        # computes it for every copy, twice for a conversation with two copies.
        self.env.company.alias_domain_id = self.env["mail.alias.domain"].create(
            {"name": "agency.example.com", "catchall_alias": "catchall"}
        )
        received = self.deliver_batch()
        discuss = next(
            cls
            for cls in type(self.env["discuss.channel"]).__mro__
            if cls.__module__ == "odoo.addons.mail.models.discuss.discuss_channel"
        )
        for copy in received.channel_message_id:
            channel = self.env["discuss.channel"].sudo().browse(copy.res_id)
            reference = discuss.message_post(
                channel,
                body="ref",
                message_type="comment",
                subtype_xmlid="mail.mt_comment",
                author_id=copy.author_id.id,
            )
            self.assertIn("catchall@agency.example.com", reference.reply_to)
            self.assertEqual(copy.reply_to, reference.reply_to)

    def test_one_new_message_notification_per_copy(self):
        mark = self.bus_mark()
        before = fields.Datetime.now()
        received = self.deliver_batch()
        new_messages = [
            (target, payload)
            for model, target, kind, payload in self.bus_since(mark)
            if kind == "discuss.channel/new_message" and model == "discuss.channel"
        ]
        # Discuss's client counts one unread message per notification, and reads
        # the new message as the first of its data.
        self.assertEqual(
            [(t, p["id"], p["data"]["mail.message"][0]["id"]) for t, p in new_messages],
            [
                (m.channel_message_id.res_id,) * 2 + (m.channel_message_id.id,)
                for m in received
            ],
        )
        member = self.member(self.conversation(self.partner_a), self.user_a)
        self.assertEqual(member.message_unread_counter, 2)
        # Its last activity moves it up in the sidebar.
        self.assertGreaterEqual(
            self.conversation(self.partner_a).last_interest_dt, before
        )

    def test_members_with_a_push_device_get_discuss_web_push(self):
        """Web push is the one thing of Discuss's recipients a copy needs: where a
        member has a device, the copy goes through Discuss's whole notification."""
        self.deliver(self.inbound("wamid.PUSH0"))  # the conversation, user_a's
        self.env["mail.push.device"].sudo().create(
            {
                "partner_id": self.user_a.partner_id.id,
                "endpoint": "https://push.example.com/device-a",
                "keys": json.dumps({"p256dh": "x", "auth": "y"}),
            }
        )
        pushed = []

        def web_push(thread, message, recipients_data, *args, **kwargs):
            # Where Odoo sends web push: the lead's chatter post pushes to its
            # followers too, whatever the conversations do.
            if thread._name == "discuss.channel":
                pushed.append((message, {r["id"] for r in recipients_data}))

        with patch.object(MailThread, "_notify_thread_by_web_push", web_push):
            self.deliver(self.inbound("wamid.PUSH1", text={"body": "Vous êtes là ?"}))
            self.deliver(self.inbound("wamid.PUSH2", text={"body": "Hola"}))
        copies = (
            self.received("wamid.PUSH1") | self.received("wamid.PUSH2")
        ).channel_message_id
        self.assertEqual([m for m, _r in pushed], list(copies))
        self.assertTrue(all(self.user_a.partner_id.id in r for _m, r in pushed))
        # Without a device, no recipient computation at all.
        self.env["mail.push.device"].sudo().search([]).unlink()
        pushed.clear()
        with patch.object(MailThread, "_notify_thread_by_web_push", web_push):
            self.deliver(self.inbound("wamid.PUSH3", text={"body": "Allô"}))
        self.assertEqual(pushed, [])


@tagged("post_install", "-at_install")
class TestInboxIsolation(InboxCase):
    def test_agents_see_their_companys_conversations_only(self):
        mine = self.conversations_of(self.partner_a)  # user_a's
        self.lead_a.user_id = False
        walk_in = self.conversations_of(
            self.env["res.partner"].create(
                {"name": "Walk-in", "company_id": self.company_a.id}
            )
        )
        partner_b = self.env["res.partner"].create(
            {"name": "Bruno", MOBILE: "+34612000111", "company_id": self.company_b.id}
        )
        theirs = self.conversations_of(partner_b, self.account_b)
        self.assertFalse(theirs.whatsapp_user_id)
        ids = (mine | walk_in | theirs).ids
        Channel = self.env["discuss.channel"]
        # Responsible: theirs and the unassigned ones of their company.
        self.assertEqual(
            Channel.with_user(self.user_a).search([("id", "in", ids)]), mine | walk_in
        )
        # Another agent of the company: the unassigned ones only.
        self.assertEqual(
            Channel.with_user(self.agent_1).search([("id", "in", ids)]), walk_in
        )
        self.assertEqual(
            Channel.with_user(self.manager_a).search([("id", "in", ids)]),
            mine | walk_in,
        )
        # Company B never sees company A's, even unassigned, nor reads them.
        self.assertEqual(
            Channel.with_user(self.user_b).search([("id", "in", ids)]), theirs
        )
        with self.assertRaises(AccessError):
            walk_in.with_user(self.user_b).read(["name"])
        with self.assertRaises(AccessError):
            walk_in.with_user(self.user_b).action_whatsapp_assign_to_me()
        # Nobody moves a conversation to another account or number.
        for vals in (
            {"whatsapp_account_id": self.account_b.id},
            {"whatsapp_phone": "+34699000999"},
        ):
            with self.assertRaises(AccessError):
                mine.with_user(self.user_a).write(vals)
        # Other channel types keep Discuss's own rules.
        chat = Channel.with_user(self.agent_1).create(
            {"name": "Coffee", "channel_type": "group"}
        )
        self.assertEqual(
            Channel.with_user(self.agent_1).search([("id", "=", chat.id)]), chat
        )
        self.assertFalse(Channel.with_user(self.user_a).search([("id", "=", chat.id)]))


@tagged("post_install", "-at_install")
class TestConversationOpenedConcurrently(WhatsAppMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_whatsapp()

    def test_a_conversation_created_meanwhile_is_opened_not_refused(self):
        # A salesperson opens a contact's conversation while the webhook creates
        # it: their transaction cannot see the new one and collides with it. The
        # request is run again and opens it; the salesperson sees no error.
        Channel = type(self.env["discuss.channel"])
        existing = self.env["discuss.channel"]._whatsapp_conversations(
            {(self.account_a, self.partner_a): None}
        )[self.account_a, self.partner_a]
        search, create = Channel.search, Channel._whatsapp_create_many
        unseen = [True]

        def search_before_the_commit(channels, domain, *args, **kwargs):
            if unseen[0] and "whatsapp_partner_id" in str(domain):
                return channels.browse()
            return search(channels, domain, *args, **kwargs)

        def create_and_collide(channels, *args, **kwargs):
            try:
                return create(channels, *args, **kwargs)
            except SerializationFailure:
                unseen[0] = False  # the next run's snapshot sees the conversation
                raise

        self.authenticate(self.user_a.login, self.user_a.login)
        with (
            patch.object(Channel, "search", search_before_the_commit),
            patch.object(Channel, "_whatsapp_create_many", create_and_collide),
            patch("odoo.service.model.time.sleep"),  # the retry's back-off
        ):
            action = self.make_jsonrpc_request(
                "/web/dataset/call_button",
                {
                    "model": "res.partner",
                    "method": "action_open_whatsapp_conversation",
                    "args": [self.partner_a.ids],
                    "kwargs": {},
                },
            )
        self.assertFalse(unseen[0], "the first run did not collide")
        self.assertEqual(
            action["params"]["active_id"], f"discuss.channel_{existing.id}"
        )
        self.assertEqual(
            self.env["discuss.channel"].search_count(
                [("whatsapp_partner_id", "=", self.partner_a.id)]
            ),
            1,
        )
