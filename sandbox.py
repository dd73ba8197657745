#!/usr/bin/env python3
"""Try whatsapp_business in one command, without a Meta account.

    python3 sandbox.py [--db NAME] [--port N] [--graph-port N]

Uses the Odoo 18 that ``python3`` imports and the PostgreSQL server of
``PGHOST``/``PGPORT``/``PGUSER``/``PGPASSWORD`` (default 127.0.0.1:5432, the
current user). It:

1. creates the database with the addon, or updates the addon in it;
2. starts the fake Graph API server (tests/fake_graph.py) with automatic
   delivery statuses and its templates, then Odoo;
3. configures a sandbox WhatsApp account wired to the fake, with demo contacts
   and leads (one of them came from a Click-to-WhatsApp ad);
4. prints the URL and the login, and runs until Ctrl+C.

The encryption key of the sandbox secrets and Odoo's files live in
``~/.wab_sandbox/<db>`` (``WAB_SANDBOX_HOME`` to change it), outside the
repository. Running it again reuses the database and its data.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent
for path in (ROOT / "tests", ROOT / "tests" / "e2e", ROOT / "whatsapp_business"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))  # the e2e helpers, the fake, the addon's signer

from fake_graph import FakeAccount, FakeGraph  # noqa: E402
from odoo_server import (  # noqa: E402
    ADMIN_LOGIN,
    ADMIN_PASSWORD,
    OdooInstance,
    OdooRpc,
    OdooUnavailable,
    configure_whatsapp,
    new_fernet_key,
)

ACCOUNT_NAME = "Sandbox"
TOKEN = "sandbox-token"
APP_SECRET = "sandbox-secret"
# (name, mobile number, lead name); the numbers are fictitious. They go in "phone",
# the one number field of contacts and leads on both Odoo 18 and 19.
DEMO_CONTACTS = [
    ("Amélie Dupont", "+33612345678", "Kitchen renovation"),
    ("Bruno Costa", "+34612000111", "Office fit-out"),
    ("Carla Souza", "+5511987654321", "Shop window"),
]
# What Meta adds to the first message of a chat opened from a Click-to-WhatsApp ad.
DEMO_AD_REFERRAL = {
    "source_url": "https://fb.me/sandbox-ad",
    "source_id": "120210000000000001",
    "source_type": "ad",
    "headline": "Spring kitchens -20%",
    "body": "Design your kitchen with us",
    "media_type": "image",
    "ctwa_clid": "ARAkSandboxClickId",
}


def say(text: str, *, error: bool = False) -> None:
    """The sandbox talks to a human."""
    print(text, file=sys.stderr if error else sys.stdout, flush=True)  # noqa: T201


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Odoo with whatsapp_business and a fake WhatsApp Cloud API, "
        "in one command."
    )
    parser.add_argument("--db", default="wab_sandbox", help="database name")
    parser.add_argument("--port", type=int, default=8069, help="Odoo HTTP port")
    parser.add_argument(
        "--graph-port", type=int, default=8765, help="fake Graph API server port"
    )
    return parser.parse_args(argv)


def sandbox_environ(db: str) -> tuple[dict, Path]:
    """The environment of the Odoo processes, and the sandbox's state directory."""
    home = Path(os.environ.get("WAB_SANDBOX_HOME") or Path.home() / ".wab_sandbox")
    workdir = home / db
    workdir.mkdir(parents=True, exist_ok=True)
    environ = dict(os.environ, ODOO_TEST_DATABASE=db, ODOO_TEST_KEEP_DB="1")
    if not environ.get("WHATSAPP_ENCRYPTION_KEY"):
        # The stored secrets need the same key on every run: keep it on disk.
        key_file = workdir / "encryption.key"
        if not key_file.exists():
            key_file.write_text(new_fernet_key() + "\n", encoding="utf-8")
            key_file.chmod(0o600)
        environ["WHATSAPP_ENCRYPTION_KEY"] = key_file.read_text().strip()
    return environ, workdir


