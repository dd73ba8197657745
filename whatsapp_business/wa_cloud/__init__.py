"""Pure-Python client for Meta's WhatsApp Business Cloud API.

This package never imports Odoo: it is tested with plain pytest and used by the addon.
"""
