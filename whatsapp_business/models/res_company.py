from odoo import fields, models


class ResCompany(models.Model):
    _inherit = "res.company"

    whatsapp_enabled = fields.Boolean(string="WhatsApp")
    # Users outside the WhatsApp groups read companies too (every form shows one).
    whatsapp_account_ids = fields.One2many(
        "whatsapp.account",
        "company_id",
        string="WhatsApp Accounts",
        groups="whatsapp_business.group_whatsapp_user",
    )

    def _get_whatsapp_account(self):
        """The company's default account: the first active one by sequence."""
        self.ensure_one()
        return self.env["whatsapp.account"].search(
            [("company_id", "=", self.id)], order="sequence, id", limit=1
        )

    def write(self, vals):
        res = super().write(vals)
        if vals.get("whatsapp_enabled"):
            # Events received while WhatsApp was disabled wait for it.
            self.env["whatsapp.webhook.event"].sudo()._release_held()
        return res
