"""README promises about accounts: Meta's account events, Subscribe App, the token
reveal, key rotation and neutralized copies (sections 5, 6 and 11).
"""

import os
import time
from unittest.mock import patch

from cryptography.fernet import Fernet

from odoo.exceptions import AccessError
from odoo.modules.neutralize import neutralize_database
from odoo.tests import tagged
from odoo.tools import config

from ..wa_cloud.client import CloudApiClient
from ..wa_cloud.crypto import CONFIG_OPTION, ENV_VAR, SecretBox
from ..wa_cloud.errors import error_from_response
from .common import PHONE_A, mock_gateway, webhook_body
from .test_webhook_processing import WebhookCase

PERMISSION_ERROR = (
    b'{"error": {"message": "(#200) Permissions error", "type": "OAuthException",'
    b' "code": 200, "fbtrace_id": "AbCdEf"}}'
)


def account_change(account, field, value):
    return webhook_body(
        {
            "id": account.waba_id,
            "time": int(time.time()),
            "changes": [{"field": field, "value": value}],
        }
    )


def activities_of(account):
    return account.env["mail.activity"].search(
        [("res_model", "=", "whatsapp.account"), ("res_id", "=", account.id)]
    )


@tagged("post_install", "-at_install")
class TestAccountUpdateWebhook(WebhookCase):
    """README 6: the Responsible "receives the alerts (an activity) when ... Meta
    blocks the account"; the status Error is "an account problem reported by Meta".
    """

    def setUp(self):
        super().setUp()
        self.account_a.user_id = self.manager_a

    def test_banned_account_flagged_with_one_activity(self):
        self.deliver(
            account_change(
                self.account_a,
                "account_update",
                {
                    "event": "DISABLED_UPDATE",
                    "ban_info": {
                        "waba_ban_state": ["DISABLE"],
                        "waba_ban_date": "2026-03-02",
                    },
                },
            )
        )
        self.assertEqual(self.account_a.state, "error")
        self.assertIn("DISABLED_UPDATE", self.account_a.last_error)
        activity = activities_of(self.account_a)
        self.assertEqual(len(activity), 1)
        self.assertEqual(activity.user_id, self.manager_a)
        self.assertEqual(activity.summary, "WhatsApp account needs attention")
        # Meta follows up (restriction, violation...): still one alert to handle.
        restriction = {
            "restriction_type": "RESTRICTED_ADD_PHONE_NUMBER_ACTION",
            "expiration": int(time.time()) + 86400,
        }
        for event in ("ACCOUNT_RESTRICTION", "ACCOUNT_VIOLATION"):
            self.deliver(
                account_change(
                    self.account_a,
                    "account_update",
                    {"event": event, "restriction_info": [restriction]},
                )
            )
        self.assertEqual(self.account_a.state, "error")
        self.assertIn("ACCOUNT_VIOLATION", self.account_a.last_error)
        self.assertEqual(len(activities_of(self.account_a)), 1)
        # The account's chatter keeps the history of Meta's notices.
        bodies = " ".join(map(str, self.account_a.message_ids.mapped("body")))
        self.assertIn("DISABLED_UPDATE", bodies)
        self.assertIn("ACCOUNT_RESTRICTION", bodies)

    def test_reinstated_or_harmless_events_raise_no_alert(self):
        with mock_gateway():
            self.account_a.action_test_connection()
        self.assertEqual(self.account_a.state, "connected")
        self.deliver(
            account_change(
                self.account_a,
                "account_update",
                {
                    "event": "DISABLED_UPDATE",
                    "ban_info": {"waba_ban_state": ["REINSTATE"]},
                },
            )
        )
        self.deliver(
            account_change(
                self.account_a,
                "account_update",
                {"event": "VERIFIED_ACCOUNT"},
            )
        )
        self.assertEqual(self.account_a.state, "connected")
        self.assertFalse(activities_of(self.account_a))


@tagged("post_install", "-at_install")
class TestPhoneQualityWebhook(WebhookCase):
    """README 6 Health tab: "Messaging Limit, updated by Meta's
    phone_number_quality_update notifications."
    """

    def test_messaging_limit_follows_meta(self):
        self.account_a.display_phone_number = "+1 555-010-0001"
        # A second number of the same WhatsApp Business Account must stay as is.
        other = self.env["whatsapp.account"].create(
            {
                "name": "Agency A second number",
                "company_id": self.company_a.id,
                "phone_number_id": "109000000000003",
                "waba_id": self.account_a.waba_id,
                "access_token": "EAAtokenC",
                "app_secret": "app-secret-a",
                "display_phone_number": "+1 555-010-0003",
                "messaging_tier": "TIER_1K",
            }
        )
        event = self.deliver(
            account_change(
                self.account_a,
                "phone_number_quality_update",
                {
                    "display_phone_number": "15550100001",
                    "event": "UPGRADE",
                    "old_limit": "TIER_1K",
                    "current_limit": "TIER_10K",
                },
            )
        )
        self.assertEqual(event.state, "done")
        self.assertEqual(self.account_a.messaging_tier, "TIER_10K")
        self.assertEqual(other.messaging_tier, "TIER_1K")
        self.assertIn(
            "UPGRADE", " ".join(map(str, self.account_a.message_ids.mapped("body")))
        )
        # Meta announced it drops current_limit: the portfolio limit remains.
        self.deliver(
            account_change(
                self.account_a,
                "phone_number_quality_update",
                {
                    "display_phone_number": "15550100003",
                    "event": "UPGRADE",
                    "max_daily_conversations_per_business": "100K",
                },
            )
        )
        self.assertEqual(other.messaging_tier, "100K")
        self.assertEqual(self.account_a.messaging_tier, "TIER_10K")


