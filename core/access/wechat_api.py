"""WeChat's server API as the bot uses it: the access token and customer-service (客服) messages.

One refresher per cluster: each fetch of a classic token invalidates the previous one, so the
token is kept in the shared state and refreshed under a lock (``TokenStore``); the stable-token
endpoint is the default because it returns the same token while it is valid.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Protocol

import aiohttp

from ..operations.logs import hash_user
from .replies import NewsReply, Reply, TextReply, reply_text
from .textsplit import split_for_wechat

log = logging.getLogger("skillbot.wechat_api")

#: Error codes worth a human sentence in the log.
ERROR_MEANINGS = {
    40001: "access token invalid or not the latest",
    40014: "access token malformed",
    42001: "access token expired",
    45009: "daily API quota used up",
    45015: "user has not messaged the account in the last 48 hours",
    45047: "more than 5 customer-service messages since the user's last message",
    48001: "API not authorised: customer-service messages need a verified account",
    40003: "invalid openid",
    -1: "WeChat system busy",
}
TOKEN_ERRORS = {40001, 40014, 42001}


class WeChatAPIError(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        meaning = ERROR_MEANINGS.get(errcode, "")
        super().__init__(f"{errcode} {errmsg}" + (f" ({meaning})" if meaning else ""))
        self.errcode = errcode
        self.errmsg = errmsg


class TokenStore(Protocol):
    async def get_token(self) -> tuple[str, float] | None: ...
    async def set_token(self, token: str, expires_at: float) -> None: ...
    async def lock(self, name: str, ttl: float) -> Any: ...


class MemoryTokenStore:
    def __init__(self) -> None:
        self._token: tuple[str, float] | None = None
        self._locks: dict[str, asyncio.Lock] = {}

    async def get_token(self) -> tuple[str, float] | None:
        return self._token

    async def set_token(self, token: str, expires_at: float) -> None:
        self._token = (token, expires_at)

    async def lock(self, name: str, ttl: float) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())


class AccessTokenManager:
    def __init__(self, http: aiohttp.ClientSession, api_base: str, app_id: str, app_secret: str,
                 endpoint: str = "stable", store: TokenStore | None = None,
                 refresh_margin: float = 300, timeout: float = 5) -> None:
        self.http = http
        self.api_base = api_base.rstrip("/")
        self.app_id = app_id
        self.app_secret = app_secret
        self.endpoint = endpoint
        self.store = store or MemoryTokenStore()
        self.refresh_margin = refresh_margin
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.fetches = 0

    async def token(self, force: bool = False) -> str:
        cached = await self.store.get_token()
        if cached and not force and cached[1] - self.refresh_margin > time.time():
            return cached[0]
        async with await self.store.lock("access_token", ttl=30):
            cached_again = await self.store.get_token()
            if cached_again and cached_again != cached and cached_again[1] - self.refresh_margin > time.time():
                return cached_again[0]  # another worker refreshed while we waited
            if cached_again and not force and cached_again[1] - self.refresh_margin > time.time():
                return cached_again[0]
            token, expires_in = await self._fetch(force)
            await self.store.set_token(token, time.time() + expires_in)
            return token

    async def _fetch(self, force: bool) -> tuple[str, int]:
        self.fetches += 1
        if self.endpoint == "stable":
            request = self.http.post(f"{self.api_base}/cgi-bin/stable_token", timeout=self.timeout, json={
                "grant_type": "client_credential", "appid": self.app_id, "secret": self.app_secret,
                "force_refresh": bool(force)})
        else:
            request = self.http.get(f"{self.api_base}/cgi-bin/token", timeout=self.timeout, params={
                "grant_type": "client_credential", "appid": self.app_id, "secret": self.app_secret})
        async with request as response:
            data = await response.json(content_type=None)
        if not isinstance(data, dict) or "access_token" not in data:
            code = int(data.get("errcode", -1)) if isinstance(data, dict) else -1
            raise WeChatAPIError(code, str(data.get("errmsg", "no token")) if isinstance(data, dict) else "bad body")
        log.info("access token refreshed (expires in %ss)", data.get("expires_in"))
        return data["access_token"], int(data.get("expires_in", 7200))


class CustomerServiceSender:
    """Sends replies through ``message/custom/send``; long text goes as ordered parts."""

    def __init__(self, http: aiohttp.ClientSession, tokens: AccessTokenManager, timeout: float = 5) -> None:
        self.http = http
        self.tokens = tokens
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.sent = 0

    def _bodies(self, openid: str, reply: Reply) -> list[dict]:
        if isinstance(reply, TextReply):
            return [{"touser": openid, "msgtype": "text", "text": {"content": part}}
                    for part in split_for_wechat(reply.content, 2047)]
        if isinstance(reply, NewsReply) and reply.articles:
            a = reply.articles[0]
            return [{"touser": openid, "msgtype": "news", "news": {"articles": [
                {"title": a.title, "description": a.description, "url": a.url, "picurl": a.pic_url}]}}]
        text = reply_text(reply)
        return [{"touser": openid, "msgtype": "text", "text": {"content": text}}] if text else []

    async def _post(self, body: dict) -> None:
        for attempt in (1, 2):
            token = await self.tokens.token(force=attempt == 2)
            async with self.http.post(f"{self.tokens.api_base}/cgi-bin/message/custom/send",
                                      params={"access_token": token}, json=body,
                                      timeout=self.timeout) as response:
                data = await response.json(content_type=None)
            code = int(data.get("errcode", 0)) if isinstance(data, dict) else -1
            if code == 0:
                self.sent += 1
                return
            if code in TOKEN_ERRORS and attempt == 1:
                log.warning("customer-service send: %s; refreshing the token and retrying once",
                            ERROR_MEANINGS[code])
                continue
            raise WeChatAPIError(code, str(data.get("errmsg", "")) if isinstance(data, dict) else "bad body")

    async def send(self, openid: str, reply: Reply) -> bool:
        """True when every part was sent; False (logged with the error's meaning) otherwise."""
        bodies = self._bodies(openid, reply)
        if not bodies:
            return True
        try:
            for body in bodies:
                await self._post(body)
        except WeChatAPIError as exc:
            log.warning("customer-service message to user %s failed: %s", hash_user(openid), exc)
            return False
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            log.warning("customer-service message failed: %s", type(exc).__name__)
            return False
        return True


def app_secret_from_env(env_name: str) -> str:
    return os.environ.get(env_name, "") if env_name else ""
