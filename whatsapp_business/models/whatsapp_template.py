"""Message templates approved by Meta, and how their variables are filled.

The template parameters stored on a message (``whatsapp.message.template_params``)
are a JSON object with one entry per component, keyed by placeholder::

    {
        "header": {"1": "S00117"},               # text header ({"media": url} for
                                                 # an IMAGE/VIDEO/DOCUMENT header)
        "body": {"1": "Amélie", "2": "S00117"},  # NAMED: {"first_name": "Amélie"}
        "buttons": {"0": "S00117"},              # button index -> URL suffix or code
    }

Lists are accepted for positional templates too (``{"body": ["Amélie", "S00117"]}``)
and normalised to the form above.
"""

import json
import logging
import re

from markupsafe import Markup, escape

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import format_date, format_datetime, formatLang, html2plaintext

from ..tools import compat
from ..wa_cloud import events as wa_events
from ..wa_cloud.errors import WhatsAppError
from .whatsapp_account import error_summary

_logger = logging.getLogger(__name__)

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
# Meta refuses parameter text with new lines, tabs or more than 4 spaces in a row.
FORBIDDEN_PARAM_TEXT = re.compile(r"[\n\r\t]| {5,}")
MEDIA_HEADER_FORMATS = ("IMAGE", "VIDEO", "DOCUMENT")
MEDIA_HEADER_KINDS = ("image", "video", "document")
HEADER_FORMATS = ("TEXT", *MEDIA_HEADER_FORMATS, "LOCATION")

TEMPLATE_STATUSES = [
    ("APPROVED", "Approved"),
    ("PENDING", "Pending"),
    ("REJECTED", "Rejected"),
    ("PAUSED", "Paused"),
    ("DISABLED", "Disabled"),
    ("IN_APPEAL", "In Appeal"),
    ("PENDING_DELETION", "Pending Deletion"),
    ("DELETED", "Deleted"),
    ("LIMIT_EXCEEDED", "Limit Exceeded"),
    ("ARCHIVED", "Archived"),
    ("FLAGGED", "Flagged"),
    ("UNKNOWN", "Unknown"),
]
# Webhook events that are not statuses themselves. LOCKED/UNLOCKED (editing) and
# UNARCHIVED (status unknown until the next sync) leave the status alone.
EVENT_TO_STATUS = {"REINSTATED": "APPROVED"}
CATEGORIES = [
    ("MARKETING", "Marketing"),
    ("UTILITY", "Utility"),
    ("AUTHENTICATION", "Authentication"),
]
QUALITY_SCORES = [
    ("GREEN", "High"),
    ("YELLOW", "Medium"),
    ("RED", "Low"),
    ("UNKNOWN", "Unknown"),
]
# Fields whose value makes no sense in a chat message.
UNMAPPABLE_FIELD_TYPES = ("binary", "json", "properties", "properties_definition")


def _placeholders(text, positional):
    """Distinct placeholder keys of a text, in send order."""
    keys = []
    for key in PLACEHOLDER.findall(text or ""):
        if key not in keys:
            keys.append(key)
    if positional:
        # Positional values are sent by index, whatever their order in the text.
        keys.sort(key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0))
    return keys


def _named_examples(example, name):
    return {
        item.get("param_name"): item.get("example")
        for item in example.get(name) or []
        if isinstance(item, dict)
    }


def _text_samples(component, keys, positional, kind):
    """Meta's example values of a header or body, keyed by placeholder."""
    example = component.get("example")
    if not isinstance(example, dict):
        return {}
    if not positional:
        return _named_examples(example, f"{kind}_text_named_params")
    values = example.get(f"{kind}_text") or []
    if values and isinstance(values[0], list):  # body_text is a list of lists
        values = values[0]
    return dict(zip(keys, (str(v) for v in values), strict=False))


def _button_sample(button, key):
    example = button.get("example")
    if isinstance(example, list):
        example = example[0] if example else ""
    example = str(example or "")
    url = button.get("url") or ""
    prefix = url.split("{{", 1)[0]
    # URL examples are full URLs: the variable is what follows the static part.
    if key and prefix and example.startswith(prefix):
        return example[len(prefix) :]
    return example


