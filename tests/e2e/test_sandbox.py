"""End to end: `python3 sandbox.py` as README's "Try it in one command" runs it.

The sandbox installs the addon in a database of its own, starts the fake Graph
server and Odoo, and configures the Sandbox account. The test logs in through
the web login form, then uses the administrator's toolkit there: a test message
sent from the account reaches "read" with the fake's statuses and gets its cost,
and the demo lead carries the ad it came from. Ctrl+C stops everything.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from odoo_server import (
    ADMIN_LOGIN,
    ADMIN_PASSWORD,
    OdooInstance,
    OdooRpc,
    drive_queue,
    free_port,
    wait_for,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 900  # a fresh install of the addon, on a busy machine
READY_LINE = "Ctrl+C to stop"


class Sandbox:
    def __init__(self, tmp_path: Path):
        self.db = f"wab_sandbox_test_{os.getpid()}_{int(time.time())}"
        self.port = free_port()
        self.graph_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, WAB_SANDBOX_HOME=str(tmp_path / "home"))
        python = os.environ.get("ODOO_TEST_PYTHON") or sys.executable
        self.output: list[str] = []
        self.popen = subprocess.Popen(  # noqa: S603 - our interpreter and script
            [
                python,
                str(ROOT / "sandbox.py"),
                "--db",
                self.db,
                "--port",
                str(self.port),
                "--graph-port",
                str(self.graph_port),
            ],
            cwd=str(tmp_path),  # works from anywhere, not only the repository
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.popen.stdout:
            self.output.append(line)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def wait_ready(self):
        def ready():
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"sandbox.py exited with {self.popen.returncode}:\n{self.text}"
                )
            return READY_LINE in self.text

        wait_for(
            ready,
            READY_TIMEOUT,
            interval=0.5,
            message=lambda: f"the sandbox banner; output so far:\n{self.text}",
        )

    def interrupt(self) -> int:
        """Ctrl+C, as a human would press it."""
        self.popen.send_signal(signal.SIGINT)
        return self.popen.wait(timeout=120)

    def close(self):
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=30)
        # The sandbox keeps its database on purpose; the test does not.
        instance = OdooInstance(
            Path(self.env["WAB_SANDBOX_HOME"]) / "drop",
            environ=dict(self.env, ODOO_TEST_DATABASE=self.db),
        )
        instance._read_base_config()
        instance.drop()


@pytest.fixture
def sandbox(odoo, tmp_path):
    """`odoo` only makes sure Odoo 18 and PostgreSQL are there (else: skip)."""
    box = Sandbox(tmp_path)
    try:
        yield box
    finally:
        box.close()


def web_login(url: str, db: str) -> requests.Session:
    """The login form, as a browser fills it."""
    session = requests.Session()
    session.trust_env = False
    page = session.get(f"{url}/web/login", params={"db": db}, timeout=60)
    page.raise_for_status()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, "the login page has a CSRF token"
    answer = session.post(
        f"{url}/web/login",
        data={
            "login": ADMIN_LOGIN,
            "password": ADMIN_PASSWORD,
            "csrf_token": csrf.group(1),
            "db": db,
        },
        timeout=60,
    )
    answer.raise_for_status()
    assert "/web/login" not in answer.url, "the login was refused"
    return session


def test_sandbox_in_one_command(sandbox):
    sandbox.wait_ready()
    banner = sandbox.text
    assert f"{sandbox.url}/web/login" in banner
    assert f"{ADMIN_LOGIN} / {ADMIN_PASSWORD}" in banner

    session = web_login(sandbox.url, sandbox.db)
    info = session.post(
        f"{sandbox.url}/web/session/get_session_info",
        json={"jsonrpc": "2.0", "method": "call", "params": {}},
        timeout=60,
    ).json()["result"]
    assert info["uid"] and info["db"] == sandbox.db

    rpc = OdooRpc(sandbox.url, sandbox.db)
    account = rpc.search_read(
        "whatsapp.account", [("name", "=", "Sandbox")], ["state", "base_url"]
    )[0]
    assert account["state"] == "connected"
    assert account["base_url"] == f"http://127.0.0.1:{sandbox.graph_port}"
    assert rpc("whatsapp.template", "search_count", [("status", "=", "APPROVED")]) == 5

    # The demo lead that answered an ad carries it.
    lead = rpc.search_read(
        "crm.lead",
        [("name", "=", "Kitchen renovation")],
        ["source_id", "medium_id", "campaign_id", "whatsapp_ad_id"],
    )[0]
    assert lead["medium_id"][1] == "Click-to-WhatsApp"
    assert lead["source_id"][1] == "Facebook"
    assert lead["campaign_id"][1] == "Spring kitchens -20% (120210000000000001)"

    # The account's Send Test Message button, with its default template.
    action = rpc("whatsapp.account", "action_send_test_message", [account["id"]])
    wizard_id = rpc(
        "whatsapp.test.message",
        "create",
        {"phone": "+34 612 000 111"},
        context=action["context"],
    )
    template = rpc("whatsapp.test.message", "read", [wizard_id], ["template_id"])[0]
    assert template["template_id"][1].startswith("hello_world")
    rpc("whatsapp.test.message", "action_send", [wizard_id])
    message_id = rpc("whatsapp.test.message", "read", [wizard_id], ["message_id"])[0][
        "message_id"
    ][0]
    drive_queue(rpc, [message_id], 120)

    def read_state():
        row = rpc("whatsapp.test.message", "read", [wizard_id], ["message_state"])[0]
        return row["message_state"] == "read"

    wait_for(read_state, 60, message="the test message to be read")
    message = rpc(
        "whatsapp.message",
        "read",
        [message_id],
        ["pricing_category", "pricing_market", "cost", "cost_state"],
    )[0]
    assert message["pricing_category"] == "utility"
    assert message["pricing_market"] == "spain"
    assert message["cost_state"] == "billed" and message["cost"] > 0
    rpc.close()

    assert sandbox.interrupt() == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{sandbox.url}/web/health", timeout=5)
