import base64
import json
import logging
import math
import textwrap
import threading
import time
from datetime import timedelta

import psycopg2
from markupsafe import Markup, escape
from psycopg2.extras import execute_values

from odoo import SUPERUSER_ID, api, fields, models, modules
from odoo.exceptions import UserError

from ..tools import compat
from ..wa_cloud import const, payloads, receipts
from ..wa_cloud.client import CloudApiClient
from ..wa_cloud.errors import WhatsAppError
from ..wa_cloud.retry import NO_RETRY
from ..wa_cloud.sender import (
    FAILED,
    HOLD,
    MAYBE_SENT,
    NOT_ATTEMPTED,
    RATE_LIMIT_EXHAUSTED,
    REQUEUE,
    RETRY,
    SENT,
    UNEXPECTED,
    InFlightController,
    Outcome,
    Sender,
    SendJob,
    SendSettings,
)
from ..wa_cloud.urls import UnsafeUrlError

_logger = logging.getLogger(__name__)

STATE_ICONS = {
    "queued": "fa-clock-o",
    "sent": "fa-check",
    "delivered": "fa-check-circle",
    "read": "fa-check-circle text-success",
    "failed": "fa-exclamation-triangle text-danger",
    "cancelled": "fa-ban",
    "received": "fa-whatsapp",
}
FAILURE_TYPES = [
    ("window_closed", "Outside the 24-hour window"),
    ("invalid_number", "Invalid number"),
    ("recipient", "Recipient unreachable"),
    ("opted_out", "Opted out"),
    ("rate_limit", "Rate limited"),
    ("authentication", "Token invalid"),
    ("permission", "Missing permission"),
    ("account", "Account blocked"),
    ("template", "Template rejected"),
    ("media", "Media error"),
    ("invalid_request", "Invalid request"),
    ("server", "Meta server error"),
    ("network", "Network error"),
    ("unknown", "Unknown error"),
]
# The pure core's error categories map one to one, but for 'recipient' numbers.
RECIPIENT_INVALID_CODES = {131026, 131021, 131030}


