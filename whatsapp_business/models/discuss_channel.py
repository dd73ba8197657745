"""The WhatsApp inbox: one Discuss conversation per (account, customer).

Every whatsapp.message is mirrored into its conversation (whatsapp_message_inbox.py);
what an agent writes in the conversation is sent through the queue
(whatsapp.message._queue_outbound), linked to the customer's open lead.
"""

from datetime import timedelta

import psycopg2
from markupsafe import Markup

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tools import clean_context, format_datetime, html2plaintext, mute_logger

from ..tools import compat
from ..wa_cloud import const, payloads

USER_GROUP = "whatsapp_business.group_whatsapp_user"
# Values of a conversation sent to the Discuss client with the channel.
STORE_KEYS = (
    "whatsapp_account_id",
    "whatsapp_partner_id",
    "whatsapp_user_id",
    "whatsapp_window_expires_at",
)

# A write of these fields only leaves the conversation's WhatsApp values as they are.
INTEREST_ONLY = {"last_interest_dt"}

# Set by the addon only (in sudo), never by a user's write.
PROTECTED_FIELDS = {
    "whatsapp_account_id",
    "whatsapp_partner_id",
    "whatsapp_phone",
    "whatsapp_wa_user_id",
}


def _is_whatsapp(channel):
    return channel.channel_type == "whatsapp"


