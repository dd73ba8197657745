from odoo import models


class Base(models.AbstractModel):
    """The WhatsApp recipient of any record, asked the same way by every path
    that sends (composer, server action, Discuss), like ``sms``'s
    ``_sms_get_recipients_info``."""

    _inherit = "base"

    def _whatsapp_get_recipients_info(self, number_field=None):
        """{record id: recipient} for the records of ``self``, in their order.

        A recipient is a dict that ``whatsapp.message._queue_outbound`` takes as
        an item: ``record``, ``partner`` (res.partner, maybe empty), ``phone``
        (E.164, False without a valid number) and ``invalid_reason`` (why there
        is no valid number); plus ``reason`` (why nothing will be sent: no valid
        number, or the number opted out) and ``blacklisted``. A blacklisted
        number is kept: the queue logs its message as opted out.

        The number is the record's own (``_phone_get_number_fields``, mobile
        first), then its partner's; with ``number_field`` (a char field, or a
        many2one to res.partner) that field only, then the partner's.
        """
        infos = {}
        field = self._fields.get(number_field) if number_field else None
        for record in self:
            partner = record._whatsapp_partner(number_field)
            number, source = False, record
            if field and field.type == "char":
                number = record[number_field]
            elif not field or field.type != "many2one":
                number = _first_number(record)
            if not number and partner:
                number, source = _first_number(partner), partner
            phone = number and source._phone_format(number=number, force_format="E164")
            reason = False
            if not number:
                reason = self.env._("No mobile or phone number.")
            elif not phone:
                reason = self.env._("%s is not a valid international number.", number)
            infos[record.id] = {
                "record": record,
                "partner": partner,
                "phone": phone or False,
                "invalid_reason": reason,
                "reason": reason,
                "blacklisted": False,
            }
        phones = [info["phone"] for info in infos.values() if info["phone"]]
        if phones:
            blacklisted = set(
                self.env["phone.blacklist"]
                .sudo()
                .search([("number", "in", phones)])
                .mapped("number")
            )
            for info in infos.values():
                if info["phone"] in blacklisted:
                    info["blacklisted"] = True
                    info["reason"] = self.env._(
                        "The number is blacklisted (opted out)."
                    )
        return infos

    def _whatsapp_partner(self, number_field=None):
        """The contact a record is about: itself, or its ``number_field`` /
        ``partner_id`` many2one to res.partner."""
        self.ensure_one()
        if self._name == "res.partner":
            return self
        target = self._fields.get(number_field or "partner_id")
        if (
            target
            and target.type == "many2one"
            and target.comodel_name == "res.partner"
        ):
            return self[target.name]
        return self.env["res.partner"]


def _first_number(record):
    for fname in record._phone_get_number_fields():
        if record[fname]:
            return record[fname]
    return False
