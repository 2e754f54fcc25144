"""Shared test material for 17bst: a fixed test account and wire helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from providers.bst17 import signing

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bst17"

BASE_URL = "https://bst17.example.test/charge-api"
APP_ID = "5b11886057"
APP_KEY = "OMHqrShsT3stK3y9"
AGT_PHONE = "15889640829"
TRADE_PASSWORD = "test-trade-pw-4711"
CARD_KEY = "CardK3yT3st0815x"
CALLBACK_URL = "https://backoffice.example.test/callbacks/bst17/"


def environment(**overrides: str) -> dict[str, str]:
    env = {
        "BST17_BASE_URL": BASE_URL,
        "BST17_APP_ID": APP_ID,
        "BST17_APP_KEY": APP_KEY,
        "BST17_AGT_PHONE": AGT_PHONE,
        "BST17_TRADE_PASSWORD": TRADE_PASSWORD,
        "BST17_CARD_KEY": CARD_KEY,
        "BST17_CALLBACK_URL": CALLBACK_URL,
    }
    env.update(overrides)
    return env


def secrets_of_test_account() -> list[str]:
    return [APP_KEY, TRADE_PASSWORD, signing.trade_password_digest(TRADE_PASSWORD), CARD_KEY]


def wire_of(request) -> dict[str, Any]:
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


def assert_matches_fixture(wire: dict[str, Any], name: str) -> None:
    """Compare with a recorded fixture; RECORD_PROVIDER_FIXTURES=1 (re)writes it instead."""
    import os

    path = FIXTURES / name
    if os.environ.get("RECORD_PROVIDER_FIXTURES") == "1":
        path.write_text(json.dumps(wire, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    assert wire == json.loads(path.read_text(encoding="utf-8"))
