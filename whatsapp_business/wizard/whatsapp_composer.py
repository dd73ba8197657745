import base64
import json
import logging
import mimetypes

from markupsafe import Markup

from odoo import Command, api, fields, models
from odoo.exceptions import UserError
from odoo.tools.mimetypes import guess_mimetype

from ..wa_cloud import payloads

_logger = logging.getLogger(__name__)

SUMMARY_LIMIT = 50  # invalid recipients listed one by one in the wizard


class WhatsAppComposer(models.TransientModel):
    _name = "whatsapp.composer"
    _inherit = ["whatsapp.tenant.mixin"]
    _description = "Send WhatsApp Message"

    res_model = fields.Char(string="Document Model")
    res_ids = fields.Char(string="Document IDs", help="JSON list of record ids.")
    res_count = fields.Integer(string="Documents", compute="_compute_res_count")
    single = fields.Boolean(compute="_compute_res_count")
    account_id = fields.Many2one(
        "whatsapp.account",
        string="Send From",
        required=True,
        default=lambda self: self._default_account(),
        domain="[('company_id', 'in', allowed_company_ids),"
        " ('company_id.whatsapp_enabled', '=', True)]",
    )
    recipient_phone = fields.Char(
        string="To", compute="_compute_window", help="E.164 number."
    )
    recipient_name = fields.Char(compute="_compute_window")
    window_open_count = fields.Integer(compute="_compute_window")
    window_open = fields.Boolean(
        compute="_compute_window",
        help="The recipient wrote in the last 24 hours: free text is allowed.",
    )
    valid_count = fields.Integer(compute="_compute_summary")
    invalid_count = fields.Integer(compute="_compute_summary")
    recipients_summary = fields.Html(compute="_compute_summary")
    mode = fields.Selection(
        [
            ("text", "Free Text"),
            ("interactive", "Buttons / List"),
            ("template", "Template"),
        ],
        compute="_compute_mode",
        store=True,
        readonly=False,
        precompute=True,
        required=True,
    )
    body = fields.Text(string="Message")
    canned_response_id = fields.Many2one(
        "mail.canned.response",
        string="Canned Response",
        help="Fills the message with one of your canned responses (Discuss > "
        "Configuration > Canned Responses).",
    )
    reply_to_message_id = fields.Many2one(
        "whatsapp.message",
        string="Reply To",
        domain="[('account_id', '=', account_id), ('direction', '=', 'inbound')]",
        help="The customer's message quoted by this one.",
    )
    interactive_type = fields.Selection(
        [("button", "Reply Buttons"), ("list", "List")],
        default="button",
        required=True,
    )
    interactive_header = fields.Char(string="Header")
    interactive_footer = fields.Char(string="Footer")
    list_button = fields.Char(
        string="List Button", help="The label of the button that opens the list."
    )
    list_section_title = fields.Char(string="Section Title")
    choice_ids = fields.One2many(
        "whatsapp.composer.choice",
        "composer_id",
        string="Choices",
        help="Up to 3 reply buttons, or up to 10 list rows. The customer's choice "
        "arrives with its id, usable in automation rules.",
    )
    attachment_file = fields.Binary(string="Attachment", attachment=False)
    attachment_filename = fields.Char()
    template_id = fields.Many2one(
        "whatsapp.template",
        domain="[('account_id', '=', account_id), ('status', '=', 'APPROVED'),"
        " '|', ('model', '=', res_model), ('variable_count', '=', 0)]",
    )
    line_ids = fields.One2many(
        "whatsapp.composer.line",
        "composer_id",
        string="Values",
        compute="_compute_line_ids",
        store=True,
        readonly=False,
        precompute=True,
    )
    preview = fields.Html(compute="_compute_preview")

    # ------------------------------------------------------------------ defaults

    @api.model
    def default_get(self, fields_list):
        result = super().default_get(fields_list)
        context = self.env.context
        res_model = result.get("res_model") or context.get("active_model")
        if res_model and (res_model not in self.env or res_model == self._name):
            res_model = False
        result["res_model"] = res_model or False
        if res_model and not result.get("res_ids"):
            ids = context.get("active_ids") or (
                [context["active_id"]] if context.get("active_id") else []
            )
            result["res_ids"] = json.dumps([int(i) for i in ids]) if ids else False
        return result

    @api.model
    def _default_account(self):
        account = self.env.company._get_whatsapp_account()
        if not account:
            account = self.env["whatsapp.account"].search(
                [
                    ("company_id", "in", self.env.companies.ids),
                    ("company_id.whatsapp_enabled", "=", True),
                ],
                limit=1,
            )
        return account

    # ------------------------------------------------------------------ compute

    @api.depends("res_model", "res_ids")
    def _compute_res_count(self):
        for composer in self:
            composer.res_count = len(composer._res_id_list())
            composer.single = composer.res_count == 1

    @api.depends("res_model", "res_ids", "account_id")
    def _compute_window(self):
        for composer in self:
            infos = composer._recipients()
            windows = composer._windows(infos)
            single = infos[0] if len(infos) == 1 else None
            composer.recipient_phone = single and single["phone"]
            composer.recipient_name = single and (
                (single["partner"] or single["record"]).display_name
            )
            composer.window_open_count = sum(
                1 for is_open in windows.values() if is_open
            )
            composer.window_open = bool(composer.window_open_count)

    @api.depends(
        "res_model", "res_ids", "account_id", "mode", "template_id", "line_ids.value"
    )
    def _compute_summary(self):
        for composer in self:
            infos = composer._recipients()
            if composer.mode == "template" and composer.template_id and len(infos) > 1:
                composer._add_param_errors(infos)
            valid = [info for info in infos if not info["reason"]]
            composer.valid_count = len(valid)
            composer.invalid_count = len(infos) - len(valid)
            composer.recipients_summary = composer._summary_html(
                infos, composer._windows(infos)
            )

    def _windows(self, infos):
        phones = [info["phone"] for info in infos if not info["reason"]]
        if not self.account_id or not phones:
            return {}
        return self.env["whatsapp.message"]._window_open_map(
            self.account_id, phones=phones
        )

    def _summary_html(self, infos, windows):
        if not infos:
            return Markup('<p class="text-danger">%s</p>') % self.env._(
                "No document selected."
            )
        valid = [info for info in infos if not info["reason"]]
        invalid = [info for info in infos if info["reason"]]
        html = Markup("")
        if len(infos) == 1 and valid:
            info = valid[0]
            html += Markup("<p><strong>%s</strong> %s</p>") % (
                (info["partner"] or info["record"]).display_name,
                info["phone"],
            )
        else:
            html += Markup("<p>%s</p>") % self.env._(
                "%(valid)s valid recipient(s), %(open)s with an open 24-hour window.",
                valid=len(valid),
                open=sum(1 for info in valid if windows.get(info["phone"])),
            )
        if invalid:
            items = Markup("").join(
                Markup("<li><strong>%s</strong>: %s</li>")
                % ((info["partner"] or info["record"]).display_name, info["reason"])
                for info in invalid[:SUMMARY_LIMIT]
            )
            if len(invalid) > SUMMARY_LIMIT:
                items += Markup("<li>%s</li>") % self.env._(
                    "and %s more", len(invalid) - SUMMARY_LIMIT
                )
            html += Markup('<p class="text-danger mb-1">%s</p><ul>%s</ul>') % (
                self.env._("%s recipient(s) will be skipped:", len(invalid)),
                items,
            )
        return html

    @api.depends("single", "window_open")
    def _compute_mode(self):
        for composer in self:
            # Free text only makes sense in an open window; templates always work.
            composer.mode = (
                "text" if composer.single and composer.window_open else "template"
            )

    @api.depends("template_id", "res_model", "res_ids")
    def _compute_line_ids(self):
        for composer in self:
            commands = [Command.clear()]
            template = composer.template_id
            if template:
                records = composer._get_records()
                first = records[:1] if records else None
                params = template._normalize_params(
                    template._params_for_record(first) if first else {}
                )
                mapping = template._variable_map()
                for sequence, var in enumerate(template._expected_variables()):
                    variable = mapping.get(
                        (var["component"], var["button_index"], var["key"])
                    )
                    mapped = bool(
                        variable
                        and (
                            (variable.source == "field" and variable.field_path)
                            or (variable.source == "text" and variable.fixed_text)
                        )
                    )
                    commands.append(
                        Command.create(
                            {
                                "sequence": sequence,
                                "variable_id": variable.id if variable else False,
                                "component": var["component"],
                                "button_index": var["button_index"],
                                "key": var["key"],
                                "kind": var["kind"],
                                "sample": (variable.sample if variable else "")
                                or var["sample"],
                                "value": template._param_value(params, var) or "",
                                # Several documents: mapped values differ per
                                # document and are computed at send time.
                                "locked": mapped and not composer.single,
                            }
                        )
                    )
            composer.line_ids = commands

    @api.depends("template_id", "line_ids.value", "mode", "body")
    def _compute_preview(self):
        for composer in self:
            template = composer.template_id
            if composer.mode != "template" or not template:
                composer.preview = False
                continue
            values = template._preview_values()
            for line in composer.line_ids:
                if line.value and not line.locked:
                    values[line._identity()] = line.value
            composer.preview = template._preview_html(values)

    # ------------------------------------------------------------------ helpers

    def _res_id_list(self):
        self.ensure_one()
        if not self.res_ids:
            return []
        try:
            ids = json.loads(self.res_ids)
        except ValueError:
            return []
        return (
            [int(i) for i in ids if isinstance(i, int)] if isinstance(ids, list) else []
        )

    def _get_records(self):
        self.ensure_one()
        if not self.res_model or self.res_model not in self.env:
            return None
        return self.env[self.res_model].browse(self._res_id_list()).exists()

    def _recipients(self, records=None):
        """Each document's recipient (``base._whatsapp_get_recipients_info``)."""
        records = self._get_records() if records is None else records
        if not records:
            return []
        return list(records._whatsapp_get_recipients_info().values())

    @api.onchange("canned_response_id")
    def _onchange_canned_response_id(self):
        # Read as the user: the canned responses' own record rules apply.
        text = self.canned_response_id.substitution
        if text:
            body = (self.body or "").rstrip()
            self.body = f"{body}\n{text}" if body else text

    def _add_param_errors(self, infos):
        """Mark documents whose template values would be refused by Meta."""
        for info in infos:
            if info["reason"]:
                continue
            error = self.template_id._params_error(self._params_for(info["record"]))
            if error:
                info["reason"] = error

    def _params_for(self, record):
        """Template values for one document: the lines, or the mapping per record."""
        self.ensure_one()
        template = self.template_id
        if self.single:
            params = {"header": {}, "body": {}, "buttons": {}}
        else:
            params = template._normalize_params(template._params_for_record(record))
        for line in self.line_ids:
            if line.locked:
                continue
            value = (line.value or "").strip()
            if line.component == "button":
                params["buttons"][str(line.button_index)] = value
            else:
                params[line.component][line.key] = value
        return params

    # ------------------------------------------------------------------ send

    def action_send(self):
        self.ensure_one()
        records = self._get_records()
        if not records:
            raise UserError(self.env._("There is no document to send a message about."))
        records.check_access("read")
        if not self.account_id:
            raise UserError(self.env._("Choose the WhatsApp account to send from."))
        infos = self._recipients(records)
        if self.single and infos[0]["reason"]:
            raise UserError(infos[0]["reason"])
        interactive = None
        if self.mode == "template":
            self._check_template()
        else:
            self._check_free_form(infos)
            if self.mode == "interactive":
                interactive = self._interactive_spec()
        if self.reply_to_message_id and not self.single:
            raise UserError(self.env._("A reply quotes a message of one contact only."))
        attachment = self._create_attachment() if self.mode == "text" else None
        items = []
        for info in infos:
            # Blacklisted numbers go through: the queue fails them as opted out.
            item = dict(info, reply_to=self.reply_to_message_id)
            if self.mode == "template":
                params = self._params_for(info["record"])
                if self.single:
                    self.template_id._check_params(params)
                else:
                    item["param_error"] = self.template_id._params_error(params)
                item.update(template=self.template_id, template_params=params)
            elif interactive:
                item["interactive"] = interactive
            else:
                item.update(body=self.body or "", attachment=attachment)
            items.append(item)
        messages = self.env["whatsapp.message"]._queue_outbound(self.account_id, items)
        if attachment and messages:
            attachment.sudo().res_id = messages[0].id
        return self._result_action(messages)

    def _check_free_form(self, infos):
        """Free text and interactive messages: the text, and the window of a
        single contact (several contacts: the queue fails the closed ones)."""
        body = (self.body or "").strip()
        if self.mode == "interactive":
            if not body:
                raise UserError(
                    self.env._("Write the message shown above the choices.")
                )
            limit = payloads.MAX_INTERACTIVE_BODY
        elif not body and not self.attachment_file:
            raise UserError(self.env._("Write a message or attach a file."))
        elif self.attachment_file:
            limit = payloads.MAX_CAPTION
        else:
            limit = payloads.MAX_TEXT_BODY
        if len(body) > limit:
            raise UserError(
                self.env._(
                    "The message is too long: %(length)s characters, WhatsApp allows "
                    "%(limit)s.",
                    length=len(body),
                    limit=limit,
                )
            )
        if self.single:
            phone = infos[0]["phone"]
            windows = self.env["whatsapp.message"]._window_open_map(
                self.account_id, phones=[phone]
            )
            if not windows.get(phone):
                raise UserError(
                    self.env._(
                        "The 24-hour window with this contact is closed: send an "
                        "approved template instead."
                    )
                )

    def _interactive_spec(self):
        """The buttons or list of the wizard, checked against Meta's rules."""
        choices = [
            {
                "id": (choice.reply_id or choice.title or "").strip(),
                "title": (choice.title or "").strip(),
                "description": (choice.description or "").strip(),
            }
            for choice in self.choice_ids.sorted("sequence")
        ]
        spec = {
            "type": self.interactive_type,
            "body": (self.body or "").strip(),
            "header": (self.interactive_header or "").strip(),
            "footer": (self.interactive_footer or "").strip(),
        }
        if self.interactive_type == "button":
            for choice in choices:
                choice.pop("description")
            spec["buttons"] = choices
        else:
            spec["button"] = (self.list_button or "").strip()
            section = {"rows": choices}
            if (self.list_section_title or "").strip():
                section["title"] = self.list_section_title.strip()
            spec["sections"] = [section]
        try:
            return payloads.interactive_spec(spec)
        except ValueError as error:
            raise UserError(
                self.env._("WhatsApp would refuse these choices: %s", error)
            ) from None

    def _check_template(self):
        template = self.template_id
        if not template:
            raise UserError(self.env._("Choose an approved template."))
        if template.account_id != self.account_id:
            raise UserError(
                self.env._(
                    "Template %(template)s belongs to another WhatsApp account.",
                    template=template.display_name,
                )
            )
        if template.status != "APPROVED":
            raise UserError(
                self.env._(
                    "Template %(template)s is not approved by Meta (%(status)s).",
                    template=template.display_name,
                    status=template.status,
                )
            )

    def _create_attachment(self):
        if not self.attachment_file:
            return None
        raw = base64.b64decode(self.attachment_file)
        name = self.attachment_filename or "attachment"
        mimetype = mimetypes.guess_type(name)[0] or guess_mimetype(raw)
        limit = payloads.MEDIA_LIMITS.get(mimetype)
        if not limit:
            raise UserError(
                self.env._(
                    "WhatsApp does not accept %(mimetype)s files. Send a JPEG or PNG "
                    "image, an MP4 video, an audio file or a PDF / Office document.",
                    mimetype=mimetype,
                )
            )
        if len(raw) > limit:
            raise UserError(
                self.env._(
                    "The file is too large for WhatsApp: %(size)s MB, at most "
                    "%(limit)s MB for %(mimetype)s.",
                    size=round(len(raw) / payloads.MB, 1),
                    limit=round(limit / payloads.MB, 1),
                    mimetype=mimetype,
                )
            )
        if (self.body or "").strip() and not payloads.media_takes_caption(mimetype):
            raise UserError(
                self.env._(
                    "Audio files and stickers cannot carry a text: send the text "
                    "separately."
                )
            )
        # Linked to the message once it exists: its readers may read the file.
        return (
            self.env["ir.attachment"]
            .sudo()
            .create(
                {
                    "name": name,
                    "raw": raw,
                    "mimetype": mimetype,
                    "res_model": "whatsapp.message",
                    "res_id": 0,
                }
            )
        )

    def _result_action(self, messages):
        queued = messages.filtered(lambda m: m.state == "queued")
        failed = messages - queued
        if failed:
            message = self.env._(
                "%(queued)s message(s) queued, %(failed)s not sent (see the chatter "
                "of each document).",
                queued=len(queued),
                failed=len(failed),
            )
        else:
            message = self.env._("%s message(s) queued for sending.", len(queued))
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "message": message,
                "type": "warning" if failed else "success",
                "sticky": False,
                "next": {"type": "ir.actions.act_window_close"},
            },
        }