def configure_account(rpc: OdooRpc, odoo_url: str, fake: FakeGraph) -> dict:
    """Create the sandbox account, or point the existing one at this fake."""
    fake_account = fake.account()
    existing = rpc(
        "whatsapp.account",
        "search",
        [("phone_number_id", "=", fake_account.phone_number_id)],
        context={"active_test": False},
    )
    if not existing:
        info = configure_whatsapp(
            rpc,
            odoo_url,
            name=ACCOUNT_NAME,
            phone_number_id=fake_account.phone_number_id,
            waba_id=fake_account.waba_id,
            access_token=TOKEN,
            app_secret=APP_SECRET,
            graph_url=fake.url,
        )
    else:
        # The ports may differ from the last run: same steps, existing account.
        for key, value in (("web.base.url", odoo_url), ("web.base.url.freeze", "True")):
            rpc("ir.config_parameter", "set_param", key, value)
        rpc(
            "whatsapp.account",
            "write",
            existing,
            {"active": True, "base_url": fake.url, "access_token": TOKEN},
        )
        company_id = rpc("whatsapp.account", "read", existing, ["company_id"])[0][
            "company_id"
        ][0]
        rpc("res.company", "write", [company_id], {"whatsapp_enabled": True})
        rpc("whatsapp.account", "action_test_connection", existing)
        info = rpc("whatsapp.account", "read", existing, ["webhook_url", "state"])[0]
    fake_account.webhook_url = info["webhook_url"]
    account_id = info["id"]
    rpc("whatsapp.account", "action_subscribe_app", [account_id])
    rpc("whatsapp.account", "action_sync_templates", [account_id])
    return {"id": account_id, "webhook_url": info["webhook_url"]}


def create_demo_data(rpc: OdooRpc, fake: FakeGraph) -> bool:
    """Demo contacts with a lead each, once; True when they were created now."""
    names = [name for name, _mobile, _lead in DEMO_CONTACTS]
    if rpc("res.partner", "search_count", [("name", "in", names)]):
        return False
    for name, mobile, lead in DEMO_CONTACTS:
        partner_id = rpc("res.partner", "create", {"name": name, "phone": mobile})
        rpc(
            "crm.lead",
            "create",
            {
                "name": lead,
                "partner_id": partner_id,
                "phone": mobile,
                "type": "opportunity",
            },
        )
    # A customer answers an ad: the reply opens the 24-hour window and its lead
    # carries the ad's campaign.
    first_mobile = DEMO_CONTACTS[0][1].lstrip("+")
    fake.inject_inbound(
        fake.account().phone_number_id,
        {
            "from": first_mobile,
            "type": "text",
            "text": {"body": "Hello! Is the spring offer still on?"},
            "referral": DEMO_AD_REFERRAL,
        },
        profile_name=DEMO_CONTACTS[0][0],
    )
    return True


def banner(odoo_url: str, fake: FakeGraph, db: str, workdir: Path, log: Path) -> str:
    mobile = DEMO_CONTACTS[0][1].lstrip("+")
    return (
        "\nWhatsApp sandbox ready.\n"
        f"  Odoo            {odoo_url}/web/login?db={db}\n"
        f"  Login           {ADMIN_LOGIN} / {ADMIN_PASSWORD}\n"
        f"  Database        {db}\n"
        f"  Fake Graph API  {fake.url} (account 'Sandbox', statuses posted back)\n"
        f"  Odoo log        {log}\n"
        f"  State           {workdir}\n"
        "\nTry: CRM > Configuration > WhatsApp > Accounts > Sandbox > "
        "Send Test Message,\n"
        "or open a lead and click WhatsApp. Play the customer:\n"
        f"  curl -X POST {fake.url}/_sandbox/inbound "
        "-H 'Content-Type: application/json' "
        f"""-d '{{"from": "{mobile}", "text": "Hola"}}'\n"""
        "\nCtrl+C to stop (the database is kept).\n"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    environ, workdir = sandbox_environ(args.db)
    instance = OdooInstance(workdir, environ=environ)
    fake = FakeGraph(
        [
            FakeAccount(
                access_token=TOKEN,
                app_secret=APP_SECRET,
            )
        ],
        port=args.graph_port,
        auto_statuses=True,
        sandbox=True,
    )
    done = threading.Event()
    # `kill <pid>` stops as cleanly as Ctrl+C does.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: done.set())
    try:
        say(f"Preparing database {args.db} (a first run takes a few minutes)...")
        instance.prepare(update=True)
        fake.start()
        say(f"Starting Odoo on port {args.port}...")
        server = instance.start(
            workers=0, max_cron_threads=1, name="sandbox", port=args.port
        )
        rpc = instance.rpc(server)
        configure_account(rpc, server.url, fake)
        create_demo_data(rpc, fake)
        rpc.close()
        say(banner(server.url, fake, args.db, workdir, server.log))
        while not done.wait(0.5) and server.alive():
            pass
        if not server.alive():
            say(f"Odoo stopped; see {server.log}", error=True)
            return 1
    except OdooUnavailable as exc:
        say(f"Cannot start the sandbox: {exc}", error=True)
        return 2
    except (OSError, RuntimeError) as exc:  # a port in use, Odoo failing to start
        say(f"The sandbox failed: {exc}", error=True)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        instance.close()  # stops Odoo; ODOO_TEST_KEEP_DB keeps the database
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
