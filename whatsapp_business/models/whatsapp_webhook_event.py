import hashlib
import hmac
import logging
from datetime import timedelta

import psycopg2

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from ..tools import compat
from ..wa_cloud import events as wa_events
from .whatsapp_message import _commit

_logger = logging.getLogger(__name__)

MAX_AUTO_ATTEMPTS = 8
RETENTION_PARAM = "whatsapp_business.webhook_retention_days"
DEFAULT_RETENTION_DAYS = 30


class WhatsAppWebhookEvent(models.Model):
    """The inbox: every verified webhook body, stored before Meta gets its 200."""

    _name = "whatsapp.webhook.event"
    _inherit = ["whatsapp.tenant.mixin"]
    _description = "WhatsApp Webhook Event"
    _order = "id desc"
    _rec_name = "id"

    account_id = fields.Many2one(
        "whatsapp.account",
        required=True,
        readonly=True,
        ondelete="cascade",
        index=True,
        help="The account whose webhook URL received the call.",
    )
    company_id = fields.Many2one(
        "res.company", related="account_id.company_id", store=True, index=True
    )
    payload = fields.Text(readonly=True, help="Raw body as received (purged later).")
    payload_hash = fields.Char(readonly=True, required=True)
    received_date = fields.Datetime(
        required=True, readonly=True, default=fields.Datetime.now, index=True
    )
    processed_date = fields.Datetime(readonly=True)
    state = fields.Selection(
        [
            ("pending", "Pending"),
            ("done", "Processed"),
            ("ignored", "Ignored"),
            ("failed", "Failed"),
        ],
        required=True,
        default="pending",
        readonly=True,
        index=True,
    )
    attempts = fields.Integer(readonly=True)
    next_attempt_date = fields.Datetime(readonly=True)
    last_error = fields.Text(readonly=True)
    item_count = fields.Integer(string="Items", readonly=True)
    ignored_count = fields.Integer(string="Ignored Items", readonly=True)
    summary = fields.Char(readonly=True, help="Fields and counts, without content.")

    # Odoo 18 and 19 declare table constraints differently (tools/compat.py).
    locals().update(
        compat.sql_constraints(
            (
                "payload_hash_unique",
                "UNIQUE(account_id, payload_hash)",
                "This webhook body was already received.",
            ),
        )
    )

    # ------------------------------------------------------------------ intake

    @api.model
    def _receive(self, account, raw):
        """Store a verified body once; return the new event or None for a repeat."""
        digest = hashlib.sha256(raw).hexdigest()
        # ON CONFLICT keeps a repeated delivery from raising (and from logging).
        self.env.cr.execute(
            """
            INSERT INTO whatsapp_webhook_event
                (account_id, company_id, payload, payload_hash, received_date, state,
                 attempts, item_count, ignored_count, create_uid, write_uid,
                 create_date, write_date)
            VALUES (%(account)s, %(company)s, %(payload)s, %(hash)s,
                    (now() at time zone 'UTC'), 'pending', 0, 0, 0, %(uid)s, %(uid)s,
                    (now() at time zone 'UTC'), (now() at time zone 'UTC'))
            ON CONFLICT (account_id, payload_hash) DO NOTHING
            RETURNING id
            """,
            {
                "account": account.id,
                "company": account.company_id.id,
                "payload": raw.decode("utf-8", errors="replace"),
                "hash": digest,
                "uid": self.env.uid,
            },
        )
        row = self.env.cr.fetchone()
        return self.browse(row[0]) if row else None

    # ------------------------------------------------------------------ processing

    @api.model
    def _trigger_processing(self):
        """Wake the processing cron, unless it is due already.

        A trigger costs a row and a NOTIFY on another connection, which would
        double the cost of the route; one pending trigger is enough, as the cron
        takes every pending event and runs again while some remain. In the rare
        case where the cron ends between our check and our commit, its regular
        one-minute run picks the event up: it is never lost, only later.
        """
        cron_id = self.env["ir.model.data"]._xmlid_to_res_id(
            "whatsapp_business.ir_cron_whatsapp_webhook_process"
        )
        self.env.cr.execute(
            "SELECT 1 FROM ir_cron_trigger WHERE cron_id = %s LIMIT 1", (cron_id,)
        )
        if not self.env.cr.fetchone():
            self.env["ir.cron"].browse(cron_id)._trigger()

    @api.model
    def _cron_process_pending(self, limit=500):
        """Process the inbox in arrival order, one committed event at a time."""
        self.env.flush_all()
        self.env.cr.execute(
            """
            SELECT id FROM whatsapp_webhook_event
            WHERE state = 'pending'
            ORDER BY id
            LIMIT %s
            FOR UPDATE SKIP LOCKED
            """,
            (limit,),
        )
        events = self.sudo().browse([row[0] for row in self.env.cr.fetchall()])
        done = 0
        for event in events:
            try:
                with self.env.cr.savepoint():
                    event._process()
            except psycopg2.errors.TransactionRollbackError:
                # A send or another webhook wrote the same rows: the event stays
                # pending and is processed again in a fresh transaction.
                _logger.info("WhatsApp webhook event %s: conflict, retried", event.id)
                _commit(self.env.cr)
                self._trigger_processing()
                continue
            done += 1
            _commit(self.env.cr)
        self.flush_model()
        self.env.cr.execute(
            "SELECT COUNT(*) FROM whatsapp_webhook_event WHERE state = 'pending'"
        )
        remaining = self.env.cr.fetchone()[0]
        if remaining and not done:
            self._trigger_processing()  # arrived during this run: go again
        self.env["ir.cron"]._notify_progress(done=done, remaining=remaining)
        return done

    def _process(self):
        """Process events item by item; one bad item never hides the others."""
        processor = self.env["whatsapp.webhook.processor"]
        for event in self:
            event = event.sudo()
            try:
                parsed = wa_events.parse_webhook(event.payload or "{}")
            except ValueError:
                parsed = []
            errors = []
            handled = ignored = 0
            routes = {}
            for item in parsed:
                try:
                    with self.env.cr.savepoint():
                        outcome = processor._process_item(
                            event.account_id, item, routes
                        )
                except psycopg2.errors.TransactionRollbackError:
                    raise  # a concurrency conflict, not a bad item: retry the event
                except Exception as exc:  # noqa: BLE001 - any item error is kept
                    _logger.exception(
                        "WhatsApp webhook event %s: an item (%s) failed",
                        event.id,
                        type(item).__name__,
                    )
                    errors.append(f"{type(item).__name__}: {exc}")
                    continue
                if outcome:
                    handled += 1
                else:
                    ignored += 1
            vals = {
                "attempts": event.attempts + 1,
                "item_count": len(parsed),
                "ignored_count": ignored,
                "summary": _summary(parsed),
                "processed_date": fields.Datetime.now(),
            }
            if errors:
                delay = min(2 ** (event.attempts + 1), 360)
                vals.update(
                    state="failed",
                    last_error="\n".join(errors)[:4000],
                    next_attempt_date=fields.Datetime.now() + timedelta(minutes=delay)
                    if event.attempts + 1 < MAX_AUTO_ATTEMPTS
                    else False,
                )
            else:
                vals.update(
                    state="done" if handled else "ignored",
                    last_error=False,
                    next_attempt_date=False,
                )
            event.write(vals)
            _logger.info(
                "WhatsApp webhook event %s: %d item(s), %d handled, %d ignored, "
                "%d failed",
                event.id,
                len(parsed),
                handled,
                ignored,
                len(errors),
            )
        return True

    def action_retry(self):
        self.check_access("write")
        failed = self.filtered(lambda e: e.state == "failed")
        if not failed:
            raise UserError(self.env._("Only failed events can be retried."))
        failed._process()
        return True

    @api.model
    def _cron_retry_failed(self, limit=200):
        events = self.search(
            [
                ("state", "=", "failed"),
                ("next_attempt_date", "!=", False),
                ("next_attempt_date", "<=", fields.Datetime.now()),
            ],
            limit=limit,
            order="next_attempt_date",
        )
        events._process()
        return len(events)

    @api.model
    def _cron_purge_payloads(self):
        days = int(
            self.env["ir.config_parameter"]
            .sudo()
            .get_param(RETENTION_PARAM, DEFAULT_RETENTION_DAYS)
        )
        limit_date = fields.Datetime.now() - timedelta(days=max(days, 1))
        self.flush_model(["state", "received_date"])
        self.env.cr.execute(
            SQL(
                "DELETE FROM whatsapp_webhook_event "
                "WHERE state IN ('done', 'ignored') AND received_date < %s",
                limit_date,
            )
        )
        _logger.info(
            "Purged %d processed WhatsApp webhook event(s)", self.env.cr.rowcount
        )
        return True


