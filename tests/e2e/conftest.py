"""End-to-end fixtures: one real Odoo server per session, fake Graph servers per test.

Run: ``python3 -m pytest -p no:odoo tests/e2e`` (``run_tests.py`` does it with
``ODOO_TEST_CONFIG``/``ODOO_TEST_DATABASE`` set). Without Odoo 18 or PostgreSQL
every test is skipped with the reason; with ``CI=true`` (or
``WAB_E2E_REQUIRED=1``) that is an error instead. See odoo_server.py for the
environment variables.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import random
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest
from fake_graph import FakeAccount, FakeGraph
from odoo_server import (
    SEND_QUEUE_CRON,
    OdooInstance,
    OdooProcess,
    OdooRpc,
    OdooUnavailable,
    configure_whatsapp,
    free_port,
    truthy,
    wait_for,
)

# "2026-11-28 15:36:05,631 11532 ERROR dbname odoo.sql_db: message"
LOG_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} \d+ (?P<level>[A-Z]+) \S+ "
    r"(?P<logger>[\w.]+): "
)
BAD_LEVELS = {"ERROR", "CRITICAL"}
# Each run of a cron by the cron thread logs "Job 'name' (20) starting", then, on
# Odoo 18, "Job 'name' (20) processed N records, M records remaining" (even on
# failure) or, on Odoo 19, "Job 'name' (20) fully done|partially done|failed (...)".
CRON_LINE = re.compile(
    r"odoo\.addons\.base\.models\.ir_cron: Job '.*' \((?P<id>\d+)\) "
    r"(?P<event>starting|processed|fully done|partially done|failed) "
)

# Odoo logs every failing query at ERROR ("bad query: ... could not serialize
# access due to concurrent update") even when the HTTP layer then retries the
# request successfully: such entries are judged by the traceback that follows
# them, if any, not by themselves.
RETRIED_QUERY = re.compile(
    r"odoo\.sql_db: bad query: [\s\S]*could not serialize access due to concurrent"
)
# Known addon defects whose server-side error would otherwise fail unrelated
# tests. Each entry: (regex searched in the error and its traceback, why). A test
# that meets one passes with a warning, so the defect stays visible in the report.
# Server errors a test may hit without failing: none. Add an entry (regex, reason)
# only for a known, documented addon defect, and remove it with the fix.
KNOWN_SERVER_ERRORS = []


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "e2e: end-to-end test through a real Odoo server (tests/e2e)"
    )


def pytest_collection_modifyitems(items):
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.e2e)


def _unavailable(reason: str):
    if truthy(os.environ.get("CI")) or truthy(os.environ.get("WAB_E2E_REQUIRED")):
        pytest.fail(f"end-to-end tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"end-to-end tests need Odoo 18 and PostgreSQL: {reason}")


@dataclass
class Odoo:
    instance: OdooInstance
    server: OdooProcess
    rpc: OdooRpc

    @functools.cached_property
    def send_cron_id(self) -> int:
        return self.rpc.ref(SEND_QUEUE_CRON)

    @property
    def url(self) -> str:
        return self.server.url

    def log_size(self) -> int:
        try:
            return self.server.log.stat().st_size
        except OSError:
            return 0

    def _log_text(self, offset: int = 0) -> str:
        try:
            with open(self.server.log, "rb") as handle:
                handle.seek(offset)
                return handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def cron_running(self, cron_id: int | None = None) -> bool:
        """Whether the log shows a cron-thread run of the cron (of any cron when
        ``cron_id`` is None) that has not ended.

        (Manual runs happen inside an RPC call, which returns when they end.)
        """
        depth = {}
        for line in self._log_text().splitlines():
            match = CRON_LINE.search(line)
            if match and cron_id in (None, int(match["id"])):
                key = int(match["id"])
                started = match["event"] == "starting"
                count = depth.get(key, 0)
                depth[key] = count + 1 if started else max(count - 1, 0)
        return any(depth.values())

    def due_cron_triggers(self) -> int:
        """Triggers of active crons that are due. Odoo deletes a trigger only when
        the run it asked for has ended, after that run's log lines."""
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return self.rpc(
            "ir.cron.trigger",
            "search_count",
            [("call_at", "<=", now), ("cron_id.active", "=", True)],
        )

    def wait_server_idle(self, timeout: float = 60.0):
        """Wait until no cron runs nor is due: the server has logged all it will
        log for what the test asked (its HTTP answers come after their lines)."""
        wait_for(
            lambda: not self.cron_running() and not self.due_cron_triggers(),
            timeout,
            interval=0.1,
            message="the cron jobs to finish (no run open, no trigger due)",
        )

    def wait_cron_idle(self, cron_id: int, timeout: float = 60.0):
        wait_for(
            lambda: not self.cron_running(cron_id),
            timeout,
            interval=0.1,
            message=f"cron {cron_id} to finish its run",
        )

    def log_errors(self, offset: int) -> list[str]:
        """ERROR/CRITICAL entries (with their traceback) logged after ``offset``."""
        entries, current = [], None
        for line in self._log_text(offset).splitlines():
            match = LOG_LINE.match(line)
            if match:
                current = None
                if match["level"] in BAD_LEVELS:
                    current = [line]
                    entries.append(current)
            elif current is not None and len(current) < 80:
                current.append(line)
        return ["\n".join(entry) for entry in entries]