class DiscussChannel(models.Model):
    _inherit = "discuss.channel"

    channel_type = fields.Selection(
        selection_add=[("whatsapp", "WhatsApp")], ondelete={"whatsapp": "cascade"}
    )
    whatsapp_account_id = fields.Many2one(
        "whatsapp.account",
        string="WhatsApp Account",
        readonly=True,
        index="btree_not_null",
        ondelete="cascade",
    )
    # Stored for the record rules: a conversation belongs to its account's company.
    whatsapp_company_id = fields.Many2one(
        "res.company",
        string="WhatsApp Company",
        related="whatsapp_account_id.company_id",
        store=True,
        index="btree_not_null",
    )
    whatsapp_partner_id = fields.Many2one(
        "res.partner",
        string="Customer",
        readonly=True,
        index="btree_not_null",
        ondelete="set null",
    )
    whatsapp_user_id = fields.Many2one(
        "res.users",
        string="Responsible",
        index="btree_not_null",
        domain=[("share", "=", False)],
        help="Member of the conversation: notified of every customer message.",
    )
    # The number (or user id) replies go to: the customer's last one.
    whatsapp_phone = fields.Char(string="WhatsApp Number", readonly=True)
    whatsapp_wa_user_id = fields.Char(string="WhatsApp User ID", readonly=True)
    whatsapp_window_expires_at = fields.Datetime(
        string="Window Closes At",
        compute="_compute_whatsapp_window",
        help="Free text can be sent until then: 24 hours after the customer's "
        "last message.",
    )
    whatsapp_window_open = fields.Boolean(
        string="Window Open", compute="_compute_whatsapp_window"
    )

    locals().update(
        compat.sql_constraints(
            (
                "whatsapp_conversation_unique",
                "UNIQUE(whatsapp_account_id, whatsapp_partner_id)",
                "A customer has one WhatsApp conversation per account.",
            ),
        )
    )

    # ------------------------------------------------------------------ compute

    def _compute_whatsapp_window(self):
        Message = self.env["whatsapp.message"].sudo()
        now = fields.Datetime.now()
        last = {}
        conversations = self.filtered(_is_whatsapp)
        for account in conversations.whatsapp_account_id:
            mine = conversations.filtered(
                lambda c, a=account: c.whatsapp_account_id == a
            )
            dates = Message._last_inbound_dates(
                account,
                {c.whatsapp_phone for c in mine if c.whatsapp_phone},
                {c.whatsapp_wa_user_id for c in mine if not c.whatsapp_phone} - {False},
            )
            for channel in mine:
                last[channel.id] = dates.get(
                    channel.whatsapp_phone or channel.whatsapp_wa_user_id
                )
        for channel in self:
            received = last.get(channel.id)
            expires = received and received + timedelta(
                hours=const.SERVICE_WINDOW_HOURS
            )
            channel.whatsapp_window_expires_at = expires or False
            channel.whatsapp_window_open = bool(expires and expires > now)

    @api.constrains("whatsapp_user_id", "whatsapp_account_id")
    def _check_whatsapp_user(self):
        for channel in self.filtered("whatsapp_user_id"):
            if not channel._whatsapp_may_answer(channel.whatsapp_user_id):
                raise ValidationError(
                    self.env._(
                        "%(user)s cannot be responsible for this conversation: they "
                        "must be a WhatsApp user of %(company)s.",
                        user=channel.whatsapp_user_id.name,
                        company=channel.whatsapp_company_id.name,
                    )
                )

    def _whatsapp_may_answer(self, user):
        self.ensure_one()
        return bool(
            user.active
            and not user.share
            and self.whatsapp_company_id in user.company_ids
            and user.has_group(USER_GROUP)
        )

    # ------------------------------------------------------------------ Discuss client

    def _whatsapp_store_values(self):
        """What the Discuss client knows of a conversation (ids, window end)."""
        self.ensure_one()
        return {
            "whatsapp_account_id": self.whatsapp_account_id.id,
            "whatsapp_partner_id": self.whatsapp_partner_id.id,
            "whatsapp_user_id": self.whatsapp_user_id.id,
            "whatsapp_window_expires_at": fields.Datetime.to_string(
                self.whatsapp_window_expires_at
            ),
        }

    def _whatsapp_window_label(self):
        """Shown as the conversation's description in Discuss's header, in the
        language and time zone of the user it is computed for (the environment's:
        each member gets their own, see _whatsapp_push_state)."""
        self.ensure_one()
        if not self.whatsapp_window_open:
            return self.env._("24-hour window closed: send a template")
        return self.env._(
            "Free text until %(time)s (24-hour window)",
            time=format_datetime(
                self.env,
                self.whatsapp_window_expires_at,
                tz=self.env.context.get("tz") or self.env.user.tz or "UTC",
                dt_format="short",
            ),
        )

    def _channel_basic_info(self):
        # Odoo 18: the channel's data in the client, and the diffs sent on write.
        data = super()._channel_basic_info()
        if self.channel_type == "whatsapp" and not self.env.context.get(
            "whatsapp_sync_skip"
        ):
            data.update(self._whatsapp_store_values())
            data["description"] = self._whatsapp_window_label()
        return data

    def _to_store_defaults(self, target):
        # Odoo 19: the channel's data in the client.
        return (
            super()._to_store_defaults(target)
            + self._whatsapp_store_attrs()
            + compat.store_attrs(
                ["description"],
                lambda channel, _key: channel._whatsapp_window_label(),
                _is_whatsapp,
            )
        )

    def _sync_field_names(self):
        # Odoo 19: the diffs sent on write.
        res = super()._sync_field_names()
        if not self.env.context.get("whatsapp_sync_skip"):
            res[None] += self._whatsapp_store_attrs()
        return res

    def _whatsapp_store_attrs(self):
        return compat.store_attrs(
            STORE_KEYS,
            lambda channel, key: channel._whatsapp_store_values()[key],
            _is_whatsapp,
        )

    def _whatsapp_push_state(self):
        """Send the conversations' window and responsible to their members, each
        in their language and time zone (the window's end is a time of day)."""
        for channel in self.sudo():
            values = channel._whatsapp_store_values()
            for member in channel.channel_member_ids:
                user = member.partner_id.user_ids[:1]
                if not user:
                    continue
                label = channel.with_context(
                    lang=user.lang, tz=user.tz
                )._whatsapp_window_label()
                member.partner_id._bus_send(
                    "mail.record/insert",
                    compat.store_payload(
                        "discuss.channel",
                        [{"id": channel.id, "description": label, **values}],
                    ),
                )

    # ------------------------------------------------------------------ conversations

    @api.model
    def _whatsapp_conversations(self, keys, create=True):
        """The conversations of ``keys``, {(account, partner): channel}, created when
        missing unless ``create`` is False (then missing keys are left out).
        ``keys`` maps (account, partner) to the document the message concerns (for
        the responsible), or None."""
        Channel = self.sudo()
        accounts = self.env["whatsapp.account"].browse(
            {account.id for account, _partner in keys}
        )
        partners = self.env["res.partner"].browse(
            {partner.id for _account, partner in keys}
        )
        found = Channel.search(
            [
                ("channel_type", "=", "whatsapp"),
                ("whatsapp_account_id", "in", accounts.ids),
                ("whatsapp_partner_id", "in", partners.ids),
            ]
        )
        result = {
            (channel.whatsapp_account_id, channel.whatsapp_partner_id): channel
            for channel in found
        }
        if not create:
            return result
        missing = [
            (account, partner, record)
            for (account, partner), record in keys.items()
            if (account, partner) not in result
        ]
        if missing:
            created = Channel._whatsapp_create_many(missing)
            for (account, partner, _record), channel in zip(
                missing, created, strict=True
            ):
                result[account, partner] = channel
        return result

    @api.model
    def _whatsapp_create_many(self, items):
        """Create the conversations of ``items`` [(account, partner, document)], in
        that order, and give each its responsible."""
        # install_mode: Discuss would make the current user (the webhook cron's
        # OdooBot, a manager sending a campaign) a member; the responsible is.
        try:
            with self.env.cr.savepoint(), mute_logger("odoo.sql_db"):
                channels = (
                    self.sudo()
                    .with_context(install_mode=True)
                    .create(
                        [
                            {
                                "channel_type": "whatsapp",
                                "name": partner.display_name or partner.name or "?",
                                "whatsapp_account_id": account.id,
                                "whatsapp_partner_id": partner.id,
                                "whatsapp_phone": partner.phone_sanitized or False,
                            }
                            for account, partner, _record in items
                        ]
                    )
                    .with_context(install_mode=False)
                )
        except psycopg2.errors.UniqueViolation:
            # Another transaction (a webhook, a colleague) created one of these
            # since our snapshot, which cannot see it. Odoo runs a request, and the
            # inbox a webhook batch, again after a serialization failure, and that
            # run finds the conversation: PostgreSQL raises one (Odoo reads its
            # code), in place of the constraint's error the user would see.
            with mute_logger("odoo.sql_db"):
                self.env.cr.execute(
                    "DO $$ BEGIN RAISE EXCEPTION 'WhatsApp conversation created "
                    "concurrently' USING ERRCODE = 'serialization_failure'; END $$"
                )
        for channel, (_account, _partner, record) in zip(channels, items, strict=True):
            channel._whatsapp_assign_default(record)
        return channels

    def _whatsapp_assign_default(self, record=None):
        """The customer's open lead's salesperson, else the account's default
        responsible, else the account's agents in turn; nobody if none answers."""
        self.ensure_one()
        account = self.whatsapp_account_id
        lead = record if record and record._name == "crm.lead" else None
        if not lead and self.whatsapp_partner_id:
            lead = self.env["whatsapp.webhook.processor"]._open_lead(
                account, self.whatsapp_partner_id
            )
        candidates = [lead.user_id if lead else None, account.inbox_user_id]
        user = (
            next(
                (u for u in candidates if u and self._whatsapp_may_answer(u)),
                None,
            )
            or account._inbox_next_agent()
        )
        if user:
            self.sudo().with_context(
                whatsapp_silent_assign=True
            ).whatsapp_user_id = user
        return user

    def _whatsapp_remember_number(self, message):
        """Replies go to the customer's last number (or WhatsApp user id)."""
        self.ensure_one()
        vals = {}
        if message.phone and message.phone != self.whatsapp_phone:
            vals["whatsapp_phone"] = message.phone
        if message.wa_user_id and message.wa_user_id != self.whatsapp_wa_user_id:
            vals["whatsapp_wa_user_id"] = message.wa_user_id
        if vals:
            self.sudo().write(vals)

    # ------------------------------------------------------------------ responsible

    def write(self, vals):
        if set(vals) & PROTECTED_FIELDS and not self.env.su:
            # Who and where a conversation sends to is the addon's to decide: a
            # member moving it to another account or number would redirect it.
            raise AccessError(
                self.env._("The account and customer of a conversation are fixed.")
            )
        if set(vals) <= INTEREST_ONLY:
            # A new message's last interest cannot change what a conversation
            # shows of WhatsApp: Discuss, which compares the channel's data
            # before and after a write, need not compute ours (window label,
            # responsible...) twice per conversation.
            return super(
                DiscussChannel, self.with_context(whatsapp_sync_skip=True)
            ).write(vals)
        if "whatsapp_user_id" not in vals:
            return super().write(vals)
        conversations = self.filtered(_is_whatsapp)
        before = {channel: channel.whatsapp_user_id for channel in conversations}
        result = super().write(vals)
        for channel in conversations:
            if channel.whatsapp_user_id != before[channel]:
                channel._whatsapp_responsible_changed(before[channel])
        return result

    def _whatsapp_responsible_changed(self, previous):
        """The responsible is the member: Discuss notifies them and counts unread."""
        self.ensure_one()
        channel = self.sudo()
        user = channel.whatsapp_user_id
        if user:
            channel._add_members(users=user, post_joined_message=False)
        if previous and previous.partner_id in channel.channel_member_ids.partner_id:
            channel._action_unfollow(partner=previous.partner_id)
        if self.env.context.get("whatsapp_silent_assign"):
            return
        if user:
            note = self.env._(
                "Conversation assigned to %(user)s by %(by)s.",
                user=user.name,
                by=self.env.user.name,
            )
        else:
            note = self.env._("Conversation unassigned by %s.", self.env.user.name)
        channel.message_post(
            body=Markup('<div class="o_mail_notification">%s</div>') % note,
            message_type="notification",
            subtype_xmlid="mail.mt_note",
        )

    def _whatsapp_check_agent(self):
        """Conversations of the caller's companies, for WhatsApp users only."""
        self.check_access("read")
        if not self.env.user.has_group(USER_GROUP):
            raise AccessError(self.env._("Only WhatsApp users answer conversations."))
        if self.filtered(lambda c: not _is_whatsapp(c)):
            raise UserError(self.env._("This is not a WhatsApp conversation."))

    def action_whatsapp_assign_to_me(self):
        self._whatsapp_check_agent()
        self.sudo().whatsapp_user_id = self.env.user
        return True

    def action_whatsapp_open(self):
        self.ensure_one()
        self._whatsapp_check_agent()
        return self._whatsapp_open_action()

    def _whatsapp_open_action(self):
        """Open the conversation in Discuss, as a member: it is then listed in the
        sidebar and its new messages notify."""
        self.ensure_one()
        self.sudo()._add_members(users=self.env.user, post_joined_message=False)
        return {
            "type": "ir.actions.client",
            "tag": "mail.action_discuss",
            "params": {"active_id": f"discuss.channel_{self.id}"},
        }

    def action_whatsapp_send_template(self):
        """The composer for the customer's open lead or contact: buttons or a list
        while the 24-hour window is open, a template otherwise. What it sends
        appears in the conversation (whatsapp.message._queue_outbound)."""
        self.ensure_one()
        self._whatsapp_check_agent()
        record = self._whatsapp_document()
        if not record:
            raise UserError(self.env._("This conversation has no customer any more."))
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Send a WhatsApp Template or Buttons"),
            "res_model": "whatsapp.composer",
            "view_mode": "form",
            "views": [(False, "form")],
            "target": "new",
            "context": {
                "active_model": record._name,
                "active_id": record.id,
                "active_ids": record.ids,
                "default_account_id": self.whatsapp_account_id.id,
                "default_mode": "interactive"
                if self.whatsapp_window_open
                else "template",
            },
        }

    def _whatsapp_document(self):
        """The document a reply is logged on: the customer's open lead, else them."""
        self.ensure_one()
        partner = self.whatsapp_partner_id
        if not partner:
            return None
        lead = self.env["whatsapp.webhook.processor"]._open_lead(
            self.whatsapp_account_id, partner
        )
        return lead or partner.sudo()

    # ------------------------------------------------------------------ replies

    def message_post(self, **kwargs):
        reply = (
            len(self) == 1
            and self.channel_type == "whatsapp"
            and kwargs.get("message_type", "notification") == "comment"
        )
        # An agent's message in a conversation is sent to the customer: checked
        # before anything is posted.
        plan = self._whatsapp_check_reply(**kwargs) if reply else None
        message = super().message_post(**kwargs)
        if reply:
            self._whatsapp_send_reply(message, plan)
        return message

    @api.model
    def _whatsapp_post_copies(self, posts):
        """Post copies of WhatsApp messages, ``[(channel, {"body", "author_id",
        "date"?})]`` in that order, and return the new mail.messages in the same
        order. Private: no client can call it, and the reply path never runs (a
        copy is never sent).

        What Discuss's ``message_post`` does for each comment, done once for the
        batch: one insert of the messages with the values it would give them
        (author's address, company, alias domain; mail.message fills in the
        rest), its after-post hook, the conversations' last activity, then each
        message's own ``discuss.channel/new_message`` notification. Posting them
        one by one cost as much as the rest of an inbound message's processing.
        Their Reply-To is computed for the batch too (mail.message's create would
        compute it message by message).
        ``message_post``'s recipients only matter for web push: a conversation
        whose members have a push device gets Discuss's whole notification.
        """
        if not posts:
            return self.env["mail.message"]
        channels = self.sudo().browse(list(dict.fromkeys(c.id for c, _v in posts)))
        company = self.env.company
        alias_domains = channels._mail_get_alias_domains(default_company=company)
        companies = channels._mail_get_companies(default=company)
        subtype_id = self.env["ir.model.data"]._xmlid_to_res_id("mail.mt_comment")
        Message = self.env["mail.message"].sudo()
        stored_name = Message._fields["record_name"].store
        # As message_post computes it, once per author.
        email_from = {
            author_id: channels._message_compute_author(author_id)[1]
            for author_id in {values["author_id"] for _c, values in posts}
        }
        reply_to = compat.reply_to_by_post(
            [channel for channel, _v in posts],
            [values["author_id"] for _c, values in posts],
            [email_from[values["author_id"]] for _c, values in posts],
        )
        values_list = []
        for (channel, values), message_reply_to in zip(posts, reply_to, strict=True):
            channel = channels.browse(channel.id)
            values_list.append(
                {
                    **values,
                    "email_from": email_from[values["author_id"]],
                    "reply_to": message_reply_to,
                    "model": self._name,
                    "res_id": channel.id,
                    "message_type": "comment",
                    "subtype_id": subtype_id,
                    "email_add_signature": True,
                    "record_alias_domain_id": alias_domains[channel.id].id,
                    "record_company_id": companies[channel.id].id,
                    **({"record_name": channel.display_name} if stored_name else {}),
                }
            )
        messages = Message.with_context(clean_context(self.env.context)).create(
            values_list
        )
        for message, values in zip(messages, values_list, strict=True):
            channels.browse(values["res_id"])._message_post_after_hook(message, values)
        channels.last_interest_dt = fields.Datetime.now()
        pushed = channels._whatsapp_with_push_devices()
        for channel in channels - pushed:
            compat.channel_pin_for_members(channel)
        for message, values in zip(messages, values_list, strict=True):
            channel = channels.browse(values["res_id"])
            if channel in pushed:
                channel._notify_thread(message, values)
            else:
                compat.channel_new_message(channel, message, values)
        return messages

    def _whatsapp_with_push_devices(self):
        """The conversations of which a member has a web push device."""
        members = self.sudo().channel_member_ids
        devices = (
            self.env["mail.push.device"]
            .sudo()
            .search([("partner_id", "in", members.partner_id.ids)])
        )
        partners = devices.partner_id
        return self.filtered(
            lambda channel: channel.sudo().channel_member_ids.partner_id & partners
        )

    def _whatsapp_check_reply(self, **kwargs):
        """What the reply sends (see _whatsapp_reply_plan), or a UserError."""
        if not self.env.user.has_group(USER_GROUP):
            raise UserError(self.env._("Only WhatsApp users answer conversations."))
        if not self.whatsapp_partner_id:
            raise UserError(self.env._("This conversation has no customer any more."))
        if not self.whatsapp_window_open:
            raise UserError(
                self.env._(
                    "The 24-hour window with %s is closed: free text cannot be sent. "
                    "Send an approved template instead (Send Template on the "
                    "conversation).",
                    self.whatsapp_partner_id.name,
                )
            )
        text = html2plaintext(kwargs.get("body") or "").strip()
        attachments = (
            self.env["ir.attachment"]
            .sudo()
            .browse(kwargs.get("attachment_ids") or [])
            .sorted("id")
        )
        return self._whatsapp_reply_plan(text, attachments)

    def _whatsapp_send_reply(self, message, plan):
        """Queue the reply, logged on the customer's open lead (or contact)."""
        recipient = {
            "record": self._whatsapp_document(),
            "partner": self.whatsapp_partner_id,
            "phone": self.whatsapp_phone or False,
            "wa_user_id": False if self.whatsapp_phone else self.whatsapp_wa_user_id,
            "inbox_message": message,
        }
        items = [dict(recipient, **item) for item in plan]
        # Discuss's reply-to: the first message sent quotes the one answered.
        quoted = self.env["whatsapp.message"]._inbox_reply_to(message)
        if quoted and quoted.account_id == self.whatsapp_account_id:
            items[0]["reply_to"] = quoted
        # As the agent, through the one outbound path: their rights, their name.
        self.env["whatsapp.message"].sudo(False)._queue_outbound(
            self.whatsapp_account_id, items
        )
        if not self.whatsapp_user_id:
            self.sudo().whatsapp_user_id = self.env.user

    def _whatsapp_reply_plan(self, text, attachments):
        """One item per attachment (the text as the first caption that allows it),
        the text alone first otherwise. Checked before anything is posted."""
        items = []
        caption_used = not text
        for attachment in attachments:
            mimetype = attachment.mimetype or ""
            limit = payloads.MEDIA_LIMITS.get(mimetype)
            if not limit:
                raise UserError(
                    self.env._(
                        "WhatsApp does not accept %(mimetype)s files (%(name)s).",
                        mimetype=mimetype or "?",
                        name=attachment.name,
                    )
                )
            if attachment.file_size > limit:
                raise UserError(
                    self.env._(
                        "%(name)s is too large for WhatsApp: at most %(limit)s MB.",
                        name=attachment.name,
                        limit=round(limit / payloads.MB, 1),
                    )
                )
            item = {"attachment": attachment, "body": False}
            captionable = payloads.media_takes_caption(mimetype)
            if not caption_used and captionable and len(text) <= payloads.MAX_CAPTION:
                item["body"] = text
                caption_used = True
            items.append(item)
        if not caption_used:
            if len(text) > payloads.MAX_TEXT_BODY:
                raise UserError(
                    self.env._(
                        "The message is too long: %(length)s characters, WhatsApp "
                        "allows %(limit)s.",
                        length=len(text),
                        limit=payloads.MAX_TEXT_BODY,
                    )
                )
            items.insert(0, {"body": text})
        if not items:
            raise UserError(self.env._("Write a message or attach a file."))
        return items

    def _check_can_update_message_content(self, message):
        if self.channel_type == "whatsapp" and (
            self.env["whatsapp.message"]
            .sudo()
            .search_count([("channel_message_id", "=", message.id)], limit=1)
        ):
            raise UserError(
                self.env._("A WhatsApp message cannot be changed once it is sent.")
            )
        return super()._check_can_update_message_content(message)

    # ------------------------------------------------------------------ documents

    @api.model
    def _whatsapp_open_for(self, partner, record=None):
        """Open (creating it if needed) the customer's conversation in Discuss:
        the most recent one in the user's companies, else one on the default
        account."""
        if not self.env.user.has_group(USER_GROUP):
            raise AccessError(self.env._("Only WhatsApp users answer conversations."))
        if not partner:
            raise UserError(
                self.env._("Set a contact first: conversations are per contact.")
            )
        channel = self.sudo().search(
            [
                ("channel_type", "=", "whatsapp"),
                ("whatsapp_partner_id", "=", partner.id),
                ("whatsapp_company_id", "in", self.env.companies.ids),
            ],
            order="last_interest_dt desc, id desc",
            limit=1,
        )
        if not channel:
            account = self.env.company._get_whatsapp_account() or self.env[
                "whatsapp.account"
            ].search(
                [
                    ("company_id", "in", self.env.companies.ids),
                    ("company_id.whatsapp_enabled", "=", True),
                ],
                limit=1,
            )
            if not account:
                raise UserError(
                    self.env._("No WhatsApp account is set up for your companies.")
                )
            created = self._whatsapp_conversations({(account, partner): record})
            Message = self.env["whatsapp.message"]
            Message._post_in_conversations(
                Message._history_posts(created, exclude=Message)
            )
            channel = created[account, partner]
        # The caller opened it from a document they may read: they join it.
        return channel._whatsapp_open_action()
