"""Per-message pricing rules (pure core): markets and free messages."""

from wa_cloud.pricing import CALLING_CODE_MARKETS, MARKETS, is_free, market_for_number


def test_market_of_a_number():
    assert market_for_number("+33612345678") == "france"
    assert market_for_number("34612000111") == "spain"
    assert market_for_number("+5511987654321") == "brazil"
    assert market_for_number("+1 415 555 0100") == "north_america"
    # +1 809 is the Dominican Republic, not North America.
    assert market_for_number("+18095550100") == "rest_of_latin_america"
    assert market_for_number("+971501234567") == "united_arab_emirates"
    assert market_for_number("+97455123456") == "rest_of_middle_east"
    assert market_for_number("+351912345678") == "rest_of_western_europe"
    assert market_for_number("+6591234567") == "rest_of_asia_pacific"
    assert market_for_number("+998901234567") == "rest_of_asia_pacific"
    assert market_for_number("+3725123456") == "other"  # Estonia: no listed market
    assert market_for_number("") is None
    assert market_for_number(None) is None


def test_every_mapped_market_is_on_the_rate_card():
    assert set(CALLING_CODE_MARKETS.values()) <= {code for code, _label in MARKETS}


def test_free_messages():
    assert is_free("service", "free_customer_service")
    assert is_free("utility", "free_customer_service")  # utility inside the window
    assert is_free("marketing", "free_entry_point")
    assert is_free("service", None)  # webhooks before v24 have no type
    assert not is_free("marketing", "regular")
    assert not is_free("authentication", None)
    assert not is_free("UTILITY", "REGULAR")
    # Meta's type wins over the category: a service message it bills is billed.
    assert not is_free("service", "regular")
