from odoo import api, fields, models

from ..tools import compat


class WhatsAppPreference(models.Model):
    """The last marketing preference Meta reported for a number, by Meta's time.

    Meta may deliver an older update after a newer one (retries, parallel
    deliveries): only an update at least as recent as the recorded one applies,
    so a late "resume" never takes an opted-out customer off the blacklist.
    """

    _name = "whatsapp.preference"
    _description = "WhatsApp Marketing Preference"
    _order = "changed_date desc"
    _rec_name = "number"
    _log_access = False

    account_id = fields.Many2one(
        "whatsapp.account", required=True, readonly=True, ondelete="cascade"
    )
    company_id = fields.Many2one(
        "res.company", related="account_id.company_id", store=True, index=True
    )
    number = fields.Char(required=True, readonly=True, help="E.164 number.")
    value = fields.Char(required=True, readonly=True, help="stop or resume.")
    changed_date = fields.Datetime(
        required=True, readonly=True, help="Meta's time of the update."
    )

    # Odoo 18 and 19 declare table constraints differently (tools/compat.py).
    locals().update(
        compat.sql_constraints(
            (
                "account_number_unique",
                "UNIQUE(account_id, number)",
                "One preference per account and number.",
            ),
        )
    )

    @api.model
    def _accept(self, account, number, value, when):
        """Record ``value`` for ``number`` unless a newer update is known.

        Returns whether the update applies. An update without a time cannot be
        ordered: it applies and is not recorded.
        """
        if not when:
            return True
        self.flush_model()
        self.env.cr.execute(
            """
            INSERT INTO whatsapp_preference
                (account_id, company_id, number, value, changed_date)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (account_id, number) DO UPDATE
               SET value = EXCLUDED.value, changed_date = EXCLUDED.changed_date
             WHERE whatsapp_preference.changed_date <= EXCLUDED.changed_date
            RETURNING id
            """,
            (account.id, account.company_id.id, number, value, when),
        )
        applies = bool(self.env.cr.fetchone())
        self.invalidate_model()
        return applies
