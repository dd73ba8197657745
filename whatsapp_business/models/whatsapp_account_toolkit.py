from odoo import models


class WhatsAppAccount(models.Model):
    """The administrator's tools on an account: test message, costs."""

    _inherit = "whatsapp.account"

    def action_send_test_message(self):
        self.ensure_one()
        self.check_access("write")
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Send a Test Message"),
            "res_model": "whatsapp.test.message",
            "view_mode": "form",
            "target": "new",
            "context": {"default_account_id": self.id},
        }
