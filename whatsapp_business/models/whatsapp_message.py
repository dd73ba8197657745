import base64
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import timedelta

import psycopg2
from markupsafe import Markup, escape

from odoo import api, fields, models, modules
from odoo.exceptions import UserError

from ..wa_cloud import const
from ..wa_cloud.client import CloudApiClient
from ..wa_cloud.errors import (
    AuthenticationError,
    ConnectError,
    RateLimitError,
    ServerError,
    TransportError,
    WhatsAppError,
)
from ..wa_cloud.ratelimit import SlidingWindowLimiter
from ..wa_cloud.retry import RetryPolicy
from ..wa_cloud.urls import UnsafeUrlError

_logger = logging.getLogger(__name__)

# Outbound delivery states only move forward along this rank; 'failed' is final.
STATE_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}
META_STATUS_TO_STATE = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "played": "read",
    "failed": "failed",
}
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
    partner_mail_message_id = fields.Many2one("mail.message", readonly=True)
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

    _sql_constraints = [
        (
            "wamid_account_unique",
            "UNIQUE(account_id, wamid)",
            "A WhatsApp message id is stored once per account.",
        ),
    ]

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
        label = states.get(self.state, "")
        if self.state == "failed" and self.failure_title:
            label = f"{label}: {self.failure_title}"
        return Markup(
            '<div class="o_whatsapp_message o_whatsapp_state_%s">'
            '<i class="fa fa-whatsapp"/> %s<br/>'
            '<small class="text-muted"><i class="fa %s"/> %s</small></div>'
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

    def _refresh_chatter(self):
        """Show the new delivery state in the chatter messages.

        Written in SQL: every status webhook lands here, and the body is our own
        markup around escaped content, so the ORM's sanitizing and tracking of
        mail.message would only cost time.
        """
        ids, bodies, labels = [], [], {}
        for message in self:
            body = None
            for mail_message_id in (
                message.mail_message_id.id,
                message.partner_mail_message_id.id,
            ):
                if mail_message_id:
                    body = body or str(message._chatter_body(labels))
                    ids.append(mail_message_id)
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

    # ------------------------------------------------------------------ statuses

    def _apply_status(self, status, when, values=None):
        """Move the message forward; never backward, never out of 'failed'."""
        self.ensure_one()
        new_state = META_STATUS_TO_STATE.get(status)
        if not new_state:
            return False
        vals = dict(values or {})
        date_field = f"{new_state}_date"
        if when and not self[date_field]:
            vals[date_field] = when
        if (
            self.state == "failed"
            and self.failure_type == "network"
            and new_state != "failed"
        ):
            # We gave up on an unanswered call, yet Meta did send it.
            changed = True
            vals.update(
                failure_type=False,
                failure_title=False,
                failure_code=False,
                failed_date=False,
            )
        elif self.state in ("failed", "cancelled"):
            changed = False
        elif new_state == "failed":
            # Meta only fails messages it has not delivered.
            changed = self.state in ("queued", "sent")
        else:
            changed = STATE_RANK[new_state] > STATE_RANK.get(self.state, -1)
        if not changed and new_state == "failed":
            vals = {k: v for k, v in vals.items() if not k.startswith("failure_")}
        if changed:
            vals["state"] = new_state
            vals["next_attempt_date"] = False
        if vals:
            self.sudo().write(vals)
        if changed:
            self._refresh_chatter()
        return changed

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
        self.env.ref("whatsapp_business.ir_cron_whatsapp_send_queue")._trigger()

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
            record = item.get("record")
            partner = item.get("partner")
            if record:
                message.mail_message_id = message._post_in_chatter(record)
            if partner and partner != record:
                message.partner_mail_message_id = message._post_in_chatter(partner)
        if messages.filtered(lambda m: m.state == "queued"):
            self._trigger_queue()
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
        if not template and not windows.get(key):
            return {
                "failure_type": "window_closed",
                "failure_title": self.env._(
                    "Outside the 24-hour window: use an approved template"
                ),
            }
        return None

    # ------------------------------------------------------------------ queue

    @api.model
    def _cron_process_queue(self, batch_seconds=20):
        """Send due queued messages, account by account, within their rate limits."""
        self.env.flush_all()
        self.env.cr.execute(
            """
            SELECT DISTINCT account_id FROM whatsapp_message
            WHERE state = 'queued' AND claim_date IS NULL
              AND (next_attempt_date IS NULL
                   OR next_attempt_date <= (now() at time zone 'UTC'))
            """
        )
        accounts = (
            self.env["whatsapp.account"]
            .sudo()
            .browse([row[0] for row in self.env.cr.fetchall()])
        )
        done = 0
        for account in accounts:
            if (
                not account.active
                or account.state == "token_invalid"
                or not account.company_id.whatsapp_enabled
            ):
                continue  # held until an admin fixes the account
            limit = max(account.rate_limit * batch_seconds, 1)
            # Failure reasons are stored text: write them in the company's language.
            lang = account.company_id.partner_id.lang or self.env.lang
            done += (
                self.with_company(account.company_id)
                .with_context(lang=lang)
                ._send_batch(account, limit)
            )
        remaining = self._count_due()
        self.env["ir.cron"]._notify_progress(done=done, remaining=remaining)
        for account in accounts:
            # The next run may be in another worker, with a fresh limiter: leave it
            # a window without any send in it.
            _limiter_for(self.env.cr.dbname, account).drain()
        self._recover_stale_claims()
        self._schedule_next_retry()
        return done

    @api.model
    def _count_due(self):
        self.env.flush_all()
        self.env.cr.execute(
            """
            SELECT COUNT(*) FROM whatsapp_message m
            JOIN whatsapp_account a ON a.id = m.account_id
            WHERE m.state = 'queued' AND m.claim_date IS NULL AND a.active
              AND a.state != 'token_invalid'
              AND (m.next_attempt_date IS NULL
                   OR m.next_attempt_date <= (now() at time zone 'UTC'))
            """
        )
        return self.env.cr.fetchone()[0]

    @api.model
    def _schedule_next_retry(self):
        self.env.flush_all()
        self.env.cr.execute(
            "SELECT MIN(next_attempt_date) FROM whatsapp_message "
            "WHERE state = 'queued' AND next_attempt_date IS NOT NULL"
        )
        at = self.env.cr.fetchone()[0]
        if at:
            self.env.ref("whatsapp_business.ir_cron_whatsapp_send_queue")._trigger(at)

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

    def _send_batch(self, account, limit):
        messages = self._claim(account, limit)
        if not messages:
            return 0
        # Checks enforced at send time too: a server action cannot bypass them.
        ready = self.browse()
        for message in messages:
            failure = message._sendtime_failure()
            if failure:
                message.write(
                    dict(
                        failure,
                        state="failed",
                        failed_date=fields.Datetime.now(),
                        claim_date=False,
                    )
                )
            else:
                ready |= message
        jobs = [(message.id, message._build_send_job()) for message in ready]
        _commit(self.env.cr)
        results = self._run_jobs(account, jobs)
        # A fresh transaction: the one that read the account before the HTTP phase
        # would conflict with webhooks that wrote the account meanwhile.
        _commit(self.env.cr)
        self.env.invalidate_all()
        self._write_back(account, results)
        _commit(self.env.cr)
        messages.invalidate_recordset()
        try:
            with self.env.cr.savepoint():
                messages._refresh_chatter()
        except psycopg2.errors.TransactionRollbackError:
            # A status webhook refreshed these chatter messages meanwhile, with a
            # newer state: its version stands.
            _logger.info("WhatsApp send batch: chatter refresh left to the webhooks")
        _commit(self.env.cr)
        return len(messages)

    def _sendtime_failure(self):
        self.ensure_one()
        key = self.phone or self.wa_user_id
        if self.phone and self.env["phone.blacklist"].sudo().search_count(
            [("number", "=", self.phone)], limit=1
        ):
            return {
                "failure_type": "opted_out",
                "failure_title": self.env._(
                    "The number is on the blacklist (opted out)"
                ),
            }
        if self.message_type == "template":
            if self.template_id.status != "APPROVED":
                return {
                    "failure_type": "template",
                    "failure_title": self.env._(
                        "Template %s is not approved by Meta", self.template_id.name
                    ),
                }
            return None
        if not key or not self._is_window_open():
            return {
                "failure_type": "window_closed",
                "failure_title": self.env._(
                    "Outside the 24-hour window: use an approved template"
                ),
            }
        return None

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
        return job

    @api.model
    def _run_jobs(self, account, jobs):
        """HTTP in worker threads, paced by the account's rate limit; no DB here."""
        if not jobs:
            return []
        limiter = _limiter_for(self.env.cr.dbname, account)
        # Secrets are read here, in the cursor's thread; the workers never touch the DB.
        client_args = account._client_arguments()
        local = threading.local()
        clients = []
        stop = threading.Event()

        def client():
            if not hasattr(local, "client"):
                local.client = CloudApiClient(
                    **client_args, retry_policy=RetryPolicy(max_attempts=1)
                )
                clients.append(local.client)
            return local.client

        def call(job):
            # The slot is taken right before the request, in the thread that sends.
            limiter.acquire()
            if job["type"] == "template":
                return client().send_template(
                    job["to"],
                    job["template_name"],
                    job["language"],
                    components=job["components"],
                    biz_opaque_callback_data=job["callback"],
                )
            if "content" in job:
                media_id = client().upload_media(
                    job["content"], job["mime_type"], job["filename"]
                )
                limiter.acquire()  # the upload and the send both count
                return client().send_media(
                    job["to"],
                    job["type"],
                    media_id=media_id,
                    caption=job["caption"] if job["type"] != "audio" else None,
                    filename=job["filename"] if job["type"] == "document" else None,
                    biz_opaque_callback_data=job["callback"],
                )
            return client().send_text(
                job["to"], job["body"], biz_opaque_callback_data=job["callback"]
            )

        def send(job):
            for attempt in range(1, RATE_LIMIT_RETRIES_IN_BATCH + 2):
                if stop.is_set():
                    return None  # not attempted: put back in the queue untouched
                try:
                    return call(job)
                except RateLimitError as error:
                    # A refused send was not sent: retrying it is safe. The number
                    # is over Meta's rate right now, so every worker pauses.
                    if error.code == 131056 or attempt > RATE_LIMIT_RETRIES_IN_BATCH:
                        return error
                    backoff = error.retry_after or 0.25 * 2 ** (attempt - 1)
                    limiter.pause(min(backoff, 60.0))
                except AuthenticationError as error:
                    stop.set()  # every other send would fail the same way
                    return error
                except WhatsAppError as error:
                    return error
            return None

        with ThreadPoolExecutor(
            max_workers=max(account.max_concurrency, 1),
            thread_name_prefix="whatsapp-send",
        ) as pool:
            futures = {pool.submit(send, job): message_id for message_id, job in jobs}
            results = self._collect_results(futures)
        for item in clients:
            item.close()
        return results

    @api.model
    def _collect_results(self, futures):
        """Gather the outcomes as they come, committing accepted wamids on the way."""
        results, accepted = [], []
        flushed_at = time.monotonic()
        for future in as_completed(futures):
            outcome = future.result()
            results.append((futures[future], outcome))
            if isinstance(outcome, WhatsAppError) or outcome is None:
                continue
            accepted.append((futures[future], outcome))
            # Within a tenth of a second, a few at a time: one commit per answer
            # would steal the CPU that the pacing needs.
            if len(accepted) >= 20 or time.monotonic() - flushed_at > 0.1:
                self._write_success_now(accepted)
                accepted, flushed_at = [], time.monotonic()
        self._write_success_now(accepted)
        return results

    @api.model
    def _write_success_now(self, accepted):
        """Commit wamids as soon as they are known: a crash must not send twice.

        A status webhook may have beaten us to a row (it finds the message by
        biz_opaque_callback_data): the state only moves forward, never back to
        'sent' over 'delivered' or 'read'.
        """
        if not accepted:
            return
        now = fields.Datetime.now()
        rows = [
            {
                "id": message_id,
                "wamid": outcome.wamid,
                "now": now,
                "payload": json.dumps(outcome.payload),
            }
            for message_id, outcome in accepted
        ]
        if _testing():
            self.flush_model()
            self._sql_record_sent(self.env.cr, rows)
            self.browse([row["id"] for row in rows]).invalidate_recordset()
            return
        for attempt in range(1, 6):
            try:
                with self.env.registry.cursor() as cr:
                    self._sql_record_sent(cr, rows)
                return
            except psycopg2.errors.SerializationFailure:
                # A webhook wrote a row at the same moment; the write is idempotent.
                if attempt == 5:
                    raise
                time.sleep(0.05 * attempt)

    @api.model
    def _sql_record_sent(self, cr, rows):
        cr.executemany(
            """
            UPDATE whatsapp_message
               SET wamid = COALESCE(wamid, %(wamid)s),
                   state = CASE WHEN state = 'queued' THEN 'sent' ELSE state END,
                   sent_date = COALESCE(sent_date, %(now)s),
                   claim_date = NULL,
                   next_attempt_date = NULL,
                   request_payload = %(payload)s,
                   write_date = %(now)s
             WHERE id = %(id)s
            """,
            rows,
        )

    @api.model
    def _write_back(self, account, results):
        """Failures and retries, written together once the batch is over."""
        now = fields.Datetime.now()
        policy = RetryPolicy(max_attempts=max(account.max_retries, 0) + 1)
        auth_error = None
        for message_id, outcome in results:
            message = self.sudo().browse(message_id)
            if outcome is None:
                message.write({"claim_date": False})  # put back, untouched
                continue
            if not isinstance(outcome, WhatsAppError):
                continue  # already written by _write_success_now
            error = outcome
            if isinstance(error, AuthenticationError):
                auth_error = error
            if isinstance(error, RateLimitError):
                delay = policy.delay(message.retry_count + 1, error)
                if error.code == 131056:
                    delay = max(delay, 6.0)
                message.write(
                    {
                        "claim_date": False,
                        "retry_count": message.retry_count + 1,
                        "next_attempt_date": now + timedelta(seconds=delay),
                        "failure_type": "rate_limit",
                        "failure_code": error.code or 0,
                        "failure_title": error.title or False,
                    }
                )
                continue
            attempts = message.retry_count + 1
            if _send_may_retry(error) and attempts <= account.max_retries:
                delay = policy.delay(attempts, error)
                message.write(
                    {
                        "claim_date": False,
                        "retry_count": attempts,
                        "next_attempt_date": now + timedelta(seconds=delay),
                        "failure_type": message._failure_values(error)["failure_type"],
                        "failure_code": error.code or 0,
                        "failure_title": error.title or False,
                    }
                )
                continue
            vals = message._failure_values(error)
            if isinstance(error, TransportError) and not isinstance(
                error, ConnectError
            ):
                vals["failure_title"] = self.env._(
                    "Meta did not answer in time; the message may have been sent and "
                    "is not sent again"
                )
            vals.update(
                state="failed",
                failed_date=now,
                claim_date=False,
                retry_count=attempts - 1,
                next_attempt_date=False,
            )
            message.write(vals)
        if auth_error:
            account._handle_api_error(auth_error)
        elif any(
            not isinstance(o, WhatsAppError) and o is not None for _i, o in results
        ):
            account._mark_success()

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
            order="id",
        )
        for message in messages:
            message._download_media()
            _commit(self.env.cr)
        return len(messages)

    def _download_media(self):
        self.ensure_one()
        try:
            with self.account_id._get_client() as client:
                info = client.get_media_url(self.media_id)
                content = client.download_media(info.url)
        except (WhatsAppError, UserError, UnsafeUrlError) as error:
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
            self.mail_message_id | self.partner_mail_message_id
        ).sudo():
            mail_message.attachment_ids = [(4, attachment.id)]
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


# A send refused with 130429 is retried this many times inside its batch.
RATE_LIMIT_RETRIES_IN_BATCH = 3
_LIMITERS = {}
_LIMITERS_LOCK = threading.Lock()


def _limiter_for(dbname, account):
    """One limiter per account and process, so consecutive batches share it."""
    key = (dbname, account.id)
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None or limiter.rate != account.rate_limit:
            limiter = _LIMITERS[key] = SlidingWindowLimiter(account.rate_limit)
        return limiter


def _send_may_retry(error):
    """Resend only what surely did not go out: a send has no idempotency key.

    A connect failure never reached Meta; a Meta error object with a server code
    (1, 2, 131000...) says Meta did not send it. A proxy's HTML 5xx or a dropped
    connection may hide an accepted send, so those fail instead.
    """
    if isinstance(error, ConnectError):
        return True
    return isinstance(error, ServerError) and error.code is not None


def _testing():
    return bool(
        modules.module.current_test
        or getattr(threading.current_thread(), "testing", False)
    )


def _commit(cr):
    """Commit between queue steps in production; tests run in one transaction."""
    if not _testing():
        cr.commit()  # pylint: disable=invalid-commit
