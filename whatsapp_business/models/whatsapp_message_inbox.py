"""WhatsApp messages in the inbox: their copy in the customer's conversation, and
the live updates of chatters and conversations through Odoo's bus.

Bus notifications (one per target and batch):

- ``mail.record/insert`` ``{"mail.message": [{"id", "body", "whatsapp_state"}]}``
  when delivery states change (``_refresh_chatter``): to the conversation's channel
  (``discuss.channel``) for its copies; for the copies in documents, to the
  partner channel (``res.partner``) of the document's internal followers and of
  the sender, since Odoo 18 and 19 have no bus channel per document chatter.
- ``whatsapp_business/chatter_messages`` ``{"threads": [{"model", "id"}]}`` when
  a message is posted in documents, to the same partner channels: open chatters
  fetch their new messages (static/src/inbox/chatter_refresh_service.js).
- New messages in conversations use Discuss's own ``discuss.channel/new_message``;
  the window's end goes as ``mail.record/insert`` ``{"discuss.channel": [...]}``.
"""

from collections import defaultdict

from markupsafe import Markup

from odoo import api, models

from ..tools import compat

CHATTER_MESSAGES = "whatsapp_business/chatter_messages"
# Earlier messages copied into a conversation when the customer's first message
# creates it: enough to see what they answer to, bounded for a long history.
HISTORY_ON_CREATE = 50


