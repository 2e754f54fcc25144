"""Shared test material for the redemption platform: a fixed test account and wire helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from providers.exchange import signing

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "exchange"

MERCHANT_PRIVATE_KEY = (FIXTURES / "THROWAWAY_TEST_merchant_private_key.pem").read_text()
PLATFORM_PRIVATE_KEY = (FIXTURES / "THROWAWAY_TEST_platform_private_key.pem").read_text()
PLATFORM_PUBLIC_KEY = signing.public_key_pem_of(PLATFORM_PRIVATE_KEY)

BASE_URL = "https://exchange.example.test"
BUSINESS_ID = "754e0c1f9d2a4b7f8e3a6c5d1b2a7f19"
MERCHANT_ID = "eb1b4c2d8e7f4a6b9c0d1e2f3a4b5699"
MD5_KEY = "test-md5-key-9f8e7d6c5b4a"
CALLBACK_URL = "https://backoffice.example.test/callbacks/exchange/"

FIXED_TIME = 1628772138.668
FIXED_NONCE = "24bc0e0c5e8a4d4e9b1c2a3f4dc6cfa4"


def environment(**overrides: str) -> dict[str, str]:
    env = {
        "EXCHANGE_BASE_URL": BASE_URL,
        "EXCHANGE_BUSINESS_ID": BUSINESS_ID,
        "EXCHANGE_MERCHANT_ID": MERCHANT_ID,
        "EXCHANGE_SIGN_TYPE": "SHA256-RSA",
        # As it comes from an environment file: one line with literal "\n".
        "EXCHANGE_PRIVATE_KEY": MERCHANT_PRIVATE_KEY.strip().replace("\n", "\\n"),
        "EXCHANGE_PLATFORM_PUBLIC_KEY": PLATFORM_PUBLIC_KEY,
        "EXCHANGE_MD5_KEY": MD5_KEY,
        "EXCHANGE_CALLBACK_URL": CALLBACK_URL,
    }
    env.update(overrides)
    return env


def secrets_of_test_account() -> list[str]:
    """What must never be stored: the keys, and a distinctive line from the middle of the PEM."""
    middle_line = MERCHANT_PRIVATE_KEY.strip().splitlines()[5]
    return [MD5_KEY, MERCHANT_PRIVATE_KEY.strip(), middle_line]


def wire_of(request) -> dict[str, Any]:
    """Everything on the wire of a requests.PreparedRequest, minus what requests adds itself."""
    transport_headers = {"User-Agent", "Accept-Encoding", "Accept", "Connection", "Content-Length"}
    url, _, query = request.url.partition("?")
    return {
        "method": request.method,
        "url": url,
        "query": query,
        "headers": {name: value for name, value in request.headers.items() if name not in transport_headers},
        "body": request.body.decode("utf-8") if isinstance(request.body, bytes) else request.body,
    }


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def callback_headers(body: str, *, private_key_pem: str = PLATFORM_PRIVATE_KEY, nonce: str = "cb-nonce-1") -> dict[str, str]:
    headers = {"businessId": BUSINESS_ID, "nonce": nonce, "timestamp": "1628772200000"}
    headers["sign"] = signing.sign_sha256_rsa(signing.string_to_sign(headers, body), private_key_pem)
    return headers


def assert_matches_fixture(wire: dict[str, Any], name: str) -> None:
    """Compare with a recorded fixture; RECORD_PROVIDER_FIXTURES=1 (re)writes it instead."""
    _assert_matches(FIXTURES / name, wire)


def _assert_matches(path: Path, wire: dict[str, Any]) -> None:
    import os

    if os.environ.get("RECORD_PROVIDER_FIXTURES") == "1":
        path.write_text(json.dumps(wire, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    assert wire == json.loads(path.read_text(encoding="utf-8"))