class WhatsAppMessage(models.Model):
    _name = "whatsapp.message"
    _inherit = ["whatsapp.tenant.mixin"]
    _description = "WhatsApp Message"
    _order = "id desc"
    _rec_name = "display_label"
    _check_company_auto = True

    account_id = fields.Many2one(
        "whatsapp.account",
        required=True,
        ondelete="restrict",
        index=True,
        check_company=True,
    )
    company_id = fields.Many2one(
        "res.company", required=True, index=True, readonly=True
    )
    direction = fields.Selection(
        [("outbound", "Outbound"), ("inbound", "Inbound")],
        required=True,
        default="outbound",
        readonly=True,
    )
    state = fields.Selection(
        [
            ("queued", "Queued"),
            ("sent", "Sent"),
            ("delivered", "Delivered"),
            ("read", "Read"),
            ("failed", "Failed"),
            ("received", "Received"),
            ("cancelled", "Cancelled"),
        ],
        required=True,
        default="queued",
        readonly=True,
        index=True,
    )
    message_type = fields.Selection(
        [
            ("text", "Text"),
            ("template", "Template"),
            ("image", "Image"),
            ("document", "Document"),
            ("audio", "Audio"),
            ("video", "Video"),
            ("sticker", "Sticker"),
            ("location", "Location"),
            ("contacts", "Contacts"),
            ("interactive", "Interactive"),
            ("button", "Button Reply"),
            ("reaction", "Reaction"),
            ("order", "Order"),
            ("system", "System"),
            ("unsupported", "Unsupported"),
        ],
        string="Type",
        required=True,
        default="text",
        readonly=True,
    )
    wamid = fields.Char(string="WhatsApp Message ID", readonly=True, copy=False)
    body = fields.Text(readonly=True)
    template_id = fields.Many2one(
        "whatsapp.template", readonly=True, index="btree_not_null"
    )
    template_params = fields.Json(string="Template Parameters", readonly=True)
    request_payload = fields.Json(
        readonly=True,
        copy=False,
        help="The exact JSON sent to Meta.",
    )
    attachment_id = fields.Many2one("ir.attachment", readonly=True)
    media_id = fields.Char(string="Meta Media ID", readonly=True, copy=False)
    media_mime_type = fields.Char(readonly=True)
    media_filename = fields.Char(readonly=True)
    media_state = fields.Selection(
        [
            ("none", "No Media"),
            ("pending", "To Download"),
            ("done", "Downloaded"),
            ("failed", "Unavailable"),
        ],
        default="none",
        required=True,
        readonly=True,
    )
    media_attempts = fields.Integer(readonly=True)
    partner_id = fields.Many2one("res.partner", readonly=True, index="btree_not_null")
    phone = fields.Char(
        string="Number", readonly=True, index="btree_not_null", help="E.164 number."
    )
    wa_user_id = fields.Char(
        string="WhatsApp User ID",
        readonly=True,
        index="btree_not_null",
        help="Business-scoped user id of a customer who hides their number.",
    )
    res_model = fields.Char(string="Document Model", readonly=True, index=True)
    res_id = fields.Many2oneReference(
        string="Document ID", model_field="res_model", readonly=True, index=True
    )
    # The lead the message belongs to: record rules give salespeople the messages
    # of the leads they can read.
    lead_id = fields.Many2one(
        "crm.lead",
        compute="_compute_lead_id",
        store=True,
        index="btree_not_null",
        ondelete="set null",
    )
    author_id = fields.Many2one(
        "res.users", string="Sent By", readonly=True, default=lambda self: self.env.user
    )
    mail_message_id = fields.Many2one(
        "mail.message", readonly=True, index="btree_not_null"
    )
    # Indexed: the Discuss client's message data looks up the state (ticks).
    partner_mail_message_id = fields.Many2one(
        "mail.message", readonly=True, index="btree_not_null"
    )
    # Its copy in the customer's conversation in Discuss (whatsapp_message_inbox.py).
    channel_message_id = fields.Many2one(
        "mail.message", readonly=True, index="btree_not_null", copy=False
    )
    reply_to_wamid = fields.Char(readonly=True)
    failure_type = fields.Selection(
        FAILURE_TYPES, readonly=True, index="btree_not_null"
    )
    failure_code = fields.Integer(readonly=True)
    failure_title = fields.Char(readonly=True)
    failure_details = fields.Text(readonly=True)
    queued_date = fields.Datetime(default=fields.Datetime.now, readonly=True)
    sent_date = fields.Datetime(readonly=True)
    delivered_date = fields.Datetime(readonly=True)
    read_date = fields.Datetime(readonly=True)
    failed_date = fields.Datetime(readonly=True)
    received_date = fields.Datetime(
        readonly=True, help="Meta's timestamp of an inbound message."
    )
    retry_count = fields.Integer(readonly=True)
    next_attempt_date = fields.Datetime(readonly=True, index="btree_not_null")
    claim_date = fields.Datetime(
        readonly=True,
        copy=False,
        help="When the send queue took the message; set before the HTTP call so that "
        "a crash never leads to a second send.",
    )
    pricing_category = fields.Char(readonly=True)
    pricing_type = fields.Char(readonly=True)
    conversation_id = fields.Char(readonly=True)
    display_label = fields.Char(compute="_compute_display_label")

    # Odoo 18 and 19 declare table constraints differently (tools/compat.py).
    locals().update(
        compat.sql_constraints(
            (
                "wamid_account_unique",
                "UNIQUE(account_id, wamid)",
                "A WhatsApp message id is stored once per account.",
            ),
        )
    )

    def init(self):
        # The window query: last inbound message per account and number / user id.
        self.env.cr.execute(
            """
            CREATE INDEX IF NOT EXISTS whatsapp_message_inbound_phone_idx
            ON whatsapp_message (account_id, phone, received_date DESC)
            WHERE direction = 'inbound'
            """
        )
        self.env.cr.execute(
            """
            CREATE INDEX IF NOT EXISTS whatsapp_message_queue_idx
            ON whatsapp_message (account_id, next_attempt_date)
            WHERE state = 'queued'
            """
        )
        # The send queue looks for the accounts with read receipts to send.
        self.env.cr.execute(
            """
            CREATE INDEX IF NOT EXISTS whatsapp_message_receipt_pending_idx
            ON whatsapp_message (account_id)
            WHERE read_receipt_state = 'pending'
            """
        )

    @api.depends("res_model", "res_id")
    def _compute_lead_id(self):
        for message in self:
            message.lead_id = message.res_model == "crm.lead" and message.res_id

    @api.depends("direction", "phone", "wa_user_id", "message_type")
    def _compute_display_label(self):
        types = dict(self._fields["message_type"]._description_selection(self.env))
        for message in self:
            arrow = "→" if message.direction == "outbound" else "←"
            who = message.partner_id.name or message.phone or message.wa_user_id or ""
            message.display_label = f"{arrow} {who} ({types.get(message.message_type)})"

    @api.model_create_multi
    def create(self, vals_list):
        accounts = self.env["whatsapp.account"].sudo()
        for vals in vals_list:
            if vals.get("account_id") and not vals.get("company_id"):
                vals["company_id"] = accounts.browse(vals["account_id"]).company_id.id
        return super().create(vals_list)

    # ------------------------------------------------------------------ window

    @api.model
    def _last_inbound_dates(self, account, phones=(), user_ids=()):
        """Meta timestamp of the last inbound message per number / user id."""
        result = {}
        self.flush_model(
            ["direction", "account_id", "phone", "wa_user_id", "received_date"]
        )
        if phones:
            self.env.cr.execute(
                """
                SELECT phone, MAX(received_date) FROM whatsapp_message
                WHERE direction = 'inbound' AND account_id = %s AND phone IN %s
                GROUP BY phone
                """,
                (account.id, tuple(phones)),
            )
            result.update(dict(self.env.cr.fetchall()))
        if user_ids:
            self.env.cr.execute(
                """
                SELECT wa_user_id, MAX(received_date) FROM whatsapp_message
                WHERE direction = 'inbound' AND account_id = %s AND wa_user_id IN %s
                GROUP BY wa_user_id
                """,
                (account.id, tuple(user_ids)),
            )
            result.update(dict(self.env.cr.fetchall()))
        return result

    @api.model
    def _window_open_map(self, account, phones=(), user_ids=(), now=None):
        now = now or fields.Datetime.now()
        limit = now - timedelta(hours=const.SERVICE_WINDOW_HOURS)
        last = self._last_inbound_dates(account, phones, user_ids)
        keys = list(phones) + list(user_ids)
        return {key: bool(last.get(key) and last[key] > limit) for key in keys}

    def _is_window_open(self):
        self.ensure_one()
        key = self.phone or self.wa_user_id
        if not key:
            return False
        if self.phone:
            return self._window_open_map(self.account_id, phones=[self.phone])[key]
        return self._window_open_map(self.account_id, user_ids=[key])[key]

    # ------------------------------------------------------------------ chatter

    def _chatter_lang(self):
        """One body serves every reader: the sender's or the company's language."""
        return self.author_id.lang or self.company_id.partner_id.lang or self.env.lang

    def _chatter_body(self, labels=None):
        """The chatter markup; ``labels`` caches the state labels per language."""
        self.ensure_one()
        lang = self._chatter_lang()
        if labels is None:
            labels = {}
        states = labels.get(lang)
        if states is None:
            env = self.with_context(lang=lang).env
            states = labels[lang] = dict(
                self._fields["state"]._description_selection(env)
            )
        icon = STATE_ICONS.get(self.state, "fa-whatsapp")
        if self.message_type == "template" and self.template_id:
            content = escape(self.body or self.template_id.name)
        else:
            content = escape(self.body or "")
        if self.media_filename:
            content += Markup("<br/><i>%s</i>") % self.media_filename
        content = self._chat_decorate(content)  # quote, buttons, reaction
        label = states.get(self.state, "")
        if self.state == "failed" and self.failure_title:
            label = f"{label}: {self.failure_title}"
        # Closed <i></i>, never <i/>: _refresh_chatter stores this unsanitized and
        # HTML reads <i/> as an opening tag, the rest of the body then in italics
        # and FontAwesome's font.
        return Markup(
            '<div class="o_whatsapp_message o_whatsapp_state_%s">'
            '<i class="fa fa-whatsapp"></i> %s<br/>'
            '<small class="text-muted"><i class="fa %s"></i> %s</small></div>'
        ) % (self.state, content, icon, label)

    def _post_in_chatter(self, record, partner=None, notify=True):
        """Post this message on a record's chatter and remember the link.

        ``notify=False`` logs it without notifying the followers (a copy).
        """
        self.ensure_one()
        if not record or not hasattr(record, "message_post"):
            return self.env["mail.message"]
        if not notify:
            author = partner if self.direction == "inbound" and partner else None
            return record.sudo()._message_log(
                body=self._chatter_body(),
                message_type="comment",
                author_id=(author or self.author_id.partner_id).id or None,
            )
        kwargs = {
            "body": self._chatter_body(),
            "message_type": "comment",
            "subtype_xmlid": "mail.mt_note",
        }
        if self.direction == "inbound" and partner:
            kwargs["author_id"] = partner.id
            # Inbound replies notify the followers of the document (e.g. salesperson).
            kwargs["subtype_xmlid"] = "mail.mt_comment"
        elif self.author_id:
            kwargs["author_id"] = self.author_id.partner_id.id
        # E-mail notifications go through the mail queue: the webhook cron and
        # the composer must not wait for an SMTP server.
        return (
            record.sudo()
            .with_context(mail_create_nosubscribe=True, mail_notify_force_send=False)
            .message_post(**kwargs)
        )

    def _chatter_copies(self, conversation=True):
        """The mail.messages that show this message: its log in the document's
        chatter and in the contact's, and (``conversation``) its copy in the
        customer's conversation."""
        self.ensure_one()
        copies = [self.mail_message_id, self.partner_mail_message_id]
        if conversation:
            copies.append(self.channel_message_id)
        return [copy for copy in copies if copy]

    def _refresh_chatter(self):
        """Show the new delivery state in the chatter messages.

        Written in SQL: every status webhook lands here, and the body is our own
        markup around escaped content, so the ORM's sanitizing and tracking of
        mail.message would only cost time.
        """
        self._withdraw_failed_reactions()
        ids, bodies, labels = [], [], {}
        for message in self:
            body = None
            for copy in message._chatter_copies():
                body = body or str(message._chatter_body(labels))
                ids.append(copy.id)
                bodies.append(body)
        if not ids:
            return
        self.env["mail.message"].flush_model(["body"])
        # One statement for the whole batch of messages.
        self.env.cr.execute(
            """
            UPDATE mail_message m
               SET body = v.body, write_date = (now() at time zone 'UTC')
              FROM unnest(%s::int[], %s::text[]) AS v(id, body)
             WHERE m.id = v.id
            """,
            (ids, bodies),
        )
        self.env["mail.message"].browse(ids).invalidate_recordset(
            ["body", "write_date"]
        )
        # Open chatters and conversations show the new state without a reload.
        self._push_chatter_bodies(dict(zip(ids, bodies, strict=True)))

    def _withdraw_failed_reactions(self):
        """An agent's reaction that Meta refused no longer shows as given: not on
        the customer's message (its chatter logs), nor in the conversation, where
        Discuss updates it live. What shows instead is what the customer still
        sees: our last reaction Meta accepted before it (a refused removal gives
        the removed reaction back), or none. A reaction given since stays."""
        failed = self.filtered(
            lambda m: (
                m.message_type == "reaction"
                and m.direction == "outbound"
                and m.state == "failed"
            )
        )
        withdrawn = self.browse()
        no_guest = self.env["mail.guest"]
        for reaction in failed.sudo():
            target = reaction.reply_to_message_id
            if not target or (target.reaction_emoji or False) != (
                reaction.body or False
            ):
                continue
            still_shown = self.sudo().search(
                [
                    ("message_type", "=", "reaction"),
                    ("direction", "=", "outbound"),
                    ("reply_to_message_id", "=", target.id),
                    ("id", "<", reaction.id),
                    ("state", "in", ("sent", "delivered", "read")),
                ],
                order="id desc",
                limit=1,
            )
            emoji = still_shown.body or False
            target.write(
                {
                    "reaction_emoji": emoji,
                    "reaction_date": emoji and still_shown.sent_date,
                }
            )
            withdrawn |= target
            copy = target.channel_message_id.with_context(
                whatsapp_withdraw_reaction=True
            )
            if not copy:
                continue
            agent = reaction.author_id.partner_id
            if agent and reaction.body and reaction.body != emoji:
                copy._message_reaction(reaction.body, "remove", agent, no_guest)
            giver = still_shown.author_id.partner_id
            if (
                emoji
                and giver
                and not copy.reaction_ids.filtered(
                    lambda r, e=emoji, p=giver: r.content == e and r.partner_id == p
                )
            ):
                copy._message_reaction(emoji, "add", giver, no_guest)
        if withdrawn:
            withdrawn._refresh_chatter()

    # ------------------------------------------------------------------ manager actions

    def action_cancel(self):
        self.check_access("write")
        to_cancel = self.filtered(lambda m: m.state == "queued" and not m.claim_date)
        if self - to_cancel:
            raise UserError(
                self.env._(
                    "Only queued messages that are not being sent can be cancelled."
                )
            )
        to_cancel.sudo().write({"state": "cancelled", "next_attempt_date": False})
        to_cancel._refresh_chatter()
        return True

    def action_retry(self):
        self.check_access("write")
        to_retry = self.filtered(
            lambda m: m.state == "failed" and m.direction == "outbound"
        )
        if self - to_retry:
            raise UserError(self.env._("Only failed outbound messages can be retried."))
        to_retry.sudo().write(
            {
                "state": "queued",
                "failure_type": False,
                "failure_code": False,
                "failure_title": False,
                "failure_details": False,
                "failed_date": False,
                "retry_count": 0,
                "next_attempt_date": False,
                "claim_date": False,
            }
        )
        to_retry._refresh_chatter()
        self.env["whatsapp.message"]._trigger_queue()
        return True

    def action_open_document(self):
        self.ensure_one()
        if not self.res_model or not self.res_id:
            return False
        return {
            "type": "ir.actions.act_window",
            "res_model": self.res_model,
            "res_id": self.res_id,
            "view_mode": "form",
        }

    @api.model
    def _trigger_queue(self):
        for xmlid in SEND_RUNNER_CRONS:
            cron = self.env.ref(xmlid, raise_if_not_found=False)
            if cron:
                cron._trigger()

    # ------------------------------------------------------------------ enqueue

    @api.model
    def _queue_outbound(self, account, items):
        """Create outbound messages; the ones that cannot go are failed at once.

        Each item is a dict with: record, partner, phone (E.164) or wa_user_id, and
        either body or template with template_params; optional attachment.
        Nothing is sent here: the queue cron is triggered and does the HTTP.
        """
        # The caller's rights decide, not those of the recordset handed in.
        account = account.with_env(self.env)
        account.check_access("read")
        if not account.company_id.whatsapp_enabled:
            raise UserError(
                self.env._(
                    "WhatsApp is not enabled for %s (CRM > Configuration > Settings).",
                    account.company_id.name,
                )
            )
        phones = {item.get("phone") for item in items if item.get("phone")}
        user_ids = {item.get("wa_user_id") for item in items if item.get("wa_user_id")}
        windows = self._window_open_map(account, phones, user_ids)
        blacklisted = set()
        if phones:
            blacklisted = set(
                self.env["phone.blacklist"]
                .sudo()
                .search([("number", "in", list(phones))])
                .mapped("number")
            )
        vals_list = []
        for item in items:
            vals = self._outbound_values(account, item)
            failure = self._precheck_failure(item, windows, blacklisted)
            if failure:
                vals.update(failure, state="failed", failed_date=fields.Datetime.now())
            vals_list.append(vals)
        messages = self.sudo().create(vals_list)
        for message, item in zip(messages, items, strict=True):
            if message.message_type == "reaction":
                continue  # shown on the message it is about, not as a post
            record = item.get("record")
            partner = item.get("partner")
            if record:
                message.mail_message_id = message._post_in_chatter(record)
            if partner and partner != record:
                message.partner_mail_message_id = message._post_in_chatter(partner)
        queued = messages.filtered(lambda m: m.state == "queued")
        if queued:
            self._trigger_queue()
        _logger.info(
            "WhatsApp account %s: %d message(s) queued, %d failed before sending",
            account.id,
            len(queued),
            len(messages) - len(queued),
        )
        return messages

    @api.model
    def _outbound_values(self, account, item):
        record = item.get("record")
        template = item.get("template")
        attachment = item.get("attachment")
        vals = {
            "account_id": account.id,
            "company_id": account.company_id.id,
            "direction": "outbound",
            "state": "queued",
            "phone": item.get("phone") or False,
            "wa_user_id": item.get("wa_user_id") or False,
            "partner_id": item.get("partner").id if item.get("partner") else False,
            "res_model": record._name if record else False,
            "res_id": record.id if record else False,
            "author_id": self.env.user.id,
        }
        if template:
            params = item.get("template_params") or {}
            vals.update(
                message_type="template",
                template_id=template.id,
                template_params=params,
                body=template._render_text(params),
            )
        elif attachment:
            vals.update(
                message_type=_media_type(attachment.mimetype),
                attachment_id=attachment.id,
                media_filename=attachment.name,
                media_mime_type=attachment.mimetype,
                body=item.get("body") or False,
            )
        else:
            vals.update(message_type="text", body=item.get("body") or "")
        # Quoted replies, interactive messages, reactions.
        vals.update(self._chat_outbound_values(account, item))
        return vals

    @api.model
    def _precheck_failure(self, item, windows, blacklisted):
        """Reasons known before any HTTP call; also enforced again at send time."""
        phone = item.get("phone")
        key = phone or item.get("wa_user_id")
        if not key:
            return {
                "failure_type": "invalid_number",
                "failure_title": item.get("invalid_reason")
                or self.env._("No valid WhatsApp number"),
            }
        if phone and phone in blacklisted:
            return {
                "failure_type": "opted_out",
                "failure_title": self.env._(
                    "The number is on the blacklist (opted out)"
                ),
            }
        template = item.get("template")
        if template and template.status != "APPROVED":
            return {
                "failure_type": "template",
                "failure_title": self.env._(
                    "Template %s is not approved by Meta", template.name
                ),
            }
        if template and item.get("param_error"):
            # Values Meta would refuse (132000/131009): logged, not sent.
            return {"failure_type": "template", "failure_title": item["param_error"]}
        if not template and not windows.get(key):
            return {
                "failure_type": "window_closed",
                "failure_title": self.env._(
                    "Outside the 24-hour window: use an approved template"
                ),
            }
        return None

    # ------------------------------------------------------------------ queue
    #
    # Runner crons (several records, so that several cron workers and servers
    # take part) each serve the accounts that have due messages and that no
    # other runner serves: a PostgreSQL advisory lock per account, held by the
    # thread that sends for it, makes that account's pacing belong to a single
    # process at a time. See README, "Architecture".

    @api.model
    def _cron_process_queue(self, batch_seconds=20):
        """Serve every account with due messages that no other runner serves."""
        deadline = time.monotonic() + batch_seconds
        if _testing():
            # One transaction in tests: the accounts are served one after another.
            done = sum(
                self._serve_account(account, deadline)
                for account in self.env["whatsapp.account"]
                .sudo()
                .browse(self._due_account_ids())
            )
        else:
            done = self._serve_accounts_in_parallel(deadline)
        self.env.invalidate_all()
        remaining = self._count_due()
        compat.notify_cron_progress(self.env, done, remaining)
        self._recover_stale_claims()
        self._schedule_next_retry()
        return done

    @api.model
    def _serve_accounts_in_parallel(self, deadline):
        """One thread (and database connection) per account being served."""
        registry = self.env.registry
        runners = len(SEND_RUNNER_CRONS)
        threads, done = {}, []
        first_pass = True
        while True:
            _commit(self.env.cr)  # a fresh snapshot sees the newly queued messages
            if time.monotonic() < deadline:
                due = [i for i in self._due_account_ids() if i not in threads]
                if first_pass:
                    # Leave a share to the other runners; what they do not take
                    # is taken on the next pass, a second later.
                    due = due[: max(1, math.ceil(len(due) / runners))]
                busy = sum(thread.is_alive() for thread in threads.values())
                for account_id in due[: max(0, MAX_ACCOUNTS_PER_RUN - busy)]:
                    thread = threading.Thread(
                        target=self._account_thread,
                        args=(registry, account_id, deadline, done),
                        name=f"whatsapp-account-{account_id}",
                        daemon=True,
                    )
                    thread.start()
                    threads[account_id] = thread
            first_pass = False
            alive = [thread for thread in threads.values() if thread.is_alive()]
            if not alive:
                return sum(done)
            alive[0].join(timeout=1.0)

    @api.model
    def _account_thread(self, registry, account_id, deadline, done):
        threading.current_thread().dbname = registry.db_name
        try:
            with registry.cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                account = env["whatsapp.account"].browse(account_id)
                done.append(env["whatsapp.message"]._serve_account(account, deadline))
        except Exception:
            # Already handled in _serve_account; this is the last safety net
            # (e.g. the database went away), other accounts go on.
            _logger.exception("WhatsApp send queue: account %s stopped", account_id)

    @api.model
    def _due_account_ids(self):
        """Accounts with due messages, sending allowed, not served by a runner now."""
        self.env.flush_all()
        self.env.cr.execute(
            f"""
            SELECT m.account_id FROM whatsapp_message m {_DUE_ACCOUNTS_SQL}
            UNION
            SELECT m.account_id FROM whatsapp_message m {_DUE_RECEIPTS_SQL}
            ORDER BY 1
            """,
            {"lock_space": SEND_LOCK_SPACE},
        )
        return [row[0] for row in self.env.cr.fetchall()]

    @api.model
    def _count_due(self):
        """Due messages that a runner could take now (for the cron's progress)."""
        self.env.flush_all()
        self.env.cr.execute(
            f"SELECT COUNT(*) FROM whatsapp_message m {_DUE_ACCOUNTS_SQL}",
            {"lock_space": SEND_LOCK_SPACE},
        )
        return self.env.cr.fetchone()[0]

    @api.model
    def _try_lock_account(self, account_id):
        self.env.cr.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", (SEND_LOCK_SPACE, account_id)
        )
        return self.env.cr.fetchone()[0]

    @api.model
    def _unlock_account(self, account_id):
        # A session lock survives commits and rollbacks: released explicitly,
        # and by PostgreSQL if the connection dies.
        try:
            self.env.cr.execute(
                "SELECT pg_advisory_unlock(%s, %s)", (SEND_LOCK_SPACE, account_id)
            )
        except psycopg2.Error:
            _logger.warning(
                "WhatsApp send queue: could not unlock account %s", account_id
            )

    @api.model
    def _serve_account(self, account, deadline):
        """Send the account's due messages until none is due or the run is over."""
        if not self._try_lock_account(account.id):
            return 0  # another runner, maybe on another server, serves it
        sender = None
        try:
            account = account.sudo()
            account.invalidate_recordset()
            if (
                not account.active
                or account.sending_paused
                or not account.company_id.whatsapp_enabled
            ):
                return 0
            # Failure reasons are stored text: written in the company's language.
            lang = account.company_id.partner_id.lang or self.env.lang
            queue = self.sudo().with_company(account.company_id).with_context(lang=lang)
            account = account.with_env(queue.env)
            sender = queue._new_sender(account)
            if sender is None:
                return 0
            queue._send_read_receipts(account, sender)
            return queue._send_rounds(account, sender, deadline)
        finally:
            if sender is not None:
                sender.close()
                _LATENCY_HINTS[(self.env.cr.dbname, account.id)] = (
                    sender.controller.latency
                )
                # The next process to send for this number starts with an empty
                # window: our lock is released only once our last start left it.
                sender.drain()
            self._unlock_account(account.id)

    @api.model
    def _new_sender(self, account):
        """The engine for this account, or None (account paused) when it cannot
        build a client: nothing is claimed, no message is touched."""
        try:
            client_args = account._client_arguments()
            CloudApiClient(**client_args).close()  # validates URL and version
        except (UserError, ValueError) as error:
            reason = error.args[0] if error.args else type(error).__name__
            account._pause_sending(
                self.env._("The account cannot connect to Meta: %s", reason)
            )
            _commit(self.env.cr)
            return None
        settings = SendSettings(
            rate=account.rate_limit,
            max_in_flight=max(account.max_concurrency, 1),
            max_retries=max(account.max_retries, 0),
            rate_limit_retries=max(account.rate_limit_retries, 0),
        )
        controller = InFlightController(
            settings.rate,
            settings.max_in_flight,
            # What this process saw last time: the first round starts right.
            initial_latency=_LATENCY_HINTS.get((self.env.cr.dbname, account.id), 1.0),
        )
        return Sender(
            lambda: CloudApiClient(**client_args, retry_policy=NO_RETRY),
            settings,
            controller=controller,
        )

    @api.model
    def _send_rounds(self, account, sender, deadline):
        """Claim, send and record, round after round, while messages are due."""
        done = 0
        limit = max(account.rate_limit * ROUND_SECONDS, 1)
        while time.monotonic() < deadline and not sender.held:
            messages = self._claim(account, limit)
            if not messages:
                break
            try:
                self._send_round(account, sender, messages)
            except Exception as error:
                _logger.exception(
                    "WhatsApp send queue: unexpected error for account %s", account.id
                )
                self._round_crashed(account, sender, messages, error)
                return done
            done += len(messages)
        if sender.held:
            account._pause_sending(
                account._hold_reason(sender.hold_error), sender.hold_error
            )
        elif done and account.send_error_count:
            account.send_error_count = 0
        _commit(self.env.cr)
        return done

    def _send_round(self, account, sender, messages):
        failures = messages._sendtime_failures()
        in_round = set(messages.ids)
        now = fields.Datetime.now()
        outcomes, jobs = [], []
        for message in messages:
            if message.id in failures:
                outcomes.append(
                    Outcome(message.id, FAILED, result=failures[message.id])
                )
                continue
            wait = message._quote_wait(in_round, failures, now)
            if wait is not None:
                outcomes.append(
                    Outcome(
                        message.id,
                        REQUEUE,
                        reason=NOT_ATTEMPTED,
                        delay=wait,
                        attempts=message.retry_count,
                    )
                )
                continue
            try:
                spec = message._build_send_job()
            except Exception as error:  # noqa: BLE001 - this message only
                _logger.warning(
                    "WhatsApp message %s: cannot build the send (%s)",
                    message.id,
                    type(error).__name__,
                )
                outcomes.append(
                    Outcome(
                        message.id,
                        REQUEUE,
                        error=error,
                        reason=UNEXPECTED,
                        attempts=message.retry_count + 1,
                    )
                )
                continue
            jobs.append(SendJob(message.id, spec, message.retry_count))
        self._record_outcomes(account, outcomes)
        for batch in sender.run(jobs):
            # Committed as they come: a crash must never lead to a second send.
            self._record_outcomes(account, batch)
        messages.invalidate_recordset()
        try:
            with self.env.cr.savepoint():
                messages._refresh_chatter()
        except psycopg2.errors.TransactionRollbackError:
            # A status webhook refreshed these chatter messages meanwhile, with a
            # newer state: its version stands.
            _logger.info("WhatsApp send round: chatter refresh left to the webhooks")
        _commit(self.env.cr)

    def _round_crashed(self, account, sender, messages, error):
        """Put back what surely was not sent; count the failure on the account.

        A message whose request was started keeps its claim unless its outcome
        was written: Meta may have accepted it, and it is never sent twice.
        """
        _rollback(self.env.cr)
        self.env.invalidate_all()
        not_started = [i for i in messages.ids if i not in sender.dispatched]
        if not_started:
            self.env.cr.execute(
                "UPDATE whatsapp_message SET claim_date = NULL"
                " WHERE id IN %s AND state = 'queued'",
                (tuple(not_started),),
            )
        reason = self.env._(
            "Sending stopped by an unexpected error (%s); the messages that were "
            "not sent wait in the queue.",
            type(error).__name__,
        )
        count = account.send_error_count + 1
        account.write({"send_error_count": count, "last_error": reason})
        if count >= ACCOUNT_ERRORS_BEFORE_PAUSE:
            account._pause_sending(reason)
        _commit(self.env.cr)

    @api.model
    def _schedule_next_retry(self):
        self.env.flush_all()
        self.env.cr.execute(
            "SELECT MIN(next_attempt_date) FROM whatsapp_message "
            "WHERE state = 'queued' AND next_attempt_date IS NOT NULL"
        )
        at = self.env.cr.fetchone()[0]
        if at:
            self.env.ref(SEND_RUNNER_CRONS[0])._trigger(at)

    @api.model
    def _recover_stale_claims(self):
        """A worker died between claim and result: the outcome is unknown.

        Re-sending could deliver twice, so these fail with a clear reason; a late
        status webhook still finds them through biz_opaque_callback_data.
        """
        stale = self.sudo().search(
            [
                ("state", "=", "queued"),
                ("claim_date", "<", fields.Datetime.now() - timedelta(minutes=15)),
                ("wamid", "=", False),
            ]
        )
        if stale:
            stale.write(
                {
                    "state": "failed",
                    "failed_date": fields.Datetime.now(),
                    "failure_type": "network",
                    "failure_title": self.env._(
                        "Sending was interrupted; the message may have been delivered "
                        "and is not sent again"
                    ),
                }
            )
            stale._refresh_chatter()

    def _claim(self, account, limit):
        self.env.flush_all()
        self.env.cr.execute(
            """
            SELECT id FROM whatsapp_message
            WHERE account_id = %s AND state = 'queued' AND claim_date IS NULL
              AND (next_attempt_date IS NULL
                   OR next_attempt_date <= (now() at time zone 'UTC'))
            ORDER BY id
            LIMIT %s
            FOR UPDATE SKIP LOCKED
            """,
            (account.id, limit),
        )
        ids = [row[0] for row in self.env.cr.fetchall()]
        messages = self.sudo().browse(ids)
        if messages:
            messages.write({"claim_date": fields.Datetime.now()})
        _commit(self.env.cr)  # claims are durable before any HTTP call
        return messages

    def _sendtime_failures(self):
        """Reasons to fail before any HTTP call, checked again at send time (a
        server action cannot bypass them): {message id: failure values}."""
        failures = {}
        if not self:
            return failures
        phones = {m.phone for m in self if m.phone}
        blacklisted = set()
        if phones:
            # In SQL: both sides are E.164 already, and the ORM's search would
            # parse every number again (a millisecond each).
            self.env["phone.blacklist"].flush_model(["number", "active"])
            self.env.cr.execute(
                "SELECT number FROM phone_blacklist WHERE active AND number IN %s",
                (tuple(phones),),
            )
            blacklisted = {row[0] for row in self.env.cr.fetchall()}
        free_form = self.filtered(lambda m: m.message_type != "template")
        windows = {}
        for account in free_form.account_id:
            mine = free_form.filtered(lambda m, a=account: m.account_id == a)
            windows.update(
                self._window_open_map(
                    account,
                    {m.phone for m in mine if m.phone},
                    {m.wa_user_id for m in mine if not m.phone and m.wa_user_id},
                )
            )
        for message in self:
            key = message.phone or message.wa_user_id
            if message.phone and message.phone in blacklisted:
                failures[message.id] = {
                    "failure_type": "opted_out",
                    "failure_title": self.env._(
                        "The number is on the blacklist (opted out)"
                    ),
                }
            elif message.message_type == "template":
                if message.template_id.status != "APPROVED":
                    failures[message.id] = {
                        "failure_type": "template",
                        "failure_title": self.env._(
                            "Template %s is not approved by Meta",
                            message.template_id.name,
                        ),
                    }
            elif not key or not windows.get(key):
                failures[message.id] = {
                    "failure_type": "window_closed",
                    "failure_title": self.env._(
                        "Outside the 24-hour window: use an approved template"
                    ),
                }
        return failures

    def _build_send_job(self):
        """Everything the HTTP thread needs, read from the database beforehand."""
        self.ensure_one()
        job = {
            "to": self.phone or self.wa_user_id,
            "callback": f"whatsapp.message:{self.id}",
            "type": self.message_type,
        }
        if self.message_type == "template":
            job.update(
                template_name=self.template_id.name,
                language=self.template_id.language,
                components=self.template_id._get_send_components(
                    self.template_params or {}
                ),
            )
        elif self.attachment_id:
            job.update(
                content=base64.b64decode(self.attachment_id.sudo().datas or b""),
                mime_type=self.attachment_id.mimetype,
                filename=self.attachment_id.name,
                caption=self.body or None,
            )
        else:
            job["body"] = self.body or ""
        job.update(self._chat_send_job())  # quote, interactive, reaction
        return job

    @api.model
    def _record_outcomes(self, account, outcomes):
        """Write the outcomes of a round and commit (retried on a write conflict).

        A status webhook may update the same rows at the same moment; both
        writes are idempotent, so the loser simply writes again.
        """
        if not outcomes:
            return
        for attempt in range(1, 6):
            try:
                self._write_outcomes(account, outcomes)
                _commit(self.env.cr)
                return
            except psycopg2.errors.TransactionRollbackError:
                if _testing() or attempt == 5:
                    raise
                _rollback(self.env.cr)
                self.env.invalidate_all()
                time.sleep(0.05 * attempt)

    @api.model
    def _write_outcomes(self, account, outcomes):
        now = fields.Datetime.now()
        sent = [outcome for outcome in outcomes if outcome.kind == SENT]
        if sent:
            self.flush_model()
            self._sql_record_sent(
                self.env.cr,
                [
                    {
                        "id": outcome.key,
                        "wamid": outcome.result.wamid,
                        "now": now,
                        "payload": json.dumps(outcome.result.payload),
                    }
                    for outcome in sent
                ],
            )
            self.browse([outcome.key for outcome in sent]).invalidate_recordset()
            account._mark_success()
        for outcome in outcomes:
            if outcome.kind != SENT:
                message = self.browse(outcome.key)
                message.write(message._outcome_values(account, outcome, now))

    def _quote_wait(self, in_round, failures, now):
        """Seconds this message waits for the message of ours it quotes, or None
        when it goes now. A quote needs the quoted message's WhatsApp id: while
        that message is still in the queue (in this very round, or waiting for a
        retry), the reply follows it, and keeps its quote. One that failed for
        good is no longer on WhatsApp: the reply goes without the quote."""
        self.ensure_one()
        quoted = self.reply_to_message_id
        if (
            not quoted
            or quoted.wamid
            or quoted.state != "queued"
            or quoted.account_id != self.account_id  # another number's queue
        ):
            return None
        if quoted.id in in_round:
            return None if quoted.id in failures else 0.0
        if quoted.next_attempt_date and quoted.next_attempt_date > now:
            return (quoted.next_attempt_date - now).total_seconds()
        if quoted.claim_date:
            # In another process's round (or a crashed one's, until recovered):
            # look again later rather than at every round.
            return QUOTE_WAIT_SECONDS
        return 0.0  # claimed before this one in the next round (older first)

    def _outcome_values(self, account, outcome, now):
        """The one place where a send outcome becomes the message's new values.

        Outcome kinds come from the pure engine (wa_cloud.sender.decide): a
        message leaves 'queued' only when sent or failed for good; a refusal
        that did not send it keeps it queued (retry later, or held with its
        account).
        """
        self.ensure_one()
        error = outcome.error
        if outcome.kind == REQUEUE and outcome.reason == NOT_ATTEMPTED:
            # Not tried: no attempt counted; it may wait (a quoted message's retry).
            if outcome.delay:
                return {
                    "claim_date": False,
                    "next_attempt_date": now + timedelta(seconds=outcome.delay),
                }
            return {"claim_date": False}
        if outcome.kind == HOLD:
            return {"claim_date": False}
        if outcome.kind == RETRY:
            return {
                "claim_date": False,
                "retry_count": outcome.attempts,
                "next_attempt_date": now + timedelta(seconds=outcome.delay),
                "failure_type": self._failure_values(error)["failure_type"],
                "failure_code": error.code or 0,
                "failure_title": error.title or error.message or False,
            }
        if outcome.kind == REQUEUE:  # an unexpected error: bounded retries
            name = type(error).__name__ if error else "?"
            if outcome.attempts <= account.max_retries:
                return {
                    "claim_date": False,
                    "retry_count": outcome.attempts,
                    "next_attempt_date": now
                    + timedelta(seconds=min(30 * 2**outcome.attempts, 3600)),
                    "failure_type": "unknown",
                    "failure_title": self.env._(
                        "Not sent yet: unexpected error (%s); tried again later", name
                    ),
                }
            vals = {
                "failure_type": "unknown",
                "failure_code": 0,
                "failure_title": self.env._(
                    "Not sent: the message could not be prepared (%s)", name
                ),
            }
        elif error is None:  # refused before any HTTP call; values in `result`
            vals = dict(outcome.result)
        else:
            vals = self._failure_values(error)
            if outcome.reason == MAYBE_SENT:
                vals["failure_title"] = self.env._(
                    "Meta did not answer in time; the message may have been sent and "
                    "is not sent again"
                )
            elif outcome.reason == RATE_LIMIT_EXHAUSTED:
                vals["failure_title"] = self.env._(
                    "Not sent: Meta's rate limit still refused it after %s attempts",
                    outcome.attempts,
                )
        vals.update(
            state="failed",
            failed_date=now,
            claim_date=False,
            next_attempt_date=False,
            retry_count=max(outcome.attempts - 1, 0),
        )
        return vals

    @api.model
    def _sql_record_sent(self, cr, rows):
        """Sent, unless a status webhook already moved the message further.

        One statement for the whole flush (executemany is a round trip per row).
        """
        execute_values(
            cr,
            """
            UPDATE whatsapp_message m
               SET wamid = COALESCE(m.wamid, v.wamid),
                   state = CASE WHEN m.state = 'queued' THEN 'sent' ELSE m.state END,
                   sent_date = COALESCE(m.sent_date, v.now),
                   claim_date = NULL,
                   next_attempt_date = NULL,
                   failure_type = CASE WHEN m.state = 'queued' THEN NULL
                                  ELSE m.failure_type END,
                   failure_code = CASE WHEN m.state = 'queued' THEN NULL
                                  ELSE m.failure_code END,
                   failure_title = CASE WHEN m.state = 'queued' THEN NULL
                                   ELSE m.failure_title END,
                   request_payload = v.payload::jsonb,
                   write_date = v.now
              FROM (VALUES %s) AS v(id, wamid, now, payload)
             WHERE m.id = v.id
            """,
            [(row["id"], row["wamid"], row["now"], row["payload"]) for row in rows],
            template="(%s::int, %s::varchar, %s::timestamp, %s::text)",
            page_size=1000,
        )

    # ------------------------------------------------------------------ chat actions
    #
    # Quoted replies, interactive messages (reply buttons and lists) and the
    # customer's choice, reactions both ways, read receipts. Outbound ones are
    # queued through _queue_outbound and sent by the send queue like any
    # message; Meta's rules are in wa_cloud.

    reply_to_message_id = fields.Many2one(
        "whatsapp.message",
        string="Replies To",
        readonly=True,
        index="btree_not_null",
        ondelete="set null",
        help="The message quoted by this one, or the message a reaction is about.",
    )
    interactive_spec = fields.Json(
        string="Interactive Content",
        readonly=True,
        help="The reply buttons or the list of an interactive message we sent.",
    )
    interactive_reply_id = fields.Char(
        string="Reply ID",
        readonly=True,
        index="btree_not_null",
        help="The id of the button or list row the customer tapped (the payload "
        "of a template's quick-reply button): use it in automation rules.",
    )
    interactive_reply_title = fields.Char(
        string="Reply",
        readonly=True,
        help="The label of the option the customer chose.",
    )
    reaction_emoji = fields.Char(
        string="Reaction",
        readonly=True,
        help="The emoji this message received: the customer's on our messages, "
        "ours on theirs.",
    )
    reaction_date = fields.Datetime(readonly=True)
    read_receipt_state = fields.Selection(
        [
            ("pending", "To Send"),
            ("sent", "Sent"),
            ("skipped", "Not Needed"),
            ("failed", "Failed"),
        ],
        string="Read Receipt",
        readonly=True,
        copy=False,
        help="Whether the customer was shown that we read this message (blue "
        "ticks). One receipt per conversation marks the earlier messages too.",
    )

    # ------------------------------------------------------------------ chat: send

    @api.model
    def _chat_outbound_values(self, account, item):
        """Values of a queued message for the item's ``reply_to`` (a message to
        quote, or to react to), ``interactive`` (a spec, see
        wa_cloud.payloads.interactive_spec) or ``reaction`` (an emoji, "" to
        remove ours)."""
        vals = {}
        reply_to = item.get("reply_to")
        if reply_to:
            if reply_to.account_id != account:
                raise UserError(
                    self.env._(
                        "A message can only quote or react to a message of the same "
                        "WhatsApp account."
                    )
                )
            vals.update(
                reply_to_message_id=reply_to.id, reply_to_wamid=reply_to.wamid or False
            )
        if item.get("interactive"):
            try:
                spec = payloads.interactive_spec(item["interactive"])
            except ValueError as error:
                raise UserError(
                    self.env._("The interactive message is not valid: %s", error)
                ) from None
            vals.update(
                message_type="interactive", interactive_spec=spec, body=spec["body"]
            )
        elif "reaction" in item:
            if not reply_to:
                raise UserError(self.env._("A reaction needs the message it is about."))
            try:
                emoji = payloads.check_reaction_emoji(item["reaction"])
            except ValueError as error:
                raise UserError(self.env._("Not a reaction: %s", error)) from None
            vals.update(message_type="reaction", body=emoji or False)
        return vals

    def _chat_send_job(self):
        """The send job's keys for a quote, an interactive message or a reaction."""
        self.ensure_one()
        job = {}
        # A quoted message of ours gets its wamid when sent: read it at send time.
        target = self.reply_to_wamid or self.reply_to_message_id.wamid
        if self.message_type == "reaction":
            if not target:
                raise ValueError("the message reacted to has no WhatsApp id")
            job.update(message_id=target, emoji=self.body or "")
        elif target:
            job["reply_to"] = target
        if self.message_type == "interactive":
            job["interactive"] = self.interactive_spec
        return job

    def _send_reaction(self, emoji):
        """React to this customer's message with ``emoji`` ("" removes ours).

        Queued like any message (the 24-hour window applies) and shown on this
        message, not as a post of its own. Returns the reaction message.
        """
        self.ensure_one()
        self.check_access("read")
        # Meta's reactions are for messages the customer sent (cloud-api.md 2.2).
        if self.direction != "inbound" or not self.wamid:
            raise UserError(
                self.env._(
                    "Only a message received from the customer can get a reaction."
                )
            )
        document = self._chat_document()
        reaction = self.env["whatsapp.message"]._queue_outbound(
            self.account_id,
            [
                {
                    "record": document,
                    "partner": self.partner_id,
                    "phone": self.phone,
                    "wa_user_id": self.wa_user_id,
                    "reaction": emoji,
                    "reply_to": self,
                }
            ],
        )
        if reaction.state == "queued":
            self.sudo().write(
                {
                    "reaction_emoji": reaction.body or False,
                    "reaction_date": fields.Datetime.now(),
                }
            )
            self._refresh_chatter()
        return reaction

    def action_reply(self):
        """Open the composer on this customer message's document, quoting it."""
        self.ensure_one()
        self.check_access("read")
        document = self._chat_document() or self.partner_id
        if self.direction != "inbound" or not document:
            raise UserError(
                self.env._("Only a message received from a contact can be replied to.")
            )
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Reply on WhatsApp"),
            "res_model": "whatsapp.composer",
            "view_mode": "form",
            "target": "new",
            "context": {
                "active_model": document._name,
                "active_id": document.id,
                "active_ids": document.ids,
                "default_account_id": self.account_id.id,
                "default_reply_to_message_id": self.id,
            },
        }

    def _chat_document(self):
        self.ensure_one()
        if self.res_model in self.env and self.res_id:
            return self.env[self.res_model].sudo().browse(self.res_id).exists()
        return None

    # ------------------------------------------------------------------ chat: chatter

    def _chat_decorate(self, content):
        """The chatter markup of ``content`` with the quote, the buttons or list
        rows we sent, the customer's choice and the reaction received."""
        quoted = self.reply_to_message_id
        if quoted and self.message_type != "reaction" and quoted.body:
            preview = textwrap.shorten(quoted.body, QUOTE_PREVIEW, placeholder="…")
            content = (
                Markup(
                    '<span class="o_whatsapp_quote d-block border-start ps-2 '
                    'text-muted">%s</span>'
                )
                % preview
                + content
            )
        if self.interactive_reply_id:
            content = Markup('<i class="fa fa-hand-pointer-o"></i> ') + content
        if self.message_type == "interactive" and self.interactive_spec:
            spec = self.interactive_spec
            titles = [title for _id, title in payloads.interactive_choices(spec)]
            options = Markup(" ").join(
                Markup(
                    '<span class="badge rounded-pill text-bg-light border">%s</span>'
                )
                % title
                for title in titles
            )
            if spec.get("type") == "list":
                options = (
                    Markup('<i class="fa fa-list"></i> %s: ') % spec.get("button")
                    + options
                )
            content += (
                Markup('<br/><span class="o_whatsapp_choices">%s</span>') % options
            )
        if self.reaction_emoji:
            content += Markup(' <span class="o_whatsapp_reaction">%s</span>') % (
                self.reaction_emoji
            )
        return content

    # ------------------------------------------------------------------ chat: receipts

    def _mark_as_read(self):
        """Show the customer that these inbound messages were read (blue ticks).

        Called when a user opens the conversation. Idempotent: each message is
        marked once (``read_receipt_state``). The receipts are queued and sent
        by the send queue, one per conversation for its newest message, which
        marks the earlier ones too (wa_cloud.receipts). Accounts whose "Send
        Read Receipts" is off send none. Returns the messages whose receipt
        was queued.
        """
        self.check_access("read")
        todo = self.sudo().filtered(
            lambda m: (
                m.direction == "inbound"
                and m.wamid
                and m.read_receipt_state in (False, "failed")
                and m.account_id.send_read_receipts
            )
        )
        if not todo:
            return self.browse()
        send, skip = receipts.plan_read_receipts(
            [
                (
                    message.id,
                    (message.account_id.id, message.phone or message.wa_user_id),
                    message.received_date,
                    message.message_type,
                )
                for message in todo
            ],
            fields.Datetime.now(),
        )
        todo.browse(skip).write({"read_receipt_state": "skipped"})
        todo.browse(send).write({"read_receipt_state": "pending"})
        if send:
            self._trigger_queue()
        return self.browse(send)

    @api.model
    def _send_read_receipts(self, account, sender):
        """Send the account's pending read receipts with ``sender`` (the send
        queue's engine: same pacing and account hold as messages).

        Receipts are best effort and idempotent at Meta: one refused or lost
        is marked failed (the next opening of the conversation tries again),
        one not attempted stays pending. Returns the number handled.
        """
        pending = self.search(
            [("account_id", "=", account.id), ("read_receipt_state", "=", "pending")],
            order="id",
            limit=RECEIPT_BATCH,
        )
        if not pending:
            return 0
        jobs = [SendJob(m.id, {"type": "read", "message_id": m.wamid}) for m in pending]
        by_state = {}
        try:
            for batch in sender.run(jobs):
                for outcome in batch:
                    state = _receipt_state(outcome)
                    if state:
                        by_state.setdefault(state, []).append(outcome.key)
        except Exception:
            # Never in the way of the account's messages, sent next.
            _logger.exception("WhatsApp account %s: read receipts stopped", account.id)
        for state, ids in by_state.items():
            self.browse(ids).write({"read_receipt_state": state})
        _logger.info(
            "WhatsApp account %s: %d read receipt(s) sent, %d failed",
            account.id,
            len(by_state.get("sent", [])),
            len(by_state.get("failed", [])),
        )
        return len(jobs)

    # ------------------------------------------------------------------ media

    @api.model
    def _cron_download_media(self, limit=50):
        """Fetch received media soon after arrival: Meta's URLs expire quickly."""
        messages = self.sudo().search(
            [
                ("media_state", "=", "pending"),
                "|",
                ("next_attempt_date", "=", False),
                ("next_attempt_date", "<=", fields.Datetime.now()),
            ],
            limit=limit,
            # A message that failed before waits behind the new ones.
            order="media_attempts ASC NULLS FIRST, id",
        )
        for message in messages:
            try:
                message._download_media()
            except Exception as error:
                # A bug or a broken account must not block the media behind it.
                _logger.exception("WhatsApp message %s: media download", message.id)
                _rollback(self.env.cr)
                self.env.invalidate_all()
                message._media_attempt_failed(error)
            _commit(self.env.cr)
        return len(messages)

    def _media_attempt_failed(self, error):
        attempts = self.media_attempts + 1
        vals = {"media_attempts": attempts}
        # A host that may not receive the token will not become one later.
        if attempts >= MEDIA_MAX_ATTEMPTS or isinstance(error, UnsafeUrlError):
            vals.update(media_state="failed", next_attempt_date=False)
        else:
            vals["next_attempt_date"] = fields.Datetime.now() + timedelta(
                minutes=2**attempts
            )
        self.write(vals)
        _logger.info(
            "WhatsApp message %s: media download failed (%s), attempt %d",
            self.id,
            type(error).__name__,
            attempts,
        )

    def _download_media(self):
        self.ensure_one()
        try:
            with self.account_id._get_client() as client:
                info = client.get_media_url(self.media_id)
                content = client.download_media(info.url)
        except (WhatsAppError, UserError, ValueError) as error:
            self._media_attempt_failed(error)
            return False
        name = self.media_filename or _media_filename(self.message_type, info.mime_type)
        attachment = (
            self.env["ir.attachment"]
            .sudo()
            .create(
                {
                    "name": name,
                    "raw": content,
                    "mimetype": info.mime_type or self.media_mime_type or False,
                    "res_model": self.res_model or "whatsapp.message",
                    "res_id": self.res_id or self.id,
                }
            )
        )
        self.write(
            {
                "attachment_id": attachment.id,
                "media_state": "done",
                "media_attempts": self.media_attempts + 1,
                "next_attempt_date": False,
            }
        )
        for mail_message in (
            self.mail_message_id
            | self.partner_mail_message_id
            | self.channel_message_id
        ).sudo():
            mail_message.attachment_ids = [(4, attachment.id)]
        self._push_attachments()
        return True

    def _failure_values(self, error):
        category = getattr(error, "category", "unknown") or "unknown"
        if category == "recipient" and error.code in RECIPIENT_INVALID_CODES:
            category = "invalid_number"
        valid = {key for key, _label in FAILURE_TYPES}
        return {
            "failure_type": category if category in valid else "unknown",
            "failure_code": error.code or 0,
            "failure_title": error.title or error.message or False,
            "failure_details": error.details or False,
        }


