"""WhatsApp ids versus E.164 numbers.

Meta's wa_id is the number as WhatsApp registered it, which differs from today's
E.164 in two countries: Mexico keeps the old mobile "1" (52 1 55...) and older
Brazilian accounts lack the ninth digit (55 11 8765-4321). Matching a reply to
the contact stored in Odoo needs both forms.
"""


def _digits(value):
    return "".join(ch for ch in str(value or "") if ch.isdigit())


def canonical_e164(wa_id):
    """The E.164 number (with '+') that Odoo would store for this wa_id."""
    digits = _digits(wa_id)
    if not digits:
        return None
    # Mexico dropped the mobile "1" in 2019: 52 1 + 10 digits is 52 + 10 digits.
    if digits.startswith("521") and len(digits) == 13:
        digits = "52" + digits[3:]
    # Brazil: a mobile (first digit 6-9) of 8 digits gets its ninth digit back.
    elif digits.startswith("55") and len(digits) == 12 and digits[4] in "6789":
        digits = digits[:4] + "9" + digits[4:]
    return "+" + digits


def e164_variants(wa_id):
    """Every E.164 form under which this WhatsApp user may be stored."""
    digits = _digits(wa_id)
    if not digits:
        return []
    variants = ["+" + digits]
    canonical = canonical_e164(digits)
    if canonical not in variants:
        variants.append(canonical)
    if digits.startswith("52") and len(digits) == 12:
        variants.append("+521" + digits[2:])
    elif digits.startswith("55") and len(digits) == 13 and digits[4] == "9":
        variants.append("+" + digits[:4] + digits[5:])
    return variants
