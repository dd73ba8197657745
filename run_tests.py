#!/usr/bin/env python3
"""The one test command of the repository: ``python3 run_tests.py``.

Phases (each one reports its own passed / failed / skipped figures by name):

1. pure tests: ``pytest -p no:odoo tests/`` without the end-to-end tests
   (``tests/e2e/`` and tests marked ``e2e``);
2. when Odoo is importable and PostgreSQL answers, on one fresh database:
   install ``whatsapp_business`` (the log must have no WARNING/ERROR/CRITICAL line),
   upgrade it (same check), run the addon's Odoo tests with pytest-odoo, then the
   end-to-end tests of ``tests/e2e/``; the database is dropped at the end;
3. with ``--odoo-runner``: Odoo's own test runner (``--test-enable``) on a second
   fresh database, which must run at least one test, fail none and log no warning.

Phases 2 and 3 run with the Odoo that ``python3`` imports (18.0 or 19.0), then once
more with the interpreter named by ``ODOO19_PYTHON`` when it is set (an Odoo 19
install beside the project): each series' phases are named after it ("odoo 19
install"...). With CI=true both Odoo 18 and Odoo 19 are required.

Without Odoo or PostgreSQL the Odoo phases are skipped with a loud banner, unless the
environment says CI=true, where that is an error. A table of every phase's figures
comes before the last line, ``N passed, N failed, N skipped``, which counts each test
once per Odoo series: the addon's Odoo tests run twice (pytest-odoo, then Odoo's
runner), so they are merged by test id and each keeps its worst outcome (failed,
then skipped, then passed); the same test on Odoo 18 and on Odoo 19 counts twice,
once per series. Failed harness checks (unclean install log, no test ran...) are
added as failures. Exit status 0 only when nothing failed.

Standard library only: it must run before anything is installed.
"""

import argparse
import base64
import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON = "whatsapp_business"
# Installed beside the addon in the test databases: the automation-rule test needs
# base_automation, which the addon works with but does not depend on.
TEST_MODULES = f"{ADDON},base_automation"
PURE_TESTS = "tests"
E2E_TESTS = os.path.join("tests", "e2e")
PYTHON = sys.executable
# The Odoo series the addon supports; with CI=true, each must be tested.
SUPPORTED_MAJORS = (18, 19)
# Interpreter of a second Odoo install (Odoo 19), tested in the same run.
SECOND_PYTHON_ENV = "ODOO19_PYTHON"
INSTALL_TIMEOUT = 1800  # seconds, per Odoo command
PYTEST_TIMEOUT = 3600

# "2026-11-28 15:36:05,631 11532 WARNING dbname odoo.modules.loading: message"
LOG_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} \d+ (?P<level>[A-Z]+) "
    r"(?P<db>\S+) (?P<logger>[\w.]+): "
)
BAD_LEVELS = {"WARNING", "ERROR", "CRITICAL"}
# Log lines that are allowed in spite of their level (regular expressions on the
# whole line). Keep this list short and justified.
LOG_IGNORE = []
# Odoo's runner (odoo/tests/result.py) logs one line per started, skipped and failed
# test, under the test module's logger; its closing summary counts skipped tests
# among the tests run and has no skipped figure, so the lines below are the source.
RUNNER_STARTED = re.compile(r"^Starting (?P<test>\S+) \.\.\.$")
RUNNER_SKIPPED = re.compile(r"^skipped (?P<test>.+?) : (?P<reason>.*)$")
RUNNER_FAILED = re.compile(r"^(?:FAIL|ERROR): (?P<test>.+)$")
# "Subtest TestX.test_y (a=1)": a failed subtest fails its test.
RUNNER_SUBTEST = re.compile(r"^Subtest (?P<test>\S+)")
# "setUpClass (odoo.addons.whatsapp_business.tests.test_x.TestX)": a whole class.
RUNNER_CLASS_LEVEL = re.compile(
    r"^(?:setUpClass|tearDownClass|setUpModule|tearDownModule) "
    r"\((?:odoo\.addons\.)?(?P<path>[\w.]+)\)$"
)
TEST_SUMMARY = re.compile(
    r"odoo\.tests\.result: (?P<failed>\d+) failed, (?P<errors>\d+) error\(s\) "
    r"of (?P<run>\d+) tests when loading database"
)

