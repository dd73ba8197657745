from odoo import api, fields, models

from ..wa_cloud.pricing import MARKETS, market_for_number


class WhatsAppMessage(models.Model):
    """What the log reports beyond delivery: the ad a message answered, and what
    Meta charges for it (from its pricing and the rate card)."""

    # One concern per file: reporting here, the inbox in whatsapp_message_inbox.py.
    _inherit = "whatsapp.message"  # pylint: disable=consider-merging-classes-inherited

    ad_id = fields.Char(string="Ad ID", readonly=True, index="btree_not_null")
    ad_headline = fields.Char(readonly=True)
    ad_source_url = fields.Char(string="Ad URL", readonly=True)
    ad_ctwa_clid = fields.Char(
        string="Ad Click ID",
        readonly=True,
        help="Meta's click id (ctwa_clid), for its conversions API.",
    )

    pricing_market = fields.Selection(
        MARKETS,
        string="Market",
        compute="_compute_cost",
        store=True,
        help="The recipient's market on Meta's rate card, from the number's country "
        "code.",
    )
    # A Float, not a Monetary: Meta's prices have four decimals, which a currency
    # rounding to cents would lose.
    cost = fields.Float(
        digits=(16, 4),
        compute="_compute_cost",
        store=True,
        help="Meta's price for this message on the rate card (CRM > Configuration "
        "> WhatsApp > Rate Card); 0 for free messages.",
    )
    cost_currency_id = fields.Many2one(
        "res.currency", string="Cost Currency", compute="_compute_cost", store=True
    )
    cost_state = fields.Selection(
        [("free", "Free"), ("billed", "Billed"), ("unrated", "No Rate")],
        string="Billing",
        compute="_compute_cost",
        store=True,
        help="No Rate: Meta bills the message but the rate card has no line for its "
        "market and category.",
    )
    cost_date = fields.Date(
        compute="_compute_cost",
        store=True,
        index=True,
        help="The day the message was priced on: when it was sent.",
    )

    @api.depends("pricing_category", "pricing_type", "phone", "sent_date", "company_id")
    def _compute_cost(self):
        # The rate lines of the whole batch in one query: status webhooks price
        # messages by the hundred.
        candidates = self.env["whatsapp.pricing.rate"]._candidate_rates(
            self.company_id,
            {market_for_number(phone) for phone in self.mapped("phone")},
            {(category or "").lower() for category in self.mapped("pricing_category")},
        )
        for message in self:
            on_date = message.sent_date or message.create_date or fields.Datetime.now()
            values = candidates._message_cost_values(
                message.company_id,
                message.phone,
                message.pricing_category,
                message.pricing_type,
                on_date.date(),
                candidates=candidates,
            )
            values["cost_date"] = on_date.date() if values["cost_state"] else False
            message.update(values)
