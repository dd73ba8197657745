"""Meta's per-message pricing (PMP, since 2025-07-01): which messages are free,
and which market a recipient's number is billed in.

Meta prices each delivered template message by its category (marketing,
utility, authentication...) and by the recipient's market: a country, or a
region ("Rest of Africa"...) for the countries without a rate of their own.
Service messages (free text inside the 24-hour window) and messages sent in a
free entry point window cost nothing. Pure code: no Odoo import.
"""

from __future__ import annotations

# Meta's rate-card markets, in the order of its rate card.
MARKETS = [
    ("argentina", "Argentina"),
    ("brazil", "Brazil"),
    ("chile", "Chile"),
    ("colombia", "Colombia"),
    ("egypt", "Egypt"),
    ("france", "France"),
    ("germany", "Germany"),
    ("india", "India"),
    ("indonesia", "Indonesia"),
    ("israel", "Israel"),
    ("italy", "Italy"),
    ("malaysia", "Malaysia"),
    ("mexico", "Mexico"),
    ("netherlands", "Netherlands"),
    ("nigeria", "Nigeria"),
    ("pakistan", "Pakistan"),
    ("peru", "Peru"),
    ("russia", "Russia"),
    ("saudi_arabia", "Saudi Arabia"),
    ("south_africa", "South Africa"),
    ("spain", "Spain"),
    ("turkey", "Turkey"),
    ("united_arab_emirates", "United Arab Emirates"),
    ("united_kingdom", "United Kingdom"),
    ("north_america", "North America"),
    ("rest_of_africa", "Rest of Africa"),
    ("rest_of_asia_pacific", "Rest of Asia Pacific"),
    ("rest_of_central_eastern_europe", "Rest of Central & Eastern Europe"),
    ("rest_of_latin_america", "Rest of Latin America"),
    ("rest_of_middle_east", "Rest of Middle East"),
    ("rest_of_western_europe", "Rest of Western Europe"),
    ("other", "Other"),
]
DEFAULT_MARKET = "other"

# pricing.category values of status webhooks (docs §3.6).
CATEGORIES = [
    ("marketing", "Marketing"),
    ("marketing_lite", "Marketing Lite"),
    ("utility", "Utility"),
    ("authentication", "Authentication"),
    ("authentication_international", "Authentication International"),
    ("service", "Service"),
    ("referral_conversion", "Referral Conversion"),
]
FREE_CATEGORIES = frozenset({"service", "referral_conversion"})
# pricing.type: "regular" is billed; free_customer_service and free_entry_point
# (and any later free_* type) are not.
FREE_TYPE_PREFIX = "free"

_COUNTRY_MARKETS = {
    "54": "argentina",
    "55": "brazil",
    "56": "chile",
    "57": "colombia",
    "20": "egypt",
    "33": "france",
    "49": "germany",
    "91": "india",
    "62": "indonesia",
    "972": "israel",
    "39": "italy",
    "60": "malaysia",
    "52": "mexico",
    "31": "netherlands",
    "234": "nigeria",
    "92": "pakistan",
    "51": "peru",
    "7": "russia",
    "966": "saudi_arabia",
    "27": "south_africa",
    "34": "spain",
    "90": "turkey",
    "971": "united_arab_emirates",
    "44": "united_kingdom",
    # The North American numbering plan: Meta's "North America" is the US and
    # Canada; the Caribbean countries sharing +1 are listed below by area code.
    "1": "north_america",
}
_REGION_CODES = {
    "rest_of_africa": "213 244 229 267 226 257 237 235 242 291 251 241 220 233 245 "
    "225 254 266 231 218 261 265 223 222 212 258 264 227 250 221 232 252 211 249 "
    "268 255 228 216 256 260 263",
    "rest_of_asia_pacific": "93 61 880 855 86 852 81 856 976 977 64 675 63 65 94 "
    "886 992 66 993 998 84",
    "rest_of_central_eastern_europe": "355 374 994 375 359 385 420 995 30 36 371 "
    "370 389 373 48 40 381 421 386 380",
    "rest_of_latin_america": "591 506 1809 1829 1849 593 503 502 509 504 1876 505 "
    "507 595 1787 1939 598 58",
    "rest_of_middle_east": "973 964 962 965 961 968 974 967",
    "rest_of_western_europe": "43 32 45 358 353 47 351 46 41",
}
CALLING_CODE_MARKETS = dict(_COUNTRY_MARKETS)
for _market, _codes in _REGION_CODES.items():
    CALLING_CODE_MARKETS.update(dict.fromkeys(_codes.split(), _market))
_LONGEST_CODE = max(len(code) for code in CALLING_CODE_MARKETS)


def market_for_number(number: str | None) -> str | None:
    """The rate-card market of an international number; None without digits."""
    digits = "".join(ch for ch in str(number or "") if ch.isdigit())
    if not digits:
        return None
    for length in range(min(_LONGEST_CODE, len(digits)), 0, -1):
        market = CALLING_CODE_MARKETS.get(digits[:length])
        if market:
            return market
    return DEFAULT_MARKET


def is_free(category: str | None, pricing_type: str | None) -> bool:
    """Whether Meta charges nothing for a message with this pricing.

    Meta's own ``type`` decides when the webhook has one: a service message of
    type "regular" is billed (Meta can change which messages are free, as BSPs
    report for October 2026; the cost then comes from a "service" line of the
    rate card). Only webhooks without a type fall back on the category.
    """
    if pricing_type:
        return pricing_type.lower().startswith(FREE_TYPE_PREFIX)
    return (category or "").lower() in FREE_CATEGORIES