# Runs in a subprocess with the same interpreter: can Odoo be imported, where are
# its addons, is pytest-odoo there, does PostgreSQL accept us?
PROBE = r"""
import json, os, sys
out = {"odoo": None, "error": None, "addons": [], "pytest_odoo": False, "pg": None}
try:
    import odoo
    from odoo import release
    out["odoo"] = release.version
    out["major"] = release.version_info[0]
    # Odoo 19's odoo is a namespace package: no __file__, one __path__ entry.
    root = os.path.abspath(list(odoo.__path__)[0])
    for path in (os.path.join(root, "addons"), os.path.join(root, "..", "addons")):
        path = os.path.abspath(path)
        if os.path.isdir(path) and path not in out["addons"]:
            out["addons"].append(path)
except Exception as exc:
    out["error"] = "cannot import odoo (%s: %s)" % (type(exc).__name__, exc)
try:
    import pytest_odoo  # noqa: F401
    out["pytest_odoo"] = True
except Exception:
    pass
if out["odoo"]:
    try:
        import psycopg2
        kwargs = json.loads(sys.argv[1])
        psycopg2.connect(dbname="postgres", connect_timeout=5, **kwargs).close()
    except Exception as exc:
        out["pg"] = " ".join(("%s: %s" % (type(exc).__name__, exc)).split())
print(json.dumps(out))
"""

DROP_DB = r"""
import json, sys
import psycopg2
from psycopg2 import sql
kwargs = json.loads(sys.argv[1])
conn = psycopg2.connect(dbname="postgres", connect_timeout=10, **kwargs)
conn.autocommit = True
with conn.cursor() as cr:
    name = sql.Identifier(sys.argv[2])
    try:
        cr.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    except psycopg2.errors.SyntaxError:  # PostgreSQL < 13
        cr.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(name))
conn.close()
"""


def truthy(value):
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def banner(text, char="!"):
    line = char * 78
    print(f"\n{line}\n{char * 3} {text}\n{line}\n", flush=True)


def heading(text):
    print(f"\n==> {text}", flush=True)


PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
# When one test has several outcomes (it ran in two phases), the worst one counts.
WORST_FIRST = (FAILED, SKIPPED, PASSED)


class Phase:
    """One phase's outcomes, test id -> passed / failed / skipped."""

    def __init__(self, name, rerun_of=None):
        self.name = name
        # A re-run of tests another phase ran already: merged with it, test by test.
        self.rerun_of = rerun_of
        self.outcomes = {}
        # Skips or failures that stand for a whole class (Odoo runner's setUpClass).
        self.class_outcomes = {}

    def record(self, test_id, outcome):
        self.outcomes[test_id] = worst(self.outcomes.get(test_id), outcome)

    def count(self, outcome):
        return sum(1 for value in self.outcomes.values() if value == outcome) + sum(
            1 for value in self.class_outcomes.values() if value == outcome
        )


def worst(*outcomes):
    present = [outcome for outcome in outcomes if outcome]
    return min(present, key=WORST_FIRST.index) if present else None


