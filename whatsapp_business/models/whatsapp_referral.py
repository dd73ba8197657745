"""Click-to-WhatsApp ad attribution: the ad behind a message, on the message and
on its lead (UTM source, medium and campaign). The fields are in
whatsapp_message_reporting.py and crm_lead.py."""

from odoo import api, models

from ..wa_cloud.referral import MEDIUM, parse_referral


class WhatsAppWebhookProcessor(models.AbstractModel):
    _inherit = "whatsapp.webhook.processor"

    @api.model
    def _apply_referral(self, account, message_vals, partner, record, item):
        """Attribute a message from an ad; return the record it belongs to.

        The ad goes into ``message_vals`` (the message is created after the
        document is chosen). An ad reply is a lead by nature: one is created for
        the contact when the message would otherwise only go to the contact. Last
        touch wins: the lead's UTM fields follow the latest ad.
        """
        ad = parse_referral(getattr(item, "referral", None))
        if not ad:
            return record
        message_vals.update(
            {
                "ad_id": ad.source_id or False,
                "ad_headline": ad.headline or False,
                "ad_source_url": ad.source_url or False,
                "ad_ctwa_clid": ad.ctwa_clid or False,
            }
        )
        lead = record if record and record._name == "crm.lead" else None
        if lead is None and partner:
            lead = self._create_lead(account, partner)
        if not lead:
            return record
        utm = self.env["utm.mixin"].sudo()
        values = {
            "whatsapp_ad_id": ad.source_id or False,
            "whatsapp_ad_headline": ad.headline or False,
            "whatsapp_ad_source_url": ad.source_url or False,
            "whatsapp_ctwa_clid": ad.ctwa_clid or False,
            "source_id": utm._find_or_create_record("utm.source", ad.platform).id,
            "medium_id": self._ctwa_medium().id,
        }
        if ad.campaign_name:
            values["campaign_id"] = utm._find_or_create_record(
                "utm.campaign", ad.campaign_name
            ).id
        lead.sudo().write(values)
        return lead

    @api.model
    def _ctwa_medium(self):
        medium = self.env.ref(
            "whatsapp_business.utm_medium_click_to_whatsapp", raise_if_not_found=False
        )
        return medium or self.env["utm.mixin"].sudo()._find_or_create_record(
            "utm.medium", MEDIUM
        )
