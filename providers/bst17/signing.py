"""Encryption and signatures of the 17bst charge platform. Pure functions: no I/O, no settings.

Every request carries `param` = Base64(DES/ECB/PKCS5Padding(source JSON)), keyed with the first
8 bytes of the appKey. Card PINs (`cardPwd`) come back encrypted the same way with the card key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from Crypto.Cipher import DES
from Crypto.Util.Padding import pad, unpad

DES_KEY_LENGTH = 8


def des_key(key: str) -> bytes:
    key_bytes = key.encode("utf-8")[:DES_KEY_LENGTH]
    if len(key_bytes) < DES_KEY_LENGTH:
        raise ValueError("A 17bst key must be at least 8 bytes long.")
    return key_bytes


def des_encrypt(plaintext: str, key: str) -> str:
    cipher = DES.new(des_key(key), DES.MODE_ECB)
    return base64.b64encode(cipher.encrypt(pad(plaintext.encode("utf-8"), DES.block_size))).decode("ascii")


def des_decrypt(ciphertext: str, key: str) -> str:
    """Decrypt a Base64 DES blob; raises ValueError when it is not one or the key is wrong."""
    # The vendor's own samples wrap Base64 over several lines.
    compact = "".join(ciphertext.split())
    try:
        raw = base64.b64decode(compact, validate=True)
        cipher = DES.new(des_key(key), DES.MODE_ECB)
        return unpad(cipher.decrypt(raw), DES.block_size).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError("Not a DES blob for this key.") from err


def trade_password_digest(trade_password: str) -> str:
    """`tradePwd` is the 32-char lowercase MD5 of the trade password, never the password itself."""
    return hashlib.md5(trade_password.encode("utf-8")).hexdigest()


def callback_sign(agt_phone: str, req_stream_id: str, state: str, app_key: str) -> str:
    # Inferred from a related platform with the identical API: md5(agtPhone + reqStreamId + state + appKey).
    return hashlib.md5(f"{agt_phone}{req_stream_id}{state}{app_key}".encode()).hexdigest()


def verify_callback_sign(agt_phone: str, req_stream_id: str, state: str, app_key: str, signature: str) -> bool:
    expected = callback_sign(agt_phone, req_stream_id, state, app_key)
    return hmac.compare_digest(expected.encode("ascii"), signature.lower().encode("utf-8"))
