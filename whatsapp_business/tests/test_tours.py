"""Browser tours in headless Chromium (static/tests/tours/*.js).

Run them with Odoo's runner (WHATSAPP_ENCRYPTION_KEY or whatsapp_encryption_key set):
    python3 -m odoo -d DB -i whatsapp_business --test-enable --without-demo=all \
        --test-tags=/whatsapp_business:TestTours --stop-after-init

They need Chromium (or Google Chrome) and the websocket-client Python package;
without them they are skipped, with the reason in the "skipped" log line. With
CI=true in the environment they fail instead: CI must not go green on a tour that
never ran.

With WHATSAPP_BUSINESS_SCREENSHOTS=<folder> in the environment, the tours also
save the README screenshots there, 1280x800 PNG: account_health, account_webhook,
composer, lead_chatter and inbox (docs/screenshots/ in the repository).
"""

import base64
import logging
import os
import pathlib
import re
import shutil
import time
import unittest
from unittest.mock import patch

from odoo.sql_db import db_connect
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tests import common as odoo_test_common
from odoo.tests.common import ChromeBrowser
from odoo.tools import SQL

from odoo.addons.bus.models.bus import ODOO_NOTIFY_FUNCTION, get_notify_payloads
from odoo.addons.bus.websocket import WebsocketConnectionHandler

from .common import (
    IN_CI,
    MOBILE,
    PHONE_A,
    WA_ID_A,
    WhatsAppMixin,
    messages_entry,
    mock_gateway,
    webhook_body,
)

try:
    import websocket
except ImportError:
    websocket = None

_logger = logging.getLogger(__name__)

# The executables odoo.tests.common looks for on Linux, in its order.
BROWSER_NAMES = (
    "google-chrome",
    "chromium",
    "chromium-browser",
    "google-chrome-stable",
)
SCREENSHOTS_ENV = "WHATSAPP_BUSINESS_SCREENSHOTS"
SCREENSHOT_COOKIE = "whatsapp_business_screenshots"
SCREENSHOT_MARK = "whatsapp_business:screenshot:"
TOUR_TIMEOUT = 120
# Odoo waits 10 s for Chromium's devtools port, then skips the test; a loaded
# 2-core machine can take longer to start Chromium. Odoo reads these module
# constants at each start, so the tours raise them for their own browsers only.
BROWSER_START_SECONDS = 60
MESSAGE_BODY = "Hello Amélie, your quote is ready. Can we call you tomorrow?"
INBOX_INBOUND = "Bonjour, le toit fuit encore"
INBOX_REPLY = "Merci, nous passons demain matin"
INBOX_LIVE = "Le toit fuit encore ce matin"
INBOX_BUTTONS = "Quand pouvons-nous passer ?"


def browser_missing_reason():
    """Why the tours cannot run here, or None when they can."""
    if not any(shutil.which(name) for name in BROWSER_NAMES):
        return (
            "Chromium not installed: browser tours skipped (looked for "
            f"{', '.join(BROWSER_NAMES)}; on Debian: apt-get install chromium)"
        )
    if websocket is None:
        return (
            "websocket-client not installed: browser tours skipped "
            "(pip install websocket-client)"
        )
    return None


def screenshot_console_handler(directory):
    """ChromeBrowser's console handler, plus PNGs on the tours' request.

    A tour step logs SCREENSHOT_MARK + name; the page is captured, saved as
    <directory>/<name>.png and the step is told to go on. This runs in the
    browser helper's websocket thread: only non-blocking sends are allowed.
    """
    original = ChromeBrowser._handle_console

    def handle_console(browser, **params):
        original(browser, **params)
        args = params.get("args") or []
        if params.get("type") != "log" or not args:
            return
        text = str(browser._from_remoteobject(args[0]))
        name = text.removeprefix(SCREENSHOT_MARK)
        if name == text or not re.fullmatch(r"[a-z0-9_]+", name):
            return

        def save(future):
            try:
                png = base64.b64decode(future.result(timeout=0)["data"])
                (directory / f"{name}.png").write_bytes(png)
                _logger.info("Screenshot saved: %s", directory / f"{name}.png")
            except Exception:
                _logger.exception("Screenshot %s failed", name)
            finally:
                browser._websocket_send(
                    "Runtime.evaluate",
                    params={
                        "expression": "window.whatsappBusinessScreenshotTaken"
                        " && window.whatsappBusinessScreenshotTaken()"
                    },
                )

        browser._websocket_send(
            "Page.captureScreenshot", params={"format": "png"}, with_future=True
        ).add_done_callback(save)

    return handle_console


