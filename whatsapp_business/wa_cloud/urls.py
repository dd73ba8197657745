"""Where the bearer token may travel.

Two rules, used by the client and by the addon's save-time checks alike:

- the Graph API base URL is https, or plain http on a loopback address only (the
  sandbox and the test servers run on 127.0.0.1);
- a media download URL is followed only towards Meta's media hosts (over https) or
  the configured Graph origin, at every redirect hop.
"""

import ipaddress
from urllib.parse import urlsplit

__all__ = [
    "META_MEDIA_HOST_SUFFIXES",
    "UnsafeUrlError",
    "is_loopback_host",
    "is_token_destination",
    "validate_base_url",
]

# Meta-owned hosts that serve media (Cloud API media reference: the URLs point at
# lookaside.fbsbx.com; Meta's CDNs and WhatsApp hosts may answer redirects).
META_MEDIA_HOST_SUFFIXES = ("fbsbx.com", "facebook.com", "fbcdn.net", "whatsapp.net")


class UnsafeUrlError(ValueError):
    """A URL the bearer token must not be sent to."""


def is_loopback_host(host):
    host = (host or "").strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_base_url(url):
    """The normalised Graph base URL, or UnsafeUrlError saying what is wrong."""
    base = str(url or "").strip().rstrip("/")
    try:
        parts = urlsplit(base)
        hostname = parts.hostname
        port = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise UnsafeUrlError(f"invalid Graph API URL {url!r}") from exc
    if parts.scheme not in ("http", "https") or not hostname or port == 0:
        raise UnsafeUrlError(
            f"invalid Graph API URL {url!r}: expected https://host[/path]"
        )
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrlError("the Graph API URL must not contain credentials")
    if parts.query or parts.fragment:
        raise UnsafeUrlError("the Graph API URL must not have a query or fragment")
    if parts.scheme == "http" and not is_loopback_host(hostname):
        raise UnsafeUrlError(
            "the Graph API URL must use https (plain http is accepted only for a "
            "sandbox on this machine: localhost or 127.0.0.1)"
        )
    return base


def _is_meta_media_host(hostname):
    hostname = (hostname or "").lower().rstrip(".")
    return any(
        hostname == suffix or hostname.endswith("." + suffix)
        for suffix in META_MEDIA_HOST_SUFFIXES
    )


def is_token_destination(url, base_url):
    """Whether a media URL (or a redirect target) may receive the bearer token."""
    try:
        parts = urlsplit(str(url or ""))
        base = urlsplit(base_url)
        if parts.username is not None or parts.password is not None:
            return False
        same_origin = (parts.scheme, parts.hostname, parts.port) == (
            base.scheme,
            base.hostname,
            base.port,
        )
    except ValueError:
        return False
    if same_origin:
        return True
    return parts.scheme == "https" and _is_meta_media_host(parts.hostname)
