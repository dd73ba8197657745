"""Tenant isolation: one agency never sees, changes or leaks another agency's data.

The models under test are enumerated from the database (every model this addon
creates), so a new model without isolation or without a fixture here fails.
"""

import contextlib
import inspect
import json
import os
from unittest.mock import patch

from odoo import Command
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import new_test_user, tagged
from odoo.tools import config, mute_logger

from ..models import whatsapp_account as account_module
from ..tools import compat
from ..wa_cloud.crypto import CONFIG_OPTION, ENV_VAR, SecretBox, generate_key
from .common import MOBILE, WhatsAppCase, messages_entry, webhook_body
from .test_whatsapp_template import meta_template

ADDON = "whatsapp_business"
# ORM entry points the addon overrides: exercised through read/write/unlink below.
ORM_METHODS = {"create", "write", "unlink", "copy_data", "default_get", "init"}


def addon_models(env):
    """Every model with a table that this addon creates."""
    xmlids = env["ir.model.data"].search(
        [("module", "=", ADDON), ("model", "=", "ir.model")]
    )
    names = env["ir.model"].browse(xmlids.mapped("res_id")).mapped("model")
    # Inherited models (res.partner...) also get an xmlid of this module.
    return sorted(
        name
        for name in names
        if name.startswith("whatsapp.") and not env[name]._abstract
    )


def addon_public_methods(model):
    """Public methods that this addon's classes define on `model`."""
    names = set()
    for klass in type(model).__mro__:
        if not klass.__module__.startswith(f"odoo.addons.{ADDON}."):
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_") and callable(value) and name not in ORM_METHODS:
                names.add(name)
    return sorted(names)


def harmless_values(model):
    """One value per model that a write would change (used to probe write access)."""
    return {
        "whatsapp.account": {"name": "Hijacked"},
        "whatsapp.template": {"label": "Hijacked"},
        "whatsapp.template.variable": {
            "source": "text",
            "fixed_text": "https://phish.example",
        },
        "whatsapp.message": {"body": "Hijacked"},
        "whatsapp.message.status": {"status": "read"},
        "whatsapp.webhook.event": {"last_error": "Hijacked"},
        "whatsapp.webhook.rejection": {"count": 0},
        "whatsapp.preference": {"value": "resume"},
        "whatsapp.composer": {"body": "Hijacked"},
        "whatsapp.composer.line": {"value": "Hijacked"},
        "whatsapp.composer.choice": {"reply_id": "hijacked"},
        "whatsapp.test.message": {"phone": "+15550109999"},
        "whatsapp.pricing.rate": {"price": 9.99},
    }[model]


