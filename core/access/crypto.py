"""WeChat signatures and the AES message encryption of safe and compatible mode.

The cipher itself comes from the ``cryptography`` package; this module only frames the plaintext
the way WeChat does (random prefix, network-order length, message, appid) and applies WeChat's
32-byte PKCS#7 padding, which the standard 16-byte padder would get wrong.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # WeChat pads to 32 bytes, not AES's 16


class CryptoError(ValueError):
    """A message that cannot be decrypted or a key that cannot be used; ``code`` is WeChat's."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def sha1_signature(*parts: str) -> str:
    """WeChat's signature: sort the parts as strings, join them, SHA1, lowercase hex."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def verify_signature(expected: str | None, *parts: str) -> bool:
    """Constant-time check of a ``signature`` or ``msg_signature`` query value."""
    if not expected:
        return False
    return hmac.compare_digest(sha1_signature(*parts).encode(), expected.strip().lower().encode())


def decode_aes_key(encoding_aes_key: str) -> bytes:
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError(-40004, "EncodingAESKey is not valid base64") from None
    if len(encoding_aes_key) != 43 or len(key) != 32:
        raise CryptoError(-40004, "EncodingAESKey must be 43 characters decoding to 32 bytes")
    return key


def pkcs7_pad(data: bytes, block: int = BLOCK) -> bytes:
    amount = block - len(data) % block
    return data + bytes([amount]) * amount


def pkcs7_unpad(data: bytes, block: int = BLOCK) -> bytes:
    if not data:
        raise CryptoError(-40007, "empty plaintext")
    amount = data[-1]
    if not 1 <= amount <= block or data[-amount:] != bytes([amount]) * amount:
        raise CryptoError(-40007, "bad padding")
    return data[:-amount]


class MessageCrypto:
    """Encrypts and decrypts message bodies for one account (token, EncodingAESKey, appid)."""

    def __init__(self, token: str, encoding_aes_key: str, app_id: str) -> None:
        self.token = token
        self.key = decode_aes_key(encoding_aes_key)
        self.app_id = app_id

    def _cipher(self) -> Cipher:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))

    def encrypt(self, message: str, random_prefix: bytes | None = None) -> str:
        prefix = random_prefix if random_prefix is not None else os.urandom(16)
        body = message.encode("utf-8")
        plain = prefix + struct.pack(">I", len(body)) + body + self.app_id.encode("utf-8")
        encryptor = self._cipher().encryptor()
        cipher_text = encryptor.update(pkcs7_pad(plain)) + encryptor.finalize()
        return base64.b64encode(cipher_text).decode("ascii")

    def decrypt(self, encrypted: str) -> str:
        try:
            cipher_text = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError(-40010, "Encrypt is not valid base64") from None
        if not cipher_text or len(cipher_text) % 16:
            raise CryptoError(-40007, "ciphertext length is not a multiple of the AES block")
        decryptor = self._cipher().decryptor()
        plain = pkcs7_unpad(decryptor.update(cipher_text) + decryptor.finalize())
        if len(plain) < 20:
            raise CryptoError(-40007, "plaintext too short")
        (length,) = struct.unpack(">I", plain[16:20])
        if 20 + length > len(plain):
            raise CryptoError(-40007, "declared length exceeds plaintext")
        body, app_id = plain[20:20 + length], plain[20 + length:]
        if not hmac.compare_digest(app_id, self.app_id.encode("utf-8")):
            raise CryptoError(-40005, "appid does not match")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise CryptoError(-40007, "message is not UTF-8") from None

    def sign(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return sha1_signature(self.token, timestamp, nonce, encrypted)
