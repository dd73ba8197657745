"""README 7, "The WhatsApp inbox": chatting in Discuss. Delivery ticks sent with
the messages, read receipts when an agent opens a conversation, reactions both
ways, quoted replies and buttons from the conversation."""

from datetime import timedelta

from odoo import Command, fields
from odoo.exceptions import UserError
from odoo.tests import tagged

from odoo.addons.mail.tools.discuss import Store

from .common import WA_ID_A, mock_gateway
from .test_chat_actions import ChatCase
from .test_whatsapp_inbox import InboxCase
from .test_whatsapp_message_queue import meta_error


def store_values(store, model_name, record_id):
    """The values of one record in a Store's result (both series)."""
    rows = store.get_result().get(model_name) or []
    if isinstance(rows, dict):
        rows = [rows]
    return next((row for row in rows if row.get("id") == record_id), {})


class InboxChatCase(InboxCase, ChatCase):
    def open_conversation(self, wamid="wamid.IN-CHAT"):
        """The customer writes; their conversation and the message's copy."""
        inbound = self.customer_writes(wamid)
        channel = self.conversation(self.partner_a)
        self.assertTrue(inbound.channel_message_id)
        return channel, inbound

    def react(self, mail_message, user, emoji, action="add"):
        """What Discuss's reaction route does: the message in sudo, as the user."""
        mail_message.with_user(user).sudo()._message_reaction(
            emoji, action, user.partner_id, self.env["mail.guest"]
        )

    def outbound_reactions(self):
        return self.mine(
            [("message_type", "=", "reaction"), ("direction", "=", "outbound")]
        )


@tagged("post_install", "-at_install")
class TestDeliveryTicks(InboxChatCase):
    def test_state_sent_with_the_messages_and_updated(self):
        channel, inbound = self.open_conversation()
        posted = self.reply(channel, self.user_a, "Je vous rappelle demain")
        sent = self.mine([("channel_message_id", "=", posted.id)])
        messages = posted | inbound.channel_message_id | sent.mail_message_id
        store = Store().add(messages.with_user(self.user_a))
        self.assertEqual(
            store_values(store, "mail.message", posted.id)["whatsapp_state"], "queued"
        )
        # The lead's chatter log shows the same state.
        self.assertEqual(
            store_values(store, "mail.message", sent.mail_message_id.id)[
                "whatsapp_state"
            ],
            "queued",
        )
        # The customer's message has no tick.
        self.assertNotIn(
            "whatsapp_state",
            store_values(store, "mail.message", inbound.channel_message_id.id),
        )
        self.run_queue()
        self.assertEqual(sent.state, "sent")
        store = Store().add(posted.with_user(self.user_a))
        self.assertEqual(
            store_values(store, "mail.message", posted.id)["whatsapp_state"], "sent"
        )

    def test_failure_reason_goes_with_the_failed_state(self):
        channel, _inbound = self.open_conversation()
        posted = self.reply(channel, self.user_a, "Bonjour")
        sent = self.mine([("channel_message_id", "=", posted.id)])
        sent.sudo().write(
            {"state": "failed", "failure_title": "Number not on WhatsApp"}
        )
        values = store_values(
            Store().add(posted.with_user(self.user_a)), "mail.message", posted.id
        )
        self.assertEqual(values["whatsapp_state"], "failed")
        self.assertEqual(values["whatsapp_failure"], "Number not on WhatsApp")


@tagged("post_install", "-at_install")
class TestReadReceiptsOnOpen(InboxChatCase):
    def test_seeing_the_conversation_marks_the_customers_messages_read(self):
        channel, inbound = self.open_conversation()
        member = self.member(channel, self.user_a)
        member.with_user(self.user_a)._mark_as_read(inbound.channel_message_id.id)
        self.assertEqual(inbound.read_receipt_state, "pending")
        self.assertEqual(self.run_queue().reads, ["wamid.IN-CHAT"])
        # Seen again: nothing more is sent.
        member.with_user(self.user_a)._mark_as_read(inbound.channel_message_id.id)
        self.assertEqual(self.run_queue().reads, [])

    def test_only_up_to_the_seen_message_and_not_when_switched_off(self):
        channel, first = self.open_conversation("wamid.IN-A")
        second = self.customer_writes("wamid.IN-B")
        member = self.member(channel, self.user_a)
        member.with_user(self.user_a)._mark_as_read(first.channel_message_id.id)
        self.assertEqual(first.read_receipt_state, "pending")
        self.assertFalse(second.read_receipt_state)
        self.account_a.send_read_receipts = False
        member.with_user(self.user_a)._mark_as_read(second.channel_message_id.id)
        self.assertFalse(second.read_receipt_state)


