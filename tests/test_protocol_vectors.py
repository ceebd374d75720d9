"""The official vectors from shared/wechat-protocol.md, and the crypto framing around them."""
import base64
import struct

import pytest

from core.access.crypto import (
    CryptoError,
    MessageCrypto,
    decode_aes_key,
    pkcs7_pad,
    pkcs7_unpad,
    sha1_signature,
    verify_signature,
)

KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


@pytest.mark.parametrize("token,timestamp,nonce,expected", [
    ("AAAAA", "1714036504", "1514711492", "f464b24fc39322e44b38aa78f5edd27bd1441696"),
    ("AAAAA", "1714037059", "486452656", "899cf89e464efb63f54ddac96b0a0a235f53aa78"),
    ("test", "1410685589", "test", "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"),
])
def test_signature_vectors(token, timestamp, nonce, expected):
    assert sha1_signature(token, timestamp, nonce) == expected
    assert verify_signature(expected, token, timestamp, nonce)
    assert verify_signature(expected.upper(), token, timestamp, nonce)
    assert not verify_signature(expected[:-1] + "0", token, timestamp, nonce)
    assert not verify_signature("", token, timestamp, nonce)
    assert not verify_signature(None, token, timestamp, nonce)


def test_vector_a_encrypt_java_sample():
    crypto = MessageCrypto("token", KEY, "wxb11529c136998cb6")
    encrypted = crypto.encrypt("我是中文abcd123", random_prefix=b"aaaabbbbccccdddd")
    assert encrypted == ("jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg==")
    assert crypto.decrypt(encrypted) == "我是中文abcd123"


def test_vector_a_rejects_short_key():
    with pytest.raises(CryptoError) as info:
        MessageCrypto("token", "abcde", "wxb11529c136998cb6")
    assert info.value.code == -40004


VECTOR_B_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2Ld"
    "JF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5"
    "VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXg"
    "CSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9"
    "GhglF2PE=")
VECTOR_B_PLAIN = (
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n"
    "<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n"
    "<CreateTime>1409735668</CreateTime>\n"
    "<MsgType><![CDATA[text]]></MsgType>\n"
    "<Content><![CDATA[abcdteT]]></Content>\n"
    "<MsgId>6054768590064713728</MsgId>\n"
    "</xml>")


def test_vector_b_decrypt_python_sample():
    crypto = MessageCrypto("spamtest", KEY, "wx2c2769f8efd9abc2")
    assert crypto.sign("1409735669", "1320562132", VECTOR_B_ENCRYPT) == "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
    assert crypto.decrypt(VECTOR_B_ENCRYPT) == VECTOR_B_PLAIN


def test_vector_b_wrong_appid_is_rejected():
    crypto = MessageCrypto("spamtest", KEY, "wx_someone_else")
    with pytest.raises(CryptoError) as info:
        crypto.decrypt(VECTOR_B_ENCRYPT)
    assert info.value.code == -40005


def test_padding_uses_32_byte_blocks():
    assert len(pkcs7_pad(b"x" * 32)) == 64  # a full block of padding when already aligned
    assert pkcs7_pad(b"x" * 31)[-1] == 1
    assert pkcs7_unpad(pkcs7_pad(b"abc")) == b"abc"
    with pytest.raises(CryptoError):
        pkcs7_unpad(b"abc" + bytes([40]))


@pytest.mark.parametrize("bad", ["not base64!!", base64.b64encode(b"short").decode(), "", "A" * 15])
def test_garbage_ciphertext_is_a_crypto_error(bad):
    crypto = MessageCrypto("t", KEY, "wx")
    with pytest.raises(CryptoError):
        crypto.decrypt(bad)


def test_declared_length_beyond_plaintext_is_rejected():
    crypto = MessageCrypto("t", KEY, "wx")
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    key = decode_aes_key(KEY)
    plain = b"r" * 16 + struct.pack(">I", 9999) + b"hi" + b"wx"
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    blob = base64.b64encode(enc.update(pkcs7_pad(plain)) + enc.finalize()).decode()
    with pytest.raises(CryptoError):
        crypto.decrypt(blob)


def test_emoji_and_long_text_round_trip():
    crypto = MessageCrypto("t", KEY, "wx")
    text = "天气😀]]>" * 500
    assert crypto.decrypt(crypto.encrypt(text)) == text
