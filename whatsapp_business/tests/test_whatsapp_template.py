import json
from unittest.mock import patch

from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..wa_cloud.client import CloudApiClient
from ..wa_cloud.errors import error_from_response
from ..wa_cloud.events import parse_webhook
from .common import WhatsAppCase

GRAPH = "https://graph.facebook.com/v26.0"


def meta_template(uid, name, language, body, **kwargs):
    """A template as Graph's GET .../message_templates returns it."""
    components = []
    if kwargs.get("header"):
        components.append({"type": "HEADER", **kwargs["header"]})
    body_component = {"type": "BODY", "text": body}
    if kwargs.get("body_example"):
        body_component["example"] = kwargs["body_example"]
    components.append(body_component)
    if kwargs.get("footer"):
        components.append({"type": "FOOTER", "text": kwargs["footer"]})
    if kwargs.get("buttons"):
        components.append({"type": "BUTTONS", "buttons": kwargs["buttons"]})
    return {
        "id": uid,
        "name": name,
        "language": language,
        "status": kwargs.get("status", "APPROVED"),
        "category": kwargs.get("category", "UTILITY"),
        "parameter_format": kwargs.get("parameter_format", "POSITIONAL"),
        "components": components,
        "quality_score": {"score": kwargs.get("quality", "GREEN")},
    }


ORDER_UPDATE = meta_template(
    "774400110002",
    "order_update",
    "fr",
    "Bonjour {{1}}, votre commande {{2}} est expédiée.",
    body_example={"body_text": [["Amélie", "S00117"]]},
    footer="Acme",
    buttons=[
        {
            "type": "URL",
            "text": "Suivre",
            "url": "https://acme.example/track/{{1}}",
            "example": ["https://acme.example/track/S00117"],
        },
        {"type": "QUICK_REPLY", "text": "Ne plus recevoir"},
    ],
)