def _receipt_state(outcome):
    """The receipt's new state for a send outcome; None: it stays pending."""
    if outcome.kind == SENT:
        return "sent" if outcome.result else "failed"
    if outcome.kind == HOLD or (
        outcome.kind == REQUEUE and outcome.reason == NOT_ATTEMPTED
    ):
        return None
    return "failed"


# Read receipts sent per account and queue run; the rest go with the next run.
RECEIPT_BATCH = 500
QUOTE_PREVIEW = 80  # characters of a quoted message shown above a reply
QUOTE_WAIT_SECONDS = 30  # a reply's wait for a quoted message claimed elsewhere
MEDIA_MAX_ATTEMPTS = 5
MEDIA_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "video/mp4": "mp4",
    "audio/ogg": "ogg",
    "audio/mpeg": "mp3",
    "application/pdf": "pdf",
}


def _media_filename(message_type, mimetype):
    base = (mimetype or "").split(";")[0].strip()
    return f"whatsapp-{message_type}.{MEDIA_EXTENSIONS.get(base, 'bin')}"


def _media_type(mimetype):
    mimetype = mimetype or ""
    if mimetype.startswith("image/") and mimetype != "image/webp":
        return "image"
    if mimetype == "image/webp":
        return "sticker"
    if mimetype.startswith("video/"):
        return "video"
    if mimetype.startswith("audio/"):
        return "audio"
    return "document"