def parse_variables(components, parameter_format="POSITIONAL"):
    """Every value a template needs at send time, from Meta's component list.

    Returns dicts with component ('header', 'body', 'button'), button_index, key,
    kind ('text', 'image', 'video', 'document', 'location', 'url', 'copy_code')
    and sample.
    """
    positional = parameter_format != "NAMED"
    result = []
    for component in components or []:
        if not isinstance(component, dict):
            continue
        ctype = (component.get("type") or "").upper()
        if ctype == "HEADER":
            header_format = (component.get("format") or "TEXT").upper()
            if header_format == "TEXT":
                keys = _placeholders(component.get("text"), positional)
                samples = _text_samples(component, keys, positional, "header")
                result.extend(
                    {
                        "component": "header",
                        "button_index": 0,
                        "key": key,
                        "kind": "text",
                        "sample": samples.get(key) or "",
                    }
                    for key in keys
                )
            elif header_format in MEDIA_HEADER_FORMATS or header_format == "LOCATION":
                result.append(
                    {
                        "component": "header",
                        "button_index": 0,
                        "key": "media",
                        "kind": header_format.lower(),
                        "sample": "",
                    }
                )
        elif ctype == "BODY":
            keys = _placeholders(component.get("text"), positional)
            samples = _text_samples(component, keys, positional, "body")
            result.extend(
                {
                    "component": "body",
                    "button_index": 0,
                    "key": key,
                    "kind": "text",
                    "sample": samples.get(key) or "",
                }
                for key in keys
            )
        elif ctype == "BUTTONS":
            for index, button in enumerate(component.get("buttons") or []):
                if not isinstance(button, dict):
                    continue
                btype = (button.get("type") or "").upper()
                if btype == "URL":
                    keys = _placeholders(button.get("url"), True)
                    if keys:
                        result.append(
                            {
                                "component": "button",
                                "button_index": index,
                                "key": keys[0],
                                "kind": "url",
                                "sample": _button_sample(button, keys[0]),
                            }
                        )
                elif btype == "COPY_CODE":
                    result.append(
                        {
                            "component": "button",
                            "button_index": index,
                            "key": "coupon_code",
                            "kind": "copy_code",
                            "sample": _button_sample(button, None),
                        }
                    )
    return result


def _component(components, ctype):
    for component in components or []:
        if (
            isinstance(component, dict)
            and (component.get("type") or "").upper() == ctype
        ):
            return component
    return {}


def _substitute(text, values):
    """Replace the placeholders of a text; unknown ones stay visible."""
    return PLACEHOLDER.sub(
        lambda match: values.get(match.group(1), match.group(0)), text or ""
    )


