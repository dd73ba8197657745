import json
from datetime import timedelta
from unittest.mock import patch

from odoo.exceptions import ValidationError
from odoo.sql_db import db_connect
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..models.whatsapp_message import SEND_LOCK_SPACE
from ..wa_cloud.errors import error_from_response
from .common import WhatsAppCase, mock_gateway

PHONES_A = ("+33600000021", "+33600000022", "+33600000023")
PHONE_B = "+33600000031"
QUIET = (
    "odoo.addons.whatsapp_business.models.whatsapp_account",
    "odoo.addons.whatsapp_business.models.whatsapp_message",
    "odoo.addons.whatsapp_business.wa_cloud.sender",
)


def graph_error(status, code, subcode=None, title="Error"):
    error = {"message": f"(#{code}) {title}", "type": "OAuthException", "code": code}
    if subcode:
        error["error_subcode"] = subcode
    return error_from_response(status, json.dumps({"error": error}).encode(), {})


# Every error that refuses all sends of an account, whatever the recipient.
ACCOUNT_LEVEL_ERRORS = {
    "token expired (190/463)": graph_error(401, 190, 463, "Session has expired"),
    "payment issue (131042)": graph_error(400, 131042, title="Payment issue"),
    "policy block (368)": graph_error(400, 368, title="Temporarily blocked"),
    "account locked (131031)": graph_error(400, 131031, title="Account locked"),
    "no access to the number (100/33)": graph_error(
        400, 100, 33, "Unsupported post request"
    ),
    "permission (10)": graph_error(403, 10, title="Permission denied"),
    "permission (200)": graph_error(403, 200, title="Permissions error"),
}


