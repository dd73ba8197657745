"""The webhook inbox at Meta's pace: nothing dropped, statuses set-based, Meta's
time respected, and claims that let several workers share the inbox (issue 10).
"""

import itertools
import json
import time
from datetime import timedelta
from unittest.mock import patch

from odoo import SUPERUSER_ID, api
from odoo.tests import HttpCase, TransactionCase, tagged
from odoo.tools import mute_logger

from ..wa_cloud import delivery
from ..wa_cloud import events as wa_events
from .common import (
    WA_ID_A,
    WhatsAppMixin,
    drop_committed_account,
    messages_entry,
    sign,
    webhook_body,
)
from .test_webhook_processing import EVENT_LOGGER, WebhookCase

PARSER_LOGGER = "odoo.addons.whatsapp_business.wa_cloud.events"
PROCESSOR_LOGGER = "odoo.addons.whatsapp_business.models.whatsapp_webhook_processor"


def status_item(wamid, status, ts, number=WA_ID_A):
    return {
        "id": wamid,
        "status": status,
        "timestamp": str(ts),
        "recipient_id": number,
        "pricing": {"billable": True, "category": "utility", "type": "regular"},
    }


@tagged("post_install", "-at_install")
class TestNothingSilentlyDropped(WebhookCase):
    def test_archived_account_events_wait_with_a_reason_then_apply(self):
        self.account_a.active = False
        event = self.deliver(self.inbound("wamid.HELD"))
        self.assertEqual(event.state, "held")
        self.assertIn("archived", event.last_error)
        self.assertFalse(self.received("wamid.HELD"))
        # Held events are never purged, whatever their age.
        event.received_date = "2020-01-01 00:00:00"
        self.env["whatsapp.webhook.event"]._cron_purge_payloads()
        self.assertTrue(event.exists())

        self.account_a.active = True
        self.assertEqual(event.state, "pending")
        self.env["whatsapp.webhook.event"]._cron_process_pending()
        self.assertEqual(event.state, "done")
        self.assertEqual(self.received("wamid.HELD").body, "Bonjour")

    def test_disabled_company_events_wait_then_apply(self):
        self.company_a.whatsapp_enabled = False
        event = self.deliver(self.inbound("wamid.OFF"))
        self.assertEqual(event.state, "held")
        self.assertIn(self.company_a.name, event.last_error)
        self.company_a.whatsapp_enabled = True
        self.env["whatsapp.webhook.event"]._cron_process_pending()
        self.assertEqual(event.state, "done")
        self.assertTrue(self.received("wamid.OFF"))

    @mute_logger(PARSER_LOGGER, EVENT_LOGGER)
    def test_parser_exception_fails_the_event_with_its_error(self):
        def broken(value, base):
            raise TypeError("parser bug")

        with patch.dict(wa_events._FIELD_PARSERS, {"messages": broken}):
            event = self.deliver(self.inbound("wamid.BUG"))
        self.assertEqual(event.state, "failed")
        self.assertIn("TypeError: parser bug", event.last_error)
        self.assertTrue(event.next_attempt_date)
        # Failed events stay, however old: the purge never removes them.
        event.received_date = "2020-01-01 00:00:00"
        self.env["whatsapp.webhook.event"]._cron_purge_payloads()
        self.assertTrue(event.exists())
        # Once the parser is fixed, the retry applies the message.
        event._process()
        self.assertEqual(event.state, "done")
        self.assertTrue(self.received("wamid.BUG"))

    @mute_logger(EVENT_LOGGER)
    def test_unreadable_body_fails_with_its_error(self):
        event = self.deliver(b"{not json")
        self.assertEqual(event.state, "failed")
        self.assertIn("not valid JSON", event.last_error)

    @mute_logger(EVENT_LOGGER, PROCESSOR_LOGGER)
    def test_one_failing_event_never_stops_the_batch(self):
        processor = type(self.env["whatsapp.webhook.processor"])
        real = processor._handle_inbound

        def flaky(self_, account, item, **kwargs):
            if item.wamid == "wamid.BAD":
                raise RuntimeError("boom")
            return real(self_, account, item, **kwargs)

        Event = self.env["whatsapp.webhook.event"]
        bad = Event._receive(self.account_a, self.inbound("wamid.BAD").encode())
        good = Event._receive(self.account_a, self.inbound("wamid.GOOD").encode())
        with patch.object(processor, "_handle_inbound", flaky):
            Event._cron_process_pending()
        self.assertEqual((bad.state, good.state), ("failed", "done"))
        self.assertIn("boom", bad.last_error)


