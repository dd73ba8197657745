import hashlib
import json
import logging
from contextlib import contextmanager

from odoo.tests import HttpCase, tagged

from .common import IN_CI, WhatsAppMixin, messages_entry, sign, webhook_body

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # hypothesis is a test requirement, not a runtime one
    given = None

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    if given
    else None
)


def _json_values():
    return st.recursive(
        JSON_LEAVES,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=12), children, max_size=4)
        ),
        max_leaves=20,
    )


# Keys Meta uses: mutations hit the parser where it matters.
META_KEYS = [
    "object",
    "entry",
    "id",
    "changes",
    "field",
    "value",
    "metadata",
    "phone_number_id",
    "messages",
    "statuses",
    "contacts",
    "from",
    "from_user_id",
    "type",
    "text",
    "body",
    "timestamp",
    "status",
    "errors",
    "code",
    "context",
    "image",
    "reaction",
    "system",
    "wa_id",
    "user_id",
    "pricing",
    "conversation",
    "interactive",
    "button",
]


# The loggers of the webhook path. The parser's safety net logs an ERROR when it
# turns a change it crashed on into an unknown event; processing logs an ERROR for
# each item that fails. Both are bugs that a 200 answer would hide.
WEBHOOK_LOGGERS = (
    "odoo.addons.whatsapp_business.controllers.main",
    "odoo.addons.whatsapp_business.models.whatsapp_webhook_event",
    "odoo.addons.whatsapp_business.models.whatsapp_webhook_processor",
    "odoo.addons.whatsapp_business.wa_cloud.events",
)


class _Problems(logging.Handler):
    """Keeps the WARNING and ERROR records of the webhook loggers."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def take(self):
        lines = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in self.records]
        self.records.clear()
        return lines


def _warnings_only(record):
    # Thousands of bodies would flood the test log with their INFO lines;
    # warnings and errors still reach the log as usual.
    return record.levelno >= logging.WARNING


@contextmanager
def webhook_problems():
    """Collects the webhook loggers' warnings and errors, and drops their INFO."""
    handler = _Problems()
    loggers = [logging.getLogger(name) for name in WEBHOOK_LOGGERS]
    for logger in loggers:
        logger.addFilter(_warnings_only)
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
            logger.removeFilter(_warnings_only)


def fuzz_settings(max_examples):
    """Same examples at every CI run (derandomized): a CI failure reproduces.

    Elsewhere the examples are random; a failure prints the blob to replay it
    with @reproduce_failure.
    """
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=IN_CI,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )


@tagged("post_install", "-at_install")
class TestWebhookFuzz(WhatsAppMixin, HttpCase):
    """Random and mutated bodies, all validly signed: never a 500, never a stray
    row, never a crash in parsing or processing."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_whatsapp()
        cls.url_a = f"/whatsapp/webhook/{cls.account_a.sudo().webhook_key}"
        cls.base = json.loads(
            webhook_body(
                messages_entry(
                    cls.account_a,
                    messages=[
                        {
                            "from": "33612345678",
                            "id": "wamid.F",
                            "timestamp": "1795165200",
                            "type": "text",
                            "text": {"body": "hi"},
                        }
                    ],
                    statuses=[{"id": "wamid.S", "status": "read", "timestamp": "1"}],
                ),
                messages_entry(
                    cls.account_b,
                    messages=[
                        {
                            "from": "33612345678",
                            "id": "wamid.B",
                            "timestamp": "1795165200",
                            "type": "text",
                            "text": {"body": "hi"},
                        }
                    ],
                ),
            )
        )

    def _post(self, raw):
        return self.url_open(
            self.url_a,
            data=raw,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": sign(raw, "app-secret-a"),
            },
        )

    def _mutate(self, data, path, value):
        node = data
        for step in path[:-1]:
            if isinstance(node, dict) and node:
                node = node[sorted(node)[step % len(node)]]
            elif isinstance(node, list) and node:
                node = node[step % len(node)]
            else:
                return data
        if isinstance(node, dict):
            key = (
                sorted(node)[path[-1] % len(node)]
                if node and path[-1] % 2
                else (META_KEYS[path[-1] % len(META_KEYS)])
            )
            node[key] = value
        elif isinstance(node, list) and node:
            node[path[-1] % len(node)] = value
        return data

    def _check_invariants(self):
        messages = self.env["whatsapp.message"].sudo().search([])
        self.assertFalse(messages.filtered(lambda m: m.account_id == self.account_b))
        self.assertFalse(
            messages.filtered(lambda m: m.company_id != m.account_id.company_id)
        )

    def _post_and_process(self, raw, problems, statuses):
        """Post one body, process the inbox, and fail on any crash it caused."""
        Event = self.env["whatsapp.webhook.event"].sudo()
        # A body seen before would be answered as a repeat and not processed:
        # forget it, so that hypothesis can replay and shrink a failing example.
        Event.search([("payload_hash", "=", hashlib.sha256(raw).hexdigest())]).unlink()
        last_id = Event.search([], limit=1).id or 0
        response = self._post(raw)
        self.assertIn(response.status_code, statuses, raw[:300])
        while Event._cron_process_pending():
            pass
        logged = problems.take()
        new_events = Event.search([("id", ">", last_id)])
        failed = new_events.filtered(lambda e: e.state == "failed")
        self.assertFalse(
            failed,
            f"processing failed ({failed.mapped('last_error')}) for {raw[:300]}",
        )
        self.assertFalse(new_events.filtered(lambda e: e.state == "pending"))
        self.assertEqual(logged, [], f"webhook warnings or errors for {raw[:300]}")

    def test_random_and_mutated_bodies(self):
        if given is None:
            self.skipTest("hypothesis is not installed")
        with webhook_problems() as problems:

            @fuzz_settings(600)
            @given(_json_values())
            def random_bodies(value):
                raw = json.dumps(value).encode()
                self._post_and_process(raw, problems, (200, 400))

            @fuzz_settings(900)
            @given(
                st.lists(st.integers(0, 50), min_size=1, max_size=8),
                _json_values(),
            )
            def mutated_bodies(path, value):
                data = self._mutate(json.loads(json.dumps(self.base)), path, value)
                self._post_and_process(json.dumps(data).encode(), problems, (200,))

            random_bodies()
            mutated_bodies()
        self._check_invariants()
        events = self.env["whatsapp.webhook.event"].sudo().search([])
        self.assertTrue(events.filtered(lambda e: e.state == "done"))
