from odoo import fields, models


class CrmLead(models.Model):
    _inherit = "crm.lead"

    whatsapp_message_count = fields.Integer(
        string="WhatsApp Messages",
        compute="_compute_whatsapp_message_count",
        groups="whatsapp_business.group_whatsapp_user",
    )
    # Click-to-WhatsApp ad attribution (whatsapp_referral.py fills them).
    whatsapp_ad_id = fields.Char(
        string="WhatsApp Ad ID",
        index="btree_not_null",
        help="The Click-to-WhatsApp ad the customer answered.",
    )
    whatsapp_ad_headline = fields.Char(string="WhatsApp Ad")
    whatsapp_ad_source_url = fields.Char(string="WhatsApp Ad URL")
    whatsapp_ctwa_clid = fields.Char(
        string="WhatsApp Ad Click ID",
        help="Meta's click id (ctwa_clid), for its conversions API.",
    )

    def _compute_whatsapp_message_count(self):
        counts = dict(
            self.env["whatsapp.message"]._read_group(
                [("res_model", "=", "crm.lead"), ("res_id", "in", self.ids)],
                ["res_id"],
                ["__count"],
            )
        )
        for lead in self:
            lead.whatsapp_message_count = counts.get(lead.id, 0)

    def action_open_whatsapp_messages(self):
        self.ensure_one()
        self.check_access("read")
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "whatsapp_business.whatsapp_message_action"
        )
        action["domain"] = [("res_model", "=", "crm.lead"), ("res_id", "=", self.id)]
        action["context"] = {"create": False}
        return action

    def action_open_whatsapp_conversation(self):
        """The customer's WhatsApp conversation in Discuss (created if needed)."""
        self.ensure_one()
        self.check_access("read")
        return self.env["discuss.channel"]._whatsapp_open_for(
            self.sudo().partner_id, record=self
        )