class WhatsAppMessage(models.Model):
    _inherit = "whatsapp.message"

    @api.model
    def _queue_outbound(self, account, items):
        """Also in the customers' conversations. An item with ``inbox_message``
        (the agent's post in the conversation, see discuss_channel.py) is not
        copied there: the post is the copy of its first message, and shows its
        state. Items come from server code only, never from a client."""
        messages = super()._queue_outbound(account, items)
        replies, copies, linked = self.browse(), self.browse(), set()
        for message, item in zip(messages, items, strict=True):
            post = item.get("inbox_message")
            if not post:
                copies |= message
                continue
            replies |= message
            if post.id not in linked:
                linked.add(post.id)
                message.sudo().channel_message_id = post
        replies.filtered("channel_message_id")._refresh_chatter()
        replies._push_new_chatter_messages()
        copies._mirror_in_conversations()
        copies._push_inbox_states()  # the new copies' ticks
        return messages

    def _documents(self):
        """{message id: the document it concerns (sudo), or None}, with one
        existence check per model for the whole batch."""
        ids_by_model = defaultdict(set)
        for message in self:
            if message.res_model in self.env and message.res_id:
                ids_by_model[message.res_model].add(message.res_id)
        existing = {
            model: set(self.env[model].sudo().browse(ids).exists().ids)
            for model, ids in ids_by_model.items()
        }
        return {
            message.id: self.env[message.res_model].sudo().browse(message.res_id)
            if message.res_id in existing.get(message.res_model, ())
            else None
            for message in self
        }

    def _mirror_in_conversations(self):
        """Post each message in its customer's conversation.

        A customer's message creates the conversation, with the history of earlier
        messages (HISTORY_ON_CREATE); outbound messages only go into existing
        ones: a campaign to thousands of contacts opens no conversation until
        someone answers. Messages without a contact (a lead without one) have no
        conversation: the customer's first reply creates it.
        """
        messages = self.sudo().filtered(
            lambda m: m.partner_id and not m.channel_message_id
        )
        if not messages:
            return
        documents = messages._documents()
        keys, opening = {}, {}
        for message in messages:
            key = (message.account_id, message.partner_id)
            keys.setdefault(key, documents[message.id])
            if message.direction == "inbound":
                opening[key] = keys[key]
        Channel = self.env["discuss.channel"]
        conversations = Channel._whatsapp_conversations(keys, create=False)
        missing = {
            key: record for key, record in opening.items() if key not in conversations
        }
        posts = []
        if missing:
            created = Channel._whatsapp_conversations(missing)
            conversations.update(created)
            posts += self._history_posts(created, exclude=messages)
        touched = self.env["discuss.channel"].sudo()
        for message in messages:
            channel = conversations.get((message.account_id, message.partner_id))
            if not channel:
                continue
            channel._whatsapp_remember_number(message)
            if message.direction == "inbound":
                # Assigned before the post: the responsible is told of it.
                if not channel.whatsapp_user_id:
                    channel._whatsapp_assign_default(documents[message.id])
                touched |= channel
            posts.append((message, channel, None))
        self._post_in_conversations(posts)
        # A customer's message reopens the window: the countdown restarts.
        touched.invalidate_recordset(["whatsapp_window_expires_at"])
        touched._whatsapp_push_state()
        messages._push_new_chatter_messages()

    @api.model
    def _history_posts(self, conversations, exclude):
        """The latest earlier messages of new conversations, oldest first and
        dated as they were, to copy into them: opening one shows what was sent
        before the customer answered (a campaign, a test message)."""
        posts = []
        for (account, partner), channel in conversations.items():
            history = self.sudo().search(
                [
                    ("account_id", "=", account.id),
                    ("partner_id", "=", partner.id),
                    ("channel_message_id", "=", False),
                    ("id", "not in", exclude.ids),
                    ("message_type", "!=", "reaction"),
                ],
                order="id desc",
                limit=HISTORY_ON_CREATE,
            )
            posts += [
                (message, channel, message.received_date or message.queued_date)
                for message in history.sorted("id")
            ]
        return posts

    @api.model
    def _post_in_conversations(self, posts):
        """Copy messages into conversations, ``[(message, channel, date or None)]``,
        in that order, all at once (discuss.channel._whatsapp_post_copies)."""
        copies = self.env["discuss.channel"]._whatsapp_post_copies(
            [
                (channel, message._conversation_copy_values(date))
                for message, channel, date in posts
            ]
        )
        for (message, _channel, _date), copy in zip(posts, copies, strict=True):
            message.channel_message_id = copy

    def _conversation_copy_values(self, date=None):
        """The copy in Discuss: by the customer, or by the user who sent it."""
        self.ensure_one()
        if self.direction == "inbound":
            author = self.partner_id
        else:
            author = (self.author_id or self.env.user).partner_id
        values = {"body": self._chatter_body(), "author_id": author.id}
        if date:
            values["date"] = date
        return values

    # ------------------------------------------------------------------ chat

    def _mirror_reaction(self):
        """Show the customer's reaction (``reaction_emoji``) on the copies of
        these messages in their conversations. Called by the webhook processor
        when a reaction arrives."""
        for message in self.sudo().filtered("channel_message_id"):
            if not message.partner_id:
                continue
            message.channel_message_id._whatsapp_show_customer_reaction(
                message.partner_id, message.reaction_emoji or ""
            )

    def _push_inbox_states(self):
        """Send the ticks of outbound messages just copied into conversations:
        Discuss's new-message notification is built before the copy is linked."""
        by_channel = defaultdict(list)
        for message in self.sudo().filtered("channel_message_id"):
            copy = message.channel_message_id
            if message.direction == "outbound" and copy.model == "discuss.channel":
                by_channel[copy.res_id].append(
                    {
                        "id": copy.id,
                        "whatsapp_state": message.state,
                        "whatsapp_failure": message.failure_title or False,
                    }
                )
        for channel_id, values in by_channel.items():
            self.env["discuss.channel"].browse(channel_id)._bus_send(
                "mail.record/insert", compat.store_payload("mail.message", values)
            )

    @api.model
    def _inbox_reply_to(self, post):
        """The message an agent's reply quotes: the WhatsApp message of the
        conversation's message it answers (Discuss's reply-to), if any."""
        parent = post.parent_id
        if not parent:
            return self.browse()
        return self.sudo().search([("channel_message_id", "=", parent.id)], limit=1)

    # ------------------------------------------------------------------ bus

    @api.model
    def _chatter_audience(self, mail_message_ids):
        """Who shows each chatter message: [(id, model, res_id, partner id)], the
        partner being an internal follower of the document (None for a
        conversation's copy, whose channel is the audience). One query."""
        if not mail_message_ids:
            return []
        self.env["mail.message"].flush_model(["model", "res_id"])
        self.env["mail.followers"].flush_model(["res_model", "res_id", "partner_id"])
        self.env["res.users"].flush_model(["partner_id", "active", "share"])
        self.env.cr.execute(
            """
            SELECT m.id, m.model, m.res_id, f.partner_id
              FROM mail_message m
         LEFT JOIN mail_followers f
                ON m.model <> 'discuss.channel'
               AND f.res_model = m.model AND f.res_id = m.res_id
               AND EXISTS (SELECT 1 FROM res_users u
                            WHERE u.partner_id = f.partner_id
                              AND u.active AND NOT u.share)
             WHERE m.id = ANY(%s)
            """,
            (list(mail_message_ids),),
        )
        return self.env.cr.fetchall()

    def _sender_partners(self):
        """{chatter message id: the sending user's partner} of outbound messages."""
        senders = {}
        for message in self.filtered(lambda m: m.direction == "outbound"):
            user = message.author_id
            if user and user.active and not user.share:
                for copy in message._chatter_copies(conversation=False):
                    senders[copy.id] = user.partner_id.id
        return senders

    def _chatter_targets(self, mail_message_ids):
        """[(bus target, mail.message ids)]: who shows these messages of ``self``
        (conversations, internal followers of the documents, the senders)."""
        channels, partners = defaultdict(set), defaultdict(set)
        for mail_message_id, model, res_id, partner_id in self._chatter_audience(
            list(mail_message_ids)
        ):
            if model == "discuss.channel":
                channels[res_id].add(mail_message_id)
            elif partner_id:
                partners[partner_id].add(mail_message_id)
        for mail_message_id, partner_id in self._sender_partners().items():
            if mail_message_id in mail_message_ids:
                partners[partner_id].add(mail_message_id)
        return [
            (self.env["discuss.channel"].browse(channel_id), ids)
            for channel_id, ids in channels.items()
        ] + [
            (self.env["res.partner"].browse(partner_id), ids)
            for partner_id, ids in partners.items()
        ]

    def _push_attachments(self):
        """Show the media downloaded after the post where the messages are open."""
        copies = {copy.id for message in self for copy in message._chatter_copies()}
        Mail = self.env["mail.message"].sudo()
        for target, ids in self._chatter_targets(copies):
            compat.push_attachments(target, Mail.browse(sorted(ids)))

    def _push_chatter_bodies(self, bodies):
        """Send refreshed bodies ({mail.message id: body}) to whoever shows them."""
        if not bodies:
            return
        states, failures = {}, {}
        for message in self:
            for copy in message._chatter_copies():
                states[copy.id] = message.state
                failures[copy.id] = message.failure_title or False
        values = {
            mail_message_id: {
                "id": mail_message_id,
                "body": Markup(body),
                "whatsapp_state": states.get(mail_message_id),
                "whatsapp_failure": failures.get(mail_message_id, False),
            }
            for mail_message_id, body in bodies.items()
        }
        targets = self._chatter_targets(set(values))
        for target, ids in targets:
            target._bus_send(
                "mail.record/insert",
                compat.store_payload("mail.message", [values[i] for i in sorted(ids)]),
            )

    def _push_new_chatter_messages(self):
        """Tell the internal followers of the documents (and the senders) that
        WhatsApp messages were posted in their chatters."""
        by_id = {}
        for message in self:
            for copy in message._chatter_copies(conversation=False):
                by_id[copy.id] = message
        threads, partners = {}, defaultdict(set)
        for mail_message_id, model, res_id, partner_id in self._chatter_audience(
            list(by_id)
        ):
            threads[mail_message_id] = (model, res_id)
            if partner_id:
                partners[partner_id].add((model, res_id))
        for mail_message_id, partner_id in self._sender_partners().items():
            if mail_message_id in threads:
                partners[partner_id].add(threads[mail_message_id])
        for partner_id, keys in partners.items():
            self.env["res.partner"].browse(partner_id)._bus_send(
                CHATTER_MESSAGES,
                {"threads": [{"model": m, "id": i} for m, i in sorted(keys)]},
            )