class Totals:
    """Every phase's outcomes, plus failed harness checks."""

    def __init__(self):
        self.phases = []
        self.problems = []  # human readable, one per failed check or phase
        self.check_failures = 0  # failed harness checks, counted as failures
        self.timings = []  # (phase, seconds)

    def fail(self, message, count=1):
        self.check_failures += count
        self.problems.append(message)
        print(f"FAILED: {message}", flush=True)

    def phase(self, name, rerun_of=None):
        phase = Phase(name, rerun_of)
        self.phases.append(phase)
        return phase

    def unique_outcomes(self):
        """Test id -> outcome, each test once, re-runs merged into their phase."""
        merged = {}
        for phase in self.phases:
            prefix = phase.rerun_of or phase.name
            for test_id, outcome in phase.outcomes.items():
                key = (prefix, test_id)
                merged[key] = worst(merged.get(key), outcome)
            for class_id, outcome in phase.class_outcomes.items():
                members = [
                    key
                    for key in merged
                    if key[0] == prefix and key[1].startswith(class_id + ".")
                ]
                for key in members:
                    merged[key] = worst(merged[key], outcome)
                if not members:
                    merged[(prefix, class_id)] = outcome
        return merged

    def closing(self):
        merged = self.unique_outcomes().values()
        passed = sum(1 for outcome in merged if outcome == PASSED)
        failed = sum(1 for outcome in merged if outcome == FAILED)
        skipped = sum(1 for outcome in merged if outcome == SKIPPED)
        return passed, failed + self.check_failures, skipped

    def print_table(self):
        heading("tests per phase")
        print(f"    {'phase':<28} {'passed':>7} {'failed':>7} {'skipped':>7}")
        for phase in self.phases:
            figures = [phase.count(outcome) for outcome in (PASSED, FAILED, SKIPPED)]
            note = f"  (re-run of {phase.rerun_of})" if phase.rerun_of else ""
            print(
                f"    {phase.name:<28} {figures[0]:>7} {figures[1]:>7} "
                f"{figures[2]:>7}{note}"
            )
        if self.check_failures:
            print(f"    {'failed harness checks':<28} {'':>7} {self.check_failures:>7}")
        reruns = "".join(
            f" {phase.name} re-runs the tests of {phase.rerun_of}: each of them"
            " counts once, with its worst outcome (failed, then skipped, then"
            " passed)."
            for phase in self.phases
            if phase.rerun_of
        )
        text = (
            "The closing line counts each test once per Odoo series, over all the "
            f"phases above.{reruns} A test run on Odoo 18 and on Odoo 19 counts "
            "once for each. Failed harness checks count as failures."
        )
        print(textwrap.indent(textwrap.fill(text, 74), "    "), flush=True)


def junit_outcomes(path, test_id=None):
    """[(test id, outcome)] from a pytest JUnit XML report, or None.

    ``test_id(classname, name)`` names each test; by default "classname::name".
    """
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    test_id = test_id or (lambda classname, name: f"{classname}::{name}")
    outcomes = []
    for case in root.iter("testcase"):
        children = {child.tag for child in case}
        if children & {"failure", "error"}:
            outcome = FAILED
        elif "skipped" in children:
            outcome = SKIPPED
        else:
            outcome = PASSED
        outcomes.append((test_id(case.get("classname", ""), case.get("name")), outcome))
    return outcomes


def odoo_test_id(module, test):
    """One id for an addon test in both Odoo phases: test_x.TestClass.test_method.

    ``module`` is the dotted test module (pytest's classname minus the class, or the
    logger of Odoo's runner), ``test`` is "TestClass.test_method".
    """
    return f"{module.rsplit('.', 1)[-1]}.{test}"


def pytest_odoo_test_id(classname, name):
    module, _, cls = classname.rpartition(".")
    if not module:
        return f"{classname}::{name}"  # a collection error: no class
    return odoo_test_id(module, f"{cls}.{name}")


def is_import_noise(line):
    """Odoo's 'Importing test framework' ERROR, which pytest-odoo always triggers.

    pytest-odoo imports odoo.tests before Odoo's test mode is on (it cannot turn it
    on globally: Odoo would then run every at_install test while loading the
    registry), so Odoo logs that ERROR with a stack trace at every start.
    """
    return "odoo.tests.common: Importing test framework" in line


