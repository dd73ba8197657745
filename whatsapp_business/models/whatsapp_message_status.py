from odoo import fields, models

from ..tools import compat


class WhatsAppMessageStatus(models.Model):
    """One row per (message, Meta status): the database makes repeats no-ops."""

    _name = "whatsapp.message.status"
    _description = "WhatsApp Message Status Notification"
    _order = "status_date, id"
    _log_access = False

    message_id = fields.Many2one(
        "whatsapp.message", required=True, ondelete="cascade", index=True
    )
    status = fields.Char(required=True)
    status_date = fields.Datetime(help="Meta's timestamp of the status.")

    # Odoo 18 and 19 declare table constraints differently (tools/compat.py).
    locals().update(
        compat.sql_constraints(
            (
                "message_status_unique",
                "UNIQUE(message_id, status)",
                "A status is recorded once per message.",
            ),
        )
    )
