"""Card PINs at rest: Fernet (AES-128-CBC + HMAC) under keys from CARD_PIN_KEYS, never SECRET_KEY.

Keys are listed newest first: the newest encrypts, every key decrypts (MultiFernet), and
`manage.py rotate_card_pins` re-encrypts every PIN under the newest so old keys can be retired.
A wrong key fails authentication: an error, never a garbled PIN.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext as _


class PinUnreadable(Exception):
    """No configured key opens this PIN (a key was removed too early, or the data is damaged)."""


def _cipher() -> MultiFernet:
    keys = [key.strip() for key in settings.CARD_PIN_KEYS if key.strip()]
    if not keys:
        raise ImproperlyConfigured(_("CARD_PIN_KEYS is not set: card PINs cannot be stored or shown."))
    if settings.SECRET_KEY in keys:
        raise ImproperlyConfigured(_("CARD_PIN_KEYS must not contain SECRET_KEY."))
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError as err:
        raise ImproperlyConfigured(
            _("CARD_PIN_KEYS holds a value that is not a Fernet key (32 url-safe base64-encoded bytes).")
        ) from err


def encrypt_pin(pin: str) -> bytes:
    return _cipher().encrypt(pin.encode("utf-8"))


def decrypt_pin(ciphertext: bytes | memoryview) -> str:
    try:
        return _cipher().decrypt(bytes(ciphertext)).decode("utf-8")
    except InvalidToken as err:
        raise PinUnreadable(_("No configured key can decrypt this PIN.")) from err


def reencrypt_pin(ciphertext: bytes | memoryview) -> bytes:
    try:
        return _cipher().rotate(bytes(ciphertext))
    except InvalidToken as err:
        raise PinUnreadable(_("No configured key can decrypt this PIN.")) from err


def masked(pin_length: int = 6) -> str:
    return "•" * pin_length


def masked_card_number(number: str, visible: int = 4) -> str:
    """A card number as every page but the recorded reveal and export shows it: only its last characters.

    The mask has a fixed length, so it does not tell how long the number is; a short number shows
    fewer characters, so that at least as many are hidden as shown.
    """
    shown = min(visible, len(number) // 2)
    return "•" * 4 + (number[-shown:] if shown else "")
