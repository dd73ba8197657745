from odoo import api, fields, models
from odoo.exceptions import UserError

from ..wa_cloud.payloads import MAX_TEXT_BODY

DEFAULT_TEST_TEMPLATE = "hello_world"


class WhatsAppTestMessage(models.TransientModel):
    """Send one message from an account to any number, to check the whole chain.

    It goes through the same queue as every other message (and posts on the
    account's chatter), so the state shown here is the one Meta reports.
    """

    _name = "whatsapp.test.message"
    _inherit = ["whatsapp.tenant.mixin"]
    _description = "Send a WhatsApp Test Message"

    account_id = fields.Many2one(
        "whatsapp.account", required=True, readonly=True, ondelete="cascade"
    )
    phone = fields.Char(
        string="To",
        help="The number to write to, in international format (e.g. +33 6 12 34 56 "
        "78). Numbers without a country code use the company's country.",
    )
    phone_e164 = fields.Char(string="Number", compute="_compute_window")
    window_open = fields.Boolean(
        compute="_compute_window",
        help="This number wrote to the account in the last 24 hours: free text is "
        "allowed.",
    )
    mode = fields.Selection(
        [("template", "Template"), ("text", "Free Text")],
        default="template",
        required=True,
    )
    template_id = fields.Many2one(
        "whatsapp.template",
        domain="[('account_id', '=', account_id), ('status', '=', 'APPROVED')]",
    )
    body = fields.Text(string="Message")
    message_id = fields.Many2one(
        "whatsapp.message", string="Sent Message", readonly=True
    )
    message_state = fields.Selection(related="message_id.state", string="State")
    message_failure = fields.Char(related="message_id.failure_title", string="Failure")
    message_wamid = fields.Char(related="message_id.wamid", string="Meta Message ID")

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        account = self.env["whatsapp.account"].browse(values.get("account_id"))
        if account and "template_id" in fields_list and not values.get("template_id"):
            values["template_id"] = (
                self.env["whatsapp.template"]
                .search(
                    [
                        ("account_id", "=", account.id),
                        ("status", "=", "APPROVED"),
                        ("name", "=", DEFAULT_TEST_TEMPLATE),
                    ],
                    order="language",  # en_US before other languages
                    limit=1,
                )
                .id
            )
        return values

    @api.depends("account_id", "phone")
    def _compute_window(self):
        Message = self.env["whatsapp.message"]
        for wizard in self:
            number = wizard._normalized_phone()
            wizard.phone_e164 = number
            wizard.window_open = bool(
                number
                and Message._window_open_map(wizard.account_id, phones=[number])[number]
            )

    def _normalized_phone(self):
        self.ensure_one()
        if not self.phone or not self.account_id:
            return False
        # The company's partner gives the default country of a national number.
        partner = self.account_id.company_id.partner_id
        return partner._phone_format(number=self.phone, force_format="E164") or False

    def _test_params(self):
        """Template values for a test: fixed texts, else Meta's example values."""
        params = {"header": {}, "body": {}, "buttons": {}}
        for variable in self.template_id.variable_ids:
            value = (
                variable.fixed_text
                if variable.source == "text" and variable.fixed_text
                else variable.sample
            ) or ""
            if variable.component == "button":
                params["buttons"][str(variable.button_index)] = value
            else:
                params[variable.component][variable.key] = value
        return params

    def _item(self):
        """What the queue needs for this message; refuses what cannot go."""
        self.ensure_one()
        number = self._normalized_phone()
        if not number:
            raise UserError(
                self.env._(
                    "%s is not a valid international number.", self.phone or "''"
                )
            )
        item = {"record": self.account_id, "partner": False, "phone": number}
        if self.mode == "text":
            body = (self.body or "").strip()
            if not body:
                raise UserError(self.env._("Write the message to send."))
            if len(body) > MAX_TEXT_BODY:
                raise UserError(
                    self.env._(
                        "The message is too long: %(length)s characters, WhatsApp "
                        "allows %(limit)s.",
                        length=len(body),
                        limit=MAX_TEXT_BODY,
                    )
                )
            if not self.window_open:
                raise UserError(
                    self.env._(
                        "%s has not written to this number in the last 24 hours: "
                        "send an approved template instead.",
                        number,
                    )
                )
            item["body"] = body
            return item
        template = self.template_id
        if not template:
            raise UserError(self.env._("Choose an approved template."))
        if template.account_id != self.account_id or template.status != "APPROVED":
            raise UserError(
                self.env._(
                    "Template %s is not an approved template of this account.",
                    template.display_name,
                )
            )
        params = self._test_params()
        template._check_params(params)
        item.update(template=template, template_params=params)
        return item

    def action_send(self):
        self.ensure_one()
        self.account_id.check_access("write")  # managers of the account's company
        item = self._item()
        self.message_id = self.env["whatsapp.message"]._queue_outbound(
            self.account_id, [item]
        )
        return self._reopen()

    def action_refresh(self):
        """Show the delivery state Meta has reported since."""
        self.ensure_one()
        return self._reopen()

    def action_send_another(self):
        self.ensure_one()
        self.message_id = False
        return self._reopen()

    def _reopen(self):
        self.check_access("read")  # also refuses another user's wizard over RPC
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Send a Test Message"),
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "new",
        }