class TemplateCase(WhatsAppCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Template = cls.env["whatsapp.template"]

    @classmethod
    def create_template(cls, data, account=None, **vals):
        values = cls.env["whatsapp.template"]._values_from_meta(data)
        values.update(account_id=(account or cls.account_a).id, **vals)
        return cls.env["whatsapp.template"].create(values)

    def map_variable(self, template, key, component="body", **vals):
        variable = template.variable_ids.filtered(
            lambda v: v.component == component and v.key == key
        )
        self.assertEqual(len(variable), 1)
        variable.write(vals)
        return variable


@tagged("post_install", "-at_install")
class TestTemplateSync(TemplateCase):
    def test_sync_follows_pagination_updates_and_archives(self):
        changed = self.create_template(dict(ORDER_UPDATE, status="PENDING"))
        self.map_variable(changed, "1", source="field", field_path="partner_id.name")
        removed = self.create_template(
            meta_template("774400119999", "old_promo", "fr", "Promo {{1}}")
        )
        other_account = self.create_template(
            meta_template("774400119998", "old_promo", "fr", "Promo {{1}}"),
            account=self.account_b,
        )
        pages = {
            f"{GRAPH}/104000000000001/message_templates": {
                "data": [
                    meta_template(
                        "774400110001",
                        "hello_world",
                        "en_US",
                        "Hello! This message comes from the sandbox.",
                    )
                ],
                "paging": {
                    "cursors": {"after": "c1"},
                    "next": f"{GRAPH}/104000000000001/message_templates"
                    "?limit=100&after=c1&access_token=LEAKED",
                },
            },
            f"{GRAPH}/104000000000001/message_templates?limit=100&after=c1": {
                "data": [ORDER_UPDATE],
                "paging": {
                    "next": f"{GRAPH}/104000000000001/message_templates"
                    "?limit=100&after=c2"
                },
            },
            f"{GRAPH}/104000000000001/message_templates?limit=100&after=c2": {
                "data": [
                    meta_template(
                        "774400110003",
                        "appointment_reminder",
                        "en_US",
                        "Hi {{first_name}}, see you on {{appointment_date}}.",
                        parameter_format="NAMED",
                        body_example={
                            "body_text_named_params": [
                                {"param_name": "first_name", "example": "Pablo"},
                                {"param_name": "appointment_date", "example": "May 3"},
                            ]
                        },
                    )
                ],
                "paging": {"cursors": {"before": "c2"}},
            },
        }
        calls = []

        def fake_call(client, method, url, **kwargs):
            calls.append((method, url, kwargs.get("params")))
            return json.loads(json.dumps(pages[url]))

        with patch.object(
            CloudApiClient, "_call", autospec=True, side_effect=fake_call
        ):
            action = self.account_a.with_user(self.manager_a).action_sync_templates()

        # The real paging loop of list_templates ran over the three pages.
        self.assertEqual(len(calls), 3)
        self.assertEqual(calls[0][2]["limit"], 100)
        self.assertTrue(all("access_token" not in url for _m, url, _p in calls))
        self.assertEqual(action["tag"], "display_notification")
        self.assertEqual(action["params"]["type"], "success")
        self.assertIn("2 created, 1 updated, 1 archived", action["params"]["message"])

        templates = self.Template.search([("account_id", "=", self.account_a.id)])
        self.assertEqual(
            sorted(templates.mapped("name")),
            ["appointment_reminder", "hello_world", "order_update"],
        )
        self.assertFalse(removed.active)
        self.assertTrue(other_account.active, "another account's template is kept")
        self.assertEqual(changed.status, "APPROVED")
        self.assertEqual(changed.footer_text, "Acme")
        self.assertEqual(changed.variable_count, 3)
        # The existing mapping survived; the new URL variable got Meta's sample.
        kept = changed.variable_ids.filtered(
            lambda v: v.key == "1" and v.component == "body"
        )
        self.assertEqual(kept.field_path, "partner_id.name")
        button = changed.variable_ids.filtered(lambda v: v.component == "button")
        self.assertEqual(button.sample, "S00117")
        named = templates.filtered(lambda t: t.name == "appointment_reminder")
        self.assertEqual(named.parameter_format, "NAMED")
        self.assertEqual(
            named.variable_ids.mapped("key"), ["first_name", "appointment_date"]
        )
        self.assertEqual(named.variable_ids.mapped("sample"), ["Pablo", "May 3"])
        self.assertEqual(self.account_a.state, "connected")

        # A second sync with the same data changes nothing.
        with patch.object(
            CloudApiClient, "_call", autospec=True, side_effect=fake_call
        ):
            action = self.Template._sync_from_meta(self.account_a)
        self.assertIn("0 created, 0 updated, 0 archived", action["params"]["message"])

    @mute_logger("odoo.addons.whatsapp_business.wa_cloud.client")
    def test_sync_error_keeps_templates(self):
        template = self.create_template(ORDER_UPDATE)
        error = error_from_response(
            401,
            b'{"error":{"message":"Error validating access token","type":'
            b'"OAuthException","code":190,"fbtrace_id":"AbC1"}}',
            {},
        )
        with patch.object(CloudApiClient, "_call", autospec=True, side_effect=error):
            action = self.Template._sync_from_meta(self.account_a)
        self.assertEqual(action["params"]["type"], "danger")
        self.assertIn("#190", action["params"]["message"])
        self.assertTrue(template.active)
        self.assertEqual(self.account_a.state, "token_invalid")

    def test_sync_all_from_list_action(self):
        synced = []

        def fake_list(client, **_kwargs):
            synced.append(client.waba_id)
            return [ORDER_UPDATE]

        action = self.env.ref("whatsapp_business.whatsapp_template_action_sync")
        with patch.object(
            CloudApiClient, "list_templates", autospec=True, side_effect=fake_list
        ):
            result = action.with_user(self.manager_a).run()
        # Only the accounts of the manager's companies.
        self.assertEqual(synced, [self.account_a.waba_id])
        self.assertIn("1 created", result["params"]["message"])
        with self.assertRaises(AccessError):
            action.with_user(self.user_a).run()

    def test_user_cannot_sync(self):
        with self.assertRaises(AccessError):
            self.account_a.with_user(self.user_a).action_sync_templates()


@tagged("post_install", "-at_install")
class TestTemplateWebhook(TemplateCase):
    def _event(self, field, value):
        body = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": self.account_a.waba_id,
                    "time": 1795165200,
                    "changes": [{"field": field, "value": value}],
                }
            ],
        }
        (event,) = parse_webhook(json.dumps(body))
        return event

    def test_status_quality_category_updates(self):
        template = self.create_template(ORDER_UPDATE)
        event = self._event(
            "message_template_status_update",
            {
                "event": "REJECTED",
                "message_template_id": 774400110002,
                "message_template_name": "order_update",
                "message_template_language": "fr",
                "reason": "INCORRECT_CATEGORY",
            },
        )
        self.assertTrue(self.Template._apply_webhook_event(self.account_a, event))
        self.assertEqual(template.status, "REJECTED")
        self.assertEqual(template.rejected_reason, "INCORRECT_CATEGORY")

        event = self._event(
            "message_template_status_update",
            {
                "event": "REINSTATED",
                "message_template_id": 774400110002,
                "message_template_name": "order_update",
                "message_template_language": "fr",
                "reason": "NONE",
            },
        )
        self.Template._apply_webhook_event(self.account_a, event)
        self.assertEqual(template.status, "APPROVED")
        self.assertFalse(template.rejected_reason)

        event = self._event(
            "message_template_quality_update",
            {
                "previous_quality_score": "GREEN",
                "new_quality_score": "YELLOW",
                "message_template_id": 774400110002,
                "message_template_name": "order_update",
                "message_template_language": "fr",
            },
        )
        self.assertTrue(self.Template._apply_webhook_event(self.account_a, event))
        self.assertEqual(template.quality_score, "YELLOW")

        event = self._event(
            "template_category_update",
            {
                "message_template_id": 774400110002,
                "message_template_name": "order_update",
                "message_template_language": "fr",
                "previous_category": "UTILITY",
                "new_category": "MARKETING",
            },
        )
        self.assertTrue(self.Template._apply_webhook_event(self.account_a, event))
        self.assertEqual(template.category, "MARKETING")

    def test_unknown_template_and_other_account(self):
        template = self.create_template(ORDER_UPDATE, account=self.account_b)
        event = self._event(
            "message_template_status_update",
            {
                "event": "PAUSED",
                "message_template_id": 774400110002,
                "message_template_name": "order_update",
                "message_template_language": "fr",
            },
        )
        self.assertFalse(self.Template._apply_webhook_event(self.account_a, event))
        self.assertEqual(template.status, "APPROVED")

    def test_found_by_name_and_language(self):
        template = self.create_template(ORDER_UPDATE, template_uid=False)
        event = self._event(
            "message_template_status_update",
            {
                "event": "DISABLED",
                "message_template_id": 774400110002,
                "message_template_name": "order_update",
                "message_template_language": "fr",
            },
        )
        self.assertTrue(self.Template._apply_webhook_event(self.account_a, event))
        self.assertEqual(template.status, "DISABLED")
        self.assertEqual(template.template_uid, "774400110002")


