import os
from unittest.mock import patch

from psycopg2 import IntegrityError

from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import tagged
from odoo.tools import config, mute_logger

from ..models.whatsapp_account import get_secret_box
from ..wa_cloud.crypto import CONFIG_OPTION, ENV_VAR, SecretBox, generate_key
from ..wa_cloud.errors import error_from_response
from .common import WhatsAppCase, mock_gateway

EXPIRED_TOKEN_BODY = (
    b'{"error":{"message":"Error validating access token: Session has expired",'
    b'"type":"OAuthException","code":190,"error_subcode":463,"fbtrace_id":"AbC1"}}'
)


@tagged("post_install", "-at_install")
class TestWhatsAppAccount(WhatsAppCase):
    def _raw_row(self, account):
        self.env.flush_all()
        self.env.cr.execute(
            "SELECT * FROM whatsapp_account WHERE id = %s", (account.id,)
        )
        return " ".join(str(value) for value in self.env.cr.fetchone())

    def test_secrets_stored_encrypted(self):
        row = self._raw_row(self.account_a)
        self.assertNotIn("EAAtokenA-secret-value", row)
        self.assertNotIn("app-secret-a", row)
        ciphertext = self.account_a.sudo().access_token_encrypted
        self.assertEqual(get_secret_box().decrypt(ciphertext), "EAAtokenA-secret-value")
        self.assertEqual(self.account_a._get_secret("app_secret"), "app-secret-a")
        self.assertTrue(self.account_a.access_token_set)
        self.assertTrue(self.account_a.app_secret_set)

    def test_secret_fields_are_write_only(self):
        account = self.account_a.with_user(self.manager_a)
        self.assertFalse(account.access_token)
        self.assertFalse(account.app_secret)
        # An empty value keeps the stored secret.
        account.write({"access_token": False})
        self.assertEqual(
            self.account_a._get_secret("access_token"), "EAAtokenA-secret-value"
        )
        account.write({"access_token": "EAAnew"})
        self.assertEqual(self.account_a._get_secret("access_token"), "EAAnew")
        # Reading it back is a system administrator's action (tested with them).
        with self.assertRaises(AccessError):
            account.action_reveal_access_token()

    def test_saving_never_echoes_secrets(self):
        account = self.account_a.with_user(self.manager_a)
        saved = account.web_save(
            {"access_token": "EAAtyped", "app_secret": "typed-secret"},
            {"access_token": {}, "app_secret": {}, "access_token_set": {}},
        )[0]
        self.assertFalse(saved["access_token"])
        self.assertFalse(saved["app_secret"])
        self.assertTrue(saved["access_token_set"])
        created = (
            self.env["whatsapp.account"]
            .with_user(self.manager_a)
            .web_save(
                {
                    "name": "New",
                    "phone_number_id": "109000000000077",
                    "waba_id": "1",
                    "access_token": "EAAnewly-created",
                },
                {"access_token": {}},
            )[0]
        )
        self.assertFalse(created["access_token"])
        self.assertEqual(self.account_a._get_secret("access_token"), "EAAtyped")

    def test_user_cannot_read_secrets(self):
        account = self.account_a.with_user(self.user_a)
        for fname in ("access_token", "app_secret", "verify_token", "webhook_url"):
            with self.assertRaises(AccessError):
                account.read([fname])
        with self.assertRaises(AccessError):
            account.read(["access_token_encrypted"])
        with self.assertRaises(AccessError):
            account.action_reveal_access_token()
        # The rest of the account stays readable to send messages.
        self.assertEqual(account.read(["name"])[0]["name"], "Agency A number")

    def test_manager_cannot_read_ciphertext(self):
        with self.assertRaises(AccessError):
            self.account_a.with_user(self.manager_a).read(["access_token_encrypted"])

    def test_export_and_copy_carry_no_secret(self):
        account = self.account_a.with_user(self.manager_a)
        exported = account.export_data(
            ["name", "phone_number_id", "access_token", "app_secret"]
        )["datas"]
        flat = repr(exported)
        self.assertNotIn("EAAtokenA-secret-value", flat)
        self.assertNotIn("app-secret-a", flat)
        copy = account.copy()
        self.assertFalse(copy.access_token_set)
        self.assertFalse(copy.app_secret_set)
        self.assertFalse(copy.active)
        self.assertNotEqual(
            copy.sudo().verify_token, self.account_a.sudo().verify_token
        )

    def test_multi_company_isolation(self):
        Account = self.env["whatsapp.account"].with_user(self.manager_a)
        self.assertEqual(
            Account.search([("id", "in", (self.account_a | self.account_b).ids)]),
            self.account_a,
        )
        with self.assertRaises(AccessError):
            self.account_b.with_user(self.manager_a).read(["name"])
        with self.assertRaises(AccessError):
            self.account_b.with_user(self.manager_a).write({"name": "Hijacked"})

    def test_duplicate_phone_number_id_refused(self):
        with self.assertRaises(ValidationError) as caught, mute_logger("odoo.sql_db"):
            self.env["whatsapp.account"].create(
                {
                    "name": "Duplicate",
                    "phone_number_id": self.account_a.phone_number_id,
                    "waba_id": "1",
                }
            )
        self.assertIn("already used", str(caught.exception))
        # Archived accounts free their number.
        self.account_a.active = False
        self.env["whatsapp.account"].create(
            {
                "name": "Replacement",
                "phone_number_id": "109000000000001",
                "waba_id": "1",
            }
        )

    def test_duplicate_phone_number_id_refused_by_database(self):
        self.env.flush_all()
        with self.assertRaises(IntegrityError), mute_logger("odoo.sql_db"):
            with self.env.cr.savepoint():
                self.env.cr.execute(
                    "INSERT INTO whatsapp_account (name, company_id, phone_number_id,"
                    " waba_id, api_version, base_url, state, active, webhook_key,"
                    " verify_token, rate_limit, max_concurrency)"
                    " VALUES ('x', %s, '109000000000001', '1', 'v26.0', 'u',"
                    " 'not_configured', true, 'k', 'v', 1, 1)",
                    (self.company_a.id,),
                )

    def test_missing_key_clear_error_and_nothing_stored(self):
        with (
            patch.dict(os.environ, {}, clear=False),
            patch.dict(config.options, {CONFIG_OPTION: ""}),
        ):
            os.environ.pop(ENV_VAR, None)
            with self.assertRaises(UserError) as caught:
                self.env["whatsapp.account"].create(
                    {
                        "name": "No key",
                        "phone_number_id": "109000000000009",
                        "waba_id": "1",
                        "access_token": "EAAplaintext",
                    }
                )
        self.assertIn("whatsapp_encryption_key", str(caught.exception))
        self.env.flush_all()
        self.env.cr.execute(
            "SELECT count(*) FROM whatsapp_account"
            " WHERE phone_number_id = '109000000000009'"
        )
        self.assertEqual(self.env.cr.fetchone()[0], 0)

    def test_key_rotation(self):
        current = os.environ.get(ENV_VAR) or config.get(CONFIG_OPTION)
        new_key = generate_key()
        with (
            patch.dict(os.environ, {ENV_VAR: f"{new_key},{current}"}),
            patch.dict(config.options, {CONFIG_OPTION: ""}),
        ):
            rotated = self.env["whatsapp.account"]._rotate_encryption_key()
            self.assertGreaterEqual(rotated, 2)
            ciphertext = self.account_a.sudo().access_token_encrypted
        self.assertEqual(
            SecretBox(new_key).decrypt(ciphertext), "EAAtokenA-secret-value"
        )

    def test_webhook_identity(self):
        account = self.account_a.sudo()
        self.assertGreaterEqual(len(account.verify_token), 32)
        self.assertTrue(
            account.webhook_url.endswith(f"/whatsapp/webhook/{account.webhook_key}")
        )
        self.assertTrue(account.webhook_url.startswith(account.get_base_url()))
        old = account.verify_token
        self.account_a.with_user(self.manager_a).action_regenerate_verify_token()
        self.assertNotEqual(account.verify_token, old)

    def test_test_connection_sets_health(self):
        with mock_gateway():
            self.account_a.with_user(self.manager_a).action_test_connection()
        self.assertEqual(self.account_a.state, "connected")
        self.assertEqual(self.account_a.display_phone_number, "+1 555-010-0001")
        self.assertEqual(self.account_a.verified_name, "Agency A")
        self.assertEqual(self.account_a.quality_rating, "GREEN")
        self.assertEqual(self.account_a.messaging_tier, "TIER_2K")
        self.assertTrue(self.account_a.last_check_date)
        self.assertTrue(self.account_a.last_success_date)

    def test_expired_token_flags_account_once(self):
        self.account_a.user_id = self.manager_a
        error = error_from_response(401, EXPIRED_TOKEN_BODY, {})
        with mock_gateway(phone_info_error=error):
            for _attempt in range(3):
                action = self.account_a.with_user(
                    self.manager_a
                ).action_test_connection()
        self.assertEqual(action["params"]["type"], "danger")
        self.assertEqual(self.account_a.state, "token_invalid")
        self.assertIn("190", self.account_a.last_error)
        self.assertNotIn("EAAtokenA", self.account_a.last_error)
        activities = self.env["mail.activity"].search(
            [("res_model", "=", "whatsapp.account"), ("res_id", "=", self.account_a.id)]
        )
        self.assertEqual(len(activities), 1)
        self.assertEqual(activities.user_id, self.manager_a)
        # A new token clears the flag.
        self.account_a.access_token = "EAAfresh"
        self.assertEqual(self.account_a.state, "not_configured")

    def test_api_version_must_be_current(self):
        with self.assertRaises(ValidationError):
            self.account_a.api_version = "v17.0"
        self.account_a.api_version = "v27.0"

    def test_neutralize_blanks_secrets(self):
        self.env.flush_all()
        with open(
            os.path.join(os.path.dirname(__file__), "..", "data", "neutralize.sql")
        ) as sql:
            self.env.cr.execute(sql.read())
        self.env.invalidate_all()
        account = self.account_a.sudo().with_context(active_test=False)
        self.assertFalse(account.access_token_encrypted)
        self.assertFalse(account.app_secret_encrypted)
        self.assertFalse(account.active)
