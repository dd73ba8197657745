import json
import os
from contextlib import contextmanager
from unittest.mock import patch

from cryptography.fernet import Fernet

from odoo import SUPERUSER_ID, Command, api
from odoo.tests import TransactionCase, new_test_user
from odoo.tools import config

from ..tools.compat import ODOO_MAJOR
from ..wa_cloud import payloads
from ..wa_cloud.client import CloudApiClient, MediaInfo, PhoneNumberInfo, SendResult
from ..wa_cloud.crypto import CONFIG_OPTION, ENV_VAR
from ..wa_cloud.webhook import compute_signature

PHONE_A = "+33612345678"
# The mobile number of contacts and leads: Odoo 19 keeps a single "phone" field.
MOBILE = "mobile" if ODOO_MAJOR < 19 else "phone"
WA_ID_A = "33612345678"
# CI=true (set by .ci/run): what cannot run there fails instead of skipping, and
# random tests draw the same examples at every run.
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


class WhatsAppMixin:
    """Companies, users and accounts shared by the Odoo tests."""

    @classmethod
    def _ensure_encryption_key(cls):
        # The test command configures a key; a bare `odoo --test-enable` may not.
        if not config.get(CONFIG_OPTION) and not os.environ.get(ENV_VAR):
            patcher = patch.dict(os.environ, {ENV_VAR: Fernet.generate_key().decode()})
            patcher.start()
            cls.addClassCleanup(patcher.stop)

    @classmethod
    def setup_whatsapp(cls):
        cls._ensure_encryption_key()
        cls.company_a = cls.env.company
        cls.company_a.whatsapp_enabled = True
        cls.company_b = cls.env["res.company"].create(
            {"name": "Agency B", "whatsapp_enabled": True}
        )
        cls.account_a = cls.env["whatsapp.account"].create(
            {
                "name": "Agency A number",
                "company_id": cls.company_a.id,
                "phone_number_id": "109000000000001",
                "waba_id": "104000000000001",
                "access_token": "EAAtokenA-secret-value",
                "app_secret": "app-secret-a",
                "rate_limit": 1000,
            }
        )
        cls.account_b = cls.env["whatsapp.account"].create(
            {
                "name": "Agency B number",
                "company_id": cls.company_b.id,
                "phone_number_id": "109000000000002",
                "waba_id": "104000000000002",
                "access_token": "EAAtokenB-secret-value",
                "app_secret": "app-secret-b",
                "rate_limit": 1000,
            }
        )
        cls.user_a = new_test_user(
            cls.env,
            login="wa_sales_a",
            groups="sales_team.group_sale_salesman",
            company_id=cls.company_a.id,
            company_ids=[Command.set(cls.company_a.ids)],
        )
        cls.manager_a = new_test_user(
            cls.env,
            login="wa_manager_a",
            groups="sales_team.group_sale_manager,base.group_allow_export,"
            "whatsapp_business.group_whatsapp_manager",
            company_id=cls.company_a.id,
            company_ids=[Command.set(cls.company_a.ids)],
        )
        cls.partner_a = cls.env["res.partner"].create(
            {"name": "Amélie Dupont", MOBILE: PHONE_A, "company_id": cls.company_a.id}
        )
        cls.lead_a = cls.env["crm.lead"].create(
            {
                "name": "Roof repair",
                "partner_id": cls.partner_a.id,
                MOBILE: PHONE_A,
                "company_id": cls.company_a.id,
            }
        )

    @classmethod
    def open_window(cls, account, phone, when=None):
        """An inbound message from `phone`, which opens the 24-hour window."""
        return cls.env["whatsapp.message"].create(
            {
                "account_id": account.id,
                "direction": "inbound",
                "state": "received",
                "message_type": "text",
                "phone": phone,
                "body": "Hello",
                "received_date": when or cls.env.cr.now(),
                "wamid": f"wamid.IN-{phone}-{when or 'now'}",
            }
        )