@tagged("post_install", "-at_install")
class TestSendEngine(WhatsAppCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.account_a.user_id = cls.manager_a
        for phone in PHONES_A:
            cls.open_window(cls.account_a, phone)
        cls.open_window(cls.account_b, PHONE_B)

    def _queue(self, account, phones):
        return self.env["whatsapp.message"]._queue_outbound(
            account, [{"phone": phone, "body": "Bonjour"} for phone in phones]
        )

    def _run_queue(self):
        return self.env["whatsapp.message"]._cron_process_queue()

    def _alerts(self, account):
        return self.env["mail.activity"].search(
            [("res_model", "=", "whatsapp.account"), ("res_id", "=", account.id)]
        )

    def _assert_untouched(self, messages):
        for message in messages:
            self.assertEqual(message.state, "queued")
            self.assertFalse(message.claim_date)
            self.assertEqual(message.retry_count, 0)
            self.assertFalse(message.failure_type)

    @mute_logger(*QUIET)
    def test_account_level_errors_hold_the_queue(self):
        for label, error in ACCOUNT_LEVEL_ERRORS.items():
            with self.subTest(label), self.env.cr.savepoint(flush=False) as savepoint:
                held = self._queue(self.account_a, PHONES_A)
                other = self._queue(self.account_b, [PHONE_B])
                errors = {phone.lstrip("+"): error for phone in PHONES_A}
                with mock_gateway(errors=errors) as gateway:
                    self._run_queue()
                    self._run_queue()  # a paused account is not tried again
                # Refused sends were not sent: every message waits, untouched.
                self._assert_untouched(held)
                self.assertEqual(other.state, "sent")
                self.assertEqual(len(gateway.sent), 1)
                self.assertTrue(self.account_a.sending_paused)
                self.assertIn(f"#{error.code}", self.account_a.sending_pause_reason)
                alerts = self._alerts(self.account_a)
                self.assertEqual(len(alerts), 1)
                self.assertEqual(alerts.user_id, self.manager_a)
                self.assertFalse(self._alerts(self.account_b))
                tried = [call for call in gateway.calls if call[1] != PHONE_B[1:]]
                self.assertLessEqual(len(tried), len(PHONES_A))
                # Fixed at Meta: the admin resumes, the queue goes out.
                self.account_a.with_user(self.manager_a).action_resume_sending()
                with mock_gateway() as gateway:
                    self._run_queue()
                self.assertEqual(set(held.mapped("state")), {"sent"})
                self.assertEqual(len(self._alerts(self.account_a)), 1)
                self.env.flush_all()
                savepoint.close()
                self.env.invalidate_all()

    @mute_logger(*QUIET)
    def test_successful_test_connection_resumes_sending(self):
        held = self._queue(self.account_a, PHONES_A[:1])
        errors = {PHONES_A[0][1:]: ACCOUNT_LEVEL_ERRORS["policy block (368)"]}
        with mock_gateway(errors=errors):
            self._run_queue()
        self.assertTrue(self.account_a.sending_paused)
        with mock_gateway() as gateway:
            self.account_a.with_user(self.manager_a).action_test_connection()
            self._run_queue()
        self.assertFalse(self.account_a.sending_paused)
        self.assertEqual(held.state, "sent")
        self.assertEqual(len(gateway.sent), 1)

    def test_api_version_and_url_checked_at_save_time(self):
        for vals in (
            {"api_version": "v23"},
            {"api_version": "v19.0"},
            {"api_version": "latest"},
            {"base_url": "ftp://graph.example"},
            {"base_url": "graph.facebook.com"},
        ):
            with self.subTest(vals), self.assertRaises(ValidationError):
                self.account_a.write(vals)
        self.account_a.write({"api_version": "v24.0"})

    @mute_logger(*QUIET)
    def test_misconfiguration_never_fails_a_message(self):
        broken = {
            "api_version": "UPDATE whatsapp_account SET api_version = 'v23' "
            "WHERE id = %s",
            "graph URL": "UPDATE whatsapp_account SET base_url = 'ftp://x' "
            "WHERE id = %s",
            "secret": "UPDATE whatsapp_account SET access_token_encrypted = "
            "'not-a-fernet-token' WHERE id = %s",
        }
        for label, query in broken.items():
            with self.subTest(label), self.env.cr.savepoint(flush=False) as savepoint:
                messages = self._queue(self.account_a, PHONES_A)
                other = self._queue(self.account_b, [PHONE_B])
                self.env.flush_all()
                self.env.cr.execute(query, (self.account_a.id,))
                self.env.invalidate_all()
                with mock_gateway() as gateway:
                    self._run_queue()
                # Nothing was claimed: nothing is ever failed as "maybe sent".
                self._assert_untouched(messages)
                self.assertEqual(other.state, "sent")
                self.assertEqual(
                    gateway.calls, [(self.account_b.phone_number_id, PHONE_B[1:])]
                )
                self.assertTrue(self.account_a.sending_paused)
                self.assertIn("cannot connect", self.account_a.sending_pause_reason)
                self.assertEqual(len(self._alerts(self.account_a)), 1)
                self.env.flush_all()
                savepoint.close()
                self.env.invalidate_all()

    @mute_logger(*QUIET)
    def test_job_raising_goes_back_to_the_queue(self):
        messages = self._queue(self.account_a, PHONES_A)
        model = type(self.env["whatsapp.message"])
        original = model._build_send_job

        def build(message):
            if message.phone == PHONES_A[1]:
                raise KeyError("a broken template parameter")
            return original(message)

        with mock_gateway() as gateway, patch.object(model, "_build_send_job", build):
            self._run_queue()
        broken = messages.filtered(lambda m: m.phone == PHONES_A[1])
        self.assertEqual((messages - broken).mapped("state"), ["sent", "sent"])
        self.assertEqual(broken.state, "queued")
        self.assertFalse(broken.claim_date)
        self.assertEqual(broken.retry_count, 1)
        self.assertIn("KeyError", broken.failure_title)
        self.assertEqual(len(gateway.sent), 2)
        # Bounded: once the retries are spent the message fails, saying it was not sent.
        self.account_a.max_retries = 1
        broken.next_attempt_date = self.env.cr.now() - timedelta(seconds=1)
        with mock_gateway() as gateway, patch.object(model, "_build_send_job", build):
            self._run_queue()
        self.assertEqual(broken.state, "failed")
        self.assertIn("Not sent", broken.failure_title)
        self.assertEqual(gateway.calls, [])

    @mute_logger(*QUIET)
    def test_engine_crash_puts_messages_back_and_pauses_after_three(self):
        messages = self._queue(self.account_a, PHONES_A)
        model = type(self.env["whatsapp.message"])
        original = model._send_round

        def crash(records, account, sender, claimed):
            if account == self.account_a:
                raise RuntimeError("engine bug")
            return original(records, account, sender, claimed)

        with mock_gateway() as gateway, patch.object(model, "_send_round", crash):
            for run in range(1, 4):
                other = self._queue(self.account_b, [PHONE_B])
                self._run_queue()
                self._assert_untouched(messages)
                self.assertEqual(self.account_a.send_error_count, run)
                self.assertIn("RuntimeError", self.account_a.last_error)
                self.assertEqual(other.state, "sent")  # B never stops
        self.assertTrue(self.account_a.sending_paused)
        self.assertEqual(len(self._alerts(self.account_a)), 1)
        self.assertEqual(len(gateway.sent), 3)
        self.assertFalse(self.account_b.sending_paused)

    def test_account_served_elsewhere_is_left_alone(self):
        """Another runner (maybe on another server) holds account A: B still goes."""
        held = self._queue(self.account_a, PHONES_A[:1])
        other = self._queue(self.account_b, [PHONE_B])
        with db_connect(self.env.cr.dbname).cursor() as elsewhere:
            elsewhere.execute(
                "SELECT pg_advisory_lock(%s, %s)", (SEND_LOCK_SPACE, self.account_a.id)
            )
            with mock_gateway() as gateway:
                self._run_queue()
            self.assertEqual(other.state, "sent")
            self._assert_untouched(held)
            self.assertEqual(
                self.env["whatsapp.message"]._due_account_ids(), []
            )  # A is served elsewhere, B is done
            elsewhere.execute(
                "SELECT pg_advisory_unlock(%s, %s)",
                (SEND_LOCK_SPACE, self.account_a.id),
            )
        with mock_gateway() as gateway:
            self._run_queue()
        self.assertEqual(held.state, "sent")
        self.assertEqual(len(gateway.sent), 1)
