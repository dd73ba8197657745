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
    def _message_cost_values(
        self, company, phone, category, pricing_type, on_date, candidates=None
    ):
        """Market, cost, currency and cost state of one message with this pricing.

        ``candidates``: the lines that may price it, from :meth:`_candidate_rates`
        (read once for a whole batch of messages); searched when not given.
        """
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
        category = (category or "").lower()
        if candidates is None:
            candidates = self._candidate_rates(company, [market], [category])
        rate = candidates._pick(company, market, category, on_date)
        if not rate:
            values["cost_state"] = "unrated"
            return values
        values.update(
            cost=rate.price, cost_currency_id=rate.currency_id.id, cost_state="billed"
        )
        return values

    @api.model
    def _candidate_rates(self, companies, markets, categories):
        """Every active line that may price messages of these companies, markets
        and categories, newest first: one query for a whole batch."""
        markets = [market for market in markets if market]
        categories = [category for category in categories if category]
        if not markets or not categories:
            return self.browse()
        return (
            self.sudo()
            .with_context(active_test=True)
            .search(
                [
                    ("market", "in", markets),
                    ("category", "in", categories),
                    ("company_id", "in", [*companies.ids, False]),
                ],
                order="date_start desc, id desc",
            )
        )

    def _pick(self, company, market, category, on_date):
        """Among these lines: the company's own if any, else the shared one."""
        if not market or not category:
            return self.browse()
        rates = self.filtered(
            lambda rate: (
                rate.market == market
                and rate.category == category
                and rate.date_start <= on_date
                and rate.company_id in (company, self.env["res.company"])
            )
        )
        return rates.filtered("company_id")[:1] or rates[:1]