@tagged("post_install", "-at_install")
class TestRouteLimits(WhatsAppMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_whatsapp()
        cls.url = f"/whatsapp/webhook/{cls.account_a.sudo().webhook_key}"

    def post(self, raw, **kwargs):
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(raw, "app-secret-a"),
        }
        return self.url_open(self.url, data=raw, headers=headers, **kwargs)

    def test_deeply_nested_signed_body_is_refused_with_400(self):
        Event = self.env["whatsapp.webhook.event"]
        before = Event.search_count([])
        raw = b'{"object": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
        response = self.post(raw)
        self.assertEqual(response.status_code, 400)
        self.assertEqual(Event.search_count([]), before, "the body was stored")

    @mute_logger("odoo.http")
    def test_chunked_body_over_the_limit_is_refused_while_read(self):
        self.env["ir.config_parameter"].set_param(
            "whatsapp_business.webhook_max_bytes", 1000
        )

        def chunks():
            # No Content-Length: requests sends a generator chunked.
            for _ in range(2000):
                yield b" " * 1000

        raw_ok = webhook_body(messages_entry(self.account_a)).encode()
        self.assertEqual(self.post(raw_ok).status_code, 200)
        response = self.url_open(
            self.url,
            data=chunks(),
            headers={"Content-Type": "application/json"},
        )
        self.assertEqual(response.status_code, 413)

    @mute_logger("odoo.sql_db")  # the conflict raised below is logged as a bad query
    def test_chunked_body_survives_a_retried_transaction(self):
        # Odoo runs the route again after a serialization conflict (another
        # worker wrote the account row); the chunked stream is consumed by then.
        Event = type(self.env["whatsapp.webhook.event"])
        receive = Event._receive
        attempts = []

        def conflict_once(events, *args, **kwargs):
            attempts.append(1)
            if len(attempts) == 1:
                events.env.cr.execute(
                    "DO $$ BEGIN RAISE EXCEPTION 'concurrent update' "
                    "USING ERRCODE = 'serialization_failure'; END $$"
                )
            return receive(events, *args, **kwargs)

        raw = webhook_body(messages_entry(self.account_a)).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(raw, "app-secret-a"),
        }
        with (
            patch.object(Event, "_receive", conflict_once),
            patch("odoo.service.model.time.sleep"),  # the retry's back-off
        ):
            response = self.url_open(
                self.url,
                data=(raw[i : i + 100] for i in range(0, len(raw), 100)),
                headers=headers,
            )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(len(attempts), 2, "the route ran once, not twice")
        event = self.env["whatsapp.webhook.event"].search([], order="id desc", limit=1)
        self.assertEqual(event.payload.encode(), raw)


