import pytest

from wa_cloud.phone import canonical_e164, e164_variants


@pytest.mark.parametrize(
    ("wa_id", "expected"),
    [
        ("33612345678", "+33612345678"),
        ("5215587654321", "+525587654321"),  # Mexico: the old mobile 1 goes
        ("525587654321", "+525587654321"),
        ("551187654321", "+5511987654321"),  # Brazil: the ninth digit comes back
        ("5511987654321", "+5511987654321"),
        ("551133334444", "+551133334444"),  # a Brazilian landline stays as is
        ("+34 611 22 33 44", "+34611223344"),
        ("", None),
        (None, None),
    ],
)
def test_canonical_e164(wa_id, expected):
    assert canonical_e164(wa_id) == expected


def test_variants_cover_both_forms():
    assert set(e164_variants("5215587654321")) == {"+5215587654321", "+525587654321"}
    assert set(e164_variants("525587654321")) == {"+525587654321", "+5215587654321"}
    assert set(e164_variants("551187654321")) == {"+551187654321", "+5511987654321"}
    assert e164_variants("33612345678") == ["+33612345678"]
    assert e164_variants("") == []
