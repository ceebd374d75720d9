"""The web simulator: a phone-like WeChat chat page served by the bot (``[simulator] enabled``).

``GET /simulator`` serves a static page (core/static, no build step, nothing from a CDN). The
page posts each message as JSON to ``POST /simulator/api/send``; the bot turns it into the XML
WeChat would send, signs (and encrypts) it with the account's settings and posts it over HTTP to
its own webhook on the socket the page came in on, so the message takes exactly the path a real
one takes (signature check, decryption, retries, rendering). The reply comes back with the
routing explanation and the time per stage.

Whoever can open the page can talk to the bot as any user, so the send endpoint takes only what
the page itself sends: a same-origin request (``Origin`` and ``Sec-Fetch-Site`` checked when the
browser sends them), a JSON body (a cross-site form or ``text/plain`` POST cannot be JSON) and
the page's own token (``X-Simulator-Token``, issued with each page load, signed with the
account's token, so any worker accepts it; valid for ``PAGE_TOKEN_SECONDS``).

``GET /simulator/api/explain?key=...`` returns the explanation of a recent message to:

* a request with ``server.admin_token`` (even while the simulator is off);
* ``run.py chat --url`` while the simulator is on: its query is signed with the account's WeChat
  token over the key (whoever holds the token can already post as WeChat);
* the page, for the messages it sent itself (its token, this process).

Anyone else gets 404, so a real user's message (tokens, phone numbers, addresses) is never
shown to a passer-by. Everything here answers 404 while the simulator is disabled (the shipped
production settings); the setting is read per request, so a settings reload turns it on or off.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cachetools import TTLCache
from yarl import URL

from ..access.crypto import verify_signature
from ..appkeys import DELIVERY_KEY, GATEWAY_KEY
from .chat_console import ChatClient, CommandError, Composer, shown_text, signer_for
from .health import authorized

log = logging.getLogger("skillbot.simulator")
STATIC = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
                ".svg": "image/svg+xml"}
SEND_KINDS = ("text", "subscribe", "unsubscribe", "scan", "click", "view", "location", "place",
              "voice", "image")
#: How long a page's token is accepted: a tab left open for a day must be reloaded.
PAGE_TOKEN_SECONDS = 12 * 3600
TOKEN_HEADER = "X-Simulator-Token"
TOKEN_PLACEHOLDER = "__SIMULATOR_TOKEN__"


def _token_key(settings: Any) -> bytes:
    """The key page tokens are signed with: derived from the account's secrets, so every worker
    of one bot accepts the tokens of the others, and no other bot does."""
    material = "\0".join(("skillbot-simulator-page", settings.wechat.resolved_token(),
                           settings.wechat.resolved_aes_key(), settings.wechat.app_id))
    return hashlib.sha256(material.encode("utf-8")).digest()


def issue_page_token(settings: Any, now: float | None = None) -> str:
    issued = str(int(now if now is not None else time.time()))
    nonce = secrets.token_urlsafe(12)
    mac = hmac.new(_token_key(settings), f"{issued}.{nonce}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"{issued}.{nonce}.{mac}"


def page_token_nonce(settings: Any, token: str, now: float | None = None) -> str | None:
    """The nonce of a valid, unexpired page token; None otherwise."""
    issued, _, rest = token.partition(".")
    nonce, _, mac = rest.partition(".")
    if not (issued.isdigit() and nonce and mac):
        return None
    expected = hmac.new(_token_key(settings), f"{issued}.{nonce}".encode(), hashlib.sha256).hexdigest()[:32]
    if not hmac.compare_digest(expected.encode(), mac.encode()):
        return None
    age = (now if now is not None else time.time()) - int(issued)
    return nonce if -60 <= age <= PAGE_TOKEN_SECONDS else None


def same_origin(request: web.Request) -> bool:
    """False when the browser says the request comes from another site. Requests without these
    headers (curl, scripts) still need the page token."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        return False
    origin = request.headers.get("Origin")
    if origin is not None:
        try:
            return URL(origin).raw_authority.lower() == (request.host or "").lower()
        except ValueError:
            return False
    return True


def _enabled(request: web.Request) -> bool:
    return bool(request.app[GATEWAY_KEY].bot.settings.simulator.enabled)


def _not_found() -> web.Response:
    return web.json_response({"error": "not found"}, status=404)


async def page(request: web.Request) -> web.StreamResponse:
    """The page, carrying a fresh token for its own requests."""
    if not _enabled(request):
        return _not_found()
    html = (STATIC / "simulator.html").read_text(encoding="utf-8")
    token = issue_page_token(request.app[GATEWAY_KEY].bot.settings)
    return web.Response(text=html.replace(TOKEN_PLACEHOLDER, token), content_type="text/html",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                                 "X-Frame-Options": "DENY"})


async def static(request: web.Request) -> web.StreamResponse:
    if not _enabled(request):
        return _not_found()
    name = request.match_info["name"]
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
        return _not_found()
    return web.FileResponse(path, headers={"Content-Type": STATIC_TYPES[path.suffix],
                                           "Cache-Control": "no-store"})


async def info(request: web.Request) -> web.Response:
    if not _enabled(request):
        return _not_found()
    gateway = request.app[GATEWAY_KEY]
    settings = gateway.bot.settings
    return web.json_response({"mode": gateway.wechat.mode, "plugins": list(settings.plugins.enabled),
                              "kinds": list(SEND_KINDS)})


async def find_explanation(app: web.Application, key: str) -> dict[str, Any] | None:
    """The explanation of a message (core/access/delivery.py: ``Delivery.explanation_of``)."""
    return await app[DELIVERY_KEY].explanation_of(key)


