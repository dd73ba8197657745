"""The wa_cloud package must stay pure: no Odoo, only stdlib + requests + cryptography.

Every module found under whatsapp_business/wa_cloud/ (present and future) is
imported in a fresh interpreter where any attempt to import ``odoo`` fails and
is recorded, and its source is scanned for import statements.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ADDON_DIR = Path(__file__).resolve().parent.parent / "whatsapp_business"
PACKAGE_DIR = ADDON_DIR / "wa_cloud"
ALLOWED_THIRD_PARTY = frozenset({"requests", "urllib3", "cryptography"})


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ADDON_DIR).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


SOURCES = sorted(PACKAGE_DIR.rglob("*.py"))
MODULES = [_module_name(path) for path in SOURCES]

# Runs in a child interpreter started with -I (no cwd, no PYTHONPATH, no user
# site), so nothing from pytest or its plugins is already imported.
_CHILD = r"""
import importlib, importlib.abc, json, sys

addon_dir, names = sys.argv[1], json.loads(sys.argv[2])
attempts = []

class BlockOdoo(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "odoo" or name.startswith("odoo."):
            attempts.append(name)
            raise ImportError("odoo is blocked in the pure core: " + name)
        return None

sys.meta_path.insert(0, BlockOdoo())
sys.path.insert(0, addon_dir)
results = {}
for name in names:
    before = len(attempts)
    try:
        importlib.import_module(name)
        error = None
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
    results[name] = {"error": error, "odoo_attempts": attempts[before:]}
loaded = sorted(m for m in sys.modules if m == "odoo" or m.startswith("odoo."))
print(json.dumps({"results": results, "odoo_loaded": loaded}))
"""


@pytest.fixture(scope="module")
def child_report():
    completed = subprocess.run(
        [sys.executable, "-I", "-c", _CHILD, str(ADDON_DIR), json.dumps(MODULES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_the_package_is_found():
    expected = {"wa_cloud", "wa_cloud.const", "wa_cloud.events", "wa_cloud.webhook"}
    assert expected | {"wa_cloud.crypto", "wa_cloud.redact"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_without_odoo(child_report, name):
    result = child_report["results"][name]
    assert result["error"] is None, result["error"]
    # Also catches `try: import odoo / except ImportError` fallbacks.
    assert result["odoo_attempts"] == []


def test_nothing_from_odoo_was_loaded(child_report):
    assert child_report["odoo_loaded"] == []


def _imports(tree: ast.AST):
    """(line, absolute top-level module) for each non-relative import."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]
        elif isinstance(node, ast.Call):
            # importlib.import_module("odoo...") / __import__("odoo")
            func = node.func
            called = getattr(func, "attr", None) or getattr(func, "id", None)
            if called in ("import_module", "__import__") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    yield node.lineno, first.value.split(".")[0]


@pytest.mark.parametrize("path", SOURCES, ids=MODULES)
def test_source_imports_only_allowed_modules(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    problems = []
    for line, top in _imports(tree):
        if top in ("odoo", "openerp"):
            problems.append(f"line {line}: imports {top}")
        elif top in ("wa_cloud", "whatsapp_business"):
            problems.append(f"line {line}: use a relative import for {top}")
        elif top not in sys.stdlib_module_names and top not in ALLOWED_THIRD_PARTY:
            problems.append(f"line {line}: {top} is not stdlib/requests/cryptography")
    assert not problems, problems
