"""Chat in the WhatsApp inbox (README 7): delivery ticks on the messages,
read receipts when an agent opens a conversation, reactions both ways and quoted
replies from Discuss (the whatsapp.message side is in whatsapp_message_inbox.py).

The Discuss client reads ``whatsapp_state`` on the messages (static/src/inbox/
message_patch.js): sent with the messages' store data here, updated by the
``mail.record/insert`` pushes of whatsapp_message_inbox.py.
"""

from odoo import models
from odoo.exceptions import UserError

from ..tools import compat

USER_GROUP = "whatsapp_business.group_whatsapp_user"
# States the ticks show: those of messages we send.
TICK_STATES = ("queued", "sent", "delivered", "read", "failed", "cancelled")


class MailMessage(models.Model):
    _inherit = "mail.message"

    def _whatsapp_links(self):
        """{mail.message id: whatsapp.message} for the copies and chatter logs of
        these messages. One query for the batch."""
        if not self.ids:
            return {}
        WhatsApp = self.env["whatsapp.message"].sudo()
        found = WhatsApp.search(
            [
                "|",
                "|",
                ("channel_message_id", "in", self.ids),
                ("mail_message_id", "in", self.ids),
                ("partner_mail_message_id", "in", self.ids),
            ]
        )
        links, ids = {}, set(self.ids)
        for message in found:
            for field in (
                "channel_message_id",
                "mail_message_id",
                "partner_mail_message_id",
            ):
                mail_message_id = message[field].id
                if mail_message_id in ids:
                    links.setdefault(mail_message_id, message)
        return links

    def _extras_to_store(self, store, format_reply):
        # Both series: called once per batch of messages sent to the client.
        result = super()._extras_to_store(store, format_reply=format_reply)
        # Ticks are on what users send: a customer's message (its author a
        # contact, already read here) needs no lookup.
        sent_by_users = self.filtered(
            lambda m: m.author_id and not m.author_id.partner_share
        )
        values = [
            {
                "id": mail_message_id,
                "whatsapp_state": message.state,
                "whatsapp_failure": message.failure_title or False,
            }
            for mail_message_id, message in sent_by_users._whatsapp_links().items()
            if message.direction == "outbound" and message.state in TICK_STATES
        ]
        if values:
            compat.store_add_values(store, "mail.message", values)
        return result

    def _message_reaction(self, content, action, partner, guest, store=None):
        result = super()._message_reaction(content, action, partner, guest, store=store)
        self._whatsapp_send_agent_reaction(content, action, partner)
        return result

    def _whatsapp_send_agent_reaction(self, content, action, partner):
        """An agent's reaction on a customer's message in a conversation goes to
        the customer: WhatsApp keeps one reaction per message, so removing it
        sends the agent's other remaining one, or none ("")."""
        self.ensure_one()
        user = self.env.user
        if self.env.context.get("whatsapp_withdraw_reaction") or (
            self.model != "discuss.channel"
            or partner != user.partner_id
            or not user.has_group(USER_GROUP)
        ):
            return
        channel = self.env["discuss.channel"].sudo().browse(self.res_id)
        if channel.channel_type != "whatsapp" or partner == channel.whatsapp_partner_id:
            return
        linked = (
            self.env["whatsapp.message"]
            .sudo()
            .search([("channel_message_id", "=", self.id)], limit=1)
        )
        if not linked or linked.direction != "inbound":
            return
        emoji = content
        if action == "remove":
            others = (
                self.env["mail.message.reaction"]
                .sudo()
                .search(
                    [("message_id", "=", self.id), ("partner_id", "=", partner.id)],
                    order="id desc",
                    limit=1,
                )
            )
            emoji = others.content or ""
        # As the agent: their rights and name on the queued reaction.
        reaction = linked.sudo(False)._send_reaction(emoji)
        if reaction.state == "failed":
            # Refused before any call (the 24-hour window closed, the number opted
            # out...): the agent learns why, and the transaction, with the reaction
            # Discuss just stored, is rolled back: none shows that the customer
            # never got.
            raise UserError(
                self.env._(
                    "Your reaction cannot be sent to the customer: %(reason)s",
                    reason=reaction.failure_title,
                )
            )

    def _whatsapp_show_customer_reaction(self, partner, emoji):
        """Show the customer's reaction on this copy as theirs: one at a time, as
        on WhatsApp ("" removes it)."""
        self.ensure_one()
        message = self.sudo()
        previous = set(
            self.env["mail.message.reaction"]
            .sudo()
            .search([("message_id", "=", self.id), ("partner_id", "=", partner.id)])
            .mapped("content")
        )
        no_guest = self.env["mail.guest"]
        for content in previous - {emoji}:
            message._message_reaction(content, "remove", partner, no_guest)
        if emoji and emoji not in previous:
            message._message_reaction(emoji, "add", partner, no_guest)


class DiscussChannelMember(models.Model):
    _inherit = "discuss.channel.member"

    def _mark_as_read(self, last_message_id, *args, **kwargs):
        # Both series: what Discuss calls when a member sees the conversation.
        result = super()._mark_as_read(last_message_id, *args, **kwargs)
        self._whatsapp_send_read_receipts(last_message_id)
        return result

    def _whatsapp_send_read_receipts(self, last_message_id):
        """The agent saw the conversation: the customer's messages up to
        ``last_message_id`` are shown to them as read (blue ticks). The account's
        "Send Read Receipts" and each message's receipt state decide, in
        whatsapp.message._mark_as_read."""
        for member in self:
            channel = member.channel_id
            user = self.env.user
            if (
                channel.channel_type != "whatsapp"
                or member.partner_id != user.partner_id
                or not user.has_group(USER_GROUP)
            ):
                continue
            inbound = (
                self.env["whatsapp.message"]
                .sudo()
                .search(
                    [
                        ("account_id", "=", channel.whatsapp_account_id.id),
                        ("direction", "=", "inbound"),
                        ("channel_message_id.model", "=", "discuss.channel"),
                        ("channel_message_id.res_id", "=", channel.id),
                        ("channel_message_id", "<=", last_message_id),
                        ("read_receipt_state", "in", (False, "failed")),
                    ]
                )
            )
            if inbound:
                inbound._mark_as_read()