class WhatsAppCase(WhatsAppMixin, TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_whatsapp()


class FakeGateway:
    """Stands in for CloudApiClient's HTTP methods and records each call."""

    def __init__(self, errors=None):
        self.sent = []
        self.reads = []  # wamids marked as read
        self.calls = []  # (phone number id, recipient) of every send attempted
        self.errors = dict(errors or {})  # number -> exception or list of them
        self.counter = 0

    def _outcome(self, to, payload):
        planned = self.errors.get(to)
        if isinstance(planned, list):
            planned = planned.pop(0) if planned else None
        if planned is not None:
            raise planned
        self.counter += 1
        self.sent.append(payload)
        return SendResult(
            wamid=f"wamid.OUT-{self.counter}",
            wa_id=str(to).lstrip("+"),
            message_status="accepted",
            payload=payload,
        )


@contextmanager
def mock_gateway(errors=None, phone_info=None, phone_info_error=None, read_error=None):
    """Patch the client at its boundary: payloads are built by the real code.

    ``read_error`` is raised by every read receipt (mark_as_read).
    """
    gateway = FakeGateway(errors)
    real_send_message = CloudApiClient.send_message

    def fake_send_message(client, payload):
        to = payload.get("to") or payload.get("recipient")
        gateway.calls.append((client.phone_number_id, to))
        return gateway._outcome(to, payload)

    def fake_phone_info(client, **_kwargs):
        if phone_info_error:
            raise phone_info_error
        return phone_info or PhoneNumberInfo(
            id=client.phone_number_id,
            display_phone_number="+1 555-010-0001",
            verified_name="Agency A",
            quality_rating="GREEN",
            messaging_limit_tier="TIER_2K",
        )

    def fake_mark_as_read(client, message_id, **_kwargs):
        payloads.read_payload(message_id)  # the real validation
        if read_error:
            raise read_error
        gateway.reads.append(message_id)
        return True

    with (
        patch.object(CloudApiClient, "send_message", fake_send_message),
        patch.object(CloudApiClient, "get_phone_number_info", fake_phone_info),
        patch.object(CloudApiClient, "mark_as_read", fake_mark_as_read),
    ):
        gateway.real_send_message = real_send_message
        yield gateway


@contextmanager
def mock_media_download(*downloads):
    """Patch the client's media lookup (a JPEG on Meta's host) and download: each
    call of ``download_media`` returns (or raises) the next of ``downloads``."""
    info = MediaInfo(url="https://lookaside.example/x", mime_type="image/jpeg")
    with (
        patch.object(CloudApiClient, "get_media_url", return_value=info),
        patch.object(CloudApiClient, "download_media", side_effect=list(downloads)),
    ):
        yield


def sign(raw, secret):
    return compute_signature(raw, secret)


def webhook_body(*entries):
    return json.dumps({"object": "whatsapp_business_account", "entry": list(entries)})


def messages_entry(account, messages=(), statuses=(), contacts=()):
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": "15550100001",
            "phone_number_id": account.phone_number_id,
        },
    }
    if messages:
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    if contacts:
        value["contacts"] = list(contacts)
    return {
        "id": account.waba_id,
        "changes": [{"field": "messages", "value": value}],
    }


def drop_committed_account(cr, account_id, last_trigger_id, was_enabled):
    """Undo the common part of a test that committed data for real cursors.

    Removes the account with its chatter and followers and the cron wake-ups
    created since ``last_trigger_id`` (a later server has nothing to do for them),
    and restores the main company's WhatsApp switch. The caller deletes its own
    records (messages, events...) first.
    """
    cr.execute(
        "DELETE FROM mail_message WHERE model = 'whatsapp.account' AND res_id = %s",
        [account_id],
    )
    cr.execute(
        "DELETE FROM mail_followers WHERE res_model = 'whatsapp.account'"
        " AND res_id = %s",
        [account_id],
    )
    cr.execute("DELETE FROM whatsapp_account WHERE id = %s", [account_id])
    cr.execute("DELETE FROM ir_cron_trigger WHERE id > %s", [last_trigger_id])
    env = api.Environment(cr, SUPERUSER_ID, {})
    env.ref("base.main_company").whatsapp_enabled = was_enabled