class WhatsAppComposerLine(models.TransientModel):
    _name = "whatsapp.composer.line"
    _inherit = ["whatsapp.tenant.mixin"]
    _description = "WhatsApp Template Value"
    _order = "sequence, id"

    composer_id = fields.Many2one(
        "whatsapp.composer", required=True, ondelete="cascade", index=True
    )
    sequence = fields.Integer()
    variable_id = fields.Many2one(
        "whatsapp.template.variable", string="Template Variable", ondelete="set null"
    )
    component = fields.Selection(
        [("header", "Header"), ("body", "Body"), ("button", "Button")], required=True
    )
    button_index = fields.Integer()
    key = fields.Char(required=True)
    kind = fields.Char()
    label = fields.Char(string="Variable", compute="_compute_label")
    sample = fields.Char(help="Meta's example value.")
    value = fields.Char()
    locked = fields.Boolean(
        help="Filled from each document's fields when the message is sent."
    )

    @api.depends("component", "button_index", "key")
    def _compute_label(self):
        labels = dict(self._fields["component"]._description_selection(self.env))
        for line in self:
            if line.component == "button":
                line.label = f"{labels['button']} {line.button_index + 1}"
            elif line.component:
                line.label = f"{labels[line.component]} {{{{{line.key}}}}}"
            else:
                line.label = False

    def _identity(self):
        self.ensure_one()
        index = self.button_index if self.component == "button" else 0
        return (self.component, index, self.key)


class WhatsAppComposerChoice(models.TransientModel):
    _name = "whatsapp.composer.choice"
    _inherit = ["whatsapp.tenant.mixin"]
    _description = "WhatsApp Reply Button or List Row"
    _order = "sequence, id"

    composer_id = fields.Many2one(
        "whatsapp.composer", required=True, ondelete="cascade", index=True
    )
    sequence = fields.Integer(default=10)
    title = fields.Char(required=True, help="Shown on the button or the list row.")
    reply_id = fields.Char(
        string="Reply ID",
        help="Stored on the customer's answer for automation rules; the title when "
        "empty.",
    )
    description = fields.Char(help="A second line under a list row.")