@tagged("post_install", "-at_install")
class TestTours(WhatsAppMixin, HttpCase):
    # The size of the README screenshots.
    browser_size = "1280x800"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._ensure_encryption_key()
        # Odoo refuses websockets while a test runs (its runner sets current_test;
        # pytest-odoo does not): without this, Discuss gets no bus notification in
        # the runner and nothing arrives live. Odoo's own bus tests do the same.
        cls.startClassPatcher(
            patch.object(
                WebsocketConnectionHandler, "websocket_allowed", return_value=True
            )
        )
        cls.env.company.whatsapp_enabled = True
        # No onboarding tour (CRM's) running beside ours, as in crm's own UI tests.
        cls.env.ref("base.user_admin").tour_enabled = False
        # The callback URL shown to admins (and in the README screenshots).
        cls.env["ir.config_parameter"].sudo().set_param(
            "web.base.url", "https://crm.example.com"
        )

    def setUp(self):
        # Odoo's runner logs the reason as "skipped ...". No warning: a developer's
        # machine without a browser may skip these tests; CI may not.
        reason = browser_missing_reason()
        if reason:
            self._skip_or_fail(reason)
        super().setUp()

    def _skip_or_fail(self, reason):
        if IN_CI:
            self.fail(f"CI=true and the browser tour cannot run: {reason}")
        self.skipTest(reason)

    def run_tour(self, tour_name, login):
        kwargs = {"login": login, "timeout": TOUR_TIMEOUT}
        sleep = odoo_test_common.CHECK_BROWSER_SLEEP
        try:
            with (
                patch.object(
                    odoo_test_common,
                    "CHECK_BROWSER_ITERATIONS",
                    round(BROWSER_START_SECONDS / sleep),
                ),
                patch.object(odoo_test_common, "BROWSER_WAIT", BROWSER_START_SECONDS),
            ):
                self._start_tour(tour_name, kwargs)
        except unittest.SkipTest as exc:
            # Odoo's browser helper skips when Chromium does not start or answer.
            self._skip_or_fail(str(exc))

    def _start_tour(self, tour_name, kwargs):
        folder = os.environ.get(SCREENSHOTS_ENV)
        if not folder:
            self.start_tour("/odoo", tour_name, **kwargs)
            return
        directory = pathlib.Path(folder).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        with patch.object(
            ChromeBrowser, "_handle_console", screenshot_console_handler(directory)
        ):
            self.start_tour(
                "/odoo", tour_name, cookies={SCREENSHOT_COOKIE: "1"}, **kwargs
            )

    def test_admin_account_tour(self):
        """An admin creates an account, tests it and copies the webhook URL."""
        with mock_gateway():
            self.run_tour("whatsapp_business_admin_account_tour", "admin")
        self.env.invalidate_all()
        account = self.env["whatsapp.account"].search(
            [("phone_number_id", "=", "109000000000777")]
        )
        self.assertEqual(len(account), 1)
        self.assertEqual(account.name, "Lyon agency")
        self.assertEqual(account.waba_id, "104000000000777")
        self.assertEqual(account.state, "connected")
        self.assertEqual(account.display_phone_number, "+1 555-010-0001")
        self.assertEqual(account.quality_rating, "GREEN")
        self.assertEqual(account._get_secret("access_token"), "EAAtour-permanent-token")
        self.assertEqual(account._get_secret("app_secret"), "tour-app-secret")
        self.assertRegex(
            account.webhook_url, r"^https://crm\.example\.com/whatsapp/webhook/\S{20,}$"
        )

    def test_salesperson_tour(self):
        """A salesperson answers a contact from the lead; the queue sends it."""
        account = self.env["whatsapp.account"].create(
            {
                "name": "Agency number",
                "phone_number_id": "109000000000888",
                "waba_id": "104000000000888",
                "access_token": "EAAtour-sales-token",
                "app_secret": "tour-sales-secret",
                "rate_limit": 1000,
            }
        )
        salesperson = new_test_user(
            self.env,
            login="wa_tour_sales",
            name="Sofia Martin",
            groups="sales_team.group_sale_salesman",
        )
        partner = self.env["res.partner"].create(
            {"name": "Amélie Dupont", MOBILE: PHONE_A}
        )
        lead = self.env["crm.lead"].create(
            {
                "name": "Roof repair",
                "type": "opportunity",
                "partner_id": partner.id,
                MOBILE: PHONE_A,
                "user_id": salesperson.id,
            }
        )
        # The contact wrote first: the 24-hour window is open, free text allowed.
        self.open_window(account, PHONE_A)

        with mock_gateway() as gateway:
            self.run_tour("whatsapp_business_salesperson_tour", "wa_tour_sales")
        self.assertFalse(gateway.sent, "Send must only queue; the cron sends")

        self.env.invalidate_all()
        message = self.env["whatsapp.message"].search(
            [
                ("res_model", "=", "crm.lead"),
                ("res_id", "=", lead.id),
                ("direction", "=", "outbound"),
            ]
        )
        self.assertEqual(len(message), 1)
        self.assertRecordValues(
            message,
            [
                {
                    "account_id": account.id,
                    "state": "queued",
                    "message_type": "text",
                    "phone": PHONE_A,
                    "body": MESSAGE_BODY,
                    "author_id": salesperson.id,
                }
            ],
        )
        self.assertIn(message.mail_message_id, lead.message_ids)

        # No cron runs in tests: process the queue by hand, Graph mocked.
        with mock_gateway() as gateway:
            self.env["whatsapp.message"]._cron_process_queue()
        self.env.invalidate_all()
        self.assertEqual(message.state, "sent")
        self.assertEqual(message.wamid, "wamid.OUT-1")
        self.assertEqual(len(gateway.sent), 1)
        self.assertEqual(gateway.sent[0]["to"], WA_ID_A)
        self.assertEqual(gateway.sent[0]["text"]["body"], MESSAGE_BODY)
        self.assertIn("o_whatsapp_state_sent", message.mail_message_id.body)

    def _inbox_with_a_message(self, login, phone_number_id, waba_id):
        """A salesperson responsible for an account's new conversations, and a
        customer whose message is in their conversation: (salesperson, account,
        partner, that message)."""
        salesperson = new_test_user(
            self.env,
            login=login,
            name="Sofia Martin",
            groups="sales_team.group_sale_salesman",
        )
        account = self.env["whatsapp.account"].create(
            {
                "name": "Agency number",
                "phone_number_id": phone_number_id,
                "waba_id": waba_id,
                "access_token": f"EAAtour-{login}-token",
                "app_secret": f"tour-{login}-secret",
                "inbox_user_id": salesperson.id,
            }
        )
        partner = self.env["res.partner"].create(
            {"name": "Amélie Dupont", MOBILE: PHONE_A}
        )
        inbound = self.open_window(account, PHONE_A)
        inbound.write({"partner_id": partner.id, "body": INBOX_INBOUND})
        inbound._mirror_in_conversations()
        return salesperson, account, partner, inbound

    def test_inbox_tour(self):
        """The responsible answers a customer from the WhatsApp inbox in Discuss."""
        salesperson, _account, partner, inbound = self._inbox_with_a_message(
            "wa_tour_inbox", "109000000000999", "104000000000999"
        )

        self.run_tour("whatsapp_business_inbox_tour", "wa_tour_inbox")

        self.env.invalidate_all()
        reply = self.env["whatsapp.message"].search(
            [("direction", "=", "outbound"), ("partner_id", "=", partner.id)]
        )
        self.assertRecordValues(
            reply,
            [
                {
                    "state": "queued",
                    "body": INBOX_REPLY,
                    "phone": PHONE_A,
                    "author_id": salesperson.id,
                    "res_model": "res.partner",
                    "res_id": partner.id,
                }
            ],
        )
        self.assertEqual(
            reply.channel_message_id.res_id, inbound.channel_message_id.res_id
        )

    def test_inbox_chat_tour(self):
        """Chatting in the inbox: a customer message arrives live, the salesperson
        answers with buttons from the conversation, the read tick follows."""
        salesperson, account, partner, first = self._inbox_with_a_message(
            "wa_tour_chat", "109000000000998", "104000000000998"
        )
        channel = first.channel_message_id.res_id
        Member = self.registry["discuss.channel.member"]
        Composer = self.registry["whatsapp.composer"]
        mark_as_read, action_send = Member._mark_as_read, Composer.action_send
        arrived = []

        def deliver(env, body):
            # In the request: the cron's own transactions cannot run in a tour.
            events = env["whatsapp.webhook.event"].sudo()
            events._receive(account, body.encode())._process()
            wake_bus(env)

        def seen(member, last_message_id, *args, **kwargs):
            result = mark_as_read(member, last_message_id, *args, **kwargs)
            # The customer writes while the salesperson has the conversation open.
            if member.channel_id.id == channel and not arrived:
                arrived.append(last_message_id)
                deliver(member.env, inbound_body(account, "wamid.TOUR-LIVE"))
            return result

        def send(composer):
            result = action_send(composer)
            sent = (
                composer.env["whatsapp.message"]
                .sudo()
                .search(
                    [
                        ("account_id", "=", account.id),
                        ("message_type", "=", "interactive"),
                    ]
                )
            )
            # Meta accepted it, then the customer read it.
            sent.write({"state": "sent", "wamid": "wamid.TOUR-BUTTONS"})
            deliver(composer.env, read_body(account, "wamid.TOUR-BUTTONS"))
            return result

        with (
            patch.object(Member, "_mark_as_read", seen),
            patch.object(Composer, "action_send", send),
        ):
            self.run_tour("whatsapp_business_inbox_chat_tour", "wa_tour_chat")

        self.env.invalidate_all()
        live = self.env["whatsapp.message"].search([("wamid", "=", "wamid.TOUR-LIVE")])
        self.assertEqual(live.channel_message_id.res_id, channel)
        # Opening the conversation showed the customer it was read.
        self.assertEqual(first.read_receipt_state, "pending")
        buttons = self.env["whatsapp.message"].search(
            [("account_id", "=", account.id), ("message_type", "=", "interactive")]
        )
        self.assertEqual(buttons.state, "read")
        self.assertEqual(buttons.body, INBOX_BUTTONS)
        self.assertEqual(buttons.author_id, salesperson)
        self.assertEqual(buttons.channel_message_id.res_id, channel)


