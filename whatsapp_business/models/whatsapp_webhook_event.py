import hashlib
import hmac
import logging
import time
from datetime import timedelta

import psycopg2

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from ..tools import compat
from ..wa_cloud import events as wa_events
from .whatsapp_message import _commit, _testing

_logger = logging.getLogger(__name__)

MAX_AUTO_ATTEMPTS = 8
# Events applied in one transaction: statuses of a batch are applied together.
BATCH_EVENTS = 50
# A claim older than this is a crashed worker's: the events are taken again.
CLAIM_TIMEOUT = timedelta(minutes=10)
# Pending events read to choose a batch, oldest first.
CLAIM_WINDOW = 2000
# Claims are chosen one worker at a time (the lock is held for milliseconds).
CLAIM_LOCK = 0x7761_6562  # "waeb"
# One run stops taking new batches after this many seconds: the cron comes back.
RUN_SECONDS = 60
PROCESS_CRON_XMLIDS = (
    "whatsapp_business.ir_cron_whatsapp_webhook_process",
    "whatsapp_business.ir_cron_whatsapp_webhook_process_2",
    "whatsapp_business.ir_cron_whatsapp_webhook_process_3",
    "whatsapp_business.ir_cron_whatsapp_webhook_process_4",
)
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
            ("held", "On Hold"),
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
    last_error = fields.Text(
        readonly=True, help="Why the event failed, or why it is on hold."
    )
    ordering_keys = fields.Char(
        readonly=True,
        help="The customers of the body: events sharing one are processed in "
        "arrival order, the others in parallel.",
    )
    claim_date = fields.Datetime(
        readonly=True, help="When a processing worker took the event."
    )
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
    def _receive(self, account, raw, ordering_keys=None):
        """Store a verified body once, note the account's last webhook and wake the
        processing; return the new event or None for a repeat.

        One statement does all three reads and writes: the webhook route pays one
        round trip to the database for them, not four.
        """
        digest = hashlib.sha256(raw).hexdigest()
        if ordering_keys is None:
            ordering_keys = wa_events.ordering_keys(raw)
        cron_id = self._processing_cron_id()
        # ON CONFLICT keeps a repeated delivery from raising (and from logging).
        self.env.cr.execute(
            SQL(
                """
                WITH touched AS (%(touch)s),
                stored AS (
                    INSERT INTO whatsapp_webhook_event
                        (account_id, company_id, payload, payload_hash, ordering_keys,
                         received_date, state, attempts, item_count, ignored_count,
                         create_uid, write_uid, create_date, write_date)
                    SELECT account.id, account.company_id, %(payload)s, %(hash)s,
                           %(keys)s, (now() at time zone 'UTC'), 'pending', 0, 0, 0,
                           %(uid)s, %(uid)s, (now() at time zone 'UTC'),
                           (now() at time zone 'UTC')
                      FROM whatsapp_account account
                     WHERE account.id = %(account)s
                    ON CONFLICT (account_id, payload_hash) DO NOTHING
                    RETURNING id
                )
                SELECT (SELECT id FROM stored),
                       EXISTS (SELECT 1 FROM ir_cron_trigger WHERE cron_id = %(cron)s)
                """,
                touch=account._touch_last_webhook_sql(account.ids),
                account=account.id,
                payload=raw.decode("utf-8", errors="replace"),
                hash=digest,
                keys=" ".join(ordering_keys),
                uid=self.env.uid,
                cron=cron_id,
            )
        )
        event_id, processing_due = self.env.cr.fetchone()
        account.invalidate_recordset(["last_webhook_date"])
        if event_id is None:
            return None
        self._trigger_processing(due=processing_due)
        return self.browse(event_id)

    # ------------------------------------------------------------------ processing

    @api.model
    def _processing_cron_id(self):
        return self.env["ir.model.data"]._xmlid_to_res_id(PROCESS_CRON_XMLIDS[0])

    @api.model
    def _trigger_processing(self, due=None):
        """Wake the processing cron, unless it is due already (``due``: whether
        a trigger is pending, when the caller read it already).

        A trigger costs a row and a NOTIFY on another connection, which would
        double the cost of the route; one pending trigger is enough, as the cron
        takes every pending event and runs again while some remain. In the rare
        case where the cron ends between our check and our commit, its regular
        one-minute run picks the event up: it is never lost, only later.
        """
        cron_id = self._processing_cron_id()
        if due is None:
            self.env.cr.execute(
                "SELECT 1 FROM ir_cron_trigger WHERE cron_id = %s LIMIT 1", (cron_id,)
            )
            due = bool(self.env.cr.fetchone())
        if not due:
            self.env["ir.cron"].browse(cron_id)._trigger()

    @api.model
    def _cron_process_pending(self, limit=5000):
        """Process the inbox in batches, in parallel with the other workers.

        Each batch is claimed (committed) before it is processed, so that other
        cron workers, of this server or another, take other batches meanwhile;
        the events of one customer are never in two workers at once.
        """
        self.env.flush_all()
        done = 0
        woke_helpers = False
        deadline = time.monotonic() + RUN_SECONDS
        while done < limit and time.monotonic() < deadline:
            # The batch's transaction must start after its claim is committed:
            # an older snapshot would see the claimed rows as concurrently changed.
            _commit(self.env.cr)
            events, backlog = self._claim_batch(min(BATCH_EVENTS, limit - done))
            if not events:
                break
            if backlog and not woke_helpers:
                # More than one batch waits: let the other lanes help.
                self._wake_processing_lanes()
                woke_helpers = True
            try:
                events._process_batch()
            except psycopg2.errors.TransactionRollbackError:
                # A send or another webhook wrote the same rows: the events stay
                # pending and are processed again in a fresh transaction.
                _logger.info(
                    "WhatsApp webhook events %s: conflict, retried", events.ids
                )
                if not _testing():
                    self.env.cr.rollback()
                    self.env.invalidate_all()
                events._release_claims()
                _commit(self.env.cr)
                self._trigger_processing()
                break
            done += len(events)
            _commit(self.env.cr)
        self.flush_model()
        self.env.cr.execute(
            "SELECT COUNT(*) FROM whatsapp_webhook_event WHERE state = 'pending'"
        )
        remaining = self.env.cr.fetchone()[0]
        if remaining and not done:
            self._trigger_processing()  # arrived during this run: go again
        compat.notify_cron_progress(self.env, done, remaining)
        return done

    @api.model
    def _claim_batch(self, size):
        """Take up to ``size`` pending events whose customers no one else holds.

        Returns (events, backlog): backlog is True when more events are ready.
        The claim is committed on its own connection at once (in tests, made in
        the test transaction).
        """
        if _testing():
            ids, backlog = self._claim_ids(self.env.cr, size)
            self.invalidate_model(["claim_date"])
            return self.sudo().browse(ids), backlog
        with self.env.registry.cursor() as cr:
            # Read committed: the claims of the worker before us are visible.
            cr.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cr.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK,))
            ids, backlog = self._claim_ids(cr, size)
        return self.sudo().browse(ids), backlog

    @api.model
    def _claim_ids(self, cr, size):
        cr.execute(
            """
            SELECT id, ordering_keys, claim_date > %s
            FROM whatsapp_webhook_event
            WHERE state = 'pending'
            ORDER BY id
            LIMIT %s
            """,
            (fields.Datetime.now() - CLAIM_TIMEOUT, CLAIM_WINDOW),
        )
        chosen, backlog = [], False
        busy, all_busy = set(), False
        for event_id, keys, claimed in cr.fetchall():
            # No keys recorded (an event stored before keys existed): any party.
            parties = set(keys.split()) if keys is not None else {wa_events.ANY_PARTY}
            everyone = wa_events.ANY_PARTY in parties
            waits = (
                claimed or all_busy or bool(parties & busy) or (everyone and bool(busy))
            )
            if waits:
                # Later events of these customers wait for this one.
                busy |= parties
                all_busy = all_busy or everyone
                continue
            if len(chosen) >= size:
                backlog = True
                break
            chosen.append(event_id)
        if chosen:
            cr.execute(
                "UPDATE whatsapp_webhook_event SET claim_date = %s WHERE id IN %s",
                (fields.Datetime.now(), tuple(chosen)),
            )
        return chosen, backlog

    def _release_claims(self):
        if self:
            self.env.cr.execute(
                "UPDATE whatsapp_webhook_event SET claim_date = NULL "
                "WHERE id IN %s AND state = 'pending'",
                (tuple(self.ids),),
            )
            self.invalidate_recordset(["claim_date"])

    @api.model
    def _wake_processing_lanes(self):
        """Trigger the other processing crons (one per lane) that are not due."""
        cron_ids = [
            cron_id
            for cron_id in (
                self.env["ir.model.data"]._xmlid_to_res_id(
                    xmlid, raise_if_not_found=False
                )
                for xmlid in PROCESS_CRON_XMLIDS[1:]
            )
            if cron_id
        ]
        if not cron_ids:
            return
        self.env.cr.execute(
            "SELECT DISTINCT cron_id FROM ir_cron_trigger WHERE cron_id IN %s",
            (tuple(cron_ids),),
        )
        due = {row[0] for row in self.env.cr.fetchall()}
        crons = (
            self.env["ir.cron"]
            .sudo()
            .browse([cron_id for cron_id in cron_ids if cron_id not in due])
        )
        for cron in crons.filtered("active"):
            cron._trigger()

    def _process_batch(self):
        """Apply a batch of events in this transaction and record each outcome.

        The batch is applied at once (statuses set-based); if that raises, each
        event is applied on its own so that one bad event never stops the others.
        """
        processor = self.env["whatsapp.webhook.processor"]
        prepared = [(event, event._parse()) for event in self.sudo()]
        try:
            with self.env.cr.savepoint():
                outcomes = processor._process_events(prepared)
        except psycopg2.errors.TransactionRollbackError:
            raise
        except Exception:  # noqa: BLE001 - retried event by event below
            _logger.info(
                "WhatsApp webhook batch of %d event(s) failed; one by one",
                len(prepared),
            )
            outcomes = {}
            for event, parsed in prepared:
                try:
                    with self.env.cr.savepoint():
                        outcomes.update(processor._process_events([(event, parsed)]))
                except psycopg2.errors.TransactionRollbackError:
                    raise
                except Exception as exc:  # noqa: BLE001 - kept on the event
                    _logger.exception(
                        "WhatsApp webhook event %s: processing failed", event.id
                    )
                    outcomes[event.id] = processor._outcome(
                        errors=[f"{type(exc).__name__}: {exc}"]
                    )
        self._record_outcomes(prepared, outcomes)
        return True

    def _parse(self):
        """The events of the body, or the exception text when it is unreadable."""
        self.ensure_one()
        try:
            return wa_events.parse_webhook(self.payload or "{}")
        except ValueError as exc:
            return str(exc)

    def _record_outcomes(self, prepared, outcomes):
        now = fields.Datetime.now()
        rows = []
        for event, parsed in prepared:
            outcome = outcomes.get(event.id) or {}
            items = parsed if isinstance(parsed, list) else []
            errors = list(outcome.get("errors") or [])
            if isinstance(parsed, str):
                errors.insert(0, parsed)
            attempts = event.attempts + 1
            row = {
                "id": event.id,
                "attempts": attempts,
                "item_count": len(items),
                "ignored_count": outcome.get("ignored", 0),
                "summary": _summary(items),
                "processed_date": now,
                "next_attempt_date": None,
                "last_error": None,
            }
            if outcome.get("hold"):
                # Kept as it is, with the reason, until the account is active.
                row.update(
                    state="held",
                    attempts=event.attempts,
                    last_error=outcome["hold"],
                    processed_date=None,
                )
            elif errors:
                delay = min(2**attempts, 360)
                row.update(
                    state="failed",
                    last_error="\n".join(errors)[:4000],
                    next_attempt_date=now + timedelta(minutes=delay)
                    if attempts < MAX_AUTO_ATTEMPTS
                    else None,
                )
            else:
                row["state"] = "done" if outcome.get("handled") else "ignored"
            rows.append(row)
            _logger.info(
                "WhatsApp webhook event %s: %d item(s), %d handled, %d ignored, "
                "%d failed%s",
                event.id,
                len(items),
                outcome.get("handled", 0),
                outcome.get("ignored", 0),
                len(errors),
                ", on hold" if outcome.get("hold") else "",
            )
        if not rows:
            return
        self.flush_model()
        # One statement for the batch: the ORM would write each event on its own.
        self.env.cr.execute(
            """
            UPDATE whatsapp_webhook_event e
               SET state = v.state, attempts = v.attempts, item_count = v.item_count,
                   ignored_count = v.ignored_count, summary = v.summary,
                   processed_date = v.processed_date,
                   next_attempt_date = v.next_attempt_date,
                   last_error = v.last_error, claim_date = NULL,
                   write_uid = %s, write_date = %s
              FROM unnest(%s::int[], %s::varchar[], %s::int[], %s::int[], %s::int[],
                          %s::varchar[], %s::timestamp[], %s::timestamp[], %s::text[])
                   AS v(id, state, attempts, item_count, ignored_count, summary,
                        processed_date, next_attempt_date, last_error)
             WHERE e.id = v.id
            """,
            (
                self.env.uid,
                now,
                *(
                    [row[key] for row in rows]
                    for key in (
                        "id",
                        "state",
                        "attempts",
                        "item_count",
                        "ignored_count",
                        "summary",
                        "processed_date",
                        "next_attempt_date",
                        "last_error",
                    )
                ),
            ),
        )
        self.invalidate_model()

    def _process(self):
        """Process these events now (retries), each in its own batch."""
        for event in self.sudo():
            event._process_batch()
        return True

    @api.model
    def _release_held(self):
        """Put the events on hold back in the inbox: an account became active.

        Every held event is tried again; those whose account is still archived or
        disabled go back on hold at once.
        """
        self.flush_model(["state"])
        self.env.cr.execute(
            "UPDATE whatsapp_webhook_event SET state = 'pending', claim_date = NULL "
            "WHERE state = 'held'"
        )
        if self.env.cr.rowcount:
            self.invalidate_model(["state", "claim_date"])
            self._trigger_processing()
        return True

    def action_retry(self):
        self.check_access("write")
        failed = self.filtered(lambda e: e.state in ("failed", "held"))
        if not failed:
            raise UserError(
                self.env._("Only failed events and events on hold can be retried.")
            )
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
