import logging
import os
import secrets
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tools import SQL, config, ormcache

from ..tools import compat
from ..wa_cloud import const
from ..wa_cloud.client import (
    CloudApiClient,
    normalize_api_version,
)
from ..wa_cloud.crypto import CONFIG_OPTION, ConfigurationError, SecretBox, load_keys
from ..wa_cloud.errors import (
    AccountBlockedError,
    ApiPermissionError,
    AuthenticationError,
    WhatsAppError,
)
from ..wa_cloud.urls import validate_base_url

_logger = logging.getLogger(__name__)

SECRET_FIELDS = ("access_token", "app_secret")
MANAGER_GROUP = "whatsapp_business.group_whatsapp_manager"
# Where the token is sent: only system administrators may change it.
SYSTEM_FIELDS = ("base_url", "api_version")
WEBHOOK_ROUTE = "/whatsapp/webhook/"


_BOXES = {}
# Decrypted secrets by (key fingerprint, ciphertext): the webhook route needs the
# app secret on every call. A new secret is a new ciphertext, and a changed key
# set a new fingerprint, so a stale plaintext is never served; each worker reads
# the keys of its own configuration at every call.
_DECRYPTED = {}
_DECRYPTED_MAX = 256


def get_secret_box():
    """The encryption box of the server configuration, never of the database.

    Built once per set of keys: the webhook route needs it on every call.
    """
    keys = tuple(load_keys(config.get(CONFIG_OPTION), os.environ))
    box = _BOXES.get(keys)
    if box is None:
        box = SecretBox(list(keys))
        box.encrypt("")  # a malformed key fails here, before anything is written
        # Only the current keys are worth keeping, and plaintexts decrypted with
        # the previous ones must not outlive them.
        _BOXES.clear()
        _DECRYPTED.clear()
        _BOXES[keys] = box
    return box


def forget_decrypted(ciphertexts):
    for key in [key for key in _DECRYPTED if key[1] in ciphertexts]:
        _DECRYPTED.pop(key, None)


def _new_token(_records=None):
    # 32 random bytes (256 bits) from the OS CSPRNG, URL-safe.
    return secrets.token_urlsafe(32)