def own_webhook_url(request: web.Request) -> str:
    """The bot's webhook on the local socket this request arrived on (no proxy in between)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        raise web.HTTPServiceUnavailable(text="cannot tell which socket the bot listens on")
    host, port = sockname[0], sockname[1]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{request.app[GATEWAY_KEY].bot.settings.server.path}"


async def send(request: web.Request) -> web.Response:
    """Send one message through the real webhook; returns the reply and its explanation."""
    if not _enabled(request):
        return _not_found()
    if not same_origin(request):
        return web.json_response({"error": "cross-origin request refused"}, status=403)
    if request.content_type != "application/json":
        return web.json_response({"error": "expected Content-Type: application/json"}, status=415)
    nonce = page_token_nonce(request.app[GATEWAY_KEY].bot.settings, request.headers.get(TOKEN_HEADER, ""))
    if nonce is None:
        return web.json_response({"error": "missing or expired page token: reload the page"}, status=403)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return web.json_response({"error": "expected a JSON object"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "expected a JSON object"}, status=400)
    kind = str(body.get("kind", "text"))
    user = str(body.get("user") or "o_simulator_user")[:64]
    if kind not in SEND_KINDS:
        return web.json_response({"error": f"unknown kind {kind!r}"}, status=400)
    gateway = request.app[GATEWAY_KEY]
    composer = _composer(request.app, user)
    try:
        inbound = composer.build(kind, body)
    except CommandError as exc:
        return web.json_response({"error": str(exc)}, status=400)

    async def explain(key: str) -> dict[str, Any] | None:
        return await find_explanation(request.app, key)

    settings = gateway.bot.settings
    signer = signer_for(settings)
    async with aiohttp.ClientSession() as session:
        client = ChatClient(session, own_webhook_url(request), signer, explain)
        exchange = await client.send(inbound)
    request.app[_PAGE_KEYS][inbound.key] = nonce
    result = exchange.to_dict()
    result["text"] = shown_text(exchange.reply)
    result["user"] = user
    return web.json_response(result)


_COMPOSERS: web.AppKey[dict[str, Composer]] = web.AppKey("simulator_composers", dict)
#: Message keys the page sent -> the nonce of the page that sent them (what it may explain).
_PAGE_KEYS: web.AppKey[TTLCache] = web.AppKey("simulator_page_keys", TTLCache)


def _composer(app: web.Application, user: str) -> Composer:
    composers = app[_COMPOSERS]
    if user not in composers:
        if len(composers) > 1000:
            composers.clear()
        composers[user] = Composer(user)
    return composers[user]


def signed_by_the_account(request: web.Request, key: str) -> bool:
    """The query carries WeChat's signature over (token, timestamp, nonce, key), within the
    timestamp window: what ``core.operations.chat_console.remote_explainer`` sends."""
    settings = request.app[GATEWAY_KEY].bot.settings
    query = request.query
    timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
    if not timestamp.isdigit() or not nonce:
        return False
    window = settings.wechat.timestamp_window
    if window and abs(time.time() - int(timestamp)) > window:
        return False
    return verify_signature(query.get("signature"), settings.wechat.resolved_token(), timestamp, nonce, key)


async def explain(request: web.Request) -> web.Response:
    """A recent message's explanation, by its record key (``Message.dedup_key``:
    ``msg:<user>:<MsgId>``, ``evt:<user>:<time>:<event>:<EventKey>``), for the callers listed in
    the module docstring."""
    settings = request.app[GATEWAY_KEY].bot.settings
    key = request.query.get("key", "")
    if settings.server.admin_token and authorized(request):
        allowed = True
    elif not settings.simulator.enabled:
        if settings.server.admin_token:
            return web.json_response({"error": "unauthorized"}, status=401)
        return _not_found()
    elif signed_by_the_account(request, key):
        allowed = True
    else:
        nonce = page_token_nonce(settings, request.headers.get(TOKEN_HEADER, ""))
        allowed = nonce is not None and request.app[_PAGE_KEYS].get(key) == nonce
    found = await find_explanation(request.app, key) if key and allowed else None
    if found is None:
        return web.json_response({"error": "unknown key"}, status=404)
    return web.json_response(found)


async def announce(app: web.Application) -> None:
    """Say where the simulator is and that it is open to whoever can reach the port."""
    settings = app[GATEWAY_KEY].bot.settings
    if not settings.simulator.enabled:
        return
    host, port = settings.server.host, settings.server.port
    everywhere = host in ("0.0.0.0", "::", "")
    shown = "127.0.0.1" if everywhere else (f"[{host}]" if ":" in host else host)
    log.warning("web simulator ON at http://%s:%d/simulator%s: anyone who can reach it can talk to the "
                "bot as any user and read routing details. Development only; set [simulator] "
                "enabled = false on a public server", shown, port,
                f" (listening on all interfaces: open to every machine that can reach port {port})"
                if everywhere else "")


def setup_routes(app: web.Application) -> None:
    app[_COMPOSERS] = {}
    app[_PAGE_KEYS] = TTLCache(maxsize=4096, ttl=600)
    app.on_startup.append(announce)
    app.router.add_get("/simulator", page)
    app.router.add_get("/simulator/", page)
    app.router.add_get("/simulator/static/{name}", static)
    app.router.add_get("/simulator/api/info", info)
    app.router.add_post("/simulator/api/send", send)
    app.router.add_get("/simulator/api/explain", explain)