def _summary(parsed):
    counts = {}
    for item in parsed:
        key = type(item).__name__
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{name} × {count}" for name, count in sorted(counts.items()))


class WhatsAppWebhookRejection(models.Model):
    """Hourly counters of refused webhook calls (bad or missing signature)."""

    _name = "whatsapp.webhook.rejection"
    _description = "WhatsApp Webhook Rejections"
    _log_access = False

    account_id = fields.Many2one(
        "whatsapp.account", required=True, ondelete="cascade", index=True
    )
    hour = fields.Datetime(required=True)
    count = fields.Integer(required=True, default=0)

    # Odoo 18 and 19 declare table constraints differently (tools/compat.py).
    locals().update(
        compat.sql_constraints(
            (
                "account_hour_unique",
                "UNIQUE(account_id, hour)",
                "One counter per hour.",
            ),
        )
    )

    @api.model
    def _record(self, account):
        # One upserted row per account and hour: a flood cannot grow the table.
        self.env.cr.execute(
            """
            INSERT INTO whatsapp_webhook_rejection (account_id, hour, count)
            VALUES (%s, date_trunc('hour', now() at time zone 'UTC'), 1)
            ON CONFLICT (account_id, hour) DO UPDATE
            SET count = whatsapp_webhook_rejection.count + 1
            """,
            (account.id,),
        )

    @api.model
    def _count_last_day(self, account_ids):
        if not account_ids:
            return {}
        self.env.cr.execute(
            """
            SELECT account_id, SUM(count) FROM whatsapp_webhook_rejection
            WHERE account_id IN %s
              AND hour > (now() at time zone 'UTC') - interval '24 hours'
            GROUP BY account_id
            """,
            (tuple(account_ids),),
        )
        return dict(self.env.cr.fetchall())

    @api.model
    def _gc(self):
        self.env.cr.execute(
            "DELETE FROM whatsapp_webhook_rejection "
            "WHERE hour < (now() at time zone 'UTC') - interval '7 days'"
        )


def secrets_match(secret_a, secret_b):
    return bool(secret_a and secret_b) and hmac.compare_digest(
        secret_a.encode(), secret_b.encode()
    )