class IsolationCase(WhatsAppCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user_b = new_test_user(
            cls.env,
            login="wa_sales_b",
            groups="sales_team.group_sale_salesman",
            company_id=cls.company_b.id,
            company_ids=[Command.set(cls.company_b.ids)],
        )
        cls.multi_manager = new_test_user(
            cls.env,
            login="wa_manager_ab",
            groups="sales_team.group_sale_manager,whatsapp_business.group_whatsapp_manager",
            company_id=cls.company_a.id,
            company_ids=[Command.set((cls.company_a | cls.company_b).ids)],
        )
        # An accountant or integration user: internal, no Sales, no WhatsApp.
        cls.plain_user = new_test_user(
            cls.env,
            login="wa_plain",
            groups="base.group_user,base.group_allow_export",
            company_id=cls.company_a.id,
            company_ids=[Command.set(cls.company_a.ids)],
        )
        cls.portal_user = new_test_user(
            cls.env, login="wa_portal", groups="base.group_portal"
        )
        cls.public_user = cls.env.ref("base.public_user")
        cls.partner_b = cls.env["res.partner"].create(
            {
                "name": "Bruno Costa",
                MOBILE: "+34612000111",
                "company_id": cls.company_b.id,
            }
        )
        cls.lead_b = cls.env["crm.lead"].create(
            {
                "name": "Kitchen",
                "partner_id": cls.partner_b.id,
                MOBILE: "+34612000111",
                "company_id": cls.company_b.id,
                "user_id": cls.user_b.id,
            }
        )
        cls.lead_a.user_id = cls.user_a
        cls.records_a = cls.company_records(cls.account_a, cls.lead_a, cls.user_a)
        cls.records_b = cls.company_records(cls.account_b, cls.lead_b, cls.user_b)

    @classmethod
    def company_records(cls, account, lead, creator):
        """One record of every addon model, all belonging to `account`'s company."""
        env = cls.env
        values = env["whatsapp.template"]._values_from_meta(
            meta_template(
                f"7744{account.id}", f"order_{account.id}", "es", "Hola {{1}}"
            )
        )
        template = env["whatsapp.template"].create(
            dict(
                values,
                account_id=account.id,
                model_id=env["ir.model"]._get_id("crm.lead"),
            )
        )
        message = env["whatsapp.message"].create(
            {
                "account_id": account.id,
                "direction": "outbound",
                "state": "sent",
                "phone": lead[MOBILE],
                "partner_id": lead.partner_id.id,
                "body": "Presupuesto",
                "wamid": f"wamid.OUT-{account.id}",
                "res_model": "crm.lead",
                "res_id": lead.id,
            }
        )
        status = env["whatsapp.message.status"].create(
            {"message_id": message.id, "status": "sent"}
        )
        event = env["whatsapp.webhook.event"]._receive(
            account, webhook_body(messages_entry(account)).encode()
        )
        Rejection = env["whatsapp.webhook.rejection"]
        Rejection._record(account)
        rejection = Rejection.search([("account_id", "=", account.id)])
        Preference = env["whatsapp.preference"]
        Preference._accept(account, lead[MOBILE], "stop", env.cr.now())
        preference = Preference.search([("account_id", "=", account.id)])
        composer = (
            env["whatsapp.composer"]
            .with_user(creator)
            .with_company(account.company_id)
            .create(
                {
                    "res_model": "crm.lead",
                    "res_ids": json.dumps(lead.ids),
                    "account_id": account.id,
                    "mode": "text",
                    "body": "Hola",
                }
            )
            .sudo()
        )
        line = (
            env["whatsapp.composer.line"]
            .with_user(creator)
            .with_company(account.company_id)
            .create({"composer_id": composer.id, "component": "body", "key": "1"})
            .sudo()
        )
        choice = (
            env["whatsapp.composer.choice"]
            .with_user(creator)
            .with_company(account.company_id)
            .create({"composer_id": composer.id, "title": "Oui"})
            .sudo()
        )
        # Only managers open it; created as `creator` so that it is theirs.
        test_message = (
            env["whatsapp.test.message"]
            .with_user(creator)
            .with_company(account.company_id)
            .sudo()
            .create({"account_id": account.id, "phone": lead[MOBILE]})
        )
        # A company's own rate line (the shared card, without company, is for all).
        rate = env["whatsapp.pricing.rate"].create(
            {
                "market": "spain",
                "category": "marketing",
                "price": 0.05,
                "date_start": "2025-07-01",
                "company_id": account.company_id.id,
            }
        )
        return {
            "whatsapp.account": account,
            "whatsapp.template": template,
            "whatsapp.template.variable": template.variable_ids[:1],
            "whatsapp.message": message,
            "whatsapp.message.status": status,
            "whatsapp.webhook.event": event,
            "whatsapp.webhook.rejection": rejection,
            "whatsapp.preference": preference,
            "whatsapp.composer": composer,
            "whatsapp.composer.line": line,
            "whatsapp.composer.choice": choice,
            "whatsapp.test.message": test_message,
            "whatsapp.pricing.rate": rate,
        }


@tagged("post_install", "-at_install")
class TestCompanyIsolation(IsolationCase):
    def test_every_addon_model_is_covered(self):
        models = addon_models(self.env)
        self.assertIn("whatsapp.account", models)
        self.assertEqual(
            sorted(self.records_b),
            models,
            "every model of the addon needs a fixture here and a company rule",
        )
        for model, record in self.records_b.items():
            self.assertEqual(len(record), 1, model)

    def test_every_addon_model_has_a_rule(self):
        for model in addon_models(self.env):
            rules = self.env["ir.rule"].search([("model_id.model", "=", model)])
            self.assertTrue(rules.filtered("global"), f"{model} has no global rule")

    def test_company_a_users_cannot_touch_company_b(self):
        for user in (self.user_a, self.manager_a):
            for model, record in self.records_b.items():
                with self.subTest(user=user.login, model=model):
                    Model = self.env[model].with_user(user)
                    if Model.has_access("read"):
                        self.assertFalse(Model.search([("id", "in", record.ids)]))
                        self.assertFalse(Model.search_count([("id", "in", record.ids)]))
                        mine = self.records_a[model]
                        if not Model._transient or mine.create_uid == user:
                            self.assertEqual(
                                Model.search([("id", "in", mine.ids)]), mine
                            )
                    else:
                        with self.assertRaises(AccessError):
                            Model.search([("id", "in", record.ids)])
                    as_user = record.with_user(user)
                    with self.assertRaises(AccessError):
                        as_user.read()
                    with self.assertRaises(AccessError):
                        as_user.write(harmless_values(model))
                    with self.assertRaises(AccessError):
                        as_user.unlink()
        variable = self.records_b["whatsapp.template.variable"]
        self.assertNotEqual(variable.fixed_text, "https://phish.example")
        self.assertTrue(self.account_b.exists())
        self.assertEqual(self.account_b.name, "Agency B number")

    def test_records_cannot_be_moved_into_another_company(self):
        a, b = self.records_a, self.records_b
        empty_template_b = self.env["whatsapp.template"].create(
            self.env["whatsapp.template"]._values_from_meta(
                meta_template("774400009", "no_variables", "es", "Hola")
            )
            | {"account_id": self.account_b.id}
        )
        moves = [
            (a["whatsapp.account"], {"company_id": self.company_b.id}),
            (a["whatsapp.template"], {"account_id": self.account_b.id}),
            (a["whatsapp.template.variable"], {"template_id": empty_template_b.id}),
            (a["whatsapp.message"], {"account_id": self.account_b.id}),
            (a["whatsapp.webhook.event"], {"account_id": self.account_b.id}),
        ]
        for record, vals in moves:
            with self.subTest(model=record._name), self.assertRaises(UserError):
                record.with_user(self.manager_a).write(vals)
        composer = (
            self.env["whatsapp.composer"]
            .with_user(self.manager_a)
            .create({"account_id": self.account_a.id, "mode": "text", "body": "x"})
        )
        with self.assertRaises(AccessError):
            composer.write({"account_id": self.account_b.id})
        self.assertEqual(b["whatsapp.template"].account_id, self.account_b)
        self.assertEqual(a["whatsapp.template"].account_id, self.account_a)
        self.assertEqual(self.account_a.company_id, self.company_a)

    def test_multi_company_user_sees_exactly_allowed_companies(self):
        user = self.multi_manager
        both_companies = (self.company_a | self.company_b).ids
        for model in addon_models(self.env):
            if self.env[model]._transient:
                continue  # wizards belong to their creator, checked below
            mine, theirs = self.records_a[model], self.records_b[model]
            ids = (mine | theirs).ids
            with self.subTest(model=model):
                only_a = (
                    self.env[model]
                    .with_user(user)
                    .with_context(allowed_company_ids=self.company_a.ids)
                )
                self.assertEqual(only_a.search([("id", "in", ids)]), mine)
                both = (
                    self.env[model]
                    .with_user(user)
                    .with_context(allowed_company_ids=both_companies)
                )
                self.assertEqual(both.search([("id", "in", ids)]), mine | theirs)
        # Wizards: the user's own, in the companies they work in.
        composer = (
            self.env["whatsapp.composer"]
            .with_user(user)
            .with_context(allowed_company_ids=both_companies)
            .create({"account_id": self.account_b.id, "mode": "text", "body": "x"})
        )
        only_a = (
            self.env["whatsapp.composer"]
            .with_user(user)
            .with_context(allowed_company_ids=self.company_a.ids)
        )
        self.assertFalse(only_a.search([("id", "=", composer.id)]))
        self.assertFalse(
            only_a.search([("id", "in", self.records_a["whatsapp.composer"].ids)]),
            "another user's wizard is never visible",
        )

    def test_duplicate_number_error_names_no_other_company(self):
        with self.assertRaises(ValidationError) as caught, mute_logger("odoo.sql_db"):
            self.env["whatsapp.account"].with_user(self.manager_a).create(
                {
                    "name": "Mine",
                    "phone_number_id": self.account_b.phone_number_id,
                    "waba_id": "1",
                }
            )
        message = str(caught.exception)
        self.assertIn("another company", message)
        self.assertNotIn("Agency B", message)
        # Within the user's own companies, the other account is named.
        with self.assertRaises(ValidationError) as caught, mute_logger("odoo.sql_db"):
            self.env["whatsapp.account"].with_user(self.manager_a).create(
                {
                    "name": "Mine",
                    "phone_number_id": self.account_a.phone_number_id,
                    "waba_id": "1",
                }
            )
        self.assertIn("Agency A number", str(caught.exception))


@tagged("post_install", "-at_install")
class TestRpcSweep(IsolationCase):
    """Every public method, called the way RPC calls it, on another agency's data."""

    def _call(self, user, model, method, ids):
        records = self.env[model].with_user(user)
        function = getattr(records, method)
        extra = [
            None
            for parameter in list(inspect.signature(function).parameters.values())
            if parameter.default is inspect.Parameter.empty
            and parameter.kind == parameter.POSITIONAL_OR_KEYWORD
        ]
        args = extra if compat.is_model_method(function) else [ids, *extra]
        return compat.call_kw(records, method, args, {})

    def test_public_methods_refuse_other_company_portal_and_public(self):
        targets = dict(self.records_b)
        targets["res.partner"] = self.partner_b
        targets["crm.lead"] = self.lead_b
        # Company B's WhatsApp conversation (the inbox's actions on discuss.channel).
        targets["discuss.channel"] = self.env[
            "discuss.channel"
        ]._whatsapp_conversations({(self.account_b, self.partner_b): self.lead_b})[
            self.account_b, self.partner_b
        ]
        synced = []

        def fake_sync(template_model, accounts):
            synced.append(accounts)
            return True

        users = (self.user_a, self.manager_a, self.portal_user, self.public_user)
        b_ciphertext = self.account_b.sudo().access_token_encrypted
        checked = 0
        Template = type(self.env["whatsapp.template"])
        with patch.object(Template, "_sync_from_meta", fake_sync):
            for model, record in targets.items():
                for method in addon_public_methods(self.env[model]):
                    for user in users:
                        with self.subTest(model=model, method=method, user=user.login):
                            checked += 1
                            is_model_method = compat.is_model_method(
                                getattr(self.env[model], method)
                            )
                            if is_model_method and user in (
                                self.user_a,
                                self.manager_a,
                            ):
                                # Not about given records: it must only ever act on
                                # the user's own companies.
                                with contextlib.suppress(AccessError):
                                    self._call(user, model, method, record.ids)
                                continue
                            with self.assertRaises(AccessError):
                                self._call(user, model, method, record.ids)
        self.assertGreater(checked, 40)
        for accounts in synced:
            self.assertNotIn(self.account_b, accounts)
        # Model-level actions (key rotation, sync) never reached company B.
        self.assertEqual(self.account_b.sudo().access_token_encrypted, b_ciphertext)


@tagged("post_install", "-at_install")
class TestDocumentVisibility(IsolationCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.colleague = new_test_user(
            cls.env,
            login="wa_sales_a2",
            groups="sales_team.group_sale_salesman",
            company_id=cls.company_a.id,
            company_ids=[Command.set(cls.company_a.ids)],
        )
        cls.all_leads_user = new_test_user(
            cls.env,
            login="wa_sales_all_a",
            groups="sales_team.group_sale_salesman_all_leads",
            company_id=cls.company_a.id,
            company_ids=[Command.set(cls.company_a.ids)],
        )
        Lead = cls.env["crm.lead"]
        cls.lead_colleague = Lead.create(
            {
                "name": "Colleague's",
                "user_id": cls.colleague.id,
                "company_id": cls.company_a.id,
            }
        )
        cls.lead_unassigned = Lead.create(
            {"name": "Nobody's", "user_id": False, "company_id": cls.company_a.id}
        )
        cls.msg_own = cls.records_a["whatsapp.message"]
        cls.msg_colleague = cls._message(cls.lead_colleague)
        cls.msg_unassigned = cls._message(cls.lead_unassigned)
        cls.msg_contact = cls._message(cls.partner_a)

    @classmethod
    def _message(cls, record):
        message = cls.env["whatsapp.message"].create(
            {
                "account_id": cls.account_a.id,
                "direction": "outbound",
                "state": "sent",
                "phone": "+33612345678",
                "body": "x",
                "res_model": record._name,
                "res_id": record.id,
            }
        )
        cls.env["whatsapp.message.status"].create(
            {"message_id": message.id, "status": "sent"}
        )
        return message

    def _visible(self, user, model="whatsapp.message"):
        messages = (
            self.msg_own | self.msg_colleague | self.msg_unassigned | self.msg_contact
        )
        if model == "whatsapp.message.status":
            statuses = self.env[model].search([("message_id", "in", messages.ids)])
            found = self.env[model].with_user(user).search([("id", "in", statuses.ids)])
            return found.message_id
        return self.env[model].with_user(user).search([("id", "in", messages.ids)])

    def test_own_documents_salesperson_sees_messages_of_readable_documents(self):
        self.assertEqual(self.msg_colleague.lead_id, self.lead_colleague)
        self.assertFalse(self.msg_contact.lead_id)
        for model in ("whatsapp.message", "whatsapp.message.status"):
            with self.subTest(model=model):
                self.assertEqual(
                    self._visible(self.user_a, model),
                    self.msg_own | self.msg_unassigned | self.msg_contact,
                )
        with self.assertRaises(AccessError):
            self.msg_colleague.with_user(self.user_a).read(["body"])
        # The lead's counter follows: nothing of the colleague's lead leaks.
        self.assertEqual(self.lead_a.with_user(self.user_a).whatsapp_message_count, 1)

    def test_all_documents_salesperson_and_manager_see_the_company(self):
        everything = (
            self.msg_own | self.msg_colleague | self.msg_unassigned | self.msg_contact
        )
        for user in (self.all_leads_user, self.manager_a):
            with self.subTest(user=user.login):
                self.assertEqual(self._visible(user), everything)
                self.assertEqual(
                    self._visible(user, "whatsapp.message.status"), everything
                )

    def test_reassigning_the_lead_moves_the_messages(self):
        self.lead_colleague.user_id = self.user_a
        self.assertIn(self.msg_colleague, self._visible(self.user_a))


@tagged("post_install", "-at_install")
class TestSystemMatters(IsolationCase):
    def setUp(self):
        super().setUp()
        self.admin = new_test_user(
            self.env,
            login="wa_sysadmin",
            groups="base.group_system,whatsapp_business.group_whatsapp_manager",
            company_id=self.company_a.id,
            company_ids=[Command.set(self.company_a.ids)],
        )

    def test_only_system_administrators_move_the_token(self):
        account = self.account_a.with_user(self.manager_a)
        for vals in (
            {"base_url": "https://attacker.example"},
            {"base_url": "http://127.0.0.1:8899"},
            {"api_version": "v27.0"},
        ):
            with self.subTest(vals=vals), self.assertRaises(AccessError):
                account.write(vals)
        with self.assertRaises(AccessError):
            self.env["whatsapp.account"].with_user(self.manager_a).create(
                {
                    "name": "Elsewhere",
                    "phone_number_id": "109000000000055",
                    "waba_id": "1",
                    "base_url": "https://attacker.example",
                }
            )
        # Saving the form with the values unchanged is fine for a manager.
        account.write({"name": "Renamed", "base_url": account.base_url})
        self.assertEqual(self.account_a.base_url, "https://graph.facebook.com")
        self.account_a.with_user(self.admin).write(
            {"base_url": "https://proxy.example/graph"}
        )
        self.assertEqual(self.account_a.base_url, "https://proxy.example/graph")

    def test_graph_url_must_be_https_or_loopback(self):
        account = self.account_a.with_user(self.admin)
        for url in (
            "http://attacker.example",
            "ftp://graph.facebook.com",
            "graph.facebook.com",
        ):
            with self.subTest(url=url), self.assertRaises(ValidationError):
                account.write({"base_url": url})
        account.write({"base_url": "http://127.0.0.1:8899"})
        self.assertEqual(self.account_a.base_url, "http://127.0.0.1:8899")

    def test_form_shows_graph_settings_read_only_to_managers(self):
        def field_nodes(user):
            arch = (
                self.env["whatsapp.account"]
                .with_user(user)
                .get_views([(False, "form")])["views"]["form"]["arch"]
            )
            return [line for line in arch.splitlines() if 'name="base_url"' in line]

        manager_nodes = field_nodes(self.manager_a)
        self.assertEqual(len(manager_nodes), 1)
        self.assertIn('readonly="1"', manager_nodes[0])
        admin_nodes = field_nodes(self.admin)
        self.assertEqual(len(admin_nodes), 1)
        self.assertNotIn('readonly="1"', admin_nodes[0])

    def test_token_reveal_is_a_logged_system_administrator_action(self):
        with self.assertRaises(AccessError):
            self.account_a.with_user(self.manager_a).action_reveal_access_token()
        token = self.account_a.with_user(self.admin).action_reveal_access_token()
        self.assertEqual(token, "EAAtokenA-secret-value")
        last = self.account_a.message_ids[:1]
        self.assertIn("revealed by", last.body)
        self.assertNotIn("EAAtokenA", last.body)


@tagged("post_install", "-at_install")
class TestSecretsAndKeys(IsolationCase):
    def _keys(self, value):
        return patch.dict(os.environ, {ENV_VAR: value}), patch.dict(
            config.options, {CONFIG_OPTION: ""}
        )

    def test_rotation_is_scoped_to_the_managers_companies(self):
        current = os.environ.get(ENV_VAR) or config.get(CONFIG_OPTION)
        new_key = generate_key()
        self.account_a.copy({"phone_number_id": "109000000000066"})  # archived copy
        archived = (
            self.env["whatsapp.account"]
            .with_context(active_test=False)
            .search([("phone_number_id", "=", "109000000000066")])
        )
        archived.sudo().access_token = "EAAarchived"
        before_b = self.account_b.sudo().access_token_encrypted
        env_patch, config_patch = self._keys(f"{new_key},{current}")
        with env_patch, config_patch:
            action = (
                self.env["whatsapp.account"]
                .with_user(self.manager_a)
                .action_rotate_encryption_key()
            )
        message = action["params"]["message"]
        self.assertIn("2 account(s)", message)
        self.assertIn(self.company_a.name, message)
        self.assertNotIn("Agency B", message)
        new_box = SecretBox(new_key)
        self.assertEqual(
            new_box.decrypt(self.account_a.sudo().access_token_encrypted),
            "EAAtokenA-secret-value",
        )
        self.assertEqual(
            new_box.decrypt(archived.sudo().access_token_encrypted), "EAAarchived"
        )
        self.assertEqual(self.account_b.sudo().access_token_encrypted, before_b)

    def test_rotation_reports_undecryptable_accounts_of_scope_only(self):
        current = os.environ.get(ENV_VAR) or config.get(CONFIG_OPTION)
        other_key = generate_key()
        # B's secrets were written with a key this server no longer has.
        self.account_b.sudo().access_token_encrypted = SecretBox(other_key).encrypt("x")
        env_patch, config_patch = self._keys(f"{generate_key()},{current}")
        with env_patch, config_patch:
            action = (
                self.env["whatsapp.account"]
                .with_user(self.manager_a)
                .action_rotate_encryption_key()
            )
            self.assertNotIn("Agency B", action["params"]["message"])
            self.assertEqual(action["params"]["type"], "success")
            action = (
                self.env["whatsapp.account"]
                .with_user(self.multi_manager)
                .with_context(allowed_company_ids=(self.company_a | self.company_b).ids)
                .action_rotate_encryption_key()
            )
        self.assertEqual(action["params"]["type"], "warning")
        self.assertIn("Agency B number", action["params"]["message"])

    def test_decrypted_secret_cache_follows_keys_and_secrets(self):
        current = os.environ.get(ENV_VAR) or config.get(CONFIG_OPTION)
        self.assertEqual(self.account_a._get_secret("app_secret"), "app-secret-a")
        # The key is replaced without keeping the old one: the cached plaintext
        # must not be served any more.
        env_patch, config_patch = self._keys(generate_key())
        with env_patch, config_patch, self.assertRaises(Exception) as caught:
            self.account_a._get_secret("app_secret")
        self.assertIn("cannot be decrypted", str(caught.exception))
        # Back to the real key; a new secret replaces the cached one at once.
        env_patch, config_patch = self._keys(current)
        with env_patch, config_patch:
            self.assertEqual(self.account_a._get_secret("app_secret"), "app-secret-a")
            self.account_a.app_secret = "app-secret-new"
            self.assertEqual(self.account_a._get_secret("app_secret"), "app-secret-new")
            self.assertNotIn("app-secret-a", list(account_module._DECRYPTED.values()))


@tagged("post_install", "-at_install")
class TestPlainUsersUnaffected(IsolationCase):
    def _open_form(self, record, user, skip=()):
        """What the web client does to open a form: load the view, then web_read."""
        records = record.with_user(user)
        views = records.get_views([(False, "form")])
        fields = views["models"][record._name]["fields"]
        return records.web_read({name: {} for name in fields if name not in skip})[0]

    def test_plain_internal_user_reads_exports_and_opens_shared_records(self):
        user = self.plain_user
        for record in (self.partner_a, self.company_a, user):
            with self.subTest(model=record._name):
                as_user = record.with_user(user)
                described = as_user.fields_get(attributes=["exportable"])
                self.assertNotIn("whatsapp_message_count", described)
                # Core modules have fields a plain user cannot read either (crm's
                # opportunity_ids on contacts, Odoo 19's properties): none may come
                # from this addon.
                unreadable = []
                for name in described:
                    try:
                        as_user.read([name])
                    except AccessError:
                        unreadable.append(name)
                ours = [n for n in unreadable if record._fields[n]._module == ADDON]
                self.assertFalse(ours, f"{record._name}: {ours} unreadable")
                readable = [n for n in described if n not in unreadable]
                self.assertTrue(as_user.read(readable))
                exportable = []
                for name in readable:
                    if not described[name].get("exportable", True):
                        continue
                    try:
                        as_user.export_data([name])
                    except AccessError:
                        self.assertNotEqual(record._fields[name]._module, ADDON)
                        continue
                    exportable.append(name)
                self.assertTrue(as_user.export_data(exportable)["datas"])
                form = self._open_form(record, user, skip=unreadable)
                self.assertEqual(form["id"], record.id)
        # Without the groups= restriction, this is what used to break.
        self.assertTrue(self.partner_a.with_user(user).read(["whatsapp_user_id"]))

    def test_whatsapp_fields_stay_for_whatsapp_users(self):
        self.env["whatsapp.message"].create(
            {
                "account_id": self.account_a.id,
                "direction": "outbound",
                "phone": "+33612345678",
                "partner_id": self.partner_a.id,
                "body": "x",
            }
        )
        values = self._open_form(self.partner_a, self.user_a)
        self.assertEqual(values["whatsapp_message_count"], 2)
        lead_values = self._open_form(self.lead_a, self.user_a)
        self.assertEqual(lead_values["whatsapp_message_count"], 1)