# Advisory-lock namespace of the send queue: (SEND_LOCK_SPACE, account id).
SEND_LOCK_SPACE = 0x5741  # "WA"
SEND_RUNNER_CRONS = (
    "whatsapp_business.ir_cron_whatsapp_send_queue",
    "whatsapp_business.ir_cron_whatsapp_send_queue_2",
)
# Accounts one runner serves at once (a thread and a connection each).
MAX_ACCOUNTS_PER_RUN = 8
# A round claims this many seconds of sends at the account's rate.
ROUND_SECONDS = 20
# Graph latency last seen per (database, account) in this process: a hint only.
_LATENCY_HINTS = {}
# Unexpected errors in a row before an account's sending is paused.
ACCOUNT_ERRORS_BEFORE_PAUSE = 3
# Accounts a runner may serve now: sending allowed, and no runner holding the
# account's advisory lock.
_SERVABLE_ACCOUNTS_SQL = """
    JOIN whatsapp_account a ON a.id = m.account_id
    JOIN res_company c ON c.id = a.company_id
    WHERE a.active AND NOT COALESCE(a.sending_paused, FALSE)
      AND c.whatsapp_enabled
      AND NOT EXISTS (
          SELECT 1 FROM pg_locks l
           WHERE l.locktype = 'advisory'
             AND l.database = (SELECT oid FROM pg_database
                                WHERE datname = current_database())
             AND l.classid = %(lock_space)s::oid
             AND l.objid = a.id::oid
             AND l.objsubid = 2
             AND l.granted)
"""
# Due messages of those accounts.
_DUE_ACCOUNTS_SQL = (
    _SERVABLE_ACCOUNTS_SQL
    + """
      AND m.state = 'queued' AND m.claim_date IS NULL
      AND (m.next_attempt_date IS NULL
           OR m.next_attempt_date <= (now() at time zone 'UTC'))
"""
)
# Read receipts waiting to be sent, which go out with the account's messages.
_DUE_RECEIPTS_SQL = _SERVABLE_ACCOUNTS_SQL + "  AND m.read_receipt_state = 'pending'\n"


def _testing():
    return bool(
        modules.module.current_test
        or getattr(threading.current_thread(), "testing", False)
    )


def _commit(cr):
    """Commit between queue steps in production; tests run in one transaction."""
    if not _testing():
        cr.commit()  # pylint: disable=invalid-commit


def _rollback(cr):
    if not _testing():
        cr.rollback()
