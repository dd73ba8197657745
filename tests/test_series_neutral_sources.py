"""The addon's files use nothing that only one of Odoo 18 and Odoo 19 understands.

The Odoo suites prove it on both series; this scan names the construct at once, even
where only one series is installed (and so keeps new code from drifting).
"""

import re
from pathlib import Path

import pytest

ADDON = Path(__file__).resolve().parent.parent / "whatsapp_business"
COMPAT = ADDON / "tools" / "compat.py"

# (pattern, files it is searched in, why it breaks one series)
FORBIDDEN = [
    (
        r"^\s*_sql_constraints\s*=",
        "*.py",
        "Odoo 19 ignores _sql_constraints: use compat.sql_constraints()",
    ),
    (
        r"name=\"groups_id\"|\bgroups_id\b\s*[=:]",
        "*",
        "groups_id is group_ids on Odoo 19: set action groups in models/res_groups.py",
    ),
    (
        r"<field name=\"(category_id|users)\"",
        "security/*.xml",
        "res.groups' category_id/users are privilege_id/user_ids on Odoo 19",
    ),
    (
        r"<group[^>]*\bexpand=",
        "*.xml",
        "Odoo 19's search views refuse group/@expand",
    ),
    (
        r"\.mobile\b|[\"']mobile[\"']\s*:",
        "*.py",
        "Odoo 19 has no mobile field on contacts and leads: use compat's helpers",
    ),
    (
        r"\bapi\.call_kw\b|\bcall_kw\(",
        "*.py",
        "the RPC dispatcher moved in Odoo 19: use compat.call_kw",
    ),
    (
        r"@web_tour/tour_service/",
        "*.js",
        "web_tour's modules moved in Odoo 19: write plain tour steps",
    ),
]


def _files(pattern):
    if "/" in pattern:
        return sorted(ADDON.glob(pattern))
    return sorted(path for path in ADDON.rglob(pattern) if path.is_file())


@pytest.mark.parametrize("regex, files, why", FORBIDDEN, ids=[f[2] for f in FORBIDDEN])
def test_no_single_series_construct(regex, files, why):
    hits = []
    for path in _files(files):
        if path == COMPAT or path.suffix in (".po", ".pot", ".png", ".pyc"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if re.search(regex, line) and "compat" not in line:
                hits.append(f"{path.relative_to(ADDON)}:{number}: {line.strip()}")
    assert not hits, why + "\n" + "\n".join(hits)


def test_manifest_version_is_series_neutral():
    manifest = (ADDON / "__manifest__.py").read_text(encoding="utf-8")
    version = re.search(r"\"version\":\s*\"([^\"]+)\"", manifest).group(1)
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
