"""Pure tests import the addon's `wa_cloud` package without Odoo."""

import os
import sys
from pathlib import Path

from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
ADDON_DIR = ROOT / "whatsapp_business"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

if str(ADDON_DIR) not in sys.path:
    sys.path.insert(0, str(ADDON_DIR))

# Hypothesis profiles. "ci" draws the same examples at every run (derandomized),
# so a CI failure reproduces with `pytest --hypothesis-profile=ci`; "dev" draws
# new ones each run. Both print the blob that replays a failing example with
# @reproduce_failure. CI=true (set by .ci/run) selects "ci".
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")
settings.load_profile("ci" if IN_CI else "dev")
