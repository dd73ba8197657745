import logging

from psycopg2 import IntegrityError

from odoo import api, fields, models
from odoo.tools import mute_logger

from ..tools import compat
from ..wa_cloud import events as wa_events
from ..wa_cloud.errors import error_from_payload
from ..wa_cloud.phone import canonical_e164, e164_variants
from .whatsapp_webhook_event import secrets_match

_logger = logging.getLogger(__name__)

# Meta's inbound types that have a type of their own in the message log; any other
# (unsupported, request_welcome, edit...) is logged as "unsupported".
INBOUND_TYPES = wa_events.MEDIA_TYPES | {
    "text",
    "location",
    "contacts",
    "interactive",
    "button",
    "reaction",
    "order",
    "system",
}


class WhatsAppWebhookProcessor(models.AbstractModel):
    """Turns parsed webhook items into records; each call runs in a savepoint."""

    _name = "whatsapp.webhook.processor"
    _description = "WhatsApp Webhook Processor"

    # ------------------------------------------------------------------ routing

    @api.model
    def _route(self, url_account, item, routes):
        """The account an item belongs to, among those sharing the URL's app secret.

        Meta signs with one secret per app; a number of another app must never be
        written to, even if it is ours, because this call was not signed by it.
        """
        key = (item.phone_number_id, item.waba_id)
        if key in routes:
            return routes[key]
        accounts = self.env["whatsapp.account"].sudo()
        if item.phone_number_id:
            candidates = accounts.search(
                [("phone_number_id", "=", item.phone_number_id)]
            )
        elif item.waba_id:
            candidates = accounts.search([("waba_id", "=", item.waba_id)])
            display = getattr(item, "display_phone_number", None)
            if display and len(candidates) > 1:
                digits = "".join(ch for ch in display if ch.isdigit())
                candidates = (
                    candidates.filtered(
                        lambda a: (
                            "".join(
                                ch
                                for ch in (a.display_phone_number or "")
                                if ch.isdigit()
                            )
                            == digits
                        )
                    )
                    or candidates
                )
        else:
            candidates = accounts
        if url_account in candidates:
            found = url_account
        else:
            url_secret = url_account._get_secret("app_secret")
            found = next(
                (
                    account
                    for account in candidates
                    if secrets_match(url_secret, account._get_secret("app_secret"))
                ),
                accounts,
            )
        routes[key] = found
        return found

    @api.model
    def _process_item(self, url_account, item, routes):
        account = self._route(url_account, item, routes)
        if not account:
            _logger.info(
                "WhatsApp webhook item %s for an unknown number ignored",
                type(item).__name__,
            )
            return False
        account._touch_last_webhook()
        handler = {
            wa_events.InboundMessage: self._handle_inbound,
            wa_events.StatusUpdate: self._handle_status,
            wa_events.TemplateStatusUpdate: self._handle_template_event,
            wa_events.TemplateQualityUpdate: self._handle_template_event,
            wa_events.TemplateCategoryUpdate: self._handle_template_event,
            wa_events.PhoneNumberQualityUpdate: self._handle_phone_quality,
            wa_events.AccountUpdate: self._handle_account_update,
            wa_events.UserPreferenceUpdate: self._handle_user_preference,
        }.get(type(item))
        if not handler:
            return False
        return handler(account, item)

    # ------------------------------------------------------------------ inbound

    @api.model
    def _handle_inbound(self, account, item):
        Message = self.env["whatsapp.message"].sudo()
        if not item.wamid:
            return False
        if Message.search_count(
            [("account_id", "=", account.id), ("wamid", "=", item.wamid)], limit=1
        ):
            return True  # already stored: a redelivery changes nothing
        partner = self._match_partner(account, item)
        phone = self._message_phone(partner, item)
        message_type = (
            item.message_type if item.message_type in INBOUND_TYPES else "unsupported"
        )
        media = item.media
        vals = {
            "account_id": account.id,
            "company_id": account.company_id.id,
            "direction": "inbound",
            "state": "received",
            "message_type": message_type,
            "wamid": item.wamid,
            "body": self._inbound_text(item),
            "phone": phone,
            "wa_user_id": item.from_user_id or False,
            "partner_id": partner.id,
            "received_date": _naive(item.timestamp) or fields.Datetime.now(),
            "reply_to_wamid": item.context_wamid or False,
            "author_id": False,
            "queued_date": False,
        }
        if media and media.id and message_type in wa_events.MEDIA_TYPES:
            vals.update(
                media_id=media.id,
                media_mime_type=media.mime_type or False,
                media_filename=media.filename or False,
                media_state="pending",
            )
        try:
            with self.env.cr.savepoint(), mute_logger("odoo.sql_db"):
                message = Message.create(vals)
        except IntegrityError:
            return True  # a concurrent delivery stored it first
        record = self._conversation_record(account, partner, item)
        record = self._apply_referral(account, message, partner, record, item)  # ads
        if record:
            message.write({"res_model": record._name, "res_id": record.id})
            message.mail_message_id = message._post_in_chatter(record, partner)
        if partner and record != partner:
            message.partner_mail_message_id = message._post_in_chatter(partner, partner)
        elif partner and not record:
            message.mail_message_id = message._post_in_chatter(partner, partner)
        self._apply_opt_out(account, message, item)
        if message.media_state == "pending":
            self.env.ref("whatsapp_business.ir_cron_whatsapp_media_download")._trigger()
        return True

    @api.model
    def _inbound_text(self, item):
        """A readable body for the log and the chatter, whatever the type."""
        if item.text:
            return item.text
        if item.location:
            parts = [
                item.location.get("name"),
                item.location.get("address"),
                f"{item.location.get('latitude')}, {item.location.get('longitude')}",
            ]
            return "\n".join(str(p) for p in parts if p)
        if item.reaction:
            return item.reaction.get("emoji") or ""
        if item.contacts:
            names = [
                (c.get("name") or {}).get("formatted_name", "")
                for c in item.contacts
                if isinstance(c, dict)
            ]
            return ", ".join(n for n in names if n)
        if item.order:
            count = len(item.order.get("product_items") or [])
            return self.env._("Order of %s item(s)", count)
        if item.message_type not in INBOUND_TYPES:
            return self.env._("Unsupported message type: %s", item.message_type)
        return False

    @api.model
    def _message_phone(self, partner, item):
        """The number as Odoo knows this contact, so that the window check matches."""
        if not item.from_wa_id:
            return False
        variants = e164_variants(item.from_wa_id)
        if partner.phone_sanitized in variants:
            return partner.phone_sanitized
        return canonical_e164(item.from_wa_id)

    @api.model
    def _match_partner(self, account, item):
        """Existing partner of the account's company (or shared), else a new one."""
        phone = canonical_e164(item.from_wa_id) if item.from_wa_id else False
        Partner = self.env["res.partner"].sudo().with_context(active_test=False)
        company_domain = [("company_id", "in", [account.company_id.id, False])]
        partner = Partner.browse()
        if item.from_user_id:
            partner = Partner.search(
                [("whatsapp_user_id", "=", item.from_user_id), *company_domain], limit=1
            )
        if not partner and phone:
            partner = Partner.search(
                [
                    ("phone_sanitized", "in", e164_variants(item.from_wa_id)),
                    *company_domain,
                ],
                order="company_id, id",
                limit=1,
            )
        if not partner:
            partner = Partner.with_context(active_test=True).create(
                {
                    "name": item.profile_name
                    or item.username
                    or phone
                    or item.from_user_id,
                    **compat.partner_phone_values(Partner, phone or False),
                    "company_id": account.company_id.id,
                    "whatsapp_user_id": item.from_user_id or False,
                }
            )
        elif item.from_user_id and partner.whatsapp_user_id != item.from_user_id:
            partner.whatsapp_user_id = item.from_user_id
        return partner

    @api.model
    def _conversation_record(self, account, partner, item):
        """The open lead a message belongs to; the partner when there is none."""
        Message = self.env["whatsapp.message"].sudo()
        Lead = self.env["crm.lead"].sudo()
        if item.context_wamid:
            replied = Message.search(
                [("account_id", "=", account.id), ("wamid", "=", item.context_wamid)],
                limit=1,
            )
            if replied.res_model and replied.res_id:
                record = (
                    self.env[replied.res_model].sudo().browse(replied.res_id).exists()
                )
                if record:
                    return record
        if not partner:
            return None
        lead = Lead.search(
            [
                ("partner_id", "=", partner.id),
                ("company_id", "in", [account.company_id.id, False]),
                ("active", "=", True),
                ("stage_id.is_won", "=", False),
            ],
            order="write_date desc, id desc",
            limit=1,
        )
        if not lead and account.create_lead:
            lead = self._create_lead(account, partner)
        return lead or partner

    @api.model
    def _create_lead(self, account, partner):
        source = self.env.ref(
            "whatsapp_business.utm_source_whatsapp", raise_if_not_found=False
        )
        return (
            self.env["crm.lead"]
            .sudo()
            .with_company(account.company_id)
            .create(
                {
                    "name": self.env._("WhatsApp: %s", partner.name),
                    "partner_id": partner.id,
                    "company_id": account.company_id.id,
                    "team_id": account.lead_team_id.id or False,
                    "user_id": account.lead_user_id.id or False,
                    "source_id": source.id if source else False,
                    "type": "lead"
                    if self.env.user.has_group("crm.group_use_lead")
                    else "opportunity",
                }
            )
        )

    @api.model
    def _apply_opt_out(self, account, message, item):
        if not message.phone:
            return
        button_payload = (item.button or {}).get("payload") or ""
        Blacklist = self.env["phone.blacklist"].sudo()
        if item.is_opt_out or wa_events.is_opt_out_text(button_payload):
            Blacklist._add(
                [message.phone],
                message=self.env._("Opted out by a WhatsApp message."),
            )
        elif account.unblacklist_on_inbound and Blacklist.search_count(
            [("number", "=", message.phone)], limit=1
        ):
            Blacklist._remove(
                [message.phone],
                message=self.env._("Opted back in by writing on WhatsApp."),
            )

    # ------------------------------------------------------------------ statuses

    @api.model
    def _handle_status(self, account, item):
        Message = self.env["whatsapp.message"].sudo()
        message = Message.browse()
        if item.wamid:
            message = Message.search(
                [("account_id", "=", account.id), ("wamid", "=", item.wamid)], limit=1
            )
        if not message and item.biz_opaque_callback_data:
            # The status may beat the send result: correlate by our own record id.
            message_id = _callback_message_id(item.biz_opaque_callback_data)
            if message_id:
                message = Message.search(
                    [
                        ("id", "=", message_id),
                        ("account_id", "=", account.id),
                        ("direction", "=", "outbound"),
                        ("wamid", "=", False),
                    ],
                    limit=1,
                )
                if message and item.wamid:
                    message.wamid = item.wamid
        if not message or message.direction != "outbound":
            return False
        # The unique row makes a repeated (wamid, status) a no-op, across batches too.
        self.env.cr.execute(
            """
            INSERT INTO whatsapp_message_status (message_id, status, status_date)
            VALUES (%s, %s, %s)
            ON CONFLICT (message_id, status) DO NOTHING
            RETURNING id
            """,
            (message.id, item.status or "", _naive(item.timestamp)),
        )
        if not self.env.cr.fetchone():
            return True
        values = {}
        if item.pricing_category:
            values["pricing_category"] = item.pricing_category
        if item.pricing_type:
            values["pricing_type"] = item.pricing_type
        if item.conversation_id:
            values["conversation_id"] = item.conversation_id
        if item.status == "failed":
            error = item.errors[0] if item.errors else None
            if error:
                values.update(message._failure_values(error_from_payload(error.raw)))
            else:
                values.update(failure_type="unknown")
        message._apply_status(item.status, _naive(item.timestamp), values)
        return True

    # ------------------------------------------------------------------ account events

    @api.model
    def _handle_template_event(self, account, item):
        return self.env["whatsapp.template"].sudo()._apply_webhook_event(account, item)

    @api.model
    def _handle_phone_quality(self, account, item):
        vals = {}
        if item.event:
            vals["quality_rating"] = {
                "FLAGGED": "RED",
                "UNFLAGGED": "GREEN",
            }.get(item.event, account.quality_rating)
        if item.messaging_limit:
            vals["messaging_tier"] = item.messaging_limit
        if vals:
            account.write(vals)
        account.message_post(
            body=self.env._("Meta reported a phone number event: %s", item.event or "?")
        )
        return True

    @api.model
    def _handle_account_update(self, account, item):
        account.message_post(
            body=self.env._("Meta reported an account event: %s", item.event or "?")
        )
        if item.blocks_account:
            reason = self.env._("Meta account event: %s", item.event)
            if account.state != "error":
                # One alert per incident: Meta's follow-up notices add none.
                account._schedule_alert(
                    self.env._("WhatsApp account needs attention"), reason
                )
            account.write({"state": "error", "last_error": reason})
        return True

    @api.model
    def _handle_user_preference(self, account, item):
        if not item.wa_id:
            return False
        number = canonical_e164(item.wa_id)
        Blacklist = self.env["phone.blacklist"].sudo()
        if (item.value or "").lower() == "stop":
            Blacklist._add(
                [number], message=self.env._("Opted out of marketing on WhatsApp.")
            )
        elif (item.value or "").lower() == "resume" and account.unblacklist_on_inbound:
            Blacklist._remove(
                [number], message=self.env._("Opted back in to marketing on WhatsApp.")
            )
        return True


def _naive(value):
    """Odoo stores naive UTC datetimes."""
    if not value:
        return False
    return value.replace(tzinfo=None) if value.tzinfo else value


def _callback_message_id(data):
    prefix = "whatsapp.message:"
    if isinstance(data, str) and data.startswith(prefix):
        try:
            return int(data[len(prefix) :])
        except ValueError:
            return None
    return None
