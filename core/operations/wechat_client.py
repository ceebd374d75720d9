"""Acting as WeChat: build inbound XML, sign and encrypt it, and open the replies.

Used by the tests, the terminal chat (``run.py chat``) and the web simulator, so all of them
exercise the real gateway exactly as WeChat's servers would.
"""
from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass
from typing import Any

from ..access.crypto import MessageCrypto, sha1_signature, verify_signature
from ..access.replies import (
    Article,
    ImageReply,
    MusicReply,
    NewsReply,
    Reply,
    TextReply,
    VideoReply,
    VoiceReply,
)
from ..access.wechat_xml import cdata, parse_xml

_msg_ids = itertools.count(int(time.time() * 1000) * 1000)


def message_xml(msg_type: str, fields: dict[str, Any], to_user: str = "gh_skillbot",
                from_user: str = "o_simulator_user", create_time: int | None = None,
                msg_id: int | str | None = None) -> str:
    """XML for an inbound message as WeChat sends it (events get no MsgId)."""
    create_time = create_time or int(time.time())
    parts = [f"<ToUserName>{cdata(to_user)}</ToUserName>",
             f"<FromUserName>{cdata(from_user)}</FromUserName>",
             f"<CreateTime>{create_time}</CreateTime>",
             f"<MsgType>{cdata(msg_type)}</MsgType>"]
    for name, value in fields.items():
        if isinstance(value, (int, float)):
            parts.append(f"<{name}>{value}</{name}>")
        else:
            parts.append(f"<{name}>{cdata(value)}</{name}>")
    if msg_type != "event":
        parts.append(f"<MsgId>{msg_id if msg_id is not None else next(_msg_ids)}</MsgId>")
    return "<xml>" + "".join(parts) + "</xml>"


def text_xml(content: str, **kw: Any) -> str:
    return message_xml("text", {"Content": content}, **kw)


def event_xml(event: str, fields: dict[str, Any] | None = None, **kw: Any) -> str:
    return message_xml("event", {"Event": event, **(fields or {})}, **kw)


@dataclass
class SignedRequest:
    params: dict[str, str]
    body: bytes


class WeChatSigner:
    """Signs (and, in compatible/safe mode, encrypts) requests for one account."""

    def __init__(self, token: str, mode: str = "plain", encoding_aes_key: str = "",
                 app_id: str = "") -> None:
        self.token = token
        self.mode = mode
        self.crypto = MessageCrypto(token, encoding_aes_key, app_id) if mode != "plain" else None
        # Nonces of one signer never repeat (up to 10**9 requests): random ones drawn for tens of
        # thousands of requests signed in the same second collide now and then, and the bot rightly
        # refuses a second message under a query it has seen (the replay guard: 403).
        self._nonces = itertools.count(secrets.randbelow(10**9))

    def query(self, timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
        timestamp_s = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or str(next(self._nonces) % 10**9)
        return {"signature": sha1_signature(self.token, timestamp_s, nonce),
                "timestamp": timestamp_s, "nonce": nonce, "openid": "o_simulator_user"}

    def sign(self, xml: str, timestamp: int | None = None) -> SignedRequest:
        params = self.query(timestamp)
        if self.crypto is None:
            return SignedRequest(params, xml.encode("utf-8"))
        encrypted = self.crypto.encrypt(xml)
        params["encrypt_type"] = "aes"
        params["msg_signature"] = self.crypto.sign(params["timestamp"], params["nonce"], encrypted)
        if self.mode == "compatible":
            body = xml.replace("</xml>", f"<Encrypt>{cdata(encrypted)}</Encrypt></xml>")
        else:
            to_user = parse_xml(xml.encode()).get("ToUserName", "")
            body = f"<xml><ToUserName>{cdata(to_user)}</ToUserName><Encrypt>{cdata(encrypted)}</Encrypt></xml>"
        return SignedRequest(params, body.encode("utf-8"))

    def open_reply(self, body: str) -> dict[str, Any] | None:
        """The reply's fields (decrypted and signature-checked when encrypted); None for ``success``/empty."""
        if body.strip() in ("", "success"):
            return None
        fields = parse_xml(body.encode("utf-8"))
        if "Encrypt" in fields:
            if self.crypto is None:
                raise ValueError("encrypted reply but no key")
            if not verify_signature(fields.get("MsgSignature"), self.token, fields.get("TimeStamp", ""),
                                    fields.get("Nonce", ""), fields["Encrypt"]):
                raise ValueError("reply MsgSignature does not verify")
            fields = parse_xml(self.crypto.decrypt(fields["Encrypt"]).encode("utf-8"))
        return fields


def reply_from_fields(fields: dict[str, Any]) -> Reply | None:
    """The typed reply a passive-reply XML carries (its fields as ``open_reply`` gives them);
    None for a type this does not know."""
    msg_type = fields.get("MsgType")

    def part(name: str) -> dict[str, Any]:
        value = fields.get(name)
        return value if isinstance(value, dict) else {}

    if msg_type == "text":
        return TextReply(str(fields.get("Content", "")))
    if msg_type == "image":
        return ImageReply(str(part("Image").get("MediaId", "")))
    if msg_type == "voice":
        return VoiceReply(str(part("Voice").get("MediaId", "")))
    if msg_type == "video":
        video = part("Video")
        return VideoReply(str(video.get("MediaId", "")), str(video.get("Title", "")),
                          str(video.get("Description", "")))
    if msg_type == "music":
        music = part("Music")
        return MusicReply(str(music.get("ThumbMediaId", "")), str(music.get("Title", "")),
                          str(music.get("Description", "")), str(music.get("MusicUrl", "")),
                          str(music.get("HQMusicUrl", "")))
    if msg_type == "news":
        items = part("Articles").get("item", [])
        items = [items] if isinstance(items, dict) else items
        return NewsReply([Article(str(i.get("Title", "")), str(i.get("Description", "")),
                                  str(i.get("PicUrl", "")), str(i.get("Url", "")))
                          for i in items if isinstance(i, dict)])
    return None


__all__ = ["message_xml", "text_xml", "event_xml", "reply_from_fields", "WeChatSigner", "SignedRequest"]


@dataclass
class TryResult:
    try_number: int
    status: int | None  # None: no answer within the try's time (WeChat drops it and tries again)
    body: str | None
    started: float
    ended: float


async def deliver_like_wechat(session: Any, url: str, signer: WeChatSigner, xml: str,
                              try_timeout: float = 5.0, tries: int = 3) -> list[TryResult]:
    """Send one message the way WeChat does: up to three tries, each given ``try_timeout`` seconds.

    Any answer within the time (``success`` and an empty body included) ends the message; only a
    try left unanswered is followed by the next one.
    """
    import asyncio

    import aiohttp

    results: list[TryResult] = []
    for n in range(1, tries + 1):
        request = signer.sign(xml)
        started = time.monotonic()
        try:
            async with session.post(url, params=request.params, data=request.body,
                                    timeout=aiohttp.ClientTimeout(total=try_timeout)) as response:
                body = await response.text()
                results.append(TryResult(n, response.status, body, started, time.monotonic()))
                return results
        except (asyncio.TimeoutError, aiohttp.ClientError):
            results.append(TryResult(n, None, None, started, time.monotonic()))
    return results
