"""Known answers for the redemption platform's signatures (pure functions, no settings)."""

from __future__ import annotations

import hashlib

import pytest

from providers.exchange import signing
from tests.providers.exchange_support import MERCHANT_PRIVATE_KEY, PLATFORM_PRIVATE_KEY, load

VENDOR_HEADERS = {
    "businessId": "754e0c1f9d2a4b7f8e3a6c5d1b2a7f19",
    "nonce": "24bc0e0c5e8a4d4e9b1c2a3f4dc6cfa4",
    "timestamp": "1628772138668",
    "signType": "SHA256-RSA",
    "sign": "not part of the string",
}
VENDOR_BODY = '{"businessId":"754e0c1f9d2a4b7f8e3a6c5d1b2a7f19","merchantId":"eb1b4c2d8e7f4a6b9c0d1e2f3a4b5699"}'


def test_the_string_to_sign_has_the_shape_of_the_vendor_example():
    assert signing.string_to_sign(VENDOR_HEADERS, VENDOR_BODY) == (
        "businessId=754e0c1f9d2a4b7f8e3a6c5d1b2a7f19&nonce=24bc0e0c5e8a4d4e9b1c2a3f4dc6cfa4"
        "&signType=SHA256-RSA&timestamp=1628772138668"
        '{"businessId":"754e0c1f9d2a4b7f8e3a6c5d1b2a7f19","merchantId":"eb1b4c2d8e7f4a6b9c0d1e2f3a4b5699"}'
    )


def test_empty_headers_and_an_unsent_sign_type_are_left_out():
    headers = {"timestamp": "1", "nonce": "n", "businessId": "b", "signType": "", "sign": "x"}

    assert signing.string_to_sign(headers, "{}") == "businessId=b&nonce=n&timestamp=1{}"


def test_sha256_rsa_gives_the_recorded_signature_and_verifies_with_the_public_key():
    message = signing.string_to_sign(VENDOR_HEADERS, VENDOR_BODY)

    signature = signing.sign_sha256_rsa(message, MERCHANT_PRIVATE_KEY)

    assert signature == load("signature_known_answer.json")["sha256_rsa"]
    public_key = signing.public_key_pem_of(MERCHANT_PRIVATE_KEY)
    assert signing.verify(message, signature, sign_type="SHA256-RSA", public_key_pem=public_key)


def test_an_rsa_signature_fails_for_another_body_another_key_or_garbage():
    message = signing.string_to_sign(VENDOR_HEADERS, VENDOR_BODY)
    signature = signing.sign_sha256_rsa(message, MERCHANT_PRIVATE_KEY)
    public_key = signing.public_key_pem_of(MERCHANT_PRIVATE_KEY)

    assert not signing.verify(message + " ", signature, sign_type="SHA256-RSA", public_key_pem=public_key)
    other_key = signing.public_key_pem_of(PLATFORM_PRIVATE_KEY)
    assert not signing.verify(message, signature, sign_type="SHA256-RSA", public_key_pem=other_key)
    assert not signing.verify(message, "not base64!", sign_type="SHA256-RSA", public_key_pem=public_key)
    assert not signing.verify(message, "", sign_type="SHA256-RSA", public_key_pem=public_key)


def test_md5_is_the_lowercase_md5_of_the_string_with_the_key_appended():
    message = signing.string_to_sign({**VENDOR_HEADERS, "signType": "MD5"}, VENDOR_BODY)

    signature = signing.sign(message, sign_type="MD5", md5_key="k3y")

    assert signature == hashlib.md5((message + "k3y").encode()).hexdigest()
    assert signature == load("signature_known_answer.json")["md5_with_key_k3y"]
    assert signing.verify(message, signature.upper(), sign_type="MD5", md5_key="k3y")
    assert not signing.verify(message, signature, sign_type="MD5", md5_key="other")


def test_an_unknown_sign_type_never_verifies():
    assert not signing.verify("m", "s", sign_type="HMAC")


def test_an_empty_md5_key_neither_signs_nor_verifies():
    """md5(string to sign) with no key is a "signature" anyone can compute."""
    message = signing.string_to_sign(VENDOR_HEADERS, VENDOR_BODY)
    keyless = hashlib.md5(message.encode()).hexdigest()

    with pytest.raises(ValueError):
        signing.verify(message, keyless, sign_type="MD5", md5_key="")
    with pytest.raises(ValueError):
        signing.sign(message, sign_type="MD5", md5_key="")


def test_an_empty_public_key_never_verifies():
    message = signing.string_to_sign(VENDOR_HEADERS, VENDOR_BODY)
    signature = signing.sign_sha256_rsa(message, PLATFORM_PRIVATE_KEY)

    with pytest.raises(ValueError):
        signing.verify(message, signature, sign_type="SHA256-RSA", public_key_pem="")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"businessId": "b", "nonce": "n1&signType=SHA256-RSA", "timestamp": "1"}, id="& and = in a value"),
        pytest.param({"businessId": "b", "nonce": "n1=", "timestamp": "1"}, id="= in a value"),
        pytest.param({"businessId": "b&nonce", "timestamp": "1"}, id="& in a value"),
        pytest.param({"business=Id": "b", "timestamp": "1"}, id="= in a name"),
    ],
)
def test_a_header_that_would_move_text_between_headers_cannot_be_signed(headers):
    # {"nonce": "n1&signType=SHA256-RSA"} would sign like {"nonce": "n1", "signType": "SHA256-RSA"}.
    with pytest.raises(ValueError):
        signing.string_to_sign(headers, "{}")