@tagged("post_install", "-at_install")
class TestTemplateParams(TemplateCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.full = cls.create_template(
            meta_template(
                "774400110010",
                "full_update",
                "fr",
                "Bonjour {{1}}, votre commande {{2}} est prête.",
                header={"format": "TEXT", "text": "Commande {{1}}"},
                buttons=[
                    {
                        "type": "URL",
                        "text": "Suivre",
                        "url": "https://acme.example/track/{{1}}",
                    },
                    {"type": "QUICK_REPLY", "text": "Stop"},
                    {"type": "COPY_CODE", "example": "AUTUMN25"},
                ],
            )
        )
        cls.named = cls.create_template(
            meta_template(
                "774400110003",
                "appointment_reminder",
                "en_US",
                "Hi {{first_name}}, see you on {{appointment_date}}.",
                parameter_format="NAMED",
            )
        )
        cls.image = cls.create_template(
            meta_template(
                "774400110004",
                "autumn_sale",
                "fr",
                "Profitez de -{{1}}% sur toute la boutique.",
                header={"format": "IMAGE"},
                category="MARKETING",
            )
        )

    def test_send_components_exact_json(self):
        params = {
            "header": {"1": "S00117"},
            "body": {"1": "Amélie", "2": "S00117"},
            "buttons": {"0": "S00117", "2": "AUTUMN25"},
        }
        self.assertEqual(
            self.full._get_send_components(params),
            [
                {"type": "header", "parameters": [{"type": "text", "text": "S00117"}]},
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Amélie"},
                        {"type": "text", "text": "S00117"},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{"type": "text", "text": "S00117"}],
                },
                {
                    "type": "button",
                    "sub_type": "copy_code",
                    "index": "2",
                    "parameters": [{"type": "coupon_code", "coupon_code": "AUTUMN25"}],
                },
            ],
        )
        # Positional lists are accepted and mean the same.
        self.assertEqual(
            self.full._get_send_components(
                {
                    "header": ["S00117"],
                    "body": ["Amélie", "S00117"],
                    "buttons": params["buttons"],
                }
            ),
            self.full._get_send_components(params),
        )
        self.assertEqual(
            self.named._get_send_components(
                {"body": {"appointment_date": "May 3", "first_name": "Pablo"}}
            ),
            [
                {
                    "type": "body",
                    "parameters": [
                        {
                            "type": "text",
                            "text": "Pablo",
                            "parameter_name": "first_name",
                        },
                        {
                            "type": "text",
                            "text": "May 3",
                            "parameter_name": "appointment_date",
                        },
                    ],
                }
            ],
        )
        self.assertEqual(
            self.image._get_send_components(
                {"header": {"media": "https://cdn.example/a.jpg"}, "body": {"1": "20"}}
            ),
            [
                {
                    "type": "header",
                    "parameters": [
                        {
                            "type": "image",
                            "image": {"link": "https://cdn.example/a.jpg"},
                        }
                    ],
                },
                {"type": "body", "parameters": [{"type": "text", "text": "20"}]},
            ],
        )

    def test_send_components_accepted_by_payload_builder(self):
        from ..wa_cloud.payloads import template_payload

        components = self.named._get_send_components(
            {"body": {"first_name": "Pablo", "appointment_date": "May 3"}}
        )
        payload = template_payload(
            "+33612345678", self.named.name, self.named.language, components=components
        )
        self.assertEqual(payload["template"]["components"], components)

    def test_check_params_refuses_wrong_counts(self):
        good = {
            "header": {"1": "S00117"},
            "body": {"1": "Amélie", "2": "S00117"},
            "buttons": {"0": "S00117", "2": "AUTUMN25"},
        }
        self.assertTrue(self.full._check_params(good))
        with self.assertRaisesRegex(UserError, "2 value"):
            self.full._check_params(dict(good, body={"1": "Amélie"}))
        with self.assertRaises(UserError):
            self.full._check_params(dict(good, body={"1": "a", "2": "b", "3": "c"}))
        with self.assertRaises(UserError):
            self.full._check_params(dict(good, buttons={"0": "S00117"}))
        with self.assertRaises(UserError):
            self.named._check_params({"body": {"first_name": "Pablo", "date": "x"}})
        with self.assertRaisesRegex(UserError, "empty"):
            self.full._check_params(dict(good, body={"1": "Amélie", "2": "  "}))
        for bad in ("two\nlines", "a\ttab", "five     spaces"):
            with self.assertRaisesRegex(UserError, "new lines"):
                self.full._check_params(dict(good, body={"1": "Amélie", "2": bad}))
        self.assertTrue(
            self.full._check_params(dict(good, body={"1": "Amélie", "2": "four    ok"}))
        )
        with self.assertRaisesRegex(UserError, "link"):
            self.image._check_params(
                {"header": {"media": "logo.png"}, "body": {"1": "2"}}
            )

    def test_render_and_params_for_record(self):
        template = self.create_template(
            meta_template(
                "774400110020",
                "lead_followup",
                "en_US",
                "Hello {{1}}, about {{2}} ({{3}}): {{4}}.",
            )
        )
        self.map_variable(template, "1", source="field", field_path="partner_id.name")
        self.map_variable(template, "2", source="field", field_path="name")
        self.map_variable(template, "3", source="field", field_path="user_id")
        self.map_variable(template, "4", source="text", fixed_text="see you  soon")
        lead = self.lead_a
        lead.name = "Roof\nrepair"
        lead.user_id = False
        params = template._params_for_record(lead)
        self.assertEqual(
            params,
            {
                "header": {},
                "body": {
                    "1": "Amélie Dupont",
                    "2": "Roof repair",
                    "3": "",
                    "4": "see you soon",
                },
                "buttons": {},
            },
        )
        self.assertEqual(
            template._render_text(params),
            "Hello Amélie Dupont, about Roof repair (): see you soon.",
        )
        self.assertEqual(
            self.full._render_text({"header": ["S1"], "body": ["A", "S1"]}),
            "Commande S1\nBonjour A, votre commande S1 est prête.",
        )

    def test_dates_and_selections_are_display_strings(self):
        template = self.create_template(
            meta_template("774400110021", "deadline", "en_US", "{{1}} / {{2}}")
        )
        self.map_variable(template, "1", source="field", field_path="date_deadline")
        self.map_variable(template, "2", source="field", field_path="priority")
        self.lead_a.write({"date_deadline": "2026-12-24", "priority": "2"})
        body = template._params_for_record(self.lead_a)["body"]
        self.assertEqual(body["1"], "12/24/2026")
        self.assertEqual(body["2"], "High")

    def test_field_path_validation(self):
        variable = self.full.variable_ids.filtered(lambda v: v.component == "body")[:1]
        variable.field_path = "partner_id.country_id.name"
        with self.assertRaises(ValidationError):
            variable.field_path = "partner_id.no_such_field"
        with self.assertRaises(ValidationError):
            variable.field_path = "tag_ids.name"  # many2many cannot be followed
        with self.assertRaises(ValidationError):
            variable.field_path = "name.id"

    def test_preview_escapes_values(self):
        template = self.create_template(
            meta_template(
                "774400110030",
                "escape_me",
                "en_US",
                "<b>Hi</b> {{1}}",
                body_example={"body_text": [["<script>alert(1)</script>"]]},
            )
        )
        preview = str(template.preview)
        self.assertNotIn("<script>", preview)
        self.assertNotIn("<b>Hi</b>", preview)
        self.assertIn("&lt;b&gt;Hi&lt;/b&gt;", preview)
