from odoo import fields, models


class WhatsAppAccount(models.Model):
    """The administrator's tools on an account: test message, costs."""

    _inherit = "whatsapp.account"

    month_cost = fields.Float(
        string="Cost This Month",
        digits=(16, 4),  # Meta's prices have four decimals
        compute="_compute_month_cost",
        help="What Meta charges for this month's messages, from the rate card.",
    )
    month_cost_currency_id = fields.Many2one(
        "res.currency", string="Cost Currency", compute="_compute_month_cost"
    )

    def _compute_month_cost(self):
        month_start = fields.Date.context_today(self).replace(day=1)
        rows = self.env["whatsapp.message"]._read_group(
            [
                ("account_id", "in", self.ids),
                ("cost_state", "=", "billed"),
                ("cost_date", ">=", month_start),
            ],
            ["account_id", "cost_currency_id"],
            ["cost:sum"],
        )
        totals = {}
        for account, currency, total in rows:
            totals.setdefault(account.id, []).append((currency, total))
        for account in self:
            lines = totals.get(account.id, [])
            currencies = {currency for currency, _total in lines}
            if len(currencies) == 1:
                currency = currencies.pop()
                account.month_cost_currency_id = currency
                account.month_cost = sum(total for _currency, total in lines)
                continue
            # Several currencies (company rates): shown in the company's currency.
            target = account.company_id.currency_id
            account.month_cost_currency_id = target
            account.month_cost = sum(
                currency._convert(total, target, account.company_id, month_start)
                for currency, total in lines
            )

    def action_send_test_message(self):
        self.ensure_one()
        self.check_access("write")
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Send a Test Message"),
            "res_model": "whatsapp.test.message",
            "view_mode": "form",
            "target": "new",
            "context": {"default_account_id": self.id},
        }

    def action_open_costs(self):
        self.ensure_one()
        self.check_access("read")
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "whatsapp_business.whatsapp_message_cost_action"
        )
        action["domain"] = [("account_id", "=", self.id), ("cost_state", "!=", False)]
        action["context"] = {"create": False, "search_default_this_month": 1}
        return action