@tagged("post_install", "-at_install")
class TestSetBasedStatuses(WebhookCase):
    def outbound(self, count, state="sent", **vals):
        Message = self.env["whatsapp.message"]
        return Message.create(
            [
                {
                    "account_id": self.account_a.id,
                    "direction": "outbound",
                    "state": state,
                    "phone": f"+336100{i:05d}",
                    "body": f"Offre {i}",
                    "wamid": f"wamid.SET-{state}-{i}-{vals.get('failure_type')}",
                    "res_model": "crm.lead",
                    "res_id": self.lead_a.id,
                    **vals,
                }
                for i in range(count)
            ]
        )

    def statuses_body(self, messages, status, ts=None):
        ts = ts or int(time.time())
        return webhook_body(
            messages_entry(
                self.account_a,
                statuses=[status_item(m.wamid, status, ts) for m in messages],
            )
        )

    def apply_counting_queries(self, body):
        Event = self.env["whatsapp.webhook.event"]
        event = Event._receive(self.account_a, body.encode())
        self.env.flush_all()
        before = self.env.cr.sql_log_count
        Event._cron_process_pending()
        return event, self.env.cr.sql_log_count - before

    def test_a_batch_costs_the_same_queries_whatever_its_size(self):
        warm = self.outbound(1, state="queued", failure_type="network")
        small = self.outbound(2, state="sent", failure_type="recipient")
        big = self.outbound(40, state="queued")
        for message in warm | small | big:
            message.mail_message_id = self.lead_a.message_post(body="x")
        # A first batch warms the caches (subtypes, state labels, account).
        self.apply_counting_queries(self.statuses_body(warm, "read"))
        event_small, queries_small = self.apply_counting_queries(
            self.statuses_body(small, "delivered")
        )
        event_big, queries_big = self.apply_counting_queries(
            self.statuses_body(big, "delivered")
        )
        self.assertEqual((event_small.state, event_big.state), ("done", "done"))
        self.assertEqual(set((small | big).mapped("state")), {"delivered"})
        self.assertEqual(queries_big, queries_small, "queries grow with the batch")
        # The chatter shows the new state, and the pricing is stored.
        self.assertIn("o_whatsapp_state_delivered", big[0].mail_message_id.body)
        self.assertEqual(set(big.mapped("pricing_category")), {"utility"})
        self.assertEqual(len(big.mapped("delivered_date")), 40)

    def test_the_sql_rule_is_the_pure_rule(self):
        """Every current state, failure kind and Meta status, against
        wa_cloud.delivery.next_state."""
        cases = list(
            itertools.product(
                ("queued", "sent", "delivered", "read", "failed", "cancelled"),
                ("network", "recipient"),
                ("sent", "delivered", "read", "played", "failed"),
            )
        )
        messages = self.env["whatsapp.message"]
        for index, (state, failure, _status) in enumerate(cases):
            messages |= self.env["whatsapp.message"].create(
                {
                    "account_id": self.account_a.id,
                    "direction": "outbound",
                    "state": state,
                    "failure_type": failure if state == "failed" else False,
                    "phone": f"+3362{index:07d}",
                    "body": "x",
                    "wamid": f"wamid.RULE-{index}",
                }
            )
        items = [
            status_item(message.wamid, status, int(time.time()))
            for message, (_s, _f, status) in zip(messages, cases, strict=True)
        ]
        self.deliver(webhook_body(messages_entry(self.account_a, statuses=items)))
        messages.invalidate_recordset()
        for message, (state, failure, status) in zip(messages, cases, strict=True):
            expected = delivery.next_state(
                state,
                delivery.META_STATUS_TO_STATE[status],
                failure if state == "failed" else None,
            )
            self.assertEqual(message.state, expected, (state, failure, status))
            if state == "failed" and failure == "network" and expected != "failed":
                self.assertFalse(message.failure_type)

    def test_repeats_and_late_statuses_change_nothing(self):
        message = self.outbound(1)
        now = int(time.time())
        self.deliver(self.statuses_body(message, "read", now))
        self.deliver(self.statuses_body(message, "delivered", now - 5))
        self.deliver(self.statuses_body(message, "read", now + 1))
        self.assertEqual(message.state, "read")
        statuses = self.env["whatsapp.message.status"].search(
            [("message_id", "=", message.id)]
        )
        self.assertEqual(sorted(statuses.mapped("status")), ["delivered", "read"])

    def test_meta_failure_stores_its_error(self):
        message = self.outbound(1)
        item = status_item(message.wamid, "failed", int(time.time()))
        item["errors"] = [{"code": 131026, "title": "Message undeliverable"}]
        self.deliver(webhook_body(messages_entry(self.account_a, statuses=[item])))
        self.assertEqual(message.state, "failed")
        self.assertEqual(message.failure_type, "invalid_number")
        self.assertEqual(message.failure_code, 131026)

    def test_status_beating_the_send_answer_finds_its_message(self):
        message = self.outbound(1, state="queued", wamid=False)
        item = status_item("wamid.EARLY", "delivered", int(time.time()))
        item["biz_opaque_callback_data"] = f"whatsapp.message:{message.id}"
        self.deliver(webhook_body(messages_entry(self.account_a, statuses=[item])))
        self.assertEqual((message.state, message.wamid), ("delivered", "wamid.EARLY"))


