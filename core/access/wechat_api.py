"""WeChat's server API as the bot uses it: the access token, customer-service (客服) messages, and
the management APIs (custom menu, media, template messages) with WeChat's errors in Chinese.

One refresher per cluster: each fetch of a classic token invalidates the previous one, so the
token is kept in the shared state and refreshed under a lock (``TokenStore``); the stable-token
endpoint is the default because it returns the same token while it is valid.
"""
from __future__ import annotations

import asyncio
import functools
import json as jsonlib
import logging
import os
import re
import time
import tomllib
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from ..operations.logs import hash_user
from .replies import NewsReply, Reply, TextReply, reply_text
from .textsplit import split_for_wechat

log = logging.getLogger("skillbot.wechat_api")

#: WeChat's error codes in Chinese with what to do: the one table every command and log uses.
ERRORS_FILE = Path(__file__).with_name("data") / "wechat_errors.toml"
TOKEN_ERRORS = {40001, 40014, 42001}
_IP_IN_ERRMSG = re.compile(r"invalid ip ([0-9A-Fa-f.:]+)")


@functools.lru_cache(maxsize=1)
def error_table() -> dict[str, Any]:
    with open(ERRORS_FILE, "rb") as fh:
        return tomllib.load(fh)


def explain_error(errcode: int, errmsg: str = "") -> tuple[str, str]:
    """WeChat's ``errcode`` in Chinese: (what it means, what to do). 40164 names the IP WeChat saw."""
    table = error_table()
    entry = table["errors"].get(str(errcode))
    found = _IP_IN_ERRMSG.search(errmsg or "")
    values = {"errmsg": errmsg or "", "ip": found.group(1) if found else "（微信未给出）"}
    if entry is None:
        unknown = table["unknown"]
        return f"{unknown['meaning']} {errcode}", unknown["action"].format(**values)
    return entry["meaning"].format(**values), entry["action"].format(**values)