@tagged("post_install", "-at_install")
class TestReactionsInDiscuss(InboxChatCase):
    def test_agents_reaction_is_sent_and_removed(self):
        _channel, inbound = self.open_conversation()
        self.react(inbound.channel_message_id, self.user_a, "👍")
        reaction = self.outbound_reactions()
        self.assertEqual(len(reaction), 1)
        self.assertEqual(reaction.body, "👍")
        self.assertEqual(reaction.reply_to_message_id, inbound)
        self.assertEqual(inbound.reaction_emoji, "👍")
        with mock_gateway() as gateway:
            self.Message._cron_process_queue()
            self.assertEqual(
                gateway.sent[0]["reaction"],
                {"message_id": "wamid.IN-CHAT", "emoji": "👍"},
            )
            self.react(inbound.channel_message_id, self.user_a, "👍", action="remove")
            self.assertFalse(inbound.reaction_emoji)
            self.Message._cron_process_queue()
        self.assertEqual(gateway.sent[1]["reaction"]["emoji"], "")

    def test_a_refused_reaction_does_not_stay_shown(self):
        _channel, inbound = self.open_conversation()
        copy = inbound.channel_message_id
        # Refused by Meta after it was queued: withdrawn from the customer's
        # message and from the conversation.
        self.react(copy, self.user_a, "👍")
        reaction = self.outbound_reactions()
        with mock_gateway(
            errors={WA_ID_A: meta_error(400, 131026, "Message undeliverable")}
        ):
            self.Message._cron_process_queue()
        self.assertEqual(reaction.state, "failed")
        self.assertFalse(inbound.reaction_emoji)
        self.assertNotIn("o_whatsapp_reaction", str(inbound.mail_message_id.body))
        self.assertFalse(copy.sudo().reaction_ids)
        # Refused before any call: the agent is told why and nothing shows.
        inbound.sudo().received_date = fields.Datetime.now() - timedelta(hours=25)
        with (
            self.assertRaisesRegex(UserError, "24-hour"),
            self.env.cr.savepoint(),
        ):
            self.react(copy, self.user_a, "❤️")
        self.assertFalse(copy.sudo().reaction_ids)
        self.assertEqual(self.outbound_reactions(), reaction)

    def test_a_refused_removal_gives_the_reaction_back(self):
        _channel, inbound = self.open_conversation()
        copy = inbound.channel_message_id
        self.react(copy, self.user_a, "👍")
        with mock_gateway():
            self.Message._cron_process_queue()
        self.react(copy, self.user_a, "👍", action="remove")
        self.assertFalse(copy.sudo().reaction_ids)
        # Meta refuses the removal: the customer still sees the thumbs up, and
        # so do the agents, in the conversation and on the customer's message.
        with mock_gateway(
            errors={WA_ID_A: meta_error(400, 131026, "Message undeliverable")}
        ):
            self.Message._cron_process_queue()
        removal = self.outbound_reactions().sorted("id")[-1]
        self.assertEqual((removal.body, removal.state), (False, "failed"))
        self.assertEqual(inbound.reaction_emoji, "👍")
        self.assertIn("👍", str(inbound.mail_message_id.body))
        self.assertEqual(
            [(r.content, r.partner_id) for r in copy.sudo().reaction_ids],
            [("👍", self.user_a.partner_id)],
        )

    def test_reactions_on_our_own_messages_stay_in_odoo(self):
        channel, _inbound = self.open_conversation()
        posted = self.reply(channel, self.user_a, "Bonjour")
        self.react(posted, self.user_a, "👍")
        self.assertFalse(self.outbound_reactions())

    def test_customers_reaction_shows_as_theirs_on_the_copy(self):
        self.open_conversation()
        offer = self.sent_text()
        copy = offer.channel_message_id
        self.assertTrue(copy)
        self.customer_writes(
            "wamid.IN-R1",
            "reaction",
            reaction={"message_id": offer.wamid, "emoji": "👍"},
        )
        self.assertEqual(
            [(r.partner_id, r.content) for r in copy.reaction_ids],
            [(self.partner_a, "👍")],
        )
        # One reaction at a time, as on WhatsApp; nothing is sent back.
        self.customer_writes(
            "wamid.IN-R2",
            "reaction",
            reaction={"message_id": offer.wamid, "emoji": "❤️"},
        )
        copy.invalidate_recordset(["reaction_ids"])
        self.assertEqual(copy.reaction_ids.mapped("content"), ["❤️"])
        self.customer_writes(
            "wamid.IN-R3", "reaction", reaction={"message_id": offer.wamid, "emoji": ""}
        )
        copy.invalidate_recordset(["reaction_ids"])
        self.assertFalse(copy.reaction_ids)
        self.assertFalse(self.outbound_reactions())