@tagged("post_install", "-at_install")
class TestMetaTimeOrder(WebhookCase):
    def preference(self, value, ts):
        return webhook_body(
            {
                "id": self.account_a.waba_id,
                "changes": [
                    {
                        "field": "user_preferences",
                        "value": {
                            "metadata": {
                                "phone_number_id": self.account_a.phone_number_id
                            },
                            "user_preferences": [
                                {
                                    "wa_id": WA_ID_A,
                                    "category": "marketing_messages",
                                    "value": value,
                                    "timestamp": ts,
                                }
                            ],
                        },
                    }
                ],
            }
        )

    def test_a_late_older_resume_never_undoes_a_newer_stop(self):
        self.account_a.unblacklist_on_inbound = True
        now = int(time.time())
        self.deliver(self.preference("stop", now))
        self.deliver(self.preference("resume", now - 60))
        self.assertTrue(self.is_blacklisted("+" + WA_ID_A))
        # A newer resume does apply.
        self.deliver(self.preference("resume", now + 60))
        self.assertFalse(self.is_blacklisted("+" + WA_ID_A))

    def template_change(self, field, value, ts):
        return webhook_body(
            {
                "id": self.account_a.waba_id,
                "time": ts,
                "changes": [
                    {
                        "field": field,
                        "value": {
                            "message_template_id": 774400998877,
                            "message_template_name": "order_update",
                            "message_template_language": "es",
                            **value,
                        },
                    }
                ],
            }
        )

    def test_older_template_updates_never_override_newer_ones(self):
        template = self.env["whatsapp.template"].create(
            {
                "name": "order_update",
                "language": "es",
                "account_id": self.account_a.id,
                "template_uid": "774400998877",
                "status": "PENDING",
            }
        )
        now = int(time.time())
        status = "message_template_status_update"
        quality = "message_template_quality_update"
        category = "template_category_update"
        self.deliver(self.template_change(status, {"event": "PAUSED"}, now))
        self.deliver(self.template_change(status, {"event": "APPROVED"}, now - 60))
        self.deliver(self.template_change(quality, {"new_quality_score": "RED"}, now))
        self.deliver(
            self.template_change(quality, {"new_quality_score": "GREEN"}, now - 60)
        )
        self.deliver(self.template_change(category, {"new_category": "UTILITY"}, now))
        self.deliver(
            self.template_change(category, {"new_category": "MARKETING"}, now - 60)
        )
        self.assertEqual(
            (template.status, template.quality_score, template.category),
            ("PAUSED", "RED", "UTILITY"),
        )
        self.deliver(self.template_change(status, {"event": "APPROVED"}, now + 60))
        self.assertEqual(template.status, "APPROVED")


