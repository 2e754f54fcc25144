"""Wangdiantong signing, by known answers (docs/providers.md §2)."""

import pytest

from providers.wdt import signing

# The worked example of docs/providers.md §2 (computed from the public SDK's algorithm).
WORKED_EXAMPLE = {
    "sid": "wdtapi3",
    "key": "wdt_test",
    "salt": "testsalt",
    "method": "setting.Warehouse.queryWarehouse",
    "v": "1.0",
    "timestamp": "400000000",
    "page_size": "3",
    "page_no": "0",
    "calc_total": "1",
    "body": '[{"hide_delete":0}]',
}


def test_worked_example_sign():
    assert signing.sign(WORKED_EXAMPLE, "testsecret") == "2b3b359cf410dec9844759942e11b83d"


def test_the_string_to_sign_has_no_separators_and_the_secret_on_both_ends():
    assert signing.string_to_sign(WORKED_EXAMPLE, "testsecret") == (
        "testsecret"
        'body[{"hide_delete":0}]'
        "calc_total1"
        "keywdt_test"
        "methodsetting.Warehouse.queryWarehouse"
        "page_no0"
        "page_size3"
        "salttestsalt"
        "sidwdtapi3"
        "timestamp400000000"
        "v1.0"
        "testsecret"
    )


def test_the_sign_parameter_takes_no_part():
    assert signing.sign({**WORKED_EXAMPLE, "sign": "anything"}, "testsecret") == "2b3b359cf410dec9844759942e11b83d"


def test_signature_matches():
    assert signing.signature_matches(WORKED_EXAMPLE, "testsecret", "2b3b359cf410dec9844759942e11b83d")
    assert not signing.signature_matches(WORKED_EXAMPLE, "testsecret", "2b3b359cf410dec9844759942e11b83e")
    assert not signing.signature_matches({**WORKED_EXAMPLE, "page_no": "1"}, "testsecret", "2b3b359cf410dec9844759942e11b83d")


def test_the_appsecret_splits_at_the_first_colon():
    assert signing.split_app_secret("testsecret:testsalt") == ("testsecret", "testsalt")
    assert signing.split_app_secret("abc:def:ghi") == ("abc", "def:ghi")


def test_an_appsecret_without_a_colon_is_an_error():
    with pytest.raises(ValueError):
        signing.split_app_secret("testsecret")


def test_timestamps_count_seconds_since_2012():
    assert signing.EPOCH == 1325347200  # 2012-01-01 00:00:00 in China (UTC+8)
    assert signing.timestamp(1325347200 + 400000000.9) == "400000000"
    assert signing.unix_seconds("400000000") == 1725347200
