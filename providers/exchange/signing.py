"""Signatures of the redemption platform's open API. Pure functions: no I/O, no settings.

The string to sign is the request headers other than `sign` and other than empty ones, sorted by
name, written `name=value` and joined with `&`, followed directly by the exact body:
`businessId=…&nonce=…&signType=SHA256-RSA&timestamp=1628772138668{"businessId":…}`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGN_TYPE_RSA = "SHA256-RSA"
SIGN_TYPE_MD5 = "MD5"
SIGN_TYPES = (SIGN_TYPE_RSA, SIGN_TYPE_MD5)
SIGN_HEADER = "sign"


# The vendor's string neither escapes its separators nor marks an empty header, so a value holding
# them could move text between headers ("nonce=n1&signType=SHA256-RSA" as one nonce) and sign like
# another set of headers. Callers check each header's shape first; this refuses what would be ambiguous.
SEPARATORS = ("&", "=")


def string_to_sign(headers: Mapping[str, str], body: str) -> str:
    """Raises ValueError for a header name or value holding `&` or `=` (it would not be one string per set of headers)."""
    signed = sorted((name, value) for name, value in headers.items() if name != SIGN_HEADER and value)
    for name, value in signed:
        if not name or any(mark in name or mark in value for mark in SEPARATORS):
            raise ValueError(f"the header {name!r} holds '&' or '=': it cannot be signed unambiguously")
    return "&".join(f"{name}={value}" for name, value in signed) + body


# Loading a PEM RSA private key checks the key, which costs more CPU than the rest of a request.
# The keys are few and fixed, so each is loaded once (key objects are thread-safe).
@functools.lru_cache(maxsize=16)
def _load_private_key(private_key_pem: str):
    return serialization.load_pem_private_key(private_key_pem.encode("ascii"), password=None)


@functools.lru_cache(maxsize=16)
def _load_public_key(public_key_pem: str):
    return serialization.load_pem_public_key(public_key_pem.encode("ascii"))


def sign_sha256_rsa(message: str, private_key_pem: str) -> str:
    key = _load_private_key(private_key_pem)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("The private key is not an RSA key.")
    signature = key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def verify_sha256_rsa(message: str, signature: str, public_key_pem: str) -> bool:
    key = _load_public_key(public_key_pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("The public key is not an RSA key.")
    try:
        raw_signature = base64.b64decode(signature, validate=True)
        key.verify(raw_signature, message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def sign_md5(message: str, md5_key: str) -> str:
    # Inferred: the MD5 form is not published. Lowercase hex MD5 of the string to sign with the
    # merchant's MD5 key appended; change it here only.
    if not md5_key:
        # Without a key this is md5(message), which anyone can compute: never a signature.
        raise ValueError("an MD5 signature needs the merchant's MD5 key")
    return hashlib.md5((message + md5_key).encode("utf-8")).hexdigest()


def verify_md5(message: str, signature: str, md5_key: str) -> bool:
    """Raises ValueError without a key (see sign_md5)."""
    return hmac.compare_digest(sign_md5(message, md5_key).encode("ascii"), signature.lower().encode("utf-8"))


def sign(message: str, *, sign_type: str, private_key_pem: str = "", md5_key: str = "") -> str:
    if sign_type == SIGN_TYPE_RSA:
        return sign_sha256_rsa(message, private_key_pem)
    if sign_type == SIGN_TYPE_MD5:
        return sign_md5(message, md5_key)
    raise ValueError(f"Unknown sign type {sign_type!r}")


def verify(message: str, signature: str, *, sign_type: str, public_key_pem: str = "", md5_key: str = "") -> bool:
    """Check `signature` as `sign_type` (the account's configured type, never one the sender names).

    Raises ValueError when the key of that type is missing or unusable.
    """
    if not signature:
        return False
    if sign_type == SIGN_TYPE_RSA:
        return verify_sha256_rsa(message, signature, public_key_pem)
    if sign_type == SIGN_TYPE_MD5:
        return verify_md5(message, signature, md5_key)
    return False


def public_key_pem_of(private_key_pem: str) -> str:
    """The PEM public key matching a PEM private key (the sandbox verifies with it)."""
    key = _load_private_key(private_key_pem)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def generate_private_key_pem() -> str:
    """A fresh 2048-bit RSA private key in PKCS#8 PEM (demo credentials only)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
