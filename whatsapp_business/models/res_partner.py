from odoo import fields, models


class ResPartner(models.Model):
    # mail.thread.phone gives the sanitized number and the blacklist status.
    _name = "res.partner"
    _inherit = ["res.partner", "mail.thread.phone"]

    whatsapp_user_id = fields.Char(
        string="WhatsApp User ID",
        index="btree_not_null",
        copy=False,
        groups="base.group_user",
        help="Business-scoped user id of a customer who hides their number.",
    )
    # Counted from whatsapp.message, which users outside the WhatsApp groups (an
    # accountant, an integration user) may not read: they do not get the field.
    whatsapp_message_count = fields.Integer(
        string="WhatsApp Messages",
        compute="_compute_whatsapp_message_count",
        groups="whatsapp_business.group_whatsapp_user",
    )

    def _compute_whatsapp_message_count(self):
        counts = dict(
            self.env["whatsapp.message"]._read_group(
                [("partner_id", "in", self.ids)], ["partner_id"], ["__count"]
            )
        )
        for partner in self:
            partner.whatsapp_message_count = counts.get(partner, 0)

    def action_open_whatsapp_messages(self):
        self.ensure_one()
        self.check_access("read")
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "whatsapp_business.whatsapp_message_action"
        )
        action["domain"] = [("partner_id", "=", self.id)]
        action["context"] = {"create": False}
        return action

    def action_open_whatsapp_conversation(self):
        """The contact's WhatsApp conversation in Discuss (created if needed)."""
        self.ensure_one()
        self.check_access("read")
        return self.env["discuss.channel"]._whatsapp_open_for(self.sudo(), record=self)
