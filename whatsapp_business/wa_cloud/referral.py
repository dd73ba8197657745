"""Click-to-WhatsApp ads: what Meta's ``referral`` object says about the ad.

An ad click adds ``referral`` (source_url, source_id, source_type, headline,
body, media_type, ctwa_clid...) to the customer's first message. Pure code: no
Odoo import.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

# Hosts of Meta's ad placements, most specific first (fb.me is Facebook's own
# short link; instagram.com links come from Instagram placements).
PLATFORM_HOSTS = (
    ("instagram.com", "Instagram"),
    ("instagr.am", "Instagram"),
    ("threads.net", "Threads"),
    ("messenger.com", "Messenger"),
    ("facebook.com", "Facebook"),
    ("fb.me", "Facebook"),
    ("fb.com", "Facebook"),
    ("fb.watch", "Facebook"),
)
DEFAULT_PLATFORM = "Facebook"  # where Click-to-WhatsApp ads run by default
MEDIUM = "Click-to-WhatsApp"
FIELD_LIMIT = 255


@dataclasses.dataclass(frozen=True)
class AdReferral:
    source_id: str | None = None  # the ad (or post) id
    source_type: str | None = None  # "ad" or "post"
    source_url: str | None = None
    headline: str | None = None
    body: str | None = None
    media_type: str | None = None
    ctwa_clid: str | None = None  # the click id, for Meta's conversions API

    @property
    def platform(self) -> str:
        """Facebook, Instagram... from the source URL's host."""
        host = (urlsplit(self.source_url or "").hostname or "").lower()
        for suffix, name in PLATFORM_HOSTS:
            if host == suffix or host.endswith("." + suffix):
                return name
        return DEFAULT_PLATFORM

    @property
    def campaign_name(self) -> str | None:
        """A campaign per ad: "<headline> (<ad id>)", or whichever is known."""
        headline = (self.headline or "").strip()
        if headline and self.source_id:
            name = f"{headline} ({self.source_id})"
        else:
            name = headline or (f"Ad {self.source_id}" if self.source_id else "")
        return name[:FIELD_LIMIT] or None


def _text(value) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:FIELD_LIMIT] or None


def parse_referral(referral: object) -> AdReferral | None:
    """The ad behind a message, or None when the object says nothing usable."""
    if not isinstance(referral, dict):
        return None
    ad = AdReferral(
        source_id=_text(referral.get("source_id")),
        source_type=_text(referral.get("source_type")),
        source_url=_text(referral.get("source_url")),
        headline=_text(referral.get("headline")),
        body=_text(referral.get("body")),
        media_type=_text(referral.get("media_type")),
        ctwa_clid=_text(referral.get("ctwa_clid")),
    )
    if not (ad.source_id or ad.source_url or ad.headline or ad.ctwa_clid):
        return None
    return ad