class WeChatAPIError(Exception):
    """An answer from WeChat with a non-zero ``errcode``; ``meaning`` and ``action`` in Chinese."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.meaning, self.action = explain_error(errcode, errmsg)
        super().__init__(f"{errcode} {errmsg} ({self.meaning})")

    def explanation(self) -> str:
        """Two lines for an operator: the code with its meaning, then what to do."""
        return f"微信错误 {self.errcode}：{self.meaning}（{self.errmsg}）\n处理办法：{self.action}"


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

    async def _post(self, body: dict, endpoint: str = "message/custom/send") -> None:
        for attempt in (1, 2):
            token = await self.tokens.token(force=attempt == 2)
            async with self.http.post(f"{self.tokens.api_base}/cgi-bin/{endpoint}",
                                      params={"access_token": token}, json=body,
                                      timeout=self.timeout) as response:
                data = await response.json(content_type=None)
            code = int(data.get("errcode", 0)) if isinstance(data, dict) else -1
            if code == 0:
                if endpoint == "message/custom/send":
                    self.sent += 1
                return
            if code in TOKEN_ERRORS and attempt == 1:
                log.warning("customer-service send: %s; refreshing the token and retrying once",
                            explain_error(code)[0])
                continue
            raise WeChatAPIError(code, str(data.get("errmsg", "")) if isinstance(data, dict) else "bad body")

    async def typing(self, openid: str, on: bool) -> bool:
        """Show (``on``) or hide the "typing" indicator WeChat shows the user for about 15 s
        (``message/custom/typing``); False, logged at DEBUG, when WeChat refuses."""
        body = {"touser": openid, "command": "Typing" if on else "CancelTyping"}
        try:
            await self._post(body, "message/custom/typing")
        except (WeChatAPIError, aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            log.debug("typing indicator for user %s: %s", hash_user(openid), exc)
            return False
        return True

    def parts_of(self, reply: Reply) -> int:
        """How many messages ``send`` makes of ``reply``."""
        return len(self._bodies("", reply))

    async def send(self, openid: str, reply: Reply) -> bool:
        """True when every part was sent; False (logged with the error's meaning) otherwise."""
        bodies = self._bodies(openid, reply)
        if not bodies:
            return True
        try:
            for body in bodies:
                await self._post(body)
        except WeChatAPIError as exc:
            log.warning("customer-service message to user %s failed: %s %s", hash_user(openid),
                        exc, exc.action)
            return False
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            log.warning("customer-service message failed: %s", type(exc).__name__)
            return False
        return True


#: Media kinds and WeChat's limits for them: extensions and bytes (temporary, permanent).
MEDIA_KINDS: dict[str, tuple[tuple[str, ...], int, int]] = {
    "image": ((".jpg", ".jpeg", ".png", ".gif", ".bmp"), 10 * 2**20, 10 * 2**20),
    "voice": ((".mp3", ".amr"), 2 * 2**20, 2 * 2**20),
    "video": ((".mp4",), 10 * 2**20, 10 * 2**20),
    "thumb": ((".jpg", ".jpeg"), 64 * 2**10, 64 * 2**10),
}
#: A temporary media_id lives three days at WeChat.
TEMPORARY_MEDIA_SECONDS = 3 * 86400


def check_media_file(path: Path, kind: str, permanent: bool = False) -> None:
    """Refuse locally what WeChat would refuse (40004 kind, 40005 format, 40006 size)."""
    if kind not in MEDIA_KINDS:
        raise WeChatAPIError(40004, f"invalid media type {kind}")
    extensions, temporary_limit, permanent_limit = MEDIA_KINDS[kind]
    if path.suffix.lower() not in extensions:
        raise WeChatAPIError(40005, f"invalid file type {path.suffix or '(none)'} for {kind}")
    size = path.stat().st_size
    if not 0 < size <= (permanent_limit if permanent else temporary_limit):
        raise WeChatAPIError(40006, f"invalid file size {size} bytes for {kind}")


class WeChatAPI:
    """Calls to WeChat's management APIs with the account's access token: the token is refreshed
    and the call made again once when WeChat says it is invalid or expired; any other non-zero
    ``errcode`` raises ``WeChatAPIError`` (with its Chinese meaning and what to do)."""

    def __init__(self, tokens: AccessTokenManager, timeout: float = 30) -> None:
        self.tokens = tokens
        self.http = tokens.http
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def call(self, method: str, path: str, *, json: Any = None, data: Any = None,
                   params: dict[str, str] | None = None,
                   headers: dict[str, str] | None = None) -> dict[str, Any]:
        for attempt in (1, 2):
            token = await self.tokens.token(force=attempt == 2)
            query = {**(params or {}), "access_token": token}
            body = data() if callable(data) else data  # a multipart form can be sent only once
            async with self.http.request(method, f"{self.tokens.api_base}{path}", params=query,
                                         json=json, data=body, headers=headers,
                                         timeout=self.timeout) as response:
                answer = await response.json(content_type=None)
            if not isinstance(answer, dict):
                raise WeChatAPIError(-1, "answer is not a JSON object")
            code = int(answer.get("errcode", 0) or 0)
            if code == 0:
                return answer
            if code in TOKEN_ERRORS and attempt == 1:
                log.warning("%s: %s; refreshing the token and calling again", path, explain_error(code)[0])
                continue
            raise WeChatAPIError(code, str(answer.get("errmsg", "")))
        raise AssertionError("unreachable")

    # ---- custom menu ------------------------------------------------------------------------

    async def create_menu(self, menu: dict[str, Any]) -> None:
        # WeChat wants the Chinese names as UTF-8, not as \u escapes.
        body = jsonlib.dumps(menu, ensure_ascii=False).encode("utf-8")
        await self.call("POST", "/cgi-bin/menu/create", data=body,
                        headers={"Content-Type": "application/json; charset=utf-8"})

    async def get_menu(self) -> dict[str, Any]:
        """``{"button": [...]}``; ``WeChatAPIError`` 46003 when the account has no menu."""
        return (await self.call("GET", "/cgi-bin/menu/get")).get("menu", {"button": []})

    async def delete_menu(self) -> None:
        await self.call("GET", "/cgi-bin/menu/delete")

    # ---- media ------------------------------------------------------------------------------

    async def upload_media(self, path: Path, kind: str, permanent: bool = False,
                           title: str = "", introduction: str = "") -> dict[str, Any]:
        """Temporary (``media/upload``: type, media_id, created_at) or permanent
        (``material/add_material``: media_id, url) media from a file."""
        path = Path(path)
        check_media_file(path, kind, permanent)
        content = await asyncio.to_thread(path.read_bytes)

        def form() -> aiohttp.FormData:
            fields = aiohttp.FormData()
            fields.add_field("media", content, filename=path.name)
            if permanent and kind == "video":
                fields.add_field("description", jsonlib.dumps(
                    {"title": title or path.stem, "introduction": introduction}, ensure_ascii=False))
            return fields

        endpoint = "/cgi-bin/material/add_material" if permanent else "/cgi-bin/media/upload"
        return await self.call("POST", endpoint, data=form, params={"type": kind})

    # ---- template messages ------------------------------------------------------------------

    async def send_template(self, openid: str, template_id: str, data: dict[str, str],
                            url: str = "") -> int:
        """Send a template message; returns WeChat's ``msgid``."""
        body: dict[str, Any] = {"touser": openid, "template_id": template_id,
                                "data": {key: {"value": value} for key, value in data.items()}}
        if url:
            body["url"] = url
        answer = await self.call("POST", "/cgi-bin/message/template/send", json=body)
        return int(answer.get("msgid", 0))


class MediaLibrary:
    """Files a reply names, uploaded once as temporary media; the media_id is kept in a cache
    (shared by the workers with Redis) until shortly before WeChat lets it expire."""

    def __init__(self, api: WeChatAPI, cache: Any, margin: float = 3600) -> None:
        self.api = api
        self.cache = cache
        self.margin = margin
        self.uploads = 0

    async def media_id(self, path: Path, kind: str = "image") -> str:
        stat = await asyncio.to_thread(path.stat)
        key = f"{kind}:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"  # an edited file is sent again
        cached = await self.cache.get(key)
        if cached:
            return str(cached)
        answer = await self.api.upload_media(path, kind)
        self.uploads += 1
        media_id = str(answer["media_id"])
        await self.cache.set(key, media_id, ttl=TEMPORARY_MEDIA_SECONDS - self.margin)
        return media_id


def app_secret_from_env(env_name: str) -> str:
    return os.environ.get(env_name, "") if env_name else ""


def wechat_api_for(settings: Any, http: aiohttp.ClientSession, store: TokenStore | None = None) -> WeChatAPI:
    """The management API client for the account in ``settings`` (AppID, the AppSecret from the
    environment variable ``wechat.app_secret_env``, ``delivery.api_base`` and token endpoint)."""
    secret = app_secret_from_env(settings.wechat.app_secret_env)
    tokens = AccessTokenManager(http, settings.delivery.api_base, settings.wechat.app_id, secret,
                                settings.delivery.token_endpoint, store=store)
    return WeChatAPI(tokens)