@tagged("post_install", "-at_install")
class TestQuotedRepliesAndButtons(InboxChatCase):
    def test_reply_to_a_message_quotes_it_on_whatsapp(self):
        channel, inbound = self.open_conversation()
        channel.with_user(self.user_a).sudo().message_post(
            body="Oui, demain",
            message_type="comment",
            subtype_xmlid="mail.mt_comment",
            parent_id=inbound.channel_message_id.id,
        )
        sent = self.mine([("direction", "=", "outbound"), ("body", "=", "Oui, demain")])
        self.assertEqual(sent.reply_to_message_id, inbound)
        gateway = self.run_queue()
        self.assertEqual(gateway.sent[0]["context"], {"message_id": "wamid.IN-CHAT"})
        # A plain reply quotes nothing.
        self.reply(channel, self.user_a, "Autre chose")
        plain = self.mine(
            [("direction", "=", "outbound"), ("body", "=", "Autre chose")]
        )
        self.assertFalse(plain.reply_to_message_id)

    def reply_quoting_our_reply(self):
        """An agent answers the customer, then quotes that answer: both queued.
        Returns (quoted, quoting), the two whatsapp.messages."""
        channel, _inbound = self.open_conversation()
        first = self.reply(channel, self.user_a, "Le devis est prêt")
        channel.with_user(self.user_a).sudo().message_post(
            body="Il est valable un mois",
            message_type="comment",
            subtype_xmlid="mail.mt_comment",
            parent_id=first.id,
        )
        quoted = self.mine([("channel_message_id", "=", first.id)])
        quoting = self.mine([("body", "=", "Il est valable un mois")])
        return quoted, quoting

    def test_quoting_our_own_message_not_sent_yet_keeps_the_quote(self):
        quoted, quoting = self.reply_quoting_our_reply()
        self.assertEqual(quoting.reply_to_message_id, quoted)
        self.assertFalse(quoted.wamid)  # both wait in the queue
        gateway = self.run_queue()
        self.assertEqual(
            [payload["text"]["body"] for payload in gateway.sent],
            ["Le devis est prêt", "Il est valable un mois"],
        )
        self.assertEqual(gateway.sent[1]["context"], {"message_id": quoted.wamid})
        self.assertEqual(quoting.state, "sent")

    def test_quote_of_our_message_waiting_for_a_retry_keeps_the_quote(self):
        quoted, quoting = self.reply_quoting_our_reply()
        # Meta refuses the quoted message for now: it is retried later.
        busy = meta_error(500, 131000, "Something went wrong")
        gateway = self.run_queue(errors={WA_ID_A: [busy]})
        self.assertEqual(gateway.sent, [], "the reply waits for the message it quotes")
        self.assertEqual((quoted.state, quoted.retry_count), ("queued", 1))
        self.assertEqual(quoting.state, "queued")
        self.assertEqual(quoting.retry_count, 0, "waiting is no failed attempt")
        self.assertEqual(quoting.next_attempt_date, quoted.next_attempt_date)
        # The retry is due (the test's transaction started before "now").
        (quoted | quoting).next_attempt_date = fields.Datetime.now() - timedelta(
            hours=1
        )
        gateway = self.run_queue()
        self.assertEqual(
            [payload["text"]["body"] for payload in gateway.sent],
            ["Le devis est prêt", "Il est valable un mois"],
        )
        self.assertEqual(gateway.sent[1]["context"], {"message_id": quoted.wamid})

    def test_quote_of_our_failed_message_is_sent_without_it(self):
        quoted, quoting = self.reply_quoting_our_reply()
        refused = meta_error(400, 131026, "Message undeliverable")
        gateway = self.run_queue(errors={WA_ID_A: [refused]})
        self.assertEqual(quoted.state, "failed")
        # Nothing to quote on WhatsApp: the reply goes, plain.
        self.assertEqual(
            [payload["text"]["body"] for payload in gateway.sent],
            ["Il est valable un mois"],
        )
        self.assertNotIn("context", gateway.sent[0])
        self.assertEqual(quoting.state, "sent")

    def test_buttons_from_the_conversation_appear_in_it(self):
        channel, _inbound = self.open_conversation()
        action = channel.with_user(self.user_a).action_whatsapp_send_template()
        self.assertEqual(action["context"]["default_mode"], "interactive")
        composer = (
            self.env["whatsapp.composer"]
            .with_user(self.user_a)
            .with_context(**action["context"])
            .create(
                {
                    "body": "Quand passons-nous ?",
                    "interactive_type": "button",
                    "choice_ids": [
                        Command.create({"title": "Lundi", "reply_id": "mon"}),
                        Command.create({"title": "Mardi", "reply_id": "tue"}),
                    ],
                }
            )
        )
        self.assertEqual(composer.mode, "interactive")
        mark = self.bus_mark()
        composer.action_send()
        sent = self.mine([("message_type", "=", "interactive")])
        self.assertEqual(len(sent), 1)
        copy = sent.channel_message_id
        self.assertEqual((copy.model, copy.res_id), ("discuss.channel", channel.id))
        self.assertIn("Lundi", copy.body)
        # Its tick goes to the open conversation with it.
        pushed = [
            row
            for model, target, kind, payload in self.bus_since(mark)
            if (model, target, kind)
            == ("discuss.channel", channel.id, "mail.record/insert")
            for row in payload.get("mail.message", [])
        ]
        self.assertIn(
            {"id": copy.id, "whatsapp_state": "queued", "whatsapp_failure": False},
            pushed,
        )