@tagged("post_install", "-at_install")
class TestParallelClaims(WhatsAppMixin, TransactionCase):
    """Two workers on two connections, on committed events: the events of one
    customer are never in two workers' hands, so a new number sending in
    parallel bodies gets one partner and one lead.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._ensure_encryption_key()

    def setUp(self):
        super().setUp()
        with self.registry.cursor() as cr:
            cr.execute("SELECT COALESCE(MAX(id), 0) FROM ir_cron_trigger")
            self.last_trigger_id = cr.fetchone()[0]
            env = api.Environment(cr, SUPERUSER_ID, {})
            company = env.ref("base.main_company")
            was_enabled = company.whatsapp_enabled
            company.whatsapp_enabled = True
            account = env["whatsapp.account"].create(
                {
                    "name": "Parallel inbox",
                    "company_id": company.id,
                    "phone_number_id": "109000000000888",
                    "waba_id": "104000000000888",
                    "access_token": "EAAparallel",
                    "app_secret": "parallel-secret",
                    "create_lead": True,
                }
            )
            # Touched recently: neither worker writes the account row, which the
            # other would wait for (the test runs them one after the other).
            account.last_webhook_date = cr.now()
            self.account_id = account.id
            self.addCleanup(self._drop_committed_data, was_enabled)
            Event = env["whatsapp.webhook.event"]
            self.new_number = "5491100000001"
            self.other_number = "5491100000002"
            self.event_ids = [
                Event._receive(account, self.body(account, wamid, number)).id
                for wamid, number in (
                    ("wamid.PAR-1", self.new_number),
                    ("wamid.PAR-2", self.new_number),
                    ("wamid.PAR-3", self.other_number),
                )
            ]

    def body(self, account, wamid, number):
        message = {
            "from": number,
            "id": wamid,
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": "Hola"},
        }
        return json.dumps(
            json.loads(
                webhook_body(
                    messages_entry(
                        account,
                        messages=[message],
                        contacts=[{"profile": {"name": "Nuevo"}, "wa_id": number}],
                    )
                )
            )
        ).encode()

    def _drop_committed_data(self, was_enabled):
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            messages = env["whatsapp.message"].search(
                [("account_id", "=", self.account_id)]
            )
            partners = messages.partner_id
            leads = env["crm.lead"].search([("partner_id", "in", partners.ids)])
            env["mail.message"].search(
                [
                    "|",
                    "&",
                    ("model", "=", "crm.lead"),
                    ("res_id", "in", leads.ids),
                    "&",
                    ("model", "=", "res.partner"),
                    ("res_id", "in", partners.ids),
                ]
            ).unlink()
            messages.unlink()
            leads.unlink()
            partners.unlink()
            cr.execute(
                "DELETE FROM whatsapp_webhook_event WHERE account_id = %s",
                [self.account_id],
            )
            drop_committed_account(
                cr, self.account_id, self.last_trigger_id, was_enabled
            )

    def test_one_customer_is_never_in_two_workers(self):
        with self.registry.cursor() as cr_a, self.registry.cursor() as cr_b:
            cr_a.execute("SET LOCAL lock_timeout = '5s'")
            cr_b.execute("SET LOCAL lock_timeout = '5s'")
            env_a = api.Environment(cr_a, SUPERUSER_ID, {})
            env_b = api.Environment(cr_b, SUPERUSER_ID, {})
            # Worker A claims one event (committed), then worker B claims.
            claimed_a, _backlog = env_a["whatsapp.webhook.event"]._claim_ids(cr_a, 1)
            cr_a.commit()
            claimed_b, _backlog = env_b["whatsapp.webhook.event"]._claim_ids(cr_b, 5)
            cr_b.commit()
            self.assertEqual(claimed_a, self.event_ids[:1])
            # The second body of the same number waits for the first one.
            self.assertEqual(claimed_b, self.event_ids[2:])
            # Both workers process in parallel, then A takes what waited.
            env_a["whatsapp.webhook.event"].browse(claimed_a)._process_batch()
            env_b["whatsapp.webhook.event"].browse(claimed_b)._process_batch()
            cr_a.commit()
            cr_b.commit()
            claimed_again, _backlog = env_a["whatsapp.webhook.event"]._claim_ids(
                cr_a, 5
            )
            self.assertEqual(claimed_again, self.event_ids[1:2])
            env_a["whatsapp.webhook.event"].browse(claimed_again)._process_batch()
            cr_a.commit()
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            events = env["whatsapp.webhook.event"].browse(self.event_ids)
            self.assertEqual(set(events.mapped("state")), {"done"})
            messages = env["whatsapp.message"].search(
                [("account_id", "=", self.account_id)], order="id"
            )
            self.assertEqual(
                messages.mapped("wamid"), ["wamid.PAR-1", "wamid.PAR-3", "wamid.PAR-2"]
            )
            new = messages.filtered(lambda m: m.phone == "+" + self.new_number)
            self.assertEqual(len(new.partner_id), 1, "two partners for one number")
            leads = env["crm.lead"].search([("partner_id", "=", new.partner_id.id)])
            self.assertEqual(len(leads), 1, "two leads for one number")

    def test_a_stale_claim_is_taken_again(self):
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            cr.execute(
                "UPDATE whatsapp_webhook_event SET claim_date = %s WHERE id = %s",
                (env.cr.now() - timedelta(hours=1), self.event_ids[0]),
            )
            claimed, _backlog = env["whatsapp.webhook.event"]._claim_ids(cr, 5)
            cr.rollback()
        self.assertEqual(claimed, self.event_ids)
