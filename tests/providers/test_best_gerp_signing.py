"""BEST GERP signing, by known answers (computed by hand from the rule in docs/providers.md §1)."""

import pytest

from providers.best_gerp import signing

FIELDS = {
    "timestamp": "1731742317123",
    "serviceType": "DISTRIBUTION_RECHARGE_REFUND",
    "appId": "TEST",
    "bizParam": '{"distributorCustomerName":"QY123456","distributorEnv":"DOMESTIC","type":"RECHARGE","totalPrice":10.00}',
}


def test_the_string_to_sign_is_the_fields_sorted_by_name_then_the_secret():
    assert signing.string_to_sign(FIELDS, "best-secret") == (
        "appId=TEST"
        'bizParam={"distributorCustomerName":"QY123456","distributorEnv":"DOMESTIC","type":"RECHARGE","totalPrice":10.00}'
        "serviceType=DISTRIBUTION_RECHARGE_REFUND"
        "timestamp=1731742317123"
        "best-secret"
    )


def test_sign_known_answer():
    assert signing.sign(FIELDS, "best-secret") == "3bb3378ece9af57f9e18d645b5c60980"


def test_a_sign_already_among_the_fields_takes_no_part():
    assert signing.sign({**FIELDS, "sign": "whatever"}, "best-secret") == "3bb3378ece9af57f9e18d645b5c60980"


def test_non_ascii_text_is_signed_as_utf8():
    fields = {**FIELDS, "bizParam": '{"remark":"充值"}'}
    assert signing.sign(fields, "best-secret") == "645fe624a7b0d43e3229ba141ae31909"


def test_signature_matches_accepts_the_right_sign_in_either_case_and_refuses_others():
    assert signing.signature_matches(FIELDS, "best-secret", "3bb3378ece9af57f9e18d645b5c60980")
    assert signing.signature_matches(FIELDS, "best-secret", "3BB3378ECE9AF57F9E18D645B5C60980")
    assert not signing.signature_matches(FIELDS, "other-secret", "3bb3378ece9af57f9e18d645b5c60980")
    assert not signing.signature_matches(FIELDS, "best-secret", "")


@pytest.mark.parametrize(
    ("unit", "expected"),
    [(signing.MILLISECONDS, "1731742317123"), (signing.SECONDS, "1731742317")],
)
def test_timestamp_in_the_configured_unit(unit, expected):
    assert signing.timestamp(1731742317.1239, unit) == expected


def test_an_unknown_timestamp_unit_is_an_error():
    with pytest.raises(ValueError):
        signing.timestamp(1731742317.0, "minutes")
