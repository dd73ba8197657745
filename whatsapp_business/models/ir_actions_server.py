import logging

from odoo import api, fields, models
from odoo.exceptions import ValidationError

_logger = logging.getLogger(__name__)


class IrActionsServer(models.Model):
    """'Send WhatsApp message' actions, usable from automation rules.

    They only enqueue: the 24-hour window, the blacklist and the template status
    are checked when queueing and again by the send queue.
    """

    _inherit = "ir.actions.server"

    state = fields.Selection(
        selection_add=[("whatsapp", "Send WhatsApp message")],
        ondelete={"whatsapp": "cascade"},
    )
    whatsapp_account_id = fields.Many2one(
        "whatsapp.account",
        string="WhatsApp Account",
        ondelete="restrict",
    )
    whatsapp_template_id = fields.Many2one(
        "whatsapp.template",
        string="WhatsApp Template",
        ondelete="restrict",
        domain="[('account_id', '=', whatsapp_account_id), "
        "'|', ('model_id', '=', model_id), ('variable_count', '=', 0)]",
        help="Templates can be sent at any time; free text only reaches contacts "
        "who wrote in the last 24 hours.",
    )
    whatsapp_body = fields.Text(
        string="WhatsApp Text",
        help="Free text, used when no template is set. Contacts whose 24-hour "
        "window is closed do not receive it (the message is logged as failed).",
    )
    whatsapp_recipient_field = fields.Char(
        string="Recipient Field",
        help="A phone/mobile field of the document, or a many2one to a contact. "
        "Empty: the document's mobile, then phone, then its contact's number.",
    )

    @api.constrains(
        "state",
        "model_id",
        "whatsapp_account_id",
        "whatsapp_template_id",
        "whatsapp_body",
        "whatsapp_recipient_field",
    )
    def _check_whatsapp_action(self):
        for action in self.filtered(lambda a: a.state == "whatsapp"):
            if action.model_id.transient:
                raise ValidationError(
                    self.env._("WhatsApp messages cannot be sent about wizards.")
                )
            if not action.whatsapp_account_id:
                raise ValidationError(
                    self.env._(
                        "Action %(action)s: choose the WhatsApp account to send from.",
                        action=action.name,
                    )
                )
            template = action.whatsapp_template_id
            if not template and not (action.whatsapp_body or "").strip():
                raise ValidationError(
                    self.env._(
                        "Action %(action)s: choose a template or write a text.",
                        action=action.name,
                    )
                )
            if template and template.account_id != action.whatsapp_account_id:
                raise ValidationError(
                    self.env._(
                        "Action %(action)s: the template belongs to another account.",
                        action=action.name,
                    )
                )
            if (
                template
                and template.variable_count
                and template.model_id != action.model_id
            ):
                raise ValidationError(
                    self.env._(
                        "Action %(action)s: template %(template)s fills its variables "
                        "from %(template_model)s, not from %(model)s.",
                        action=action.name,
                        template=template.display_name,
                        template_model=template.model_id.name,
                        model=action.model_id.name,
                    )
                )
            action._check_whatsapp_recipient_field()

    def _check_whatsapp_recipient_field(self):
        self.ensure_one()
        model = self.env[self.model_id.model]
        fname = self.whatsapp_recipient_field
        if fname:
            field = model._fields.get(fname)
            if not field or not (
                field.type == "char"
                or (field.type == "many2one" and field.comodel_name == "res.partner")
            ):
                raise ValidationError(
                    self.env._(
                        "Action %(action)s: %(field)s must be a phone field or a "
                        "contact (many2one to res.partner) of %(model)s.",
                        action=self.name,
                        field=fname,
                        model=self.model_id.name,
                    )
                )
            return
        partner = model._fields.get("partner_id")
        if not (
            model._name == "res.partner"
            or model._phone_get_number_fields()
            or (partner and partner.comodel_name == "res.partner")
        ):
            raise ValidationError(
                self.env._(
                    "Action %(action)s: %(model)s has no phone, mobile or contact "
                    "field; set the recipient field.",
                    action=self.name,
                    model=self.model_id.name,
                )
            )

    def _run_action_whatsapp_multi(self, eval_context=None):
        eval_context = eval_context or {}
        records = eval_context.get("records") or eval_context.get("record")
        # Onchange automations run on unsaved records: nothing to message yet.
        if not records or not records.ids or self._is_recompute():
            return False
        account = self.whatsapp_account_id
        template = self.whatsapp_template_id
        if not account.active or not account.company_id.whatsapp_enabled:
            # Never block the business operation that triggered the rule.
            _logger.warning(
                "Server action %s: WhatsApp account %s is archived or disabled, "
                "%d message(s) not enqueued",
                self.id,
                account.id,
                len(records),
            )
            return False
        recipients = records._whatsapp_get_recipients_info(
            number_field=self.whatsapp_recipient_field or None
        )
        items = []
        for info in recipients.values():
            # A blacklisted number is failed as opted out by the queue.
            item = dict(info)
            if template:
                params = template._params_for_record(info["record"])
                item.update(
                    template=template,
                    template_params=params,
                    param_error=template._params_error(params),
                )
            else:
                item["body"] = self.whatsapp_body
            items.append(item)
        self.env["whatsapp.message"]._queue_outbound(account, items)
        _logger.info(
            "Server action %s: %d WhatsApp message(s) enqueued", self.id, len(items)
        )
        return False