class WhatsAppTemplate(models.Model):
    _name = "whatsapp.template"
    _inherit = ["whatsapp.tenant.mixin"]
    _description = "WhatsApp Message Template"
    _order = "account_id, name, language, id"
    _check_company_auto = True

    name = fields.Char(
        required=True, readonly=True, help="The template name at Meta (snake_case)."
    )
    label = fields.Char(
        string="Friendly Name", help="A friendlier name shown to the users."
    )
    account_id = fields.Many2one(
        "whatsapp.account",
        required=True,
        ondelete="cascade",
        index=True,
        check_company=True,
    )
    company_id = fields.Many2one(
        "res.company",
        related="account_id.company_id",
        store=True,
        index=True,
        precompute=True,
    )
    template_uid = fields.Char(
        string="Meta Template ID", readonly=True, copy=False, index=True
    )
    language = fields.Char(
        required=True, readonly=True, help="Language code at Meta, e.g. es or en_US."
    )
    category = fields.Selection(CATEGORIES, readonly=True)
    status = fields.Selection(
        TEMPLATE_STATUSES,
        default="PENDING",
        required=True,
        readonly=True,
        index=True,
        help="Only approved templates can be sent.",
    )
    parameter_format = fields.Selection(
        [("POSITIONAL", "Positional ({{1}})"), ("NAMED", "Named ({{first_name}})")],
        default="POSITIONAL",
        required=True,
        readonly=True,
    )
    components = fields.Json(readonly=True, copy=False)
    components_text = fields.Text(
        string="Components (JSON)", compute="_compute_components_text"
    )
    header_format = fields.Selection(
        [
            ("TEXT", "Text"),
            ("IMAGE", "Image"),
            ("VIDEO", "Video"),
            ("DOCUMENT", "Document"),
            ("LOCATION", "Location"),
        ],
        compute="_compute_texts",
        store=True,
    )
    header_text = fields.Char(compute="_compute_texts", store=True)
    body_text = fields.Text(compute="_compute_texts", store=True)
    footer_text = fields.Char(compute="_compute_texts", store=True)
    variable_count = fields.Integer(
        string="Variables", compute="_compute_texts", store=True
    )
    quality_score = fields.Selection(QUALITY_SCORES, readonly=True)
    # Meta's time of the last webhook applied to each value: an older update,
    # delivered late, never overrides a newer one.
    status_date = fields.Datetime(readonly=True, copy=False)
    quality_date = fields.Datetime(readonly=True, copy=False)
    category_date = fields.Datetime(readonly=True, copy=False)
    rejected_reason = fields.Char(string="Rejection Reason", readonly=True)
    active = fields.Boolean(default=True)
    model_id = fields.Many2one(
        "ir.model",
        string="Applies To",
        required=True,
        ondelete="cascade",
        default=lambda self: self.env["ir.model"]._get_id("crm.lead"),
        domain=[("transient", "=", False)],
        help="The document model whose fields fill the variables.",
    )
    model = fields.Char(related="model_id.model", store=True, precompute=True)
    variable_ids = fields.One2many(
        "whatsapp.template.variable", "template_id", string="Variables Mapping"
    )
    preview = fields.Html(compute="_compute_preview")

    # Odoo 18 and 19 declare table constraints differently (tools/compat.py).
    locals().update(
        compat.sql_constraints(
            (
                "template_uid_unique",
                "UNIQUE(account_id, template_uid)",
                "A Meta template is stored once per account.",
            ),
            (
                "name_language_unique",
                "UNIQUE(account_id, name, language)",
                "A template name and language pair is stored once per account.",
            ),
        )
    )

    # ------------------------------------------------------------------ compute

    @api.depends("name", "label", "language")
    def _compute_display_name(self):
        for template in self:
            template.display_name = (
                f"{template.label or template.name} ({template.language})"
                if template.language
                else template.label or template.name
            )

    @api.depends("components")
    def _compute_components_text(self):
        for template in self:
            template.components_text = (
                json.dumps(template.components, indent=2, ensure_ascii=False)
                if template.components
                else False
            )

    @api.depends("components", "parameter_format")
    def _compute_texts(self):
        for template in self:
            components = template.components or []
            header = _component(components, "HEADER")
            header_format = (header.get("format") or "TEXT").upper()
            # A format Meta adds later must not break the sync.
            template.header_format = (
                header_format if header and header_format in HEADER_FORMATS else False
            )
            template.header_text = header.get("text") or False
            template.body_text = _component(components, "BODY").get("text") or False
            template.footer_text = _component(components, "FOOTER").get("text") or False
            template.variable_count = len(template._expected_variables())

    @api.depends(
        "components",
        "parameter_format",
        "variable_ids.source",
        "variable_ids.field_path",
        "variable_ids.fixed_text",
        "variable_ids.sample",
    )
    def _compute_preview(self):
        for template in self:
            template.preview = template._preview_html(template._preview_values())

    def _preview_values(self):
        """What the preview shows for each variable: text, sample or mapping."""
        self.ensure_one()
        mapping = self._variable_map()
        values = {}
        for var in self._expected_variables():
            variable = mapping.get(_var_id(var))
            if variable and variable.source == "text" and variable.fixed_text:
                value = variable.fixed_text
            elif variable and variable.source == "field" and variable.field_path:
                value = f"[{variable.field_path}]"
            else:
                value = (variable.sample if variable else "") or var["sample"]
            values[_var_id(var)] = value or _braces(var["key"])
        return values

    def _preview_html(self, values):
        """The message as a bubble; every piece of text is escaped."""
        self.ensure_one()
        components = self.components or []

        def render(text, component):
            parts = []
            last = 0
            for match in PLACEHOLDER.finditer(text or ""):
                parts.append(escape(text[last : match.start()]))
                value = values.get((component, 0, match.group(1)), match.group(0))
                parts.append(
                    Markup('<span class="text-primary fw-bold">%s</span>') % value
                )
                last = match.end()
            parts.append(escape((text or "")[last:]))
            return Markup("").join(parts).replace("\n", Markup("<br/>"))

        html = Markup("")
        header = _component(components, "HEADER")
        if header:
            header_format = (header.get("format") or "TEXT").upper()
            if header_format == "TEXT":
                html += Markup("<p><strong>%s</strong></p>") % render(
                    header.get("text"), "header"
                )
            else:
                html += Markup('<p class="text-muted"><i>[%s]</i></p>') % (
                    header_format.lower()
                )
        body = _component(components, "BODY")
        if body:
            html += Markup("<p>%s</p>") % render(body.get("text"), "body")
        footer = _component(components, "FOOTER")
        if footer:
            html += Markup('<p class="text-muted small">%s</p>') % footer.get(
                "text", ""
            )
        buttons = _component(components, "BUTTONS").get("buttons") or []
        if buttons:
            items = Markup("").join(
                Markup("<li>%s</li>") % (button.get("text") or button.get("type") or "")
                for button in buttons
                if isinstance(button, dict)
            )
            html += Markup('<ul class="list-unstyled mb-0">%s</ul>') % items
        return Markup('<div class="o_whatsapp_template_preview">%s</div>') % html

    # ------------------------------------------------------------------ crud

    @api.model_create_multi
    def create(self, vals_list):
        templates = super().create(vals_list)
        templates._sync_variables()
        return templates

    def write(self, vals):
        res = super().write(vals)
        if "components" in vals or "parameter_format" in vals:
            self._sync_variables()
        return res

    @api.constrains("model_id")
    def _check_variable_paths(self):
        self.variable_ids._check_field_path()

    # ------------------------------------------------------------------ variables

    def _expected_variables(self):
        self.ensure_one()
        return parse_variables(self.components, self.parameter_format)

    def _variable_map(self):
        self.ensure_one()
        return {variable._identity(): variable for variable in self.variable_ids}

    def _sync_variables(self):
        """One variable record per placeholder; existing mappings are kept."""
        commands_by_template = {}
        for template in self:
            mapping = template._variable_map()
            expected = template._expected_variables()
            keep = set()
            to_create = []
            for sequence, var in enumerate(expected):
                variable = mapping.get(_var_id(var))
                if variable:
                    keep.add(variable.id)
                    updates = {}
                    if var["sample"] and variable.sample != var["sample"]:
                        updates["sample"] = var["sample"]
                    if variable.sequence != sequence:
                        updates["sequence"] = sequence
                    if updates:
                        variable.write(updates)
                else:
                    to_create.append(
                        {
                            "template_id": template.id,
                            "component": var["component"],
                            "button_index": var["button_index"],
                            "key": var["key"],
                            "sequence": sequence,
                            "sample": var["sample"] or False,
                        }
                    )
            obsolete = template.variable_ids.filtered(
                lambda v, keep=keep: v.id not in keep
            )
            commands_by_template[template] = (obsolete, to_create)
        for obsolete, to_create in commands_by_template.values():
            obsolete.unlink()
            if to_create:
                self.env["whatsapp.template.variable"].create(to_create)

    # ------------------------------------------------------------------ params

    def _normalize_params(self, params):
        """The params JSON in its canonical form (see the module docstring)."""
        params = params or {}
        result = {}
        for component in ("header", "body"):
            values = params.get(component) or {}
            if isinstance(values, (list, tuple)):
                # Positional lists: the first value fills {{1}}.
                values = {str(i): v for i, v in enumerate(values, start=1)}
            result[component] = {
                str(k): "" if v is None or v is False else str(v)
                for k, v in values.items()
            }
        buttons = params.get("buttons") or {}
        if isinstance(buttons, (list, tuple)):
            buttons = dict(enumerate(buttons))
        result["buttons"] = {
            str(k): "" if v is None or v is False else str(v)
            for k, v in buttons.items()
        }
        return result

    @staticmethod
    def _param_value(params, var):
        if var["component"] == "button":
            return params["buttons"].get(str(var["button_index"]))
        return params[var["component"]].get(var["key"])

    def _check_params(self, params):
        """Refuse what Meta would refuse (132000, 131009) before anything is queued."""
        self.ensure_one()
        params = self._normalize_params(params)
        expected = self._expected_variables()
        labels = dict(
            self.env["whatsapp.template.variable"]
            ._fields["component"]
            ._description_selection(self.env)
        )
        errors = []
        for var in expected:
            if var["kind"] == "location":
                raise UserError(
                    self.env._(
                        "Template %(template)s has a location header, which cannot "
                        "be sent from Odoo.",
                        template=self.display_name,
                    )
                )
        for component in ("header", "body"):
            wanted = [v["key"] for v in expected if v["component"] == component]
            given = list(params[component])
            if len(given) != len(wanted) or set(given) != set(wanted):
                errors.append(
                    self.env._(
                        "%(component)s: %(expected)s value(s) expected (%(keys)s), "
                        "%(given)s given.",
                        component=labels[component],
                        expected=len(wanted),
                        keys=", ".join(_braces(key) for key in wanted) or "-",
                        given=len(given),
                    )
                )
        wanted_buttons = {
            str(v["button_index"]) for v in expected if v["component"] == "button"
        }
        if set(params["buttons"]) != wanted_buttons:
            errors.append(
                self.env._(
                    "Buttons: %(expected)s value(s) expected, %(given)s given.",
                    expected=len(wanted_buttons),
                    given=len(params["buttons"]),
                )
            )
        if not errors:
            for var in expected:
                value = self._param_value(params, var)
                name = _var_label(var, labels)
                if not value or not value.strip():
                    errors.append(self.env._("%s: the value is empty.", name))
                elif var["kind"] in MEDIA_HEADER_KINDS:
                    if not value.startswith(("https://", "http://")):
                        errors.append(
                            self.env._(
                                "%s: the media header needs a public http(s) link.",
                                name,
                            )
                        )
                elif FORBIDDEN_PARAM_TEXT.search(value):
                    errors.append(
                        self.env._(
                            "%s: new lines, tabs and more than 4 spaces in a row are "
                            "not allowed by WhatsApp.",
                            name,
                        )
                    )
        if errors:
            raise UserError(
                self.env._(
                    "The values do not fit template %(template)s:\n%(errors)s",
                    template=self.display_name,
                    errors="\n".join(errors),
                )
            )
        return True

    def _params_error(self, params):
        """The reason _check_params would give, or False (for batch sends)."""
        try:
            self._check_params(params)
        except UserError as error:
            return error.args[0] if error.args else str(error)
        return False

    def _get_send_components(self, params):
        """The ``components`` of a template send, as the payload builder wants them.

        Never raises (it runs in the send queue): a missing value is sent empty and
        Meta's refusal fails that one message.
        """
        self.ensure_one()
        params = self._normalize_params(params)
        named = self.parameter_format == "NAMED"
        by_component = {"header": [], "body": []}
        buttons = []
        for var in self._expected_variables():
            value = self._param_value(params, var) or ""
            if var["component"] == "button":
                if var["kind"] == "copy_code":
                    parameter = {"type": "coupon_code", "coupon_code": value}
                else:
                    parameter = {"type": "text", "text": value}
                buttons.append(
                    {
                        "type": "button",
                        "sub_type": var["kind"],
                        "index": str(var["button_index"]),
                        "parameters": [parameter],
                    }
                )
                continue
            if var["kind"] in MEDIA_HEADER_KINDS:
                parameter = {"type": var["kind"], var["kind"]: {"link": value}}
            elif var["kind"] == "location":
                continue  # refused by _check_params before queueing
            else:
                parameter = {"type": "text", "text": value}
                if named:
                    parameter["parameter_name"] = var["key"]
            by_component[var["component"]].append(parameter)
        components = [
            {"type": ctype, "parameters": parameters}
            for ctype, parameters in by_component.items()
            if parameters
        ]
        buttons.sort(key=lambda button: int(button["index"]))
        return components + buttons

    def _render_text(self, params):
        """Header and body as the customer reads them (for the log and chatter)."""
        self.ensure_one()
        params = self._normalize_params(params)
        components = self.components or []
        lines = []
        header = _component(components, "HEADER")
        if header and (header.get("format") or "TEXT").upper() == "TEXT":
            lines.append(_substitute(header.get("text"), params["header"]))
        body = _component(components, "BODY")
        if body:
            lines.append(_substitute(body.get("text"), params["body"]))
        return "\n".join(line for line in lines if line)

    def _params_for_record(self, record):
        """Values of the mapped variables for one document, as display strings."""
        self.ensure_one()
        params = {"header": {}, "body": {}, "buttons": {}}
        mapping = self._variable_map()
        lang = self._render_lang()
        for var in self._expected_variables():
            variable = mapping.get(_var_id(var))
            value = variable._value_for_record(record, lang) if variable else ""
            if var["component"] == "button":
                params["buttons"][str(var["button_index"])] = value
            else:
                params[var["component"]][var["key"]] = value
        return params

    def _render_lang(self):
        """The installed language closest to the template's (dates, selections)."""
        self.ensure_one()
        code = (self.language or "").replace("-", "_")
        installed = [lang for lang, _name in self.env["res.lang"].get_installed()]
        if code in installed:
            return code
        prefix = code.split("_")[0]
        return next(
            (lang for lang in installed if lang.split("_")[0] == prefix),
            self.env.lang,
        )

    # ------------------------------------------------------------------ sync

    @api.model
    def _values_from_meta(self, data):
        quality = data.get("quality_score")
        if isinstance(quality, dict):
            quality = quality.get("score")
        quality = (quality or "").upper()
        status = (data.get("status") or "").upper()
        category = (data.get("category") or "").upper()
        rejected = data.get("rejected_reason")
        return {
            "template_uid": str(data["id"]),
            "name": data.get("name") or str(data["id"]),
            "language": data.get("language") or "",
            "status": status if status in dict(TEMPLATE_STATUSES) else "UNKNOWN",
            "category": category if category in dict(CATEGORIES) else False,
            "parameter_format": (
                "NAMED"
                if (data.get("parameter_format") or "").upper() == "NAMED"
                else "POSITIONAL"
            ),
            "components": data.get("components") or [],
            "quality_score": quality if quality in dict(QUALITY_SCORES) else False,
            "rejected_reason": rejected if rejected and rejected != "NONE" else False,
        }

    @api.model
    def _sync_from_meta(self, accounts):
        """Mirror the templates of each account; return a notification action."""
        created = updated = archived = 0
        failures = []
        Template = self.sudo().with_context(active_test=False)
        for account in accounts:
            try:
                with account._get_client() as client:
                    remote = client.list_templates()
            except WhatsAppError as error:
                account._handle_api_error(error)
                failures.append(
                    self.env._(
                        "%(account)s: %(error)s",
                        account=account.display_name,
                        error=error_summary(error),
                    )
                )
                continue
            existing = Template.search([("account_id", "=", account.id)])
            by_uid = {t.template_uid: t for t in existing if t.template_uid}
            by_name = {(t.name, t.language): t for t in existing}
            seen = Template.browse()
            to_create = []
            for data in remote:
                if not isinstance(data, dict) or not data.get("id"):
                    continue
                vals = self._values_from_meta(data)
                template = by_uid.get(vals["template_uid"]) or by_name.get(
                    (vals["name"], vals["language"])
                )
                if template:
                    seen |= template
                    # 'active' is left alone: a manager may hide a live template.
                    changes = template._changed_values(vals)
                    if changes:
                        template.write(changes)
                        updated += 1
                else:
                    to_create.append(dict(vals, account_id=account.id))
            if to_create:
                seen |= Template.create(to_create)
                created += len(to_create)
            gone = (existing - seen).filtered("active")
            if gone:
                gone.write({"active": False})
                archived += len(gone)
            account._mark_success()
            _logger.info(
                "WhatsApp account %s: %d template(s) from Meta, %d created, "
                "%d archived",
                account.id,
                len(remote),
                len(to_create),
                len(gone),
            )
        message = self.env._(
            "Templates synchronised: %(created)s created, %(updated)s updated, "
            "%(archived)s archived.",
            created=created,
            updated=updated,
            archived=archived,
        )
        if failures:
            message = "\n".join([message, *failures])
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._("WhatsApp Templates"),
                "message": message,
                "type": "danger" if failures else "success",
                "sticky": bool(failures),
                "next": {"type": "ir.actions.client", "tag": "soft_reload"},
            },
        }

    def _changed_values(self, vals):
        self.ensure_one()
        return {key: value for key, value in vals.items() if self[key] != value}

    @api.model
    def action_sync_all(self):
        """Sync the accounts of the companies the user works in (list button)."""
        accounts = self.env["whatsapp.account"].search(
            [("company_id", "in", self.env.companies.ids)]
        )
        accounts.check_access("write")
        accounts = accounts.filtered("access_token_set")
        if not accounts:
            raise UserError(
                self.env._("No WhatsApp account with an access token to synchronise.")
            )
        return self._sync_from_meta(accounts)

    # ------------------------------------------------------------------ webhooks

    @api.model
    def _find_for_webhook(self, account, item):
        """The template a webhook names, by Meta id, else by name and language."""
        Template = self.with_context(active_test=False)
        template = Template.browse()
        if item.template_id:
            template = Template.search(
                [
                    ("account_id", "=", account.id),
                    ("template_uid", "=", item.template_id),
                ],
                limit=1,
            )
        if not template and item.name and item.language:
            template = Template.search(
                [
                    ("account_id", "=", account.id),
                    ("name", "=", item.name),
                    ("language", "=", item.language),
                ],
                limit=1,
            )
        return template

    @api.model
    def _apply_webhook_event(self, account, item):
        """Apply a template status / quality / category webhook; False if unknown."""
        template = self._find_for_webhook(account, item)
        if not template:
            _logger.info(
                "WhatsApp account %s: event for an unknown template", account.id
            )
            return False
        vals = {}
        when = item.timestamp.replace(tzinfo=None) if item.timestamp else None

        def is_newest(date_field):
            # Equal times keep the arrival order; an update without one applies.
            if not when:
                return True
            if template[date_field] and when < template[date_field]:
                return False
            vals[date_field] = when
            return True

        if isinstance(item, wa_events.TemplateStatusUpdate):
            event = (item.event or "").upper()
            status = EVENT_TO_STATUS.get(event, event)
            if status in dict(TEMPLATE_STATUSES) and is_newest("status_date"):
                vals["status"] = status
                if status == "REJECTED":
                    reason = item.reason or (item.rejection_info or {}).get("reason")
                    vals["rejected_reason"] = (
                        reason if reason and reason != "NONE" else False
                    )
                elif template.rejected_reason:
                    vals["rejected_reason"] = False
            category = (item.category or "").upper()
            if category in dict(CATEGORIES) and is_newest("category_date"):
                vals["category"] = category
        elif isinstance(item, wa_events.TemplateQualityUpdate):
            quality = (item.new_quality or "").upper()
            if quality in dict(QUALITY_SCORES) and is_newest("quality_date"):
                vals["quality_score"] = quality
        elif isinstance(item, wa_events.TemplateCategoryUpdate):
            category = (item.new_category or item.correct_category or "").upper()
            if category in dict(CATEGORIES) and is_newest("category_date"):
                vals["category"] = category
        if template.template_uid != item.template_id and item.template_id:
            vals["template_uid"] = item.template_id
        vals = template._changed_values(vals)
        if vals:
            template.write(vals)
        _logger.info(
            "WhatsApp template %s: %s applied (%s)",
            template.id,
            type(item).__name__,
            ", ".join(sorted(vals)) or "no change",
        )
        return True


