"""The web simulator: a phone-like WeChat chat page served by the bot (``[simulator] enabled``).

``GET /simulator`` serves a static page (core/static, no build step, nothing from a CDN). The
page posts each message as JSON to ``POST /simulator/api/send``; the bot turns it into the XML
WeChat would send, signs (and encrypts) it with the account's settings and posts it over HTTP to
its own webhook on the socket the page came in on, so the message takes exactly the path a real
one takes (signature check, decryption, retries, rendering). The reply comes back with the
routing explanation and the time per stage.

``GET /simulator/api/explain?key=...`` returns the explanation of a recent message; ``run.py chat
--url`` uses it. It answers when the simulator is enabled, or with ``server.admin_token``.

Everything here answers 404 while the simulator is disabled (the shipped production settings);
the setting is read per request, so a settings reload turns the simulator on or off.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from .appkeys import GATEWAY_KEY
from .chat import ChatClient, CommandError, Composer, reply_text, signer_for
from .health import authorized

log = logging.getLogger("skillbot.simulator")
STATIC = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
                ".svg": "image/svg+xml"}
SEND_KINDS = ("text", "subscribe", "unsubscribe", "scan", "click", "view", "location", "place",
              "voice", "image")


def _enabled(request: web.Request) -> bool:
    return bool(request.app[GATEWAY_KEY].bot.settings.simulator.enabled)


def _not_found() -> web.Response:
    return web.json_response({"error": "not found"}, status=404)


async def page(request: web.Request) -> web.StreamResponse:
    if not _enabled(request):
        return _not_found()
    return web.FileResponse(STATIC / "simulator.html", headers={"Cache-Control": "no-store"})


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


async def find_explanation(gateway: Any, key: str) -> dict[str, Any] | None:
    """This process's explanation of a message, else the one kept with its answer record (with
    ``--workers`` and Redis the message may have been answered by another worker)."""
    found = gateway.explanations.get(key)
    if found is None:
        payload = await gateway.answers.wait_result(key, 0)
        found = payload.get("explain") if isinstance(payload, dict) else None
        if found is not None:
            found = {**found, "plugin": found.get("plugin") or payload.get("plugin"),
                     "intent": found.get("intent") or payload.get("intent")}
    return found


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
        return await find_explanation(gateway, key)

    settings = gateway.bot.settings
    signer = signer_for(settings)
    async with aiohttp.ClientSession() as session:
        client = ChatClient(session, own_webhook_url(request), signer, explain)
        exchange = await client.send(inbound)
    result = exchange.to_dict()
    result["text"] = reply_text(exchange.reply)
    result["user"] = user
    return web.json_response(result)


_COMPOSERS: web.AppKey[dict[str, Composer]] = web.AppKey("simulator_composers", dict)


def _composer(app: web.Application, user: str) -> Composer:
    composers = app[_COMPOSERS]
    if user not in composers:
        if len(composers) > 1000:
            composers.clear()
        composers[user] = Composer(user)
    return composers[user]


async def explain(request: web.Request) -> web.Response:
    """A recent message's explanation, by its record key (``Message.dedup_key``:
    ``msg:<user>:<MsgId>``, ``evt:<user>:<time>:<event>:<EventKey>``)."""
    settings = request.app[GATEWAY_KEY].bot.settings
    allowed = settings.simulator.enabled or (settings.server.admin_token and authorized(request))
    if not allowed:
        if settings.server.admin_token:
            return web.json_response({"error": "unauthorized"}, status=401)
        return _not_found()
    key = request.query.get("key", "")
    found = await find_explanation(request.app[GATEWAY_KEY], key) if key else None
    if found is None:
        return web.json_response({"error": "unknown key"}, status=404)
    return web.json_response(found)


def setup_routes(app: web.Application) -> None:
    app[_COMPOSERS] = {}
    app.router.add_get("/simulator", page)
    app.router.add_get("/simulator/", page)
    app.router.add_get("/simulator/static/{name}", static)
    app.router.add_get("/simulator/api/info", info)
    app.router.add_post("/simulator/api/send", send)
    app.router.add_get("/simulator/api/explain", explain)