@pytest.fixture(scope="session")
def odoo(tmp_path_factory):
    """A fresh (or given) database with the module and a threaded Odoo server."""
    instance = OdooInstance(tmp_path_factory.mktemp("odoo"))
    try:
        try:
            instance.prepare()
        except OdooUnavailable as exc:
            _unavailable(str(exc))
        # --workers 0: threaded; one cron thread, woken by ir.cron._trigger's NOTIFY.
        server = instance.start(workers=0, max_cron_threads=1, name="odoo-e2e")
        rpc = instance.rpc(server)
        yield Odoo(instance, server, rpc)
        rpc.close()
    finally:
        instance.close()


class Numbers:
    """Distinct valid French mobile numbers (+3364xxxxxxx) for one session."""

    def __init__(self):
        self._count = itertools.count(random.randrange(10_000_000))

    def next(self) -> str:
        return f"+3364{next(self._count) % 10_000_000:07d}"

    def many(self, count: int) -> list[str]:
        return [self.next() for _ in range(count)]


@pytest.fixture(scope="session")
def numbers():
    return Numbers()


@dataclass
class WhatsApp:
    """The Odoo whatsapp.account and the Meta side it talks to."""

    odoo: Odoo
    fake_account: FakeAccount
    account_id: int
    company_id: int
    webhook_url: str
    verify_token: str
    graph_port: int
    send_cron_id: int
    templates: dict[str, int] = field(default_factory=dict)

    @property
    def rpc(self) -> OdooRpc:
        return self.odoo.rpc

    @property
    def phone_number_id(self) -> str:
        return self.fake_account.phone_number_id

    def account(self, *fields: str) -> dict:
        return self.rpc("whatsapp.account", "read", [self.account_id], list(fields))[0]

    def write_account(self, values: dict):
        """Write the account once no send batch runs.

        A batch ends by writing the account's health (_mark_success): writing the
        row meanwhile would make that batch fail (see KNOWN_SERVER_ERRORS).
        """
        self.odoo.wait_cron_idle(self.send_cron_id)
        self.rpc("whatsapp.account", "write", [self.account_id], values)

    @contextlib.contextmanager
    def settings(self, **values):
        """Write account fields for the duration of a block, then restore them."""
        before = self.account(*values)
        before.pop("id", None)
        self.write_account(values)
        try:
            yield
        finally:
            self.write_account(before)


