"""A real Odoo 18 server with whatsapp_business, for tests/e2e and benchmarks/.

Standard library and ``requests`` only: this module never imports Odoo. Odoo runs
in subprocesses started with the interpreter that has it (``ODOO_TEST_PYTHON``,
else this one), so a missing Odoo or PostgreSQL is reported as
:class:`OdooUnavailable` instead of an import error.

Environment (all optional):

- ``ODOO_TEST_CONFIG``: an Odoo configuration file to start from (addons path,
  database connection, ``whatsapp_encryption_key``); a copy is completed and used.
- ``ODOO_TEST_DATABASE``: the database to use. Reused as it is when
  whatsapp_business is installed in it, else the module is installed. A database
  created here is dropped at the end unless ``ODOO_TEST_KEEP_DB`` is true.
- ``ODOO_TEST_PYTHON``: the interpreter that imports Odoo 18.
- ``PGHOST``/``PGPORT``/``PGUSER``/``PGPASSWORD``: the PostgreSQL server when no
  configuration file says otherwise (default 127.0.0.1:5432, current user).
- ``WHATSAPP_ENCRYPTION_KEY``: used when the configuration has no key; else a
  new Fernet key is generated for the run.
"""

from __future__ import annotations

import base64
import configparser
import contextlib
import getpass
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
ADDON = "whatsapp_business"
SUPPORTED_MAJORS = (18, 19)
ADMIN_LOGIN = "admin"
ADMIN_PASSWORD = "admin"  # what a database created by `odoo -i` starts with
INSTALL_TIMEOUT = 900
START_TIMEOUT = 180

# Runs with the Odoo interpreter: is Odoo 18 there, where are its addons, does
# PostgreSQL answer, does the database exist and have the module installed?
_PROBE = r"""
import json, os, sys
args = json.loads(sys.argv[1])
out = {"odoo": None, "major": None, "error": None, "addons": [], "pg": None,
       "db_exists": False, "installed": False, "odoo_bin": None}
try:
    import odoo
    from odoo import release
    out["odoo"] = release.version
    out["major"] = release.version_info[0]
    # Odoo 19's odoo is a namespace package: no __file__, one __path__ entry.
    root = os.path.abspath(list(odoo.__path__)[0])
    for path in (os.path.join(root, "..", "addons"), os.path.join(root, "addons")):
        path = os.path.abspath(path)
        if os.path.isdir(path) and path not in out["addons"]:
            out["addons"].append(path)
    script = os.path.abspath(os.path.join(root, "..", "odoo-bin"))
    out["odoo_bin"] = script if os.path.isfile(script) else None
except Exception as exc:
    out["error"] = "cannot import odoo (%s: %s)" % (type(exc).__name__, exc)
if out["odoo"]:
    try:
        import psycopg2
        conn = psycopg2.connect(dbname="postgres", connect_timeout=5, **args["pg"])
        conn.autocommit = True
        with conn.cursor() as cr:
            cr.execute("SELECT 1 FROM pg_database WHERE datname = %s", (args["db"],))
            out["db_exists"] = bool(cr.fetchone())
        conn.close()
        if out["db_exists"]:
            conn = psycopg2.connect(dbname=args["db"], connect_timeout=5, **args["pg"])
            with conn.cursor() as cr:
                try:
                    cr.execute(
                        "SELECT state FROM ir_module_module WHERE name = %s",
                        (args["module"],),
                    )
                    row = cr.fetchone()
                    out["installed"] = bool(row and row[0] == "installed")
                except psycopg2.Error:
                    out["installed"] = False
            conn.close()
    except Exception as exc:
        out["pg"] = ("%s: %s" % (type(exc).__name__, exc)).strip()
print(json.dumps(out))
"""

_DROP_DB = r"""
import json, sys
import psycopg2
from psycopg2 import sql
args = json.loads(sys.argv[1])
conn = psycopg2.connect(dbname="postgres", connect_timeout=10, **args["pg"])
conn.autocommit = True
with conn.cursor() as cr:
    cr.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
        sql.Identifier(args["db"])))
conn.close()
"""


class OdooUnavailable(RuntimeError):
    """Odoo 18 or PostgreSQL cannot be used here: the caller skips."""


