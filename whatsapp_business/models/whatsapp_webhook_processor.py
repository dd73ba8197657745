import functools
import logging
from collections import defaultdict

import psycopg2
from psycopg2 import IntegrityError

from odoo import api, fields, models
from odoo.tools import mute_logger

from ..tools import compat
from ..wa_cloud import delivery
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

    # ------------------------------------------------------------------ batches

    @api.model
    def _outcome(self, errors=None):
        return {"handled": 0, "ignored": 0, "errors": list(errors or []), "hold": None}

    @api.model
    def _process_events(self, prepared):
        """Apply parsed events: ``prepared`` is a list of (event, items or error).

        Returns {event id: outcome}. Statuses of the whole batch are applied
        together (a constant number of queries); the other items one by one in
        arrival order, each in a savepoint so that one bad item never hides the
        others. An event routed to an archived or disabled account is put on hold
        before anything of it is applied.
        """
        routes = {}
        outcomes = {}
        statuses, others = [], []
        accounts = self.env["whatsapp.account"].sudo()
        for event, parsed in prepared:
            outcome = outcomes[event.id] = self._outcome()
            if not isinstance(parsed, list):
                continue  # an unreadable body: the caller records why
            routed = []
            for item in parsed:
                if isinstance(item, wa_events.ParseFailure):
                    outcome["errors"].append(
                        f"{item.field or '?'}: could not be read ({item.error})"
                    )
                    continue
                account = self._route(event.account_id, item, routes)
                if not account:
                    _logger.info(
                        "WhatsApp webhook item %s for an unknown number ignored",
                        type(item).__name__,
                    )
                    outcome["ignored"] += 1
                    continue
                outcome["hold"] = self._hold_reason(account)
                if outcome["hold"]:
                    break
                routed.append((account, item))
            if outcome["hold"]:
                continue
            for account, item in routed:
                accounts |= account
                work = statuses if isinstance(item, wa_events.StatusUpdate) else others
                work.append((event.id, account, item))
        if statuses:
            applied = self._apply_statuses([(acc, item) for _e, acc, item in statuses])
            for (event_id, _account, _item), handled in zip(
                statuses, applied, strict=True
            ):
                outcomes[event_id]["handled" if handled else "ignored"] += 1
        if others:
            self._apply_items(others, outcomes)
        accounts._touch_last_webhook()
        return outcomes

    @api.model
    def _apply_items(self, work, outcomes):
        handlers = {
            wa_events.InboundMessage: self._handle_inbound,
            wa_events.TemplateStatusUpdate: self._handle_template_event,
            wa_events.TemplateQualityUpdate: self._handle_template_event,
            wa_events.TemplateCategoryUpdate: self._handle_template_event,
            wa_events.PhoneNumberQualityUpdate: self._handle_phone_quality,
            wa_events.AccountUpdate: self._handle_account_update,
            wa_events.UserPreferenceUpdate: self._handle_user_preference,
        }
        # Inbound messages already stored, for the whole batch in one query.
        stored = self._stored_wamids(
            {
                (account.id, item.wamid)
                for _event, account, item in work
                if isinstance(item, wa_events.InboundMessage) and item.wamid
            }
        )
        # The senders' contacts, found or created for the whole batch at once.
        partners = self._match_partners(
            [
                (account, item)
                for _event, account, item in work
                if isinstance(item, wa_events.InboundMessage)
                and item.wamid
                and (account.id, item.wamid) not in stored
            ]
        )
        # Inbound messages stored by this batch, copied into the conversations
        # once every item is applied (one lookup and one push per conversation).
        posted = []
        # A redelivered message whose copy failed earlier (a retried event) is
        # copied now: nothing else would ever post it in its conversation.
        uncopied = self._stored_without_copy(stored)
        for event_id, account, item in work:
            outcome = outcomes[event_id]
            handler = handlers.get(type(item))
            if not handler:
                outcome["ignored"] += 1
                continue
            if isinstance(item, wa_events.InboundMessage) and item.wamid:
                if (account.id, item.wamid) in stored:
                    outcome["handled"] += 1  # a redelivery changes nothing
                    message = uncopied.pop((account.id, item.wamid), None)
                    if message:
                        posted.append((event_id, message))
                    continue
                # Two bodies of one sender are never in two workers (ordering
                # keys), and the batch remembers what it stored (below).
                handler = functools.partial(
                    self._handle_inbound,
                    known_new=True,
                    mirror=posted,
                    event_id=event_id,
                    **(
                        {"partner": partners[_sender_key(account, item)]}
                        if _sender_key(account, item) in partners
                        else {}
                    ),
                )
            try:
                with self.env.cr.savepoint():
                    handled = handler(account, item)
            except psycopg2.errors.TransactionRollbackError:
                raise  # a concurrency conflict, not a bad item: retry the event
            except Exception as exc:  # noqa: BLE001 - any item error is kept
                _logger.exception(
                    "WhatsApp webhook event %s: an item (%s) failed",
                    event_id,
                    type(item).__name__,
                )
                outcome["errors"].append(f"{type(item).__name__}: {exc}")
                continue
            if isinstance(item, wa_events.InboundMessage) and item.wamid:
                stored.add((account.id, item.wamid))
            outcome["handled" if handled else "ignored"] += 1
        if posted:
            self._mirror_posted(posted, outcomes)

    @api.model
    def _mirror_posted(self, posted, outcomes):
        """Copy the batch's inbound messages into their conversations, in arrival
        order; if the batch fails, message by message so that one bad message
        never hides the others (its event fails and says why)."""
        messages = self.env["whatsapp.message"].browse([m.id for _e, m in posted])
        try:
            with self.env.cr.savepoint():
                messages._mirror_in_conversations()
            return
        except psycopg2.errors.TransactionRollbackError:
            raise
        except Exception:  # noqa: BLE001 - retried one by one below
            _logger.info("WhatsApp inbox: batch copy failed, copying one by one")
        for event_id, message in posted:
            try:
                with self.env.cr.savepoint():
                    message._mirror_in_conversations()
            except psycopg2.errors.TransactionRollbackError:
                raise
            except Exception as exc:  # noqa: BLE001 - any item error is kept
                _logger.exception(
                    "WhatsApp webhook event %s: the conversation copy failed",
                    event_id,
                )
                outcomes[event_id]["errors"].append(f"InboundMessage: {exc}")

    @api.model
    def _stored_without_copy(self, stored):
        """{(account id, wamid): whatsapp.message} of the stored inbound messages
        of ``stored`` that belong in a conversation and have no copy there."""
        if not stored:
            return {}
        messages = (
            self.env["whatsapp.message"]
            .sudo()
            .search(
                [
                    ("account_id", "in", list({key[0] for key in stored})),
                    ("wamid", "in", list({key[1] for key in stored})),
                    ("direction", "=", "inbound"),
                    ("partner_id", "!=", False),
                    ("channel_message_id", "=", False),
                    ("message_type", "!=", "reaction"),
                ]
            )
        )
        return {
            (message.account_id.id, message.wamid): message
            for message in messages
            if (message.account_id.id, message.wamid) in stored
        }

    @api.model
    def _stored_wamids(self, keys):
        if not keys:
            return set()
        self.env["whatsapp.message"].flush_model(["account_id", "wamid"])
        self.env.cr.execute(
            """
            SELECT m.account_id, m.wamid FROM whatsapp_message m
            JOIN unnest(%s::int[], %s::varchar[]) AS k(account_id, wamid)
              ON m.account_id = k.account_id AND m.wamid = k.wamid
            """,
            ([key[0] for key in keys], [key[1] for key in keys]),
        )
        return set(self.env.cr.fetchall())

    @api.model
    def _hold_reason(self, account):
        """Why events of this account wait, or None when they may be applied."""
        if not account.active:
            return self.env._(
                "The WhatsApp account %s is archived: the event is processed once "
                "the account is active again.",
                account.name,
            )
        if not account.company_id.whatsapp_enabled:
            return self.env._(
                "WhatsApp is disabled for %s: the event is processed once it is "
                "enabled again.",
                account.company_id.name,
            )
        return None

    # ------------------------------------------------------------------ routing

    @api.model
    def _route(self, url_account, item, routes):
        """The account an item belongs to, among those sharing the URL's app secret.

        Meta signs with one secret per app; a number of another app must never be
        written to, even if it is ours, because this call was not signed by it.
        Archived accounts are found too (their events wait for them), active
        ones first.
        """
        key = (item.phone_number_id, item.waba_id)
        if key in routes:
            return routes[key]
        accounts = self.env["whatsapp.account"].sudo().with_context(active_test=False)
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
            candidates = accounts.browse()
        active = candidates.filtered("active")
        found = self._signed_by(url_account, active) or self._signed_by(
            url_account, candidates - active
        )
        routes[key] = found
        return found

    @api.model
    def _signed_by(self, url_account, candidates):
        """The URL's account if it is a candidate, else one sharing its secret."""
        if url_account in candidates:
            return url_account
        if not candidates:
            return candidates
        url_secret = url_account._get_secret("app_secret")
        return next(
            (
                account
                for account in candidates
                if secrets_match(url_secret, account._get_secret("app_secret"))
            ),
            candidates.browse(),
        )

    # ------------------------------------------------------------------ inbound

    @api.model
    def _handle_inbound(
        self, account, item, known_new=False, partner=None, mirror=None, event_id=None
    ):
        """Store an inbound message and post it; ``known_new`` when the batch
        already checked that its wamid is not stored, ``partner`` when it matched
        the sender (_match_partners); with a ``mirror`` list, the conversation
        copy is left to the batch: (event_id, message) is appended to it."""
        Message = self.env["whatsapp.message"].sudo()
        if not item.wamid:
            return False
        if not known_new and Message.search_count(
            [("account_id", "=", account.id), ("wamid", "=", item.wamid)], limit=1
        ):
            return True  # already stored: a redelivery changes nothing
        if partner is None:
            partner = self._match_partner(account, item)
        elif item.from_user_id and partner.whatsapp_user_id != item.from_user_id:
            partner.whatsapp_user_id = item.from_user_id
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
        vals.update(self._chat_inbound_values(account, item))  # quote, choice
        if media and media.id and message_type in wa_events.MEDIA_TYPES:
            vals.update(
                media_id=media.id,
                media_mime_type=media.mime_type or False,
                media_filename=media.filename or False,
                media_state="pending",
            )
        record = self._conversation_record(account, partner, item)
        record = self._apply_referral(account, vals, partner, record, item)  # ads
        if record:
            vals.update(res_model=record._name, res_id=record.id)
        if known_new:
            message = Message.create(vals)
        else:
            try:
                with self.env.cr.savepoint(), mute_logger("odoo.sql_db"):
                    message = Message.create(vals)
            except IntegrityError:
                return True  # a concurrent delivery stored it first
        if message.message_type == "reaction":
            # Shown on the message it is about: no post, no opt-in or opt-out.
            self._apply_reaction(message)
            return True
        if record:
            message.mail_message_id = message._post_in_chatter(record, partner)
        if partner and record and record != partner:
            # The contact's copy is logged: the document's followers are notified
            # once, by the post above.
            message.partner_mail_message_id = message._post_in_chatter(
                partner, partner, notify=False
            )
        elif partner and not record:
            message.mail_message_id = message._post_in_chatter(partner, partner)
        if mirror is None:
            message._mirror_in_conversations()  # the WhatsApp inbox in Discuss
        else:
            mirror.append((event_id, message))
        self._apply_opt_out(account, message, item)
        if message.media_state == "pending":
            self.env.ref("whatsapp_business.ir_cron_whatsapp_media_download")._trigger()
        return True

    @api.model
    def _chat_inbound_values(self, account, item):
        """The quoted message (or the one reacted to) and the customer's choice."""
        vals = {}
        replied_wamid = _replied_wamid(item)
        if replied_wamid:
            replied = (
                self.env["whatsapp.message"]
                .sudo()
                .search(
                    [("account_id", "=", account.id), ("wamid", "=", replied_wamid)],
                    limit=1,
                )
            )
            vals.update(
                reply_to_wamid=replied_wamid, reply_to_message_id=replied.id or False
            )
        choice = item.choice
        if choice:
            vals.update(
                interactive_reply_id=choice[0] or False,
                interactive_reply_title=choice[1] or False,
            )
        return vals

    @api.model
    def _apply_reaction(self, reaction):
        """Put a received reaction on the message it is about (an empty emoji
        removes it); a reaction older than the one shown changes nothing."""
        target = reaction.reply_to_message_id
        if not target:
            return False
        when = reaction.received_date
        if target.reaction_date and when and when < target.reaction_date:
            return False
        target.write({"reaction_emoji": reaction.body or False, "reaction_date": when})
        target._refresh_chatter()
        target._mirror_reaction()  # on the conversation's copy (the inbox)
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
        if item.from_user_id or item.from_wa_id:
            partner = self._match_partners([(account, item)])[
                _sender_key(account, item)
            ]
            if item.from_user_id and partner.whatsapp_user_id != item.from_user_id:
                partner.whatsapp_user_id = item.from_user_id
            return partner
        # No "contact created" log: the WhatsApp message follows at once.
        return (
            self.env["res.partner"]
            .sudo()
            .with_context(mail_create_nolog=True)
            .create(self._new_partner_values(account.company_id, item))
        )

    @api.model
    def _new_partner_values(self, company, item):
        """The contact created for an unknown sender."""
        phone = canonical_e164(item.from_wa_id) if item.from_wa_id else False
        return {
            "name": item.profile_name or item.username or phone or item.from_user_id,
            **compat.partner_phone_values(self.env["res.partner"], phone or False),
            "company_id": company.id,
            "whatsapp_user_id": item.from_user_id or False,
        }

    @api.model
    def _match_partners(self, pairs):
        """_match_partner for the (account, inbound item) pairs of a batch:
        {_sender_key: partner}, in two searches per company and one create for
        all the new senders (one contact per number, even when several of its
        messages are in the batch). Senders without number nor user id are
        left to _match_partner."""
        Partner = self.env["res.partner"].sudo().with_context(active_test=False)
        by_company = defaultdict(list)
        for account, item in pairs:
            if item.from_user_id or item.from_wa_id:
                by_company[account.company_id].append(item)
        result = {}
        for company, items in by_company.items():
            company_domain = [("company_id", "in", [company.id, False])]
            user_ids = sorted({i.from_user_id for i in items if i.from_user_id})
            by_user = {}
            if user_ids:
                # Same order as _match_partner's search(limit=1): the first wins.
                for partner in Partner.search(
                    [("whatsapp_user_id", "in", user_ids), *company_domain]
                ):
                    by_user.setdefault(partner.whatsapp_user_id, partner)
            variants = sorted(
                {v for i in items if i.from_wa_id for v in e164_variants(i.from_wa_id)}
            )
            by_phone = (
                Partner.search(
                    [("phone_sanitized", "in", variants), *company_domain],
                    order="company_id, id",
                )
                if variants
                else Partner.browse()
            )
            new_vals, new_by_phone, new_by_user, slots = [], {}, {}, {}
            for item in items:
                key = _sender_key(company, item)
                if key in result or key in slots:
                    continue
                partner = by_user.get(item.from_user_id) if item.from_user_id else None
                if not partner and item.from_wa_id:
                    wanted = set(e164_variants(item.from_wa_id))
                    partner = next(
                        (p for p in by_phone if p.phone_sanitized in wanted), None
                    )
                if partner:
                    result[key] = partner
                    continue
                phone = canonical_e164(item.from_wa_id) if item.from_wa_id else False
                slot = new_by_phone.get(phone) if phone else None
                if slot is None and item.from_user_id:
                    slot = new_by_user.get(item.from_user_id)
                if slot is None:
                    slot = len(new_vals)
                    new_vals.append(self._new_partner_values(company, item))
                if phone:
                    new_by_phone.setdefault(phone, slot)
                if item.from_user_id:
                    new_by_user.setdefault(item.from_user_id, slot)
                slots[key] = slot
            if new_vals:
                # No "contact created" log: the WhatsApp message follows at once.
                created = Partner.with_context(
                    active_test=True, mail_create_nolog=True
                ).create(new_vals)
                for key, slot in slots.items():
                    result[key] = created[slot]
        return result

    @api.model
    def _conversation_record(self, account, partner, item):
        """The open lead a message belongs to; the partner when there is none."""
        Message = self.env["whatsapp.message"].sudo()
        replied_wamid = _replied_wamid(item)
        if replied_wamid:
            replied = Message.search(
                [("account_id", "=", account.id), ("wamid", "=", replied_wamid)],
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
        lead = self._open_lead(account, partner)
        if not lead and account.create_lead and item.message_type != "reaction":
            lead = self._create_lead(account, partner)
        return lead or partner

    @api.model
    def _open_lead(self, account, partner):
        """The customer's open lead in the account's company: the most recently
        updated one, not won, not archived (also where inbox replies are logged)."""
        return (
            self.env["crm.lead"]
            .sudo()
            .search(
                [
                    ("partner_id", "=", partner.id),
                    ("company_id", "in", [account.company_id.id, False]),
                    ("active", "=", True),
                    ("stage_id.is_won", "=", False),
                ],
                order="write_date desc, id desc",
                limit=1,
            )
        )

    @api.model
    def _create_lead(self, account, partner):
        source = self.env.ref(
            "whatsapp_business.utm_source_whatsapp", raise_if_not_found=False
        )
        return (
            self.env["crm.lead"]
            .sudo()
            .with_company(account.company_id)
            .with_context(mail_create_nolog=True)
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
            if self._preference_applies(account, message.phone, "stop", item.timestamp):
                Blacklist._add(
                    [message.phone],
                    message=self.env._("Opted out by a WhatsApp message."),
                )
        elif (
            account.unblacklist_on_inbound
            and Blacklist.search_count([("number", "=", message.phone)], limit=1)
            and self._preference_applies(
                account, message.phone, "resume", item.timestamp
            )
        ):
            Blacklist._remove(
                [message.phone],
                message=self.env._("Opted back in by writing on WhatsApp."),
            )

    # ------------------------------------------------------------------ statuses

    @api.model
    def _apply_statuses(self, pairs):
        """Apply (account, StatusUpdate) pairs in a constant number of queries.

        One lookup of the messages by wamid (and, for the statuses that beat
        their send's answer, one by the record id sent along), one insert of the
        status rows (a repeated message and status is a no-op, across batches
        too), one update deciding each message's state in SQL with the rule of
        wa_cloud/delivery.py, one refresh of the chatter. Returns, per pair,
        whether it concerned one of our outbound messages.
        """
        Message = self.env["whatsapp.message"].sudo()
        Message.flush_model()
        cr = self.env.cr
        targets = self._status_targets(pairs)
        handled = [bool(target) for target in targets]
        # Status rows, once per (message, status): the first timestamp counts.
        rows = {}
        for target, (_account, item) in zip(targets, pairs, strict=True):
            if target:
                rows.setdefault((target, item.status or ""), _naive(item.timestamp))
        if not rows:
            return handled
        cr.execute(
            """
            INSERT INTO whatsapp_message_status (message_id, status, status_date)
            SELECT * FROM unnest(%s::int[], %s::varchar[], %s::timestamp[])
            ON CONFLICT (message_id, status) DO NOTHING
            RETURNING message_id, status
            """,
            (
                [key[0] for key in rows],
                [key[1] for key in rows],
                [value or None for value in rows.values()],
            ),
        )
        fresh = set(cr.fetchall())
        self.env["whatsapp.message.status"].invalidate_model()
        changes = {}
        for target, (_account, item) in zip(targets, pairs, strict=True):
            if (target, item.status or "") in fresh:
                changes.setdefault(target, []).append(item)
        if changes:
            changed = self._update_message_states(changes)
            Message.browse(changed)._refresh_chatter()
        return handled

    @api.model
    def _status_targets(self, pairs):
        """The id of the outbound message of each pair, or False."""
        cr = self.env.cr
        keys = {(account.id, item.wamid) for account, item in pairs if item.wamid}
        found = {}
        if keys:
            cr.execute(
                """
                SELECT m.account_id, m.wamid, m.id, m.direction
                FROM whatsapp_message m
                JOIN unnest(%s::int[], %s::varchar[]) AS k(account_id, wamid)
                  ON m.account_id = k.account_id AND m.wamid = k.wamid
                """,
                ([key[0] for key in keys], [key[1] for key in keys]),
            )
            found = {
                (account_id, wamid): (message_id, direction)
                for account_id, wamid, message_id, direction in cr.fetchall()
            }
        # The status may beat the send result: correlate by our own record id.
        missing = {}
        for account, item in pairs:
            if (account.id, item.wamid) not in found:
                message_id = _callback_message_id(item.biz_opaque_callback_data)
                if message_id:
                    missing.setdefault(message_id, (account.id, item.wamid))
        if missing:
            cr.execute(
                """
                SELECT id, account_id FROM whatsapp_message
                WHERE id = ANY(%s) AND direction = 'outbound' AND wamid IS NULL
                """,
                (list(missing),),
            )
            correlated = {
                message_id: missing[message_id]
                for message_id, account_id in cr.fetchall()
                if missing[message_id][0] == account_id
            }
            with_wamid = {
                message_id: key[1] for message_id, key in correlated.items() if key[1]
            }
            if with_wamid:
                cr.execute(
                    """
                    UPDATE whatsapp_message m SET wamid = v.wamid
                    FROM unnest(%s::int[], %s::varchar[]) AS v(id, wamid)
                    WHERE m.id = v.id AND m.wamid IS NULL
                    """,
                    (list(with_wamid), list(with_wamid.values())),
                )
                self.env["whatsapp.message"].invalidate_model(["wamid"])
            for message_id, key in correlated.items():
                found[key] = (message_id, "outbound")
            by_id = {message_id: (message_id, "outbound") for message_id in correlated}
        else:
            by_id = {}
        targets = []
        for account, item in pairs:
            message_id, direction = (
                found.get((account.id, item.wamid))
                or by_id.get(_callback_message_id(item.biz_opaque_callback_data))
                or (False, False)
            )
            targets.append(message_id if direction == "outbound" else False)
        return targets

    @api.model
    def _update_message_states(self, changes):
        """One UPDATE moving each message by its new statuses; returns the ids
        whose state changed (their chatter shows the state)."""
        Message = self.env["whatsapp.message"].sudo()
        columns = {
            key: []
            for key in (
                "id",
                "state",
                "sent_date",
                "delivered_date",
                "read_date",
                "failed_date",
                "failure_type",
                "failure_code",
                "failure_title",
                "failure_details",
                "pricing_category",
                "pricing_type",
                "conversation_id",
            )
        }
        for message_id, items in changes.items():
            states = [delivery.META_STATUS_TO_STATE.get(item.status) for item in items]
            winner = delivery.strongest_state(states)
            row = dict.fromkeys(columns)
            row.update(id=message_id, state=winner)
            for state, item in zip(states, items, strict=True):
                if state and not row[f"{state}_date"]:
                    row[f"{state}_date"] = _naive(item.timestamp) or None
                for fname in ("pricing_category", "pricing_type", "conversation_id"):
                    row[fname] = getattr(item, fname) or row[fname]
                if state == "failed" and winner == "failed":
                    error = item.errors[0] if item.errors else None
                    failure = (
                        Message._failure_values(error_from_payload(error.raw))
                        if error
                        else {"failure_type": "unknown"}
                    )
                    row.update({key: value or None for key, value in failure.items()})
            for key, values in columns.items():
                values.append(row[key])
        next_state = delivery.next_state_sql("old.state", "v.state", "old.failure_type")
        # A failure moves in: Meta's error. A network failure moves out: cleared.
        failure = (
            "CASE WHEN ({next}) = 'failed' AND old.state <> 'failed' THEN v.{f}"
            " WHEN old.state = 'failed' AND ({next}) <> 'failed' THEN NULL"
            " ELSE old.{f} END"
        )
        assignments = [
            f"state = {next_state}",
            f"next_attempt_date = CASE WHEN ({next_state}) <> old.state"
            " THEN NULL ELSE old.next_attempt_date END",
            *(
                f"{fname} = COALESCE(old.{fname}, v.{fname})"
                for fname in ("sent_date", "delivered_date", "read_date")
            ),
            *(
                f"{fname} = {failure.format(next=next_state, f=fname)}"
                for fname in (
                    "failed_date",
                    "failure_type",
                    "failure_code",
                    "failure_title",
                    "failure_details",
                )
            ),
            # Meta's latest pricing wins.
            *(
                f"{fname} = COALESCE(v.{fname}, old.{fname})"
                for fname in ("pricing_category", "pricing_type", "conversation_id")
            ),
        ]
        self.env.cr.execute(
            f"""
            UPDATE whatsapp_message m
               SET {", ".join(assignments)},
                   write_uid = %s,
                   write_date = (now() at time zone 'UTC')
              FROM unnest(%s::int[], %s::varchar[], %s::timestamp[], %s::timestamp[],
                          %s::timestamp[], %s::timestamp[], %s::varchar[], %s::int[],
                          %s::varchar[], %s::text[], %s::varchar[], %s::varchar[],
                          %s::varchar[])
                   AS v(id, state, sent_date, delivered_date, read_date, failed_date,
                        failure_type, failure_code, failure_title, failure_details,
                        pricing_category, pricing_type, conversation_id)
              JOIN whatsapp_message old ON old.id = v.id
             WHERE m.id = v.id
            RETURNING m.id, m.state <> old.state,
                      m.pricing_category IS DISTINCT FROM old.pricing_category
                      OR m.pricing_type IS DISTINCT FROM old.pricing_type
                      OR m.sent_date IS DISTINCT FROM old.sent_date
            """,  # noqa: S608 - the SQL pieces are our own constants
            (self.env.uid, *columns.values()),
        )
        rows = self.env.cr.fetchall()
        changed = [message_id for message_id, moved, _priced in rows if moved]
        Message.invalidate_model()
        # Written in SQL: the fields computed from the pricing (the message's cost)
        # are recomputed by the ORM, for the messages whose pricing moved only.
        priced = Message.browse(
            [message_id for message_id, _m, priced in rows if priced]
        )
        if priced:
            priced.modified(["pricing_category", "pricing_type", "sent_date"])
            Message.flush_model()
        return changed

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
        value = (item.value or "").lower()
        Blacklist = self.env["phone.blacklist"].sudo()
        if value not in ("stop", "resume"):
            return True
        if value == "resume" and not account.unblacklist_on_inbound:
            return True
        if not self._preference_applies(account, number, value, item.timestamp):
            return True
        if value == "stop":
            Blacklist._add(
                [number], message=self.env._("Opted out of marketing on WhatsApp.")
            )
        else:
            Blacklist._remove(
                [number], message=self.env._("Opted back in to marketing on WhatsApp.")
            )
        return True

    @api.model
    def _preference_applies(self, account, number, value, when):
        """False for an update older than the last one applied to this number."""
        applies = (
            self.env["whatsapp.preference"]
            .sudo()
            ._accept(account, number, value, _naive(when))
        )
        if not applies:
            _logger.info("WhatsApp: an older opt-out/opt-in update was ignored")
        return applies


def _naive(value):
    """Odoo stores naive UTC datetimes."""
    if not value:
        return False
    return value.replace(tzinfo=None) if value.tzinfo else value


def _sender_key(account_or_company, item):
    """Who sent an inbound item, for a company: _match_partners' key."""
    company = (
        account_or_company.company_id
        if account_or_company._name == "whatsapp.account"
        else account_or_company
    )
    return (company.id, item.from_user_id or False, item.from_wa_id or False)


def _replied_wamid(item):
    """The message an inbound one quotes, or the one a reaction is about."""
    return item.context_wamid or (item.reaction or {}).get("message_id")


def _callback_message_id(data):
    prefix = "whatsapp.message:"
    if isinstance(data, str) and data.startswith(prefix):
        try:
            return int(data[len(prefix) :])
        except ValueError:
            return None
    return None
