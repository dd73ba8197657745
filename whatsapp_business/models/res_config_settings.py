from odoo import fields, models


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    whatsapp_enabled = fields.Boolean(
        related="company_id.whatsapp_enabled", readonly=False
    )
    whatsapp_account_count = fields.Integer(
        string="WhatsApp Accounts", compute="_compute_whatsapp_account_count"
    )

    def _compute_whatsapp_account_count(self):
        for settings in self:
            settings.whatsapp_account_count = self.env["whatsapp.account"].search_count(
                [("company_id", "=", settings.company_id.id)]
            )

    def action_open_whatsapp_accounts(self):
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "whatsapp_business.whatsapp_account_action"
        )
        action["context"] = {"default_company_id": self.company_id.id}
        action["domain"] = [("company_id", "=", self.company_id.id)]
        return action