def _var_id(var):
    return (var["component"], var["button_index"], var["key"])


def _braces(key):
    return "{{" + key + "}}"


def _var_label(var, labels):
    if var["component"] == "button":
        return f"{labels['button']} {var['button_index'] + 1}"
    return f"{labels[var['component']]} {_braces(var['key'])}"


class WhatsAppTemplateVariable(models.Model):
    _name = "whatsapp.template.variable"
    _inherit = ["whatsapp.tenant.mixin"]
    _description = "WhatsApp Template Variable"
    _order = "template_id, sequence, id"

    template_id = fields.Many2one(
        "whatsapp.template", required=True, ondelete="cascade", index=True
    )
    model = fields.Char(related="template_id.model")
    component = fields.Selection(
        [("header", "Header"), ("body", "Body"), ("button", "Button")],
        required=True,
        readonly=True,
    )
    button_index = fields.Integer(readonly=True)
    key = fields.Char(
        string="Placeholder",
        required=True,
        readonly=True,
        help="1, 2... for positional templates, the name for named ones.",
    )
    sequence = fields.Integer(default=10)
    source = fields.Selection(
        [("field", "Document Field"), ("text", "Fixed Text")],
        default="field",
        required=True,
    )
    field_path = fields.Char(
        string="Field",
        help="Path from the document, e.g. partner_id.name (many2one fields can be "
        "followed).",
    )
    fixed_text = fields.Char()
    sample = fields.Char(readonly=True, help="Meta's example value.")
    label = fields.Char(compute="_compute_label")

    # Odoo 18 and 19 declare table constraints differently (tools/compat.py).
    locals().update(
        compat.sql_constraints(
            (
                "placeholder_unique",
                "UNIQUE(template_id, component, button_index, key)",
                "A placeholder is mapped once per template.",
            ),
        )
    )

    @api.depends("component", "button_index", "key")
    def _compute_label(self):
        labels = dict(self._fields["component"]._description_selection(self.env))
        for variable in self:
            if not variable.component:
                variable.label = False
                continue
            variable.label = _var_label(
                {
                    "component": variable.component,
                    "button_index": variable.button_index,
                    "key": variable.key,
                },
                labels,
            )

    def _identity(self):
        self.ensure_one()
        index = self.button_index if self.component == "button" else 0
        return (self.component, index, self.key)

    @api.constrains("source", "field_path", "template_id")
    def _check_field_path(self):
        for variable in self.filtered(lambda v: v.source == "field" and v.field_path):
            model_name = variable.template_id.model
            if not model_name or model_name not in self.env:
                continue
            variable._resolve_path(self.env[model_name], variable.field_path)

    def _resolve_path(self, model, path):
        """The fields of a path; each step but the last must be a many2one."""
        parts = [part.strip() for part in (path or "").split(".")]
        chain = []
        for position, part in enumerate(parts):
            field = model._fields.get(part)
            if not field:
                raise ValidationError(
                    self.env._(
                        "%(path)s: %(model)s has no field %(field)s.",
                        path=path,
                        model=model._description,
                        field=part or "''",
                    )
                )
            if (
                field.groups
                and not self.env.su
                and not self.env.user.has_groups(field.groups)
            ):
                raise ValidationError(
                    self.env._(
                        "%(path)s: you may not read %(field)s.", path=path, field=part
                    )
                )
            last = position == len(parts) - 1
            if not last:
                if field.type != "many2one":
                    raise ValidationError(
                        self.env._(
                            "%(path)s: only many2one fields can be followed, and "
                            "%(field)s is not one.",
                            path=path,
                            field=part,
                        )
                    )
                model = self.env[field.comodel_name]
            elif field.type in UNMAPPABLE_FIELD_TYPES:
                raise ValidationError(
                    self.env._(
                        "%(path)s: %(field)s cannot be shown in a message.",
                        path=path,
                        field=part,
                    )
                )
            chain.append(field)
        return chain

    def _value_for_record(self, record, lang=None):
        """The display string of this variable for a document ('' when unset)."""
        self.ensure_one()
        if self.source == "text":
            return _normalize_space(self.fixed_text or "")
        if not self.field_path or not record or record._name != self.template_id.model:
            return ""
        record = record.with_context(lang=lang) if lang else record
        *steps, last = [part.strip() for part in self.field_path.split(".")]
        for step in steps:
            if step not in record._fields:
                return ""
            record = record[step][:1]
            if not record:
                return ""
        if last not in record._fields:
            return ""
        return _normalize_space(_format_value(record, record._fields[last]))


def _normalize_space(value):
    # Whitespace runs (new lines included) become one space: Meta's 131009 rule.
    return " ".join(str(value or "").split())


def _format_value(record, field):
    env = record.env
    value = record[field.name]
    if not value:
        return ""
    if field.type == "many2one":
        return value.display_name or ""
    if field.type in ("one2many", "many2many"):
        return ", ".join(name for name in value.mapped("display_name") if name)
    if field.type == "selection":
        return dict(field._description_selection(env)).get(value, value)
    if field.type == "boolean":
        return env._("Yes")
    if field.type == "date":
        return format_date(env, value)
    if field.type == "datetime":
        return format_datetime(env, value)
    if field.type == "monetary":
        currency_field = field.get_currency_field(record)
        currency = record[currency_field] if currency_field else None
        return formatLang(env, value, currency_obj=currency or None)
    if field.type == "float":
        return formatLang(env, value)
    if field.type == "html":
        return html2plaintext(value)
    return str(value)