def wake_bus(env):
    """Tell the open clients that bus notifications wait, as the commit of a
    request does: Odoo's test cursor drops the post-commit hooks that would (the
    clients' websocket reads the notifications once the request is done)."""
    channels = env.cr.postcommit.data.get("bus.bus.channels")
    if not channels:
        return
    with db_connect("postgres").cursor() as cr:
        for payload in get_notify_payloads(list(channels)):
            cr.execute(
                SQL(
                    "SELECT %s('imbus', %s)",
                    SQL.identifier(ODOO_NOTIFY_FUNCTION),
                    payload,
                )
            )


def inbound_body(account, wamid):
    return webhook_body(
        messages_entry(
            account,
            messages=[
                {
                    "from": WA_ID_A,
                    "id": wamid,
                    "timestamp": str(int(time.time())),
                    "type": "text",
                    "text": {"body": INBOX_LIVE},
                }
            ],
            contacts=[{"profile": {"name": "Amélie Dupont"}, "wa_id": WA_ID_A}],
        )
    )


def read_body(account, wamid):
    return webhook_body(
        messages_entry(
            account,
            statuses=[
                {
                    "id": wamid,
                    "status": "read",
                    "timestamp": str(int(time.time())),
                    "recipient_id": WA_ID_A,
                }
            ],
        )
    )