@pytest.fixture(scope="session")
def whatsapp(odoo):
    """An Odoo account (rate limit 80/s) wired to a fake Graph number.

    Odoo's webhook URL is set on the fake account, so every fake server built
    on it posts its signed webhooks to the real route. The Graph URL is a fixed
    port on which each test starts its own fake (so the account is not written
    between tests). Templates are synced from the fake once (it serves
    fake_graph.DEFAULT_TEMPLATES).
    """
    graph_port = free_port()
    fake_account = FakeAccount(
        phone_number_id=f"109{random.randrange(10**12):012d}",
        waba_id=f"104{random.randrange(10**12):012d}",
        access_token="EAAfake" + secrets.token_urlsafe(32),
        app_secret=secrets.token_hex(16),
        display_phone_number="15550100001",
    )
    with FakeGraph([fake_account], port=graph_port) as fake:
        info = configure_whatsapp(
            odoo.rpc,
            odoo.url,
            name="E2E WhatsApp",
            phone_number_id=fake_account.phone_number_id,
            waba_id=fake_account.waba_id,
            access_token=fake_account.access_token,
            app_secret=fake_account.app_secret,
            graph_url=fake.url,
            rate_limit=80,
        )
        assert info["state"] == "connected", info
        assert info["webhook_url"].startswith(f"{odoo.url}/whatsapp/webhook/"), info
        fake_account.webhook_url = info["webhook_url"]
        odoo.rpc("whatsapp.account", "action_sync_templates", [info["id"]])
    templates = {
        row["name"]: row["id"]
        for row in odoo.rpc.search_read(
            "whatsapp.template",
            [("account_id", "=", info["id"]), ("status", "=", "APPROVED")],
            ["name"],
        )
    }
    assert "hello_world" in templates, templates
    yield WhatsApp(
        odoo,
        fake_account,
        info["id"],
        info["company_id"],
        info["webhook_url"],
        info["verify_token"],
        graph_port,
        odoo.send_cron_id,
        templates,
    )


@pytest.fixture
def make_fake(whatsapp):
    """Start the test's fake Graph server, with the given settings.

    A fresh server (seeded randomness, clean records) on the account's Graph
    port; stopped at the end of the test once its status webhooks are posted.
    """
    started = []

    def stop_all():
        while started:
            fake = started.pop()
            fake.wait_idle(15)
            fake.stop()

    def make(**settings) -> FakeGraph:
        stop_all()  # one server at a time on the port
        settings.setdefault("rate_limit", 80)
        fake = FakeGraph([whatsapp.fake_account], port=whatsapp.graph_port, **settings)
        started.append(fake.start())
        return fake

    yield make
    stop_all()


def _shorten(text: str, limit: int = 3000) -> str:
    lines = [
        line if len(line) <= 400 else line[:400] + " [...]"
        for line in text.splitlines()
    ]
    text = "\n".join(lines)
    return text if len(text) <= limit else text[:limit] + "\n[...]"


@pytest.fixture(autouse=True)
def server_log_clean(request):
    """Fail a test during which the Odoo server logged an ERROR or CRITICAL."""
    if "odoo" not in request.fixturenames:
        yield
        return
    odoo = request.getfixturevalue("odoo")
    offset = odoo.log_size()
    yield
    # A batch or a webhook the test started may still be ending: its errors
    # belong here.
    odoo.wait_server_idle()
    errors = odoo.log_errors(offset)
    unknown = []
    for error in errors:
        if RETRIED_QUERY.search(error):
            continue
        known = next(
            (why for pattern, why in KNOWN_SERVER_ERRORS if re.search(pattern, error)),
            None,
        )
        if known:
            request.node.warn(pytest.PytestWarning(f"known addon defect hit: {known}"))
        else:
            unknown.append(error)
    if unknown:
        pytest.fail(
            f"the Odoo server logged {len(unknown)} error(s) during the test "
            f"(log {odoo.server.log}):\n\n"
            + "\n\n".join(_shorten(error) for error in unknown[:5]),
            pytrace=False,
        )