@tagged("post_install", "-at_install")
class TestSubscribeApp(WebhookCase):
    """README 5.8 / 12.7: "Subscribe App to Business Account" subscribes the app to
    the WhatsApp Business Account and says so; a refusal is reported.
    """

    def subscribe(self, answer):
        calls = []

        def fake_call(client, method, url, **_kwargs):
            calls.append((method, url))
            if isinstance(answer, Exception):
                raise answer
            return answer

        with patch.object(
            CloudApiClient, "_call", autospec=True, side_effect=fake_call
        ):
            action = self.account_a.with_user(self.manager_a).action_subscribe_app()
        return action["params"], calls

    def test_subscribed(self):
        params, calls = self.subscribe({"success": True})
        self.assertEqual(
            calls,
            [
                (
                    "POST",
                    f"https://graph.facebook.com/v26.0/{self.account_a.waba_id}"
                    "/subscribed_apps",
                )
            ],
        )
        self.assertEqual(params["type"], "success")
        self.assertIn("subscribed", params["message"])
        self.assertEqual(self.account_a.state, "connected")
        self.assertTrue(self.account_a.last_success_date)

    def test_refused_or_unconfirmed(self):
        self.account_a.user_id = self.manager_a
        params, _calls = self.subscribe(error_from_response(403, PERMISSION_ERROR, {}))
        self.assertEqual(params["type"], "danger")
        self.assertIn("#200", params["message"])
        self.assertEqual(self.account_a.state, "error")
        self.assertIn("#200", self.account_a.last_error)
        self.assertEqual(len(activities_of(self.account_a)), 1)

        params, _calls = self.subscribe({"success": False})
        self.assertEqual(params["type"], "danger")
        self.assertNotEqual(self.account_a.state, "connected")


@tagged("post_install", "-at_install")
class TestTokenReveal(WebhookCase):
    """README 11: "Each reveal is recorded in the account's chatter." The token
    itself never appears there.
    """

    def test_reveal_recorded_without_the_token(self):
        admin = self.env.ref("base.user_admin")
        before = self.account_a.message_ids
        token = self.account_a.with_user(admin).action_reveal_access_token()
        self.assertEqual(token, "EAAtokenA-secret-value")
        new = self.account_a.message_ids - before
        self.assertEqual(len(new), 1)
        self.assertIn("revealed", str(new.body))
        self.assertIn(admin.name, str(new.body))
        self.env.flush_all()
        self.env.cr.execute(
            """
            SELECT count(*) FROM mail_message m
            LEFT JOIN mail_tracking_value t ON t.mail_message_id = m.id
            WHERE m.model = 'whatsapp.account' AND m.res_id = %s
              AND (m.body LIKE %s OR t.old_value_char LIKE %s
                   OR t.new_value_char LIKE %s)
            """,
            (self.account_a.id, *["%EAAtokenA%"] * 3),
        )
        self.assertEqual(self.env.cr.fetchone()[0], 0)
        with self.assertRaises(AccessError):
            self.account_a.with_user(self.user_a).action_reveal_access_token()
        self.assertEqual(self.account_a.message_ids - before, new)


@tagged("post_install", "-at_install")
class TestKeyRotationAndNeutralize(WebhookCase):
    """README 11: rotation "re-encrypts every account of the database, archived ones
    included"; a neutralized copy erases the secrets, archives every account and
    cancels queued messages.
    """

    def test_rotation_includes_archived_accounts(self):
        archived = self.env["whatsapp.account"].create(
            {
                "name": "Old number",
                "company_id": self.company_a.id,
                "phone_number_id": "109000000000008",
                "waba_id": "104000000000008",
                "access_token": "EAAold-archived-token",
                "app_secret": "old-app-secret",
                "active": False,
            }
        )
        current = os.environ.get(ENV_VAR) or config.get(CONFIG_OPTION)
        new_key = Fernet.generate_key().decode()
        with (
            patch.dict(os.environ, {ENV_VAR: f"{new_key},{current}"}),
            patch.dict(config.options, {CONFIG_OPTION: ""}),
        ):
            self.account_a.with_user(self.manager_a).action_rotate_encryption_key()
        archived_sudo = archived.sudo()
        box = SecretBox(new_key)  # the old key is gone (step 4)
        self.assertEqual(
            box.decrypt(archived_sudo.access_token_encrypted), "EAAold-archived-token"
        )
        self.assertEqual(
            box.decrypt(archived_sudo.app_secret_encrypted), "old-app-secret"
        )
        self.assertEqual(
            box.decrypt(self.account_a.sudo().access_token_encrypted),
            "EAAtokenA-secret-value",
        )
        # Agency B's accounts are B's managers' business (test_tenant_isolation).

    def test_neutralize_cancels_queue_and_erases_secrets(self):
        self.open_window(self.account_a, PHONE_A)
        with mock_gateway():
            sent = self.queue_text()
            self.env["whatsapp.message"]._cron_process_queue()
            queued = self.queue_text()
        self.assertEqual(sent.state, "sent")
        self.assertEqual(queued.state, "queued")
        self.env.flush_all()
        neutralize_database(self.env.cr)  # what `odoo neutralize` runs
        self.env.invalidate_all()
        self.assertEqual(queued.state, "cancelled")
        self.assertEqual(sent.state, "sent")
        accounts = (
            self.env["whatsapp.account"].with_context(active_test=False).search([])
        )
        self.assertFalse(accounts.filtered("active"))
        self.assertFalse(accounts.filtered("access_token_set"))
        self.assertFalse(accounts.filtered("app_secret_set"))
        with mock_gateway() as gateway:
            self.env["whatsapp.message"]._cron_process_queue()
        self.assertEqual(gateway.sent, [])