class WhatsAppAccount(models.Model):
    _name = "whatsapp.account"
    _description = "WhatsApp Business Account"
    _inherit = ["mail.thread", "mail.activity.mixin", "whatsapp.tenant.mixin"]
    _order = "sequence, id"
    _check_company_auto = True

    name = fields.Char(required=True, tracking=True)
    active = fields.Boolean(default=True, tracking=True)
    sequence = fields.Integer(default=10)
    company_id = fields.Many2one(
        "res.company",
        required=True,
        default=lambda self: self.env.company,
        tracking=True,
        index=True,
    )
    user_id = fields.Many2one(
        "res.users",
        string="Responsible",
        default=lambda self: self.env.user,
        help="Receives the alerts about this account (expired token, blocked number).",
    )
    phone_number_id = fields.Char(
        string="Phone Number ID",
        required=True,
        tracking=True,
        help="The Graph id of the business phone number (Meta's WhatsApp > API Setup).",
    )
    waba_id = fields.Char(
        string="Business Account ID",
        required=True,
        tracking=True,
        help="The WhatsApp Business Account id (WABA) that owns the phone number.",
    )
    app_id = fields.Char(string="App ID", tracking=True)
    api_version = fields.Char(
        string="Graph API Version",
        required=True,
        default=const.DEFAULT_API_VERSION,
        tracking=True,
    )
    base_url = fields.Char(
        string="Graph API URL",
        required=True,
        default=const.DEFAULT_BASE_URL,
        tracking=True,
        help="Change it only to point the account at a sandbox or a test server.",
    )

    # Ciphertext only; readable by nobody but the superuser and the code that decrypts.
    access_token_encrypted = fields.Char(copy=False, groups="base.group_system")
    app_secret_encrypted = fields.Char(copy=False, groups="base.group_system")
    # Write-only plaintext entry fields: reading them always gives an empty value.
    access_token = fields.Char(
        compute="_compute_secret_inputs",
        inverse="_inverse_access_token",
        groups=MANAGER_GROUP,
        copy=False,
        help="Permanent system-user token with whatsapp_business_messaging and "
        "whatsapp_business_management permissions.",
    )
    app_secret = fields.Char(
        compute="_compute_secret_inputs",
        inverse="_inverse_app_secret",
        groups=MANAGER_GROUP,
        copy=False,
        help="App secret (App settings > Basic); it signs the webhooks.",
    )
    access_token_set = fields.Boolean(compute="_compute_secrets_set")
    app_secret_set = fields.Boolean(compute="_compute_secrets_set")

    webhook_key = fields.Char(
        copy=False,
        readonly=True,
        default=_new_token,
        groups=MANAGER_GROUP,
    )
    verify_token = fields.Char(
        copy=False,
        readonly=True,
        default=_new_token,
        groups=MANAGER_GROUP,
        help="Paste it in Meta's App Dashboard > WhatsApp > Configuration > "
        "Verify token.",
    )
    webhook_url = fields.Char(
        string="Webhook URL",
        compute="_compute_webhook_url",
        groups=MANAGER_GROUP,
        help="Paste it in Meta's App Dashboard > WhatsApp > Configuration > "
        "Callback URL.",
    )

    # Behaviour of inbound messages and of the send queue.
    create_lead = fields.Boolean(
        string="Create Leads",
        help="Create a CRM lead for a sender who has no open lead.",
    )
    lead_team_id = fields.Many2one("crm.team", string="Sales Team", check_company=True)
    lead_user_id = fields.Many2one("res.users", string="Salesperson")
    # The WhatsApp inbox: who answers a new conversation whose customer has no
    # open lead with a salesperson (discuss_channel.py).
    inbox_user_id = fields.Many2one(
        "res.users",
        string="Default Responsible",
        domain=[("share", "=", False)],
        help="Responsible of new conversations whose customer has no open lead with "
        "a salesperson.",
    )
    inbox_agent_ids = fields.Many2many(
        "res.users",
        "whatsapp_account_inbox_agent_rel",
        "account_id",
        "user_id",
        string="Agents",
        domain=[("share", "=", False)],
        help="Without a default responsible, new conversations go to these users in "
        "turn.",
    )
    unblacklist_on_inbound = fields.Boolean(
        string="Opt Back In on New Message",
        help="A number that opted out is taken off the blacklist when it writes again.",
    )
    send_read_receipts = fields.Boolean(
        string="Send Read Receipts",
        default=True,
        help="Show customers that their messages were read (blue ticks) when a user "
        "opens the conversation.",
    )
    rate_limit = fields.Integer(
        string="Messages per Second",
        default=const.DEFAULT_RATE_LIMIT,
        help="Never exceeded by the send queue, whichever server sends. Meta allows "
        "80 by default; numbers upgraded by Meta allow up to 1,000.",
    )
    max_concurrency = fields.Integer(
        string="Max Parallel Requests",
        default=100,
        help="Upper bound of the HTTP requests in flight for this account. The "
        "queue keeps as many as the rate needs at the latency it observes "
        "(rate x latency): 40 at 80 messages per second and 500 ms.",
    )
    max_retries = fields.Integer(
        string="Retries",
        default=5,
        help="How many times a transient failure is retried before the message fails.",
    )
    rate_limit_retries = fields.Integer(
        string="Rate-Limit Retries",
        default=8,
        help="How many times a send refused by Meta's rate limits (130429, 131056) "
        "is tried again, waiting longer each time, before the message fails.",
    )
    sending_paused = fields.Boolean(
        readonly=True,
        copy=False,
        tracking=True,
        help="Set when Meta refuses every send of this account (token, payment, "
        "policy block, permissions) or the account cannot connect. Queued "
        "messages wait; nothing is failed.",
    )
    sending_pause_reason = fields.Text(readonly=True, copy=False)
    send_error_count = fields.Integer(readonly=True, copy=False)

    # Health.
    state = fields.Selection(
        [
            ("not_configured", "Not Configured"),
            ("connected", "Connected"),
            ("token_invalid", "Token Invalid"),
            ("error", "Error"),
        ],
        default="not_configured",
        required=True,
        readonly=True,
        copy=False,
        tracking=True,
    )
    display_phone_number = fields.Char(readonly=True, copy=False)
    verified_name = fields.Char(readonly=True, copy=False)
    quality_rating = fields.Char(readonly=True, copy=False)
    messaging_tier = fields.Char(string="Messaging Limit", readonly=True, copy=False)
    last_check_date = fields.Datetime(string="Last Check", readonly=True, copy=False)
    last_success_date = fields.Datetime(
        string="Last Successful Call", readonly=True, copy=False
    )
    last_webhook_date = fields.Datetime(
        string="Last Webhook Received", readonly=True, copy=False
    )
    last_error = fields.Text(readonly=True, copy=False)
    rejected_signature_count = fields.Integer(
        string="Rejected Webhooks (24 h)",
        compute="_compute_rejected_signature_count",
        help="Webhook calls refused in the last 24 hours because of a missing or "
        "wrong signature.",
    )

    # Odoo 18 and 19 declare table constraints differently (tools/compat.py).
    locals().update(
        compat.sql_constraints(
            (
                "webhook_key_unique",
                "UNIQUE(webhook_key)",
                "The webhook key must be unique.",
            ),
            (
                "verify_token_unique",
                "UNIQUE(verify_token)",
                "The verify token must be unique.",
            ),
            (
                "rate_limit_positive",
                "CHECK(rate_limit > 0)",
                "The rate limit must be at least one message per second.",
            ),
            (
                "max_concurrency_positive",
                "CHECK(max_concurrency > 0)",
                "At least one parallel request is needed.",
            ),
        )
    )

    def init(self):
        # Unique among active accounts only: an archived account keeps its history.
        self.env.cr.execute(
            """
            CREATE UNIQUE INDEX IF NOT EXISTS
                whatsapp_account_phone_number_id_active_uniq
            ON whatsapp_account (phone_number_id) WHERE active
            """
        )

    # ------------------------------------------------------------------ compute

    def _compute_secret_inputs(self):
        for account in self:
            account.access_token = False
            account.app_secret = False

    @api.depends("access_token_encrypted", "app_secret_encrypted")
    def _compute_secrets_set(self):
        for account, account_sudo in zip(self, self.sudo(), strict=True):
            account.access_token_set = bool(account_sudo.access_token_encrypted)
            account.app_secret_set = bool(account_sudo.app_secret_encrypted)

    @api.depends("webhook_key")
    def _compute_webhook_url(self):
        for account in self:
            key = account.sudo().webhook_key
            account.webhook_url = (
                f"{account.get_base_url()}{WEBHOOK_ROUTE}{key}" if key else False
            )

    def _compute_rejected_signature_count(self):
        counts = self.env["whatsapp.webhook.rejection"]._count_last_day(self.ids)
        for account in self:
            account.rejected_signature_count = counts.get(account.id, 0)

    # ------------------------------------------------------------------ secrets

    def _inverse_access_token(self):
        self._store_secret("access_token")

    def _inverse_app_secret(self):
        self._store_secret("app_secret")

    def _store_secret(self, fname):
        box = self._get_secret_box()
        for account in self:
            value = account[fname]
            if not value:
                # An empty input means "keep the current secret" (write-only field).
                continue
            previous = account.sudo()[f"{fname}_encrypted"]
            account.sudo()[f"{fname}_encrypted"] = box.encrypt(value.strip())
            if previous:
                forget_decrypted({previous})
        if fname == "access_token":
            self.filtered(lambda a: a.state == "token_invalid").sudo().write(
                {"state": "not_configured", "last_error": False}
            )

    @api.model
    def _get_secret_box(self):
        try:
            box = get_secret_box()
        except ConfigurationError as exc:
            raise UserError(
                self.env._(
                    "WhatsApp secrets cannot be encrypted: %(reason)s\n"
                    "Ask your administrator to set 'whatsapp_encryption_key' in the "
                    "Odoo configuration file (or the WHATSAPP_ENCRYPTION_KEY "
                    "environment variable) and restart Odoo.",
                    reason=exc,
                )
            ) from exc
        return box

    def _get_secret(self, fname):
        """Decrypt a secret for the code that needs it (never for display)."""
        self.ensure_one()
        assert fname in SECRET_FIELDS
        return self._decrypt_secret(self.sudo()[f"{fname}_encrypted"])

    def _decrypt_secret(self, ciphertext):
        """The plaintext of one of this account's stored secrets (None if unset)."""
        self.ensure_one()
        if not ciphertext:
            return None
        box = self._get_secret_box()
        cache_key = (box.fingerprint, ciphertext)
        plaintext = _DECRYPTED.get(cache_key)
        if plaintext is not None:
            return plaintext
        try:
            plaintext = box.decrypt(ciphertext)
        except ConfigurationError as exc:
            raise UserError(
                self.env._(
                    "The WhatsApp secrets of %(account)s cannot be decrypted with the "
                    "configured key. Was 'whatsapp_encryption_key' changed without "
                    "keeping the previous key after a comma?",
                    account=self.display_name,
                )
            ) from exc
        if len(_DECRYPTED) >= _DECRYPTED_MAX:
            _DECRYPTED.clear()
        _DECRYPTED[cache_key] = plaintext
        return plaintext

    def action_reveal_access_token(self):
        """The one deliberate way to read a stored token back: system administrators
        only, and the chatter keeps a trace of who did it."""
        self.ensure_one()
        if not self.env.is_superuser() and not self.env.user._is_system():
            raise AccessError(
                self.env._("Only system administrators can reveal an access token.")
            )
        self.check_access("write")
        token = self._get_secret("access_token")
        self.message_post(
            body=self.env._("The access token was revealed by %s.", self.env.user.name)
        )
        return token

    @api.model
    def _rotate_encryption_key(self):
        """Re-encrypt the stored secrets with the first configured key.

        Run it after putting the new key first in whatsapp_encryption_key (the old
        key stays after a comma until this has run), e.g. from `odoo shell`:
        env["whatsapp.account"]._rotate_encryption_key(); env.cr.commit()
        As the superuser it covers every account of the database; a WhatsApp
        manager covers the accounts (archived ones included) of the companies they
        are working in, and never searches or names another company's accounts.
        Returns the number of accounts re-encrypted.
        """
        return len(self._rotate_encryption_key_in_scope()[0])

    @api.model
    def _rotate_encryption_key_in_scope(self):
        """(re-encrypted accounts, accounts no configured key can decrypt)."""
        if not self.env.is_superuser() and not self.env.user.has_group(MANAGER_GROUP):
            raise AccessError(self.env._("Only WhatsApp managers can rotate the key."))
        box = self._get_secret_box()
        accounts = self.sudo().with_context(active_test=False)
        if self.env.is_superuser():
            accounts = accounts.search([])
        else:
            accounts = accounts.search([("company_id", "in", self.env.companies.ids)])
        rotated = undecryptable = self.browse()
        for account in accounts:
            vals = {}
            try:
                for fname in SECRET_FIELDS:
                    ciphertext = account[f"{fname}_encrypted"]
                    if ciphertext:
                        vals[f"{fname}_encrypted"] = box.rotate(ciphertext)
            except ConfigurationError:
                # Keep the others going: one bad account must not block a rotation.
                undecryptable |= account
                continue
            if vals:
                account.write(vals)
                rotated |= account
        _logger.info(
            "Re-encrypted the secrets of %d WhatsApp account(s); %d could not be "
            "decrypted with any configured key",
            len(rotated),
            len(undecryptable),
        )
        return rotated, undecryptable

    @api.model
    def action_rotate_encryption_key(self):
        rotated, undecryptable = self._rotate_encryption_key_in_scope()
        if self.env.is_superuser():
            scope = self.env._("all companies")
        else:
            scope = ", ".join(self.env.companies.mapped("name"))
        message = self.env._(
            "Secrets of %(count)s account(s) re-encrypted with the current key "
            "(companies: %(companies)s). Accounts of other companies are rotated by "
            "their own managers.",
            count=len(rotated),
            companies=scope,
        )
        if undecryptable:
            message += " " + self.env._(
                "These accounts could not be decrypted with any configured key and "
                "were left unchanged: %s. Add their previous key after a comma in "
                "'whatsapp_encryption_key', or enter their secrets again.",
                ", ".join(undecryptable.mapped("display_name")),
            )
            return self._notify(message, "warning")
        return self._notify(message, "success")

    # ------------------------------------------------------------------ crud

    def _check_phone_number_available(self, phone_number_id, exclude_ids=()):
        """Refuse a number already served by an active account, with a clear message.

        The partial unique index guarantees it; this check runs first so the
        admin reads a sentence instead of a database error. It names the other
        account only when the user may see it: never another agency's.
        """
        duplicate = (
            self.sudo()
            .with_context(active_test=True)
            .search(
                [
                    ("phone_number_id", "=", phone_number_id),
                    ("id", "not in", list(exclude_ids)),
                ],
                limit=1,
            )
        )
        if not duplicate:
            return
        if duplicate.company_id in self.env.user.company_ids or self.env.su:
            raise ValidationError(
                self.env._(
                    "The phone number id %(number)s is already used by the active "
                    "WhatsApp account %(account)s (%(company)s). Archive that account "
                    "first.",
                    number=phone_number_id,
                    account=duplicate.name,
                    company=duplicate.company_id.name,
                )
            )
        raise ValidationError(
            self.env._(
                "The phone number id %s is already used by an active WhatsApp "
                "account of another company in this database. A number can be "
                "connected to one company at a time.",
                phone_number_id,
            )
        )

    def _check_system_fields(self, vals):
        """Only system administrators decide where the access token is sent."""
        if self.env.su or self.env.user._is_system():
            return
        for fname in SYSTEM_FIELDS:
            if fname not in vals:
                continue
            current = (
                self.mapped(fname) if self else [self._fields[fname].default(self)]
            )
            if any((vals[fname] or "").strip() != (value or "") for value in current):
                raise AccessError(
                    self.env._(
                        "Only system administrators can change the Graph API URL or "
                        "version: they decide where the access token is sent."
                    )
                )

    @api.constrains("inbox_user_id", "inbox_agent_ids", "company_id")
    def _check_inbox_users(self):
        """Conversations go to WhatsApp users who work for the account's company."""
        for account in self:
            for user in account.inbox_user_id | account.inbox_agent_ids:
                if (
                    user.share
                    or account.company_id not in user.company_ids
                    or not user.has_group("whatsapp_business.group_whatsapp_user")
                ):
                    raise ValidationError(
                        self.env._(
                            "%(user)s cannot answer the conversations of %(account)s: "
                            "they must be a WhatsApp user of %(company)s.",
                            user=user.name,
                            account=account.name,
                            company=account.company_id.name,
                        )
                    )

    @api.constrains("api_version", "base_url")
    def _check_client_settings(self):
        """Refuse at save time what the client would refuse at send time."""
        for account in self:
            try:
                normalize_api_version(account.api_version)
            except ValueError as exc:
                raise ValidationError(
                    self.env._(
                        "The Graph API version must look like %(example)s and be "
                        "%(minimum)s or newer (older versions are expired).",
                        example=const.DEFAULT_API_VERSION,
                        minimum=const.MIN_API_VERSION,
                    )
                ) from exc
            try:
                validate_base_url(account.base_url)
            except ValueError as exc:
                raise ValidationError(
                    self.env._(
                        "The Graph API URL %(url)s is refused: %(reason)s.",
                        url=account.base_url,
                        reason=exc,
                    )
                ) from exc

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            self.browse()._check_system_fields(vals)
            for fname in ("phone_number_id", "waba_id", "app_id"):
                if vals.get(fname):
                    vals[fname] = vals[fname].strip()
            if vals.get("phone_number_id") and vals.get("active", True):
                self._check_phone_number_available(vals["phone_number_id"])
        accounts = super().create(vals_list)
        # The typed plaintext stays in the cache after the inverse: drop it so that
        # it is never sent back to the browser.
        accounts.invalidate_recordset(list(SECRET_FIELDS))
        accounts._update_configured_state()
        # _webhook_route_data may remember the new keys as unknown.
        self.env.registry.clear_cache()
        return accounts

    def write(self, vals):
        self._check_system_fields(vals)
        for fname in ("phone_number_id", "waba_id", "app_id"):
            if vals.get(fname):
                vals[fname] = vals[fname].strip()
        if vals.get("phone_number_id") or vals.get("active"):
            for account in self:
                number = vals.get("phone_number_id") or account.phone_number_id
                if vals.get("active", account.active):
                    self._check_phone_number_available(number, exclude_ids=self.ids)
        res = super().write(vals)
        if {"webhook_key", "app_secret_encrypted"} & set(vals):
            self.env.registry.clear_cache()  # _webhook_route_data
        if vals.get("active"):
            # Events received while the account was archived wait for it.
            self.env["whatsapp.webhook.event"].sudo()._release_held()
        if set(SECRET_FIELDS) & set(vals):
            self.invalidate_recordset(list(SECRET_FIELDS))
        if {"access_token", "app_secret", "phone_number_id", "waba_id"} & set(vals):
            self._update_configured_state()
        return res

    def unlink(self):
        res = super().unlink()
        self.env.registry.clear_cache()  # _webhook_route_data
        return res

    def copy_data(self, default=None):
        vals_list = super().copy_data(default=default)
        for account, vals in zip(self, vals_list, strict=True):
            vals["name"] = self.env._("%s (copy)", account.name)
            # Two accounts may not serve the same number at once.
            vals["active"] = False
        return vals_list

    def _update_configured_state(self):
        for account in self.sudo():
            configured = bool(
                account.access_token_encrypted
                and account.app_secret_encrypted
                and account.phone_number_id
                and account.waba_id
            )
            if not configured and account.state != "not_configured":
                account.state = "not_configured"

    # ------------------------------------------------------------------ API

    def _client_arguments(self):
        """Constructor arguments of the pure client, secrets decrypted."""
        self.ensure_one()
        token = self._get_secret("access_token")
        if not token:
            raise UserError(
                self.env._(
                    "The WhatsApp account %s has no access token yet.",
                    self.display_name,
                )
            )
        return {
            "access_token": token,
            "phone_number_id": self.phone_number_id,
            "waba_id": self.waba_id,
            "base_url": self.base_url or const.DEFAULT_BASE_URL,
            "api_version": self.api_version or const.DEFAULT_API_VERSION,
        }

    def _get_client(self, **kwargs):
        """A client of the pure core bound to this account's credentials."""
        return CloudApiClient(**self._client_arguments(), **kwargs)

    def _inbox_next_agent(self):
        """The agent whose latest conversation of this account is the oldest (or
        who has none): the agents take new conversations in turn. Read from the
        conversations, so that no worker writes the account row for it."""
        self.ensure_one()
        channel = self.env["discuss.channel"]
        agents = self.inbox_agent_ids.filtered(
            lambda user: (
                user.active
                and not user.share
                and self.company_id in user.company_ids
                and user.has_group("whatsapp_business.group_whatsapp_user")
            )
        ).sorted("id")
        if not agents:
            return agents
        latest = dict(
            channel.sudo()._read_group(
                [
                    ("channel_type", "=", "whatsapp"),
                    ("whatsapp_account_id", "=", self.id),
                    ("whatsapp_user_id", "in", agents.ids),
                ],
                ["whatsapp_user_id"],
                ["id:max"],
            )
        )
        return min(agents, key=lambda user: (latest.get(user, 0), user.id))

    def _touch_last_webhook(self):
        """Remember the last webhook, writing the account row at most once a minute."""
        if self:
            self.env.cr.execute(self._touch_last_webhook_sql(self.ids))
            self.invalidate_recordset(["last_webhook_date"])

    @api.model
    def _touch_last_webhook_sql(self, account_ids):
        """The statement of _touch_last_webhook, for the webhook route's single query.

        A condition in SQL rather than a read then a write: the route then costs no
        round trip for it, and the row is locked once a minute, not at every POST.
        """
        return SQL(
            """
            UPDATE whatsapp_account
               SET last_webhook_date = now() at time zone 'UTC'
             WHERE id IN %(ids)s
               AND (last_webhook_date IS NULL
                    OR last_webhook_date
                       < (now() at time zone 'UTC') - interval '1 minute')
            """,
            ids=tuple(account_ids),
        )

    def _mark_success(self):
        # Throttled: the send queue calls this for every batch, webhooks write the
        # same row, and each write is a chance of a serialization conflict.
        now = fields.Datetime.now()
        for account in self.sudo():
            if (
                account.state != "connected"
                or account.last_error
                or not account.last_success_date
                or account.last_success_date < now - timedelta(minutes=1)
            ):
                account.write(
                    {
                        "state": "connected",
                        "last_success_date": now,
                        "last_error": False,
                    }
                )

    def _handle_api_error(self, error):
        """Record an account-level failure; alert the responsible once."""
        self.ensure_one()
        account = self.sudo()
        message = error_summary(error)
        if isinstance(error, AuthenticationError):
            if account.state != "token_invalid":
                account.write({"state": "token_invalid", "last_error": message})
                account._schedule_alert(
                    self.env._("WhatsApp access token invalid"),
                    self.env._(
                        "Meta refused the access token of this account (%s). Paste "
                        "a new permanent system-user token; messages wait until "
                        "then.",
                        message,
                    ),
                )
            else:
                account.last_error = message
        elif isinstance(error, (AccountBlockedError, ApiPermissionError)):
            if account.state != "error":
                account._schedule_alert(
                    self.env._("WhatsApp account needs attention"), message
                )
            account.write({"state": "error", "last_error": message})
        else:
            account.last_error = message

    def _hold_reason(self, error):
        """What the admin reads when an account-level error pauses sending."""
        summary = error_summary(error)
        if isinstance(error, AuthenticationError):
            return self.env._(
                "Meta refused the access token (%s). Paste a new permanent token, "
                "then press Resume Sending.",
                summary,
            )
        if isinstance(error, ApiPermissionError):
            return self.env._(
                "The token lacks a permission or access to this phone number (%s). "
                "Fix it in Meta Business Manager, then press Resume Sending.",
                summary,
            )
        return self.env._(
            "Meta blocks sending for this account (%s). Solve it with Meta "
            "(payment method, policy, registration), then press Resume Sending.",
            summary,
        )

    def _pause_sending(self, reason, error=None):
        """Stop the account's queue: messages wait, the responsible is told once."""
        self.ensure_one()
        account = self.sudo()
        if account.sending_paused:
            return False
        vals = {
            "sending_paused": True,
            "sending_pause_reason": reason,
            "last_error": reason,
        }
        if isinstance(error, AuthenticationError):
            vals["state"] = "token_invalid"
        elif isinstance(error, WhatsAppError):
            vals["state"] = "error"
        account.write(vals)
        account._schedule_alert(self.env._("WhatsApp sending paused"), reason)
        _logger.warning("WhatsApp account %s: sending paused", account.id)
        return True

    def _resume_sending(self):
        paused = self.sudo().filtered("sending_paused")
        if paused:
            paused.write(
                {
                    "sending_paused": False,
                    "sending_pause_reason": False,
                    "send_error_count": 0,
                }
            )
            self.env["whatsapp.message"]._trigger_queue()
        return paused

    def action_resume_sending(self):
        self.check_access("write")
        self._resume_sending()
        return self._notify(
            self.env._("Sending resumed: the queued messages go out now."), "success"
        )

    def _schedule_alert(self, summary, note):
        user = self.user_id or self.create_uid
        if not user.active or not user._is_internal():
            return
        self.activity_schedule(
            "mail.mail_activity_data_todo", summary=summary, note=note, user_id=user.id
        )

    def action_test_connection(self):
        self.ensure_one()
        self.check_access("write")
        now = fields.Datetime.now()
        try:
            with self._get_client() as client:
                info = client.get_phone_number_info()
        except WhatsAppError as error:
            self.sudo().last_check_date = now
            self._handle_api_error(error)
            if not isinstance(error, AuthenticationError):
                self.sudo().state = "error"
            return self._notify(
                self.env._("Connection failed: %s", error_summary(error)), "danger"
            )
        self.sudo().write(
            {
                "display_phone_number": info.display_phone_number,
                "verified_name": info.verified_name,
                "quality_rating": info.quality_rating,
                "messaging_tier": info.messaging_limit_tier,
                "last_check_date": now,
            }
        )
        self._mark_success()
        self._resume_sending()
        return self._notify(
            self.env._(
                "Connected to %(number)s (%(name)s), quality %(quality)s.",
                number=info.display_phone_number or "?",
                name=info.verified_name or "?",
                quality=info.quality_rating or "?",
            ),
            "success",
        )

    def action_subscribe_app(self):
        self.ensure_one()
        self.check_access("write")
        try:
            with self._get_client() as client:
                subscribed = client.subscribe_app()
        except WhatsAppError as error:
            self._handle_api_error(error)
            return self._notify(
                self.env._("Subscription failed: %s", error_summary(error)), "danger"
            )
        if not subscribed:
            # Meta answered without an error, yet without "success": true either.
            reason = self.env._("Meta did not confirm the subscription.")
            self.sudo().last_error = reason
            return self._notify(self.env._("Subscription failed: %s", reason), "danger")
        self._mark_success()
        return self._notify(
            self.env._(
                "The app is subscribed to the business account: Meta will deliver "
                "its webhooks."
            ),
            "success",
        )

    def action_regenerate_verify_token(self):
        self.check_access("write")
        for account in self:
            account.sudo().verify_token = _new_token()
            account.message_post(
                body=self.env._(
                    "A new verify token was generated; paste it in Meta's dashboard."
                )
            )
        return True

    def action_sync_templates(self):
        self.check_access("write")
        return self.env["whatsapp.template"]._sync_from_meta(self)

    def _notify(self, message, kind="info"):
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "message": message,
                "type": kind,
                "sticky": kind == "danger",
                # Reload the form so that the health fields show the new values.
                "next": {"type": "ir.actions.client", "tag": "soft_reload"},
            },
        }

    # ------------------------------------------------------------------ lookups

    @api.model
    @ormcache("key")
    def _webhook_route_data(self, key):
        """(account id, app secret ciphertext) of a webhook key, or None.

        Cached: every POST needs them and they change only when an admin edits the
        account (write and unlink clear the cache, on every server of the database).
        """
        if not key:
            return None
        self.env.cr.execute(
            "SELECT id, app_secret_encrypted FROM whatsapp_account "
            "WHERE webhook_key = %s",
            (key,),
        )
        row = self.env.cr.fetchone()
        return tuple(row) if row else None

    @api.model
    def _find_by_webhook_key(self, key):
        """The account of a webhook URL, with its verify token (the handshake's)."""
        if not key:
            return self.browse()
        return (
            self.sudo()
            .with_context(active_test=False)
            .search_fetch(
                [("webhook_key", "=", key)],
                ["verify_token"],
                limit=1,
            )
        )


def error_summary(error):
    """One line for users and logs: code and Meta's details, no secrets."""
    if not isinstance(error, WhatsAppError):
        return str(error)
    parts = []
    if error.code is not None:
        parts.append(f"#{error.code}")
    if error.title:
        parts.append(error.title)
    if error.details and error.details != error.title:
        parts.append(f"({error.details})")
    if error.fbtrace_id:
        parts.append(f"[fbtrace_id {error.fbtrace_id}]")
    return " ".join(parts) or error.__class__.__name__
