"""Known answers for 17bst's DES parameter encryption, password digest and callback signature."""

from __future__ import annotations

import hashlib

import pytest

from providers.bst17 import signing

VENDOR_VECTOR_KEY = "OMHqrShs"
VENDOR_VECTOR_PLAINTEXT = '{"agtPhone":"15889640829"}'
VENDOR_VECTOR_CIPHERTEXT = "hD+xxRStTfO7TFgosYL0tn6pcs4j13pCs30DLmBKIC8="


def test_des_matches_the_vendor_test_vector():
    assert signing.des_encrypt(VENDOR_VECTOR_PLAINTEXT, VENDOR_VECTOR_KEY) == VENDOR_VECTOR_CIPHERTEXT


def test_only_the_first_8_bytes_of_the_app_key_are_the_des_key():
    assert signing.des_encrypt(VENDOR_VECTOR_PLAINTEXT, VENDOR_VECTOR_KEY + "anything after") == VENDOR_VECTOR_CIPHERTEXT


def test_decryption_ignores_the_line_wrapping_of_the_vendor_samples():
    wrapped = VENDOR_VECTOR_CIPHERTEXT[:20] + "\n" + VENDOR_VECTOR_CIPHERTEXT[20:] + "\r\n"

    assert signing.des_decrypt(wrapped, VENDOR_VECTOR_KEY) == VENDOR_VECTOR_PLAINTEXT


@pytest.mark.parametrize("blob", ["not base64 at all!", "AAAAAAAAAAA=", VENDOR_VECTOR_CIPHERTEXT])
def test_decryption_with_the_wrong_key_or_garbage_raises_value_error(blob):
    with pytest.raises(ValueError):
        signing.des_decrypt(blob, "WrongKey")


def test_a_key_shorter_than_8_bytes_is_refused():
    with pytest.raises(ValueError):
        signing.des_encrypt("{}", "short")


def test_trade_password_is_its_lowercase_md5():
    # The document's sample tradePwd is md5("123").
    assert signing.trade_password_digest("123") == "202cb962ac59075b964b07152d234b70"


def test_callback_sign_is_md5_of_phone_stream_state_and_app_key():
    expected = hashlib.md5(b"15889640829" + b"201606161725120324" + b"0" + b"OMHqrShsKey").hexdigest()

    assert signing.callback_sign("15889640829", "201606161725120324", "0", "OMHqrShsKey") == expected
    assert signing.verify_callback_sign("15889640829", "201606161725120324", "0", "OMHqrShsKey", expected.upper())
    assert not signing.verify_callback_sign("15889640829", "201606161725120324", "1", "OMHqrShsKey", expected)
