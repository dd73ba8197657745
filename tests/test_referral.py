"""Click-to-WhatsApp referral parsing (pure core)."""

from wa_cloud.referral import parse_referral


def test_platform_from_the_source_url():
    assert parse_referral({"source_url": "https://fb.me/abc"}).platform == "Facebook"
    assert (
        parse_referral({"source_url": "https://www.instagram.com/p/x/"}).platform
        == "Instagram"
    )
    assert (
        parse_referral({"source_url": "https://l.facebook.com/l.php?u=x"}).platform
        == "Facebook"
    )
    # A look-alike host is not Instagram.
    assert (
        parse_referral({"source_url": "https://notinstagram.com/x"}).platform
        == "Facebook"
    )
    assert (
        parse_referral({"source_id": "1", "source_type": "ad"}).platform == "Facebook"
    )


def test_campaign_name_from_headline_and_id():
    ad = parse_referral({"source_id": 120210, "headline": "  Spring sale "})
    assert ad.source_id == "120210"
    assert ad.campaign_name == "Spring sale (120210)"
    assert parse_referral({"source_id": "77"}).campaign_name == "Ad 77"
    assert parse_referral({"headline": "Only a headline"}).campaign_name == (
        "Only a headline"
    )
    long = parse_referral({"headline": "x" * 400, "source_id": "9"})
    assert len(long.campaign_name) == 255


def test_unusable_referrals_are_ignored():
    assert parse_referral(None) is None
    assert parse_referral("https://fb.me/abc") is None
    assert parse_referral({}) is None
    assert parse_referral({"body": "only a body", "media_type": "image"}) is None
    assert parse_referral({"ctwa_clid": ["not", "text"]}) is None