class RpcError(RuntimeError):
    """An exception raised by Odoo while serving a JSON-RPC call."""

    def __init__(self, error: dict):
        data = error.get("data") or {}
        self.name = data.get("name") or ""
        self.message = data.get("message") or error.get("message") or str(error)
        self.debug = data.get("debug") or ""
        super().__init__(f"{self.name}: {self.message}")


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def wait_for(
    predicate: Callable[[], object],
    timeout: float,
    *,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition",
):
    """Poll ``predicate`` until it returns something truthy; return that value.

    Raises TimeoutError naming ``message`` (a string, or a callable giving a
    description of the last state) when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {text}")
        time.sleep(interval)


def tail(path: Path, lines: int = 60) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


class OdooRpc:
    """JSON-RPC (``/jsonrpc``) as one user, over a keep-alive session."""

    def __init__(
        self,
        url: str,
        db: str,
        login: str = ADMIN_LOGIN,
        password: str = ADMIN_PASSWORD,
        timeout: float = 300.0,
    ):
        self.url = url.rstrip("/")
        self.db = db
        self.password = password
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy from the environment
        self._ids = itertools.count(1)
        self.uid = self.call("common", "login", db, login, password)
        if not self.uid:
            raise RpcError({"message": f"login refused for {login!r} on {db!r}"})

    def call(self, service: str, method: str, *args):
        payload = {
            "jsonrpc": "2.0",
            "method": "call",
            "params": {"service": service, "method": method, "args": list(args)},
            "id": next(self._ids),
        }
        response = self.session.post(
            f"{self.url}/jsonrpc", json=payload, timeout=self.timeout
        )
        response.raise_for_status()
        data = response.json()
        if data.get("error"):
            raise RpcError(data["error"])
        return data.get("result")

    def __call__(self, model: str, method: str, *args, **kwargs):
        """``execute_kw(model, method, args, kwargs)`` as this user."""
        return self.call(
            "object",
            "execute_kw",
            self.db,
            self.uid,
            self.password,
            model,
            method,
            list(args),
            kwargs,
        )

    def search_read(self, model, domain, fields, **kwargs):
        return self(model, "search_read", domain, fields, **kwargs)

    def ref(self, xmlid: str) -> int:
        module, name = xmlid.split(".", 1)
        rows = self.search_read(
            "ir.model.data", [("module", "=", module), ("name", "=", name)], ["res_id"]
        )
        if not rows:
            raise KeyError(xmlid)
        return rows[0]["res_id"]

    def close(self):
        self.session.close()


@dataclass
class OdooProcess:
    """A running Odoo server."""

    popen: subprocess.Popen
    port: int
    workers: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


class OdooInstance:
    """One database with whatsapp_business installed, and its servers.

    ``prepare()`` finds Odoo and PostgreSQL (raising OdooUnavailable), writes the
    configuration and installs the module when needed; ``start()`` runs a server;
    ``close()`` stops the servers and drops a database created here.
    """

    def __init__(self, workdir: Path, *, environ: dict | None = None):
        self.environ = dict(os.environ if environ is None else environ)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.python = self.environ.get("ODOO_TEST_PYTHON") or sys.executable
        self.base_config = self.environ.get("ODOO_TEST_CONFIG") or None
        self.db = self.environ.get("ODOO_TEST_DATABASE") or (
            f"wab_e2e_{os.getpid()}_{int(time.time())}"
        )
        self.keep_db = truthy(self.environ.get("ODOO_TEST_KEEP_DB"))
        self.config = self.workdir / "odoo.conf"
        self.key: str | None = None
        self.created_db = False
        self.reused_db = False
        self.odoo_version = None
        self.odoo_bin: str | None = None
        self.processes: list[OdooProcess] = []
        self._options: dict[str, str] = {}

    # -- setup ----------------------------------------------------------------

    def _pg_args(self) -> dict:
        options = self._options
        args = {
            "host": options.get("db_host") or self.environ.get("PGHOST") or "127.0.0.1",
            "port": int(options.get("db_port") or self.environ.get("PGPORT") or 5432),
            "user": options.get("db_user")
            or self.environ.get("PGUSER")
            or getpass.getuser(),
        }
        password = options.get("db_password")
        if password in (None, "", "False"):
            password = self.environ.get("PGPASSWORD")
        if password:
            args["password"] = password
        return args

    def _read_base_config(self):
        if not self.base_config:
            return
        parser = configparser.RawConfigParser()
        if not parser.read(self.base_config, encoding="utf-8"):
            raise OdooUnavailable(f"ODOO_TEST_CONFIG={self.base_config} cannot be read")
        if parser.has_section("options"):
            self._options = {
                key: value
                for key, value in parser.items("options")
                if value not in ("", "False") or key == "db_password"
            }

    def probe(self) -> dict:
        args = {"pg": self._pg_args(), "db": self.db, "module": ADDON}
        try:
            proc = subprocess.run(
                [self.python, "-c", _PROBE, json.dumps(args)],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=str(self.workdir),
                env=self.environ,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OdooUnavailable(f"cannot run {self.python}: {exc}") from exc
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError) as exc:
            raise OdooUnavailable(
                f"the Odoo probe failed: {proc.stderr.strip()[-500:]}"
            ) from exc

    def prepare(self, *, update: bool = False) -> OdooInstance:
        """Find Odoo, write the configuration, install the module where it is
        missing (``update``: upgrade it where it is installed)."""
        self._read_base_config()
        info = self.probe()
        if info.get("error"):
            raise OdooUnavailable(info["error"])
        if info.get("major") not in SUPPORTED_MAJORS:
            raise OdooUnavailable(
                f"Odoo {info.get('odoo')} found, Odoo 18 or 19 is needed"
            )
        if info.get("pg"):
            pg = self._pg_args()
            raise OdooUnavailable(
                f"PostgreSQL does not answer at {pg['user']}@{pg['host']}:{pg['port']}"
                f" ({info['pg']})"
            )
        self.odoo_version = info["odoo"]
        self.odoo_bin = info.get("odoo_bin")
        self._write_config(info["addons"], info["major"])
        if info["db_exists"] and info["installed"]:
            self.reused_db = True
            if update:
                self.install(update=True)
        else:
            self.created_db = not info["db_exists"]
            self.install()
        return self

    def _write_config(self, odoo_addons: list[str], major: int):
        options = dict(self._options)
        pg = self._pg_args()
        addons = [p for p in options.get("addons_path", "").split(",") if p.strip()]
        if not addons:
            addons = [*odoo_addons, str(ROOT)]
        elif str(ROOT) not in [str(Path(p).resolve()) for p in addons]:
            addons.append(str(ROOT))
        self.key = (
            options.get("whatsapp_encryption_key")
            or self.environ.get("WHATSAPP_ENCRYPTION_KEY")
            or new_fernet_key()
        )
        options.update(
            addons_path=",".join(addons),
            db_host=pg["host"],
            db_port=str(pg["port"]),
            db_user=pg["user"],
            data_dir=options.get("data_dir") or str(self.workdir / "data"),
            # "True" means "no demo data" to Odoo 18 and 19 alike ("all" is 18's).
            without_demo="True",
        )
        if pg.get("password"):
            # Not "False" when there is none: Odoo 19 warns about that value.
            options["db_password"] = pg["password"]
        # Odoo 19 warns about options it does not know in the file: the key then
        # travels in the environment only (see env).
        options.pop("whatsapp_encryption_key", None)
        if major < 19:
            options["whatsapp_encryption_key"] = self.key
        # Set on the command line of each server instead.
        for name in (
            "http_port",
            "http_interface",
            "workers",
            "max_cron_threads",
            "gevent_port",
            "longpolling_port",
            "logfile",
            "db_name",
            "dbfilter",
            "pidfile",
        ):
            options.pop(name, None)
        lines = ["[options]", *(f"{k} = {v}" for k, v in sorted(options.items()))]
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def env(self) -> dict:
        env = dict(self.environ, TZ="UTC")  # as odoo-bin does
        if self.key:
            env["WHATSAPP_ENCRYPTION_KEY"] = self.key
        return env

    def install(self, *, update: bool = False):
        """Install the module (``update``: upgrade it where it is installed)."""
        log = self.workdir / ("update.log" if update else "install.log")
        cmd = [
            self.python,
            "-m",
            "odoo",
            "-c",
            str(self.config),
            "-d",
            self.db,
            "-u" if update else "-i",
            ADDON,
            "--stop-after-init",
            "--without-demo=True",
            f"--http-port={free_port()}",
            "--http-interface=127.0.0.1",
            f"--logfile={log}",
        ]
        try:
            proc = subprocess.run(
                cmd,
                env=self.env,
                cwd=str(self.workdir),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"installing {ADDON} timed out; log {log}") from exc
        if proc.returncode != 0:
            raise RuntimeError(
                f"{'updating' if update else 'installing'} {ADDON} on {self.db} failed"
                f" (exit {proc.returncode}):\n"
                f"{proc.stderr[-2000:]}\n{tail(log)}"
            )

    # -- servers ----------------------------------------------------------------

    def start(
        self,
        *,
        workers: int = 0,
        max_cron_threads: int = 1,
        extra_args: tuple[str, ...] = (),
        name: str | None = None,
        port: int | None = None,
    ) -> OdooProcess:
        """Start a server on 127.0.0.1 (``port``, else a free one); return once it
        serves RPC."""
        port = port or free_port()
        log = self.workdir / f"{name or f'odoo-w{workers}'}-{port}.log"
        # Prefork re-runs sys.argv[0] for its gevent child: with `-m odoo` that
        # is odoo/__main__.py, which cannot run as a script, so the child would
        # crash-loop. odoo-bin (next to the odoo package) is used there.
        launcher = [self.python, "-m", "odoo"]
        if workers and self.odoo_bin:
            launcher = [self.python, self.odoo_bin]
        cmd = [
            *launcher,
            "-c",
            str(self.config),
            "-d",
            self.db,
            f"--http-port={port}",
            "--http-interface=127.0.0.1",
            f"--gevent-port={free_port()}",
            f"--workers={workers}",
            f"--max-cron-threads={max_cron_threads}",
            f"--logfile={log}",
            *extra_args,
        ]
        with open(self.workdir / f"{log.stem}.stderr", "wb") as stderr:
            popen = subprocess.Popen(  # noqa: S603 - our interpreter and arguments
                cmd,
                env=self.env,
                cwd=str(self.workdir),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # own process group: prefork children too
            )
        process = OdooProcess(popen, port, workers, log)
        self.processes.append(process)
        try:
            self._wait_ready(process)
        except BaseException:
            self.stop(process)
            raise
        return process

    def _wait_ready(self, process: OdooProcess):
        session = requests.Session()
        session.trust_env = False

        def ready():
            if not process.alive():
                raise RuntimeError(
                    f"Odoo exited with status {process.popen.returncode}:\n"
                    f"{tail(process.log)}"
                )
            try:
                health = session.get(f"{process.url}/web/health", timeout=5)
                if health.status_code != 200:
                    return False
                OdooRpc(process.url, self.db).close()  # the registry is loaded
            except (requests.RequestException, RpcError):
                return False
            return True

        try:
            wait_for(ready, START_TIMEOUT, interval=0.3, message="Odoo to serve RPC")
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{tail(process.log)}") from exc
        finally:
            session.close()

    def stop(self, process: OdooProcess, timeout: float = 20.0):
        """SIGTERM (twice, as Odoo asks), then SIGKILL of its process group."""
        if process in self.processes:
            self.processes.remove(process)
        popen = process.popen
        for _attempt in range(2):
            if popen.poll() is not None:
                break
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=timeout / 2)
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(popen.pid, signal.SIGKILL)  # leftover prefork children
        except (ProcessLookupError, PermissionError):
            pass
        if popen.poll() is None:
            popen.wait(timeout=10)

    def drop(self):
        args = {"pg": self._pg_args(), "db": self.db}
        proc = subprocess.run(
            [self.python, "-c", _DROP_DB, json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=300,
            env=self.environ,
            check=False,
        )
        if proc.returncode:
            raise RuntimeError(f"could not drop {self.db}: {proc.stderr.strip()}")

    def close(self):
        for process in list(self.processes):
            self.stop(process)
        if self.created_db and not self.keep_db:
            self.drop()

    def rpc(self, process: OdooProcess, **kwargs) -> OdooRpc:
        return OdooRpc(process.url, self.db, **kwargs)


# -- WhatsApp configuration over RPC ------------------------------------------------


def configure_whatsapp(
    rpc: OdooRpc,
    server_url: str,
    *,
    name: str,
    phone_number_id: str,
    waba_id: str,
    access_token: str,
    app_secret: str,
    graph_url: str,
    test_connection: bool = True,
    **account_values,
) -> dict:
    """Point Odoo at itself and at the fake Graph server; return the account.

    Sets web.base.url (the webhook URL is built from it), enables WhatsApp on the
    admin's company and creates a whatsapp.account. Returns its id, webhook URL,
    verify token, state (``connected`` after a successful connection test) and
    company id.
    """
    for key, value in (("web.base.url", server_url), ("web.base.url.freeze", "True")):
        rpc("ir.config_parameter", "set_param", key, value)
    company_id = rpc("res.users", "read", [rpc.uid], ["company_id"])[0]["company_id"][0]
    rpc("res.company", "write", [company_id], {"whatsapp_enabled": True})
    values = {
        "name": name,
        "company_id": company_id,
        "phone_number_id": phone_number_id,
        "waba_id": waba_id,
        "base_url": graph_url,
        "access_token": access_token,
        "app_secret": app_secret,
        **account_values,
    }
    account_id = rpc("whatsapp.account", "create", values)
    if test_connection:
        # The health check: GET /{phone-number-id} on the Graph server.
        rpc("whatsapp.account", "action_test_connection", [account_id])
    info = rpc(
        "whatsapp.account",
        "read",
        [account_id],
        ["webhook_url", "verify_token", "state"],
    )[0]
    return {
        "id": account_id,
        "company_id": company_id,
        "webhook_url": info["webhook_url"],
        "verify_token": info["verify_token"],
        "state": info["state"],
    }


def run_code(rpc: OdooRpc, model: str, code: str, *, name: str = "e2e helper"):
    """Run Python ``code`` in a server action as the RPC user; return its action.

    Code server actions may call private methods (``_queue_outbound``...), which
    RPC cannot. The code sets ``action = {...}`` to hand a JSON value back.
    """
    model_id = rpc("ir.model", "search", [("model", "=", model)])[0]
    action_id = rpc(
        "ir.actions.server",
        "create",
        {"name": name, "model_id": model_id, "state": "code", "code": code},
    )
    try:
        return rpc("ir.actions.server", "run", [action_id])
    finally:
        rpc("ir.actions.server", "unlink", [action_id])


SEND_QUEUE_CRON = "whatsapp_business.ir_cron_whatsapp_send_queue"
FINAL_STATES = ("sent", "delivered", "read", "failed", "cancelled")


def _utc_now_text() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


def drive_queue(
    rpc: OdooRpc,
    message_ids: list[int],
    timeout: float,
    *,
    kick_after: float = 2.0,
    fields: tuple[str, ...] = (),
) -> list[dict]:
    """Wait until none of the messages is queued; return their rows.

    The cron thread sends at once (``ir.cron._trigger`` wakes it with a NOTIFY),
    but a retry due in a few seconds is only seen by Odoo's cron poll, once a
    minute. So when due messages sit unclaimed without progress for
    ``kick_after`` seconds, the cron is run as an admin's "Run Manually" would
    (``ir.cron.method_direct_trigger``; refused while the cron runs, which is
    fine: the claims keep two runs from sending one message twice).
    """
    cron_id = rpc.ref(SEND_QUEUE_CRON)
    read_fields = ["state", "claim_date", "next_attempt_date", *fields]
    deadline = time.monotonic() + timeout
    last_progress, last_key = time.monotonic(), None
    while True:
        rows = rpc("whatsapp.message", "read", list(message_ids), read_fields)
        queued = [row for row in rows if row["state"] == "queued"]
        if not queued:
            return rows
        claimed = sum(1 for row in queued if row["claim_date"])
        key = (len(queued), claimed)
        if key != last_key:
            last_key, last_progress = key, time.monotonic()
        now = _utc_now_text()
        due = [
            row
            for row in queued
            if not row["claim_date"]
            and (not row["next_attempt_date"] or row["next_attempt_date"] <= now)
        ]
        if due and not claimed and time.monotonic() - last_progress >= kick_after:
            with contextlib.suppress(RpcError):
                rpc("ir.cron", "method_direct_trigger", [cron_id])
            last_progress = time.monotonic()
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{len(queued)} of {len(rows)} message(s) still queued after "
                f"{timeout:g}s ({claimed} claimed, {len(due)} due)"
            )
        time.sleep(0.25)
