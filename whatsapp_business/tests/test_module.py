from odoo.tests import TransactionCase, tagged

from ..wa_cloud import const
from ..wa_cloud.client import CloudApiClient


@tagged("post_install", "-at_install")
class TestModule(TransactionCase):
    def test_installed_with_its_records(self):
        module = self.env["ir.module.module"].search(
            [("name", "=", "whatsapp_business")]
        )
        self.assertEqual(module.state, "installed")
        for xmlid in (
            "whatsapp_business.group_whatsapp_manager",
            "whatsapp_business.ir_cron_whatsapp_send_queue",
            "whatsapp_business.whatsapp_account_action",
        ):
            self.assertTrue(self.env.ref(xmlid))

    def test_pure_core_reachable_from_odoo(self):
        account = self.env["whatsapp.account"].new(
            {"name": "x", "phone_number_id": "1", "waba_id": "2"}
        )
        self.assertEqual(account.api_version, const.DEFAULT_API_VERSION)
        client = CloudApiClient(
            "EAAsecret-token-value", phone_number_id="1", waba_id="2"
        )
        self.assertNotIn("EAAsecret-token-value", repr(client))
        client.close()

    def test_salesman_is_whatsapp_user(self):
        salesman = self.env.ref("sales_team.group_sale_salesman")
        self.assertIn(
            self.env.ref("whatsapp_business.group_whatsapp_user"),
            salesman.implied_ids,
        )
