"""Building settings.PROVIDERS from environment variables (kept apart so tests can reuse it).

Each provider may have several merchant accounts: "default" reads <PREFIX>_<FIELD>, and every
extra account named in <PREFIX>_ACCOUNTS (comma separated) reads <PREFIX>_<ACCOUNT>_<FIELD>.
Values stay None when unset; the provider's settings getter names the missing variable when used.
"""

from __future__ import annotations

from collections.abc import Mapping

PROVIDER_FIELDS = {
    "BEST_GERP": ["BASE_URL", "APP_ID", "APP_SECRET", "TIMESTAMP_UNIT"],
    "WDT": ["BASE_URL", "SID", "APP_KEY", "APP_SECRET"],
    "EXCHANGE": [
        "BASE_URL",
        "BUSINESS_ID",
        "MERCHANT_ID",
        "SIGN_TYPE",
        "PRIVATE_KEY",
        "PLATFORM_PUBLIC_KEY",
        "MD5_KEY",
        "CALLBACK_URL",
    ],
    "BST17": ["BASE_URL", "APP_ID", "APP_KEY", "AGT_PHONE", "TRADE_PASSWORD", "CARD_KEY", "CALLBACK_URL"],
}


def provider_accounts(environ: Mapping[str, str]) -> dict[str, dict[str, dict[str, dict[str, str | None]]]]:
    providers = {}
    for prefix, fields in PROVIDER_FIELDS.items():
        extra = [a.strip() for a in environ.get(f"{prefix}_ACCOUNTS", "").split(",") if a.strip()]
        accounts = {}
        for account in ["default", *extra]:
            stem = prefix if account == "default" else f"{prefix}_{account.upper()}"
            accounts[account] = {
                field: {"variable": f"{stem}_{field}", "value": environ.get(f"{stem}_{field}") or None}
                for field in fields
            }
        providers[prefix] = accounts
    return providers
