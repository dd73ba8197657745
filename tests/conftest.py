"""Pure tests import the addon's `wa_cloud` package without Odoo."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADDON_DIR = ROOT / "whatsapp_business"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

if str(ADDON_DIR) not in sys.path:
    sys.path.insert(0, str(ADDON_DIR))
