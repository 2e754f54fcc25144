"""The vendor sandboxes the server hosts."""

from __future__ import annotations

from django.utils.module_loading import import_string

VENDOR_CLASSES = [
    "providers.sandbox.best_gerp.BestGerpSandbox",
    "providers.sandbox.wdt.WdtSandbox",
    "providers.sandbox.exchange.ExchangeSandbox",
    "providers.sandbox.bst17.Bst17Sandbox",
]


def all_vendor_classes() -> list:
    return [import_string(path) for path in VENDOR_CLASSES]


def demo_environment(base_url: str, callback_base_url: str) -> dict[str, str]:
    """Environment variables that point every provider's default account at the sandbox.

    Each vendor sandbox contributes its own (generated) credentials through
    `demo_environment(base_url, callback_base_url)`; the sandbox and the back office read the
    same variables, so signatures agree.
    """
    environment: dict[str, str] = {}
    for vendor_class in all_vendor_classes():
        environment.update(vendor_class.demo_environment(base_url + vendor_class.prefix, callback_base_url))
    return environment