def stream(cmd, env, timeout, drop=None):
    """Run cmd, echo its output, minus the log blocks whose first line `drop` matches.

    Returns the exit status, or None on timeout.
    """
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    skipping = False
    try:
        for line in proc.stdout:
            if drop is not None:
                if skipping and line.startswith(("Stack (most recent", " ", "\t")):
                    continue
                skipping = drop(line)
                if skipping:
                    continue
            sys.stdout.write(line)
            sys.stdout.flush()
        rc = proc.wait()
    finally:
        timer.cancel()
    return None if timed_out.is_set() else rc


def run_pytest(
    totals,
    name,
    args,
    workdir,
    env=None,
    selecting=False,
    drop=None,
    test_id=None,
    python=PYTHON,
):
    """Run pytest and record its outcomes; a run where no test ran is a failure."""
    report = os.path.join(workdir, re.sub(r"\W+", "_", name).strip("_") + ".xml")
    cmd = [
        python,
        "-m",
        "pytest",
        "--continue-on-collection-errors",
        *args,
        f"--junitxml={report}",
        "-o",
        "junit_family=xunit2",
    ]
    if sys.stdout.isatty():
        cmd.append("--color=yes")  # the output goes through a pipe
    heading(f"{name}: {' '.join(cmd[1:])}")
    started = time.monotonic()
    try:
        rc = stream(cmd, env, PYTEST_TIMEOUT, drop=drop)
    finally:
        totals.timings.append((name, time.monotonic() - started))
    if rc is None:
        totals.fail(f"{name}: timed out after {PYTEST_TIMEOUT}s")
        return
    phase = totals.phase(name)
    for test, outcome in junit_outcomes(report, test_id) or []:
        phase.record(test, outcome)
    failed = phase.count(FAILED)
    print(
        f"{name}: {phase.count(PASSED)} passed, {failed} failed, "
        f"{phase.count(SKIPPED)} skipped",
        flush=True,
    )
    if rc == 0:
        return
    if rc == 5:
        if selecting:
            print(f"{name}: no test selected by -k", flush=True)
        else:
            totals.fail(f"{name}: no test ran (pytest exit status 5)")
    elif failed:
        # Failures and collection errors are already counted from the report.
        totals.problems.append(
            f"{name}: {failed} test(s) failed or errored (exit status {rc})"
        )
    else:
        totals.fail(f"{name}: pytest exit status {rc} (interrupted or usage error)")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scan_log(path):
    """Lines of an Odoo log with a bad level, each with its traceback lines."""
    bad = []
    current = None
    with open(path, encoding="utf-8", errors="replace") as log:
        for raw in log:
            line = raw.rstrip("\n")
            match = LOG_LINE.match(line)
            if match:
                current = None
                if match["level"] in BAD_LEVELS and not any(
                    re.search(pattern, line) for pattern in LOG_IGNORE
                ):
                    current = [line]
                    bad.append(current)
            elif current is not None and len(current) < 60:
                current.append(line)
    return bad


def print_log_problems(bad, limit=30):
    for entry in bad[:limit]:
        print("    " + "\n    ".join(entry), flush=True)
    if len(bad) > limit:
        print(f"    ... and {len(bad) - limit} more", flush=True)


def tail(path, count=40):
    with open(path, encoding="utf-8", errors="replace") as log:
        lines = log.readlines()[-count:]
    print("    " + "    ".join(lines), flush=True)


