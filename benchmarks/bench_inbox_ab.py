"""The inbox's cost on inbound processing, in one run (issue 12 item 8).

    odoo-bin shell -d DB --no-http < benchmarks/bench_inbox_ab.py

In one Odoo shell (no server, so no cron worker competes): rounds of 200 inbound
texts from 100 new customers (message, contact, lead, chatter, and conversation
created), then 200 more from the same, now returning, customers, are processed
by ``whatsapp.webhook.event._cron_process_pending``, alternately with the copy
in the Discuss conversation (the product) and with ``_mirror_in_conversations``
replaced by a no-op in this process only (the reference: the same path without
the inbox; no product setting turns the inbox off). Alternating rounds share the
machine's load. Prints messages/s of each and the ratios; everything it creates
is committed (use a scratch database).
"""

import json
import random
import statistics
import time
from unittest.mock import patch

ROUNDS = 3  # per side
MESSAGES = 200
CUSTOMERS = 100

env = self.env  # noqa: F821 - the Odoo shell's
Account = env["whatsapp.account"].sudo()
account = Account.search([("phone_number_id", "=", "109888")], limit=1)
if not account:
    env.company.whatsapp_enabled = True
    account = Account.create(
        {
            "name": "bench inbox ab",
            "company_id": env.company.id,
            "phone_number_id": "109888",
            "waba_id": "104888",
            "access_token": "EAAbenchab",
            "app_secret": "s",
        }
    )
account.create_lead = True
env.cr.commit()
Event = env["whatsapp.webhook.event"].sudo()
Message = type(env["whatsapp.message"])


def run_round(mirror, prefix):
    base = int(time.time())
    for i in range(MESSAGES):
        number = f"549113{prefix:03d}{i % CUSTOMERS:04d}"
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "1555", "phone_number_id": "109888"},
            "contacts": [{"profile": {"name": f"AB {number}"}, "wa_id": number}],
            "messages": [
                {
                    "from": number,
                    "id": f"wamid.AB{prefix}.{mirror:d}.{base}.{i}",
                    "timestamp": str(base + i),
                    "type": "text",
                    "text": {"body": f"hola {i}"},
                }
            ],
        }
        entry = {"id": "104888", "changes": [{"field": "messages", "value": value}]}
        body = {"object": "whatsapp_business_account", "entry": [entry]}
        Event._receive(account, json.dumps(body).encode())
    env.cr.commit()
    began = time.monotonic()
    if mirror:
        Event._cron_process_pending()
    else:
        with patch.object(Message, "_mirror_in_conversations", lambda self: None):
            Event._cron_process_pending()
    elapsed = time.monotonic() - began
    env.cr.commit()
    return MESSAGES / elapsed


prefixes = random.sample(range(100, 1000), 2 * ROUNDS)
rates = {(mirror, kind): [] for mirror in (True, False) for kind in ("new", "back")}
for index in range(ROUNDS):
    for side, mirror in enumerate((False, True)):
        prefix = prefixes[2 * index + side]
        rates[mirror, "new"].append(run_round(mirror, prefix))
        rates[mirror, "back"].append(run_round(mirror, prefix))
result = {}
for kind in ("new", "back"):
    with_inbox = statistics.median(rates[True, kind])
    without = statistics.median(rates[False, kind])
    result[kind] = {
        "with_inbox_per_s": [round(x, 1) for x in rates[True, kind]],
        "without_inbox_per_s": [round(x, 1) for x in rates[False, kind]],
        "median_with": round(with_inbox, 1),
        "median_without": round(without, 1),
        "ratio": round(with_inbox / without, 3),
    }
print("BENCH_INBOX_AB " + json.dumps(result))
