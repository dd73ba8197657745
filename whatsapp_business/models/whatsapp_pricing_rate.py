from odoo import api, fields, models

from ..wa_cloud.pricing import CATEGORIES, MARKETS, is_free, market_for_number


class WhatsAppPricingRate(models.Model):
    """One line of Meta's rate card: the price of one message of a category in
    one market, from a date.

    Lines without a company are the shared card, shipped with the module and
    kept up to date by system administrators; a company's own lines (negotiated
    rates, another currency) win over the shared ones for its messages.
    """

    _name = "whatsapp.pricing.rate"
    _inherit = ["whatsapp.tenant.mixin"]
    _description = "WhatsApp Rate Card Line"
    _order = "market, category, date_start desc, id"
    _rec_name = "market"

    market = fields.Selection(MARKETS, required=True, index=True)
    category = fields.Selection(CATEGORIES, required=True, index=True)
    price = fields.Float(
        string="Price per Message", digits=(16, 4), required=True, default=0.0
    )
    currency_id = fields.Many2one(
        "res.currency",
        required=True,
        default=lambda self: self.env.ref("base.USD", raise_if_not_found=False),
    )
    date_start = fields.Date(
        string="Valid From",
        required=True,
        help="The date Meta's rate card applies from; the latest line on or before "
        "a message's date prices it.",
    )
    source = fields.Char(help="Where the figure comes from (Meta's rate card, date).")
    company_id = fields.Many2one(
        "res.company",
        index=True,
        help="Empty: the rate card shared by every company.",
    )
    active = fields.Boolean(default=True)

    @api.model
    def _message_cost_values(self, company, phone, category, pricing_type, on_date):
        """Market, cost, currency and cost state of one message with this pricing."""
        market = market_for_number(phone) if phone else False
        values = {
            "pricing_market": market or False,
            "cost": 0.0,
            "cost_currency_id": False,
            "cost_state": False,
        }
        if not category and not pricing_type:
            return values  # Meta has not priced the message (yet)
        if is_free(category, pricing_type):
            values["cost_state"] = "free"
            return values
        rate = self._find_rate(company, market, (category or "").lower(), on_date)
        if not rate:
            values["cost_state"] = "unrated"
            return values
        values.update(
            cost=rate.price, cost_currency_id=rate.currency_id.id, cost_state="billed"
        )
        return values

    @api.model
    def _find_rate(self, company, market, category, on_date):
        """The company's own line if any, else the shared one; latest date first."""
        if not market or not category:
            return self.browse()
        rates = (
            self.sudo()
            .with_context(active_test=True)
            .search(
                [
                    ("market", "=", market),
                    ("category", "=", category),
                    ("date_start", "<=", on_date),
                    ("company_id", "in", [company.id, False]),
                ],
                order="date_start desc, id desc",
            )
        )
        return rates.filtered("company_id")[:1] or rates[:1]