class OdooEnv:
    """Everything the Odoo phases share: config file, key, database connection."""

    def __init__(self, workdir, addons, db_args, python, major):
        self.workdir = workdir
        self.addons_path = ",".join(addons)
        self.db_args = db_args
        self.python = python
        self.major = major
        self.label = f"odoo {major}"
        # A Fernet key is 32 random bytes, urlsafe base64 encoded.
        self.key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        self.config = os.path.join(workdir, "odoo.conf")
        lines = [
            "[options]",
            f"addons_path = {self.addons_path}",
            f"data_dir = {os.path.join(workdir, 'data')}",
            f"db_host = {db_args.get('host', '')}",
            f"db_port = {db_args.get('port', '')}",
            f"db_user = {db_args.get('user', '')}",
            "http_interface = 127.0.0.1",
            # "True" means no demo data to Odoo 18 and 19 alike ("all" is 18's).
            "without_demo = True",
            "list_db = False",
        ]
        if db_args.get("password"):
            # Not "False" when there is none: Odoo 19 warns about that value.
            lines.append(f"db_password = {db_args['password']}")
        if major < 19:
            # Odoo 19 warns about options it does not know in the file: there the
            # key travels in the environment only (WHATSAPP_ENCRYPTION_KEY below).
            lines.append(f"whatsapp_encryption_key = {self.key}")
        with open(self.config, "w", encoding="utf-8") as conf:
            conf.write("\n".join(lines) + "\n")
        self.env = dict(os.environ, WHATSAPP_ENCRYPTION_KEY=self.key)

    def odoo(self, totals, name, db, args):
        """Run the Odoo CLI into a log file; returns (returncode, log path) or None."""
        log = os.path.join(self.workdir, re.sub(r"\W+", "_", name).strip("_") + ".log")
        cmd = [
            self.python,
            "-m",
            "odoo",
            "-c",
            self.config,
            "-d",
            db,
            f"--http-port={free_port()}",
            *args,
        ]
        heading(f"{name}: {' '.join(cmd[1:])}")
        started = time.monotonic()
        try:
            with open(log, "w", encoding="utf-8") as out:
                rc = subprocess.run(
                    cmd,
                    cwd=ROOT,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=INSTALL_TIMEOUT,
                ).returncode
        except subprocess.TimeoutExpired:
            totals.fail(f"{name}: timed out after {INSTALL_TIMEOUT}s")
            return None
        finally:
            elapsed = time.monotonic() - started
            totals.timings.append((name, elapsed))
        print(f"{name}: exit status {rc} in {elapsed:.1f}s, log {log}", flush=True)
        return rc, log

    def clean_run(self, totals, name, db, args):
        """An Odoo command that must exit 0 with no WARNING/ERROR/CRITICAL line.

        Returns whether the command itself succeeded (exit status 0): a log with
        warnings is a failure, but the database is still usable by the next phases.
        """
        result = self.odoo(totals, name, db, args)
        if result is None:
            return False
        rc, log = result
        bad = scan_log(log)
        if bad:
            totals.fail(f"{name}: {len(bad)} WARNING/ERROR/CRITICAL log line(s)")
            print_log_problems(bad)
        if rc != 0:
            totals.fail(f"{name}: Odoo exited with status {rc}")
            if not bad:
                tail(log)
        return rc == 0

    def drop(self, db):
        proc = subprocess.run(
            [self.python, "-c", DROP_DB, json.dumps(self.db_args), db],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode:
            print(
                f"WARNING: could not drop database {db}: {proc.stderr.strip()}",
                flush=True,
            )
        else:
            print(f"dropped database {db}", flush=True)


def runner_outcomes(path):
    """What Odoo's runner logged, test by test.

    Returns ({test id: outcome}, {class id: outcome}, skip reasons): a setUpClass
    that skipped or failed stands for its whole class, under the class's id.
    """
    started, failed, skipped = set(), set(), {}
    class_level = {}
    with open(path, encoding="utf-8", errors="replace") as log:
        for raw in log:
            line = raw.rstrip()  # Odoo's log lines end with a space
            match = LOG_LINE.match(line)
            if not match:
                continue
            logger, message = match["logger"], line[match.end() :]
            # The runner logs under the test's module, or odoo.tests.* for a class.
            if ".tests." not in logger and not logger.startswith("odoo.tests."):
                continue
            if match["level"] == "INFO" and (found := RUNNER_STARTED.match(message)):
                started.add(odoo_test_id(logger, found["test"]))
            elif match["level"] == "INFO" and (found := RUNNER_SKIPPED.match(message)):
                test, reason = found["test"], found["reason"]
                if whole := RUNNER_CLASS_LEVEL.match(test):
                    class_level[odoo_class_id(whole["path"])] = SKIPPED
                else:
                    skipped[odoo_test_id(logger, test)] = reason
            elif match["level"] == "ERROR" and (found := RUNNER_FAILED.match(message)):
                test = found["test"]
                if whole := RUNNER_CLASS_LEVEL.match(test):
                    class_level[odoo_class_id(whole["path"])] = FAILED
                    continue
                if sub := RUNNER_SUBTEST.match(test):
                    test = sub["test"]
                failed.add(odoo_test_id(logger, test))
    outcomes = {test: PASSED for test in started}
    outcomes.update({test: SKIPPED for test in skipped})
    outcomes.update({test: FAILED for test in failed})
    return outcomes, class_level, skipped


def odoo_class_id(path):
    """test_x.TestClass from whatsapp_business.tests.test_x.TestClass."""
    module, _, cls = path.rpartition(".")
    return odoo_test_id(module, cls)


def odoo_runner(totals, odoo_env, db, rerun_of):
    """Odoo's own test runner on a fresh database: tests must run and all pass."""
    name = f"{odoo_env.label} runner"
    result = odoo_env.odoo(
        totals,
        name,
        db,
        [
            "-i",
            TEST_MODULES,
            "--test-enable",
            "--test-tags",
            f"/{ADDON}",
            "--stop-after-init",
            "--log-level=test",
            "--without-demo=True",
        ],
    )
    if result is None:
        return
    rc, log = result
    with open(log, encoding="utf-8", errors="replace") as handle:
        summaries = [m for m in map(TEST_SUMMARY.search, handle) if m]
    bad = [entry for entry in scan_log(log) if not TEST_SUMMARY.search(entry[0])]
    if not summaries:
        totals.fail(f"{name}: no test summary in the log (exit status {rc})")
        print_log_problems(bad)
        if not bad:
            tail(log)
        return
    summary = summaries[-1]
    run = int(summary["run"])
    reported_failed = int(summary["failed"]) + int(summary["errors"])
    print(f"{name}: {summary.group(0)}", flush=True)
    phase = totals.phase(name, rerun_of=rerun_of)
    outcomes, class_level, skips = runner_outcomes(log)
    for test, outcome in outcomes.items():
        phase.record(test, outcome)
    phase.class_outcomes.update(class_level)
    failed = phase.count(FAILED)
    print(
        f"{name}: {phase.count(PASSED)} passed, {failed} failed, "
        f"{phase.count(SKIPPED)} skipped (from its per-test log lines)",
        flush=True,
    )
    for test, reason in sorted(skips.items()):
        print(f"    skipped {test}: {reason}", flush=True)
    if failed:
        totals.problems.append(f"{name}: {failed} test(s) failed or errored")
    if reported_failed and not failed:
        totals.fail(
            f"{name}: Odoo reports {reported_failed} failure(s) that its log lines "
            "do not name"
        )
    if run == 0:
        totals.fail(f"{name}: Odoo ran 0 tests of {ADDON}")
    elif not outcomes:
        totals.fail(f"{name}: Odoo ran {run} tests but logged none of them")
    if bad:
        if not failed:
            totals.fail(f"{name}: {len(bad)} WARNING/ERROR/CRITICAL log line(s)")
        print_log_problems(bad)
    if rc != 0 and not failed:
        totals.fail(f"{name}: Odoo exited with status {rc}")


def unimported_test_modules():
    """Odoo's runner only sees test modules imported by the tests package."""
    tests_dir = ROOT / ADDON / "tests"
    init = tests_dir / "__init__.py"
    if not init.is_file():
        return []
    text = init.read_text(encoding="utf-8")
    return sorted(
        path.stem
        for path in tests_dir.glob("test_*.py")
        if not re.search(rf"\b{re.escape(path.stem)}\b", text)
    )


def has_test_files(directory):
    return directory.is_dir() and any(
        path.name.startswith("test_") or path.name.endswith("_test.py")
        for path in directory.rglob("*.py")
    )


def odoo_phases(totals, args, probe, db_args, python):
    workdir = tempfile.mkdtemp(prefix="wab_test_")
    addons = probe["addons"] + [str(ROOT)]
    extra = os.environ.get("WAB_EXTRA_ADDONS_PATH")
    if extra:
        addons += [path for path in extra.split(",") if path]
    odoo_env = OdooEnv(workdir, addons, db_args, python, probe["major"])
    label = odoo_env.label
    tests_phase = f"{label} tests (pytest-odoo)"
    stamp = f"{probe['major']}_{os.getpid()}_{int(time.time())}"
    db = f"wab_test_{stamp}"
    created = []
    keep_tmp = args.keep_db
    try:
        created.append(db)
        installed = odoo_env.clean_run(
            totals,
            f"{label} install",
            db,
            [
                "-i",
                TEST_MODULES,
                "--stop-after-init",
                "--without-demo=True",
            ],
        )
        if installed:
            odoo_env.clean_run(
                totals, f"{label} upgrade", db, ["-u", ADDON, "--stop-after-init"]
            )
            missing = unimported_test_modules()
            if missing:
                totals.fail(
                    f"{ADDON}/tests/__init__.py does not import {', '.join(missing)}: "
                    "Odoo's runner would not run them"
                )
            selecting = bool(args.k)
            kflag = ["-k", args.k] if args.k else []
            run_pytest(
                totals,
                tests_phase,
                [
                    "-p",
                    "no:cacheprovider",
                    f"--odoo-config={odoo_env.config}",
                    f"--odoo-database={db}",
                    f"--odoo-addons-path={odoo_env.addons_path}",
                    "--odoo-http",
                    "--odoo-log-level=warn",
                    "-q",
                    "-rfEs",
                    *kflag,
                    f"{ADDON}/tests",
                ],
                workdir,
                env=odoo_env.env,
                selecting=selecting,
                drop=is_import_noise,
                test_id=pytest_odoo_test_id,
                python=python,
            )
            if has_test_files(ROOT / E2E_TESTS):
                env = dict(
                    odoo_env.env,
                    ODOO_TEST_CONFIG=odoo_env.config,
                    ODOO_TEST_DATABASE=db,
                    ODOO_TEST_PYTHON=python,
                )
                run_pytest(
                    totals,
                    f"{label} e2e tests",
                    [
                        "-p",
                        "no:odoo",
                        "-q",
                        "-rfEs",
                        *kflag,
                        E2E_TESTS,
                    ],
                    workdir,
                    env=env,
                    selecting=selecting,
                )
            else:
                print(
                    f"\n==> e2e tests: none ({E2E_TESTS}/ has no test file)", flush=True
                )
        else:
            print("install failed: upgrade and Odoo tests not run", flush=True)
        if args.odoo_runner:
            db2 = f"wab_runner_{stamp}"
            created.append(db2)
            odoo_runner(totals, odoo_env, db2, rerun_of=tests_phase)
    except KeyboardInterrupt:
        totals.fail("interrupted")
    finally:
        if args.keep_db:
            print(f"kept database(s) {', '.join(created)}; config {odoo_env.config}")
        else:
            for name in created:
                odoo_env.drop(name)
        if not keep_tmp:
            shutil.rmtree(workdir, ignore_errors=True)


def db_connection_args():
    args = {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": int(os.environ.get("PGPORT", "5432")),
        "user": os.environ.get("PGUSER") or getpass.getuser(),
    }
    if os.environ.get("PGPASSWORD"):
        args["password"] = os.environ["PGPASSWORD"]
    return args


def probe_odoo(db_args, python=PYTHON):
    try:
        proc = subprocess.run(
            [python, "-c", PROBE, json.dumps(db_args)],
            capture_output=True,
            text=True,
            cwd=tempfile.gettempdir(),
            timeout=120,
            check=False,
        )
    except OSError as exc:
        return {"odoo": None, "error": f"cannot run {python}: {exc}"}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"odoo": None, "error": f"probe failed: {proc.stderr.strip()[-500:]}"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pure-only",
        action="store_true",
        help="run the pure tests only (no Odoo, no database)",
    )
    parser.add_argument(
        "--odoo-runner",
        action="store_true",
        help="also run Odoo's own test runner on a second fresh database",
    )
    parser.add_argument(
        "--keep-db",
        action="store_true",
        help="do not drop the test database(s) nor the temporary config",
    )
    parser.add_argument(
        "-k",
        metavar="EXPRESSION",
        help="pytest -k expression, passed to every pytest phase",
    )
    args = parser.parse_args(argv)
    in_ci = truthy(os.environ.get("CI"))
    totals = Totals()
    os.chdir(ROOT)
    started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="wab_pure_") as workdir:
        kflag = ["-k", args.k] if args.k else []
        run_pytest(
            totals,
            "pure tests",
            [
                "-p",
                "no:odoo",
                "-q",
                "-rfEs",
                f"--ignore={E2E_TESTS}",
                "-m",
                "not e2e",
                *kflag,
                PURE_TESTS,
            ],
            workdir,
            selecting=bool(args.k),
        )

    if args.pure_only:
        print("\n==> Odoo phases not run (--pure-only)", flush=True)
    else:
        db_args = db_connection_args()
        interpreters = [("python3", PYTHON)]
        second = os.environ.get(SECOND_PYTHON_ENV)
        if second:
            interpreters.append((SECOND_PYTHON_ENV, second))
        tested = set()
        for origin, python in interpreters:
            probe = probe_odoo(db_args, python)
            reason = probe.get("error")
            if not reason and probe.get("major") not in SUPPORTED_MAJORS:
                reason = (
                    f"Odoo {probe.get('odoo')} found, this addon needs Odoo "
                    + " or ".join(f"{major}.0" for major in SUPPORTED_MAJORS)
                )
            if not reason and probe.get("major") in tested:
                reason = f"Odoo {probe['major']} is tested already"
            if not reason and probe.get("pg"):
                where = f"{db_args['user']}@{db_args['host']}:{db_args['port']}"
                reason = f"PostgreSQL does not answer at {where} ({probe['pg']})"
            if not reason and not probe.get("pytest_odoo"):
                reason = (
                    "pytest-odoo is not installed "
                    "(pip install -r test-requirements.txt)"
                )
            if reason:
                banner(f"ODOO TESTS SKIPPED ({origin} = {python}): {reason}")
                if in_ci:
                    totals.fail(f"CI=true and the Odoo tests cannot run: {reason}")
                continue
            print(
                f"\n==> Odoo {probe['odoo']} ({origin} = {python}) with PostgreSQL "
                f"at {db_args['host']}:{db_args['port']}",
                flush=True,
            )
            tested.add(probe["major"])
            odoo_phases(totals, args, probe, db_args, python)
        missing = [major for major in SUPPORTED_MAJORS if major not in tested]
        if missing and tested:
            names = ", ".join(f"Odoo {major}" for major in missing)
            hint = (
                f"set {SECOND_PYTHON_ENV} to the python of an Odoo 19 install"
                if 19 in missing
                else "run with the python of an Odoo 18 install"
            )
            if in_ci:
                totals.fail(f"CI=true and {names} was not tested ({hint})")
            else:
                banner(f"{names.upper()} NOT TESTED: {hint}", char="!")

    heading("timings")
    for phase, seconds in totals.timings:
        print(f"    {phase:<28} {seconds:7.1f}s")
    print(f"    {'total':<28} {time.monotonic() - started:7.1f}s")
    if totals.problems:
        heading("problems")
        for problem in totals.problems:
            print(f"    - {problem}")
    totals.print_table()
    passed, failed, skipped = totals.closing()
    print(f"\n{passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 1 if failed or totals.problems else 0


if __name__ == "__main__":
    sys.exit(main())
