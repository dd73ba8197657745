import json

from odoo.tests import HttpCase, tagged
from odoo.tools import mute_logger

from .common import WhatsAppMixin, messages_entry, sign, webhook_body

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


@tagged("post_install", "-at_install")
class TestWebhookFuzz(WhatsAppMixin, HttpCase):
    """Random and mutated bodies, all validly signed: never a 500, never a stray row."""

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

    @mute_logger(
        "odoo.addons.whatsapp_business.models.whatsapp_webhook_event",
        "odoo.addons.whatsapp_business.controllers.main",
        "wa_cloud.events",
        "odoo.addons.whatsapp_business.wa_cloud.events",
    )
    def test_random_and_mutated_bodies(self):
        if given is None:
            self.skipTest("hypothesis is not installed")

        @settings(
            max_examples=600,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(_json_values())
        def random_bodies(value):
            raw = json.dumps(value).encode()
            response = self._post(raw)
            self.assertIn(response.status_code, (200, 400), raw[:200])

        @settings(
            max_examples=900,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            st.lists(st.integers(0, 50), min_size=1, max_size=8),
            _json_values(),
        )
        def mutated_bodies(path, value):
            data = self._mutate(json.loads(json.dumps(self.base)), path, value)
            raw = json.dumps(data).encode()
            response = self._post(raw)
            self.assertEqual(response.status_code, 200, raw[:300])

        random_bodies()
        mutated_bodies()
        Event = self.env["whatsapp.webhook.event"]
        while Event._cron_process_pending():
            pass
        self._check_invariants()
        events = self.env["whatsapp.webhook.event"].sudo().search([])
        self.assertTrue(events)
        self.assertFalse(events.filtered(lambda e: e.state == "pending"))
