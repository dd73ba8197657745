"""Constants of the Cloud API shared by the client and the addon."""

DEFAULT_BASE_URL = "https://graph.facebook.com"
# Graph API versions are usable for about two years; v26.0 is current in late 2026.
DEFAULT_API_VERSION = "v26.0"
# Versions below this one are expired or about to be (see docs: version schedule).
MIN_API_VERSION = "v22.0"
# (connect, read) timeouts in seconds.
DEFAULT_TIMEOUT = (5.0, 30.0)
# Meta's default throughput per number is 80 msg/s.
META_DEFAULT_RATE_LIMIT = 80
DEFAULT_RATE_LIMIT = META_DEFAULT_RATE_LIMIT
# Webhook bodies are at most 3 MB according to Meta.
DEFAULT_MAX_WEBHOOK_BYTES = 3 * 1024 * 1024
# Customer service window opened by each inbound message.
SERVICE_WINDOW_HOURS = 24
