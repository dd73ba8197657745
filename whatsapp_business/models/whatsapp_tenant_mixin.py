from odoo import models


class WhatsAppTenantMixin(models.AbstractModel):
    """Records that belong to one agency (company) through their own fields."""

    _name = "whatsapp.tenant.mixin"
    _description = "WhatsApp Record of One Company"

    def write(self, vals):
        res = super().write(vals)
        if not self.env.su:
            # Odoo checks record rules on the values before a write, not after:
            # without this, a manager could move a record of their company onto
            # another company's account (a template into agency B's number).
            self.check_access("write")
        return res
