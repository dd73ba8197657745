from odoo import api, models

from ..tools import compat

# Actions visible only to a group: (action, group). Set by _whatsapp_business_setup
# because the field is named groups_id on Odoo 18 and group_ids on 19.
ACTION_GROUPS = [
    ("whatsapp_business.whatsapp_composer_action_crm_lead", "group_whatsapp_user"),
    ("whatsapp_business.whatsapp_composer_action_res_partner", "group_whatsapp_user"),
    ("whatsapp_business.whatsapp_template_action_sync", "group_whatsapp_manager"),
    ("whatsapp_business.whatsapp_message_action_cancel", "group_whatsapp_manager"),
    ("whatsapp_business.whatsapp_message_action_retry", "group_whatsapp_manager"),
    ("whatsapp_business.ir_actions_server_rotate_key", "group_whatsapp_manager"),
]


class ResGroups(models.Model):
    _inherit = "res.groups"

    @api.model
    def _whatsapp_business_setup(self):
        """Called by data/whatsapp_business_setup.xml at install and upgrade."""
        compat.setup_groups(
            self.env,
            "whatsapp_business.module_category_whatsapp",
            [
                "whatsapp_business.group_whatsapp_user",
                "whatsapp_business.group_whatsapp_manager",
            ],
            "whatsapp_business.group_whatsapp_manager",
            [(action, f"whatsapp_business.{group}") for action, group in ACTION_GROUPS],
        )
