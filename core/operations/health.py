"""Health of the bot and the services it uses: ``/healthz``, ``/readyz`` and ``run.py check``.

Core knows one service itself, the state backend (Redis). Every other service belongs to a plugin
and is reported through the ``skillbot_health(bot, probe)`` hook: cheaply from what the plugin
already knows for ``/readyz`` (``probe=False``), by reaching the service for ``run.py check``
(``probe=True``, usually with ``probe_http`` below).
"""
from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
from aiohttp import web

from ..appkeys import ACCOUNTS_KEY, BOTS_KEY, DEFAULT_ACCOUNT


@dataclass
class Check:
    """One service's state. ``name`` says what was checked ("model provider deepseek")."""

    name: str
    ok: bool
    detail: str = ""
    plugin: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_check(item: Any, plugin: str) -> Check:
    """A plugin's answer (a ``Check`` or a dict with name/ok/detail) as a ``Check``."""
    if isinstance(item, Check):
        if not item.plugin:
            item.plugin = plugin
        return item
    if isinstance(item, dict) and "name" in item and "ok" in item:
        return Check(str(item["name"]), bool(item["ok"]), str(item.get("detail", "")), plugin)
    return Check(f"plugin {plugin}", False, f"skillbot_health returned {type(item).__name__}, "
                 "expected a list of core.Check", plugin)


async def probe_http(session: aiohttp.ClientSession, url: str, *, name: str,
                     headers: dict[str, str] | None = None, params: dict[str, str] | None = None,
                     timeout: float = 5.0) -> Check:
    """GET ``url`` once and say whether the service answers.

    2xx/3xx: ok. 404/405/429: the server answers (the path may not exist for every provider, or
    it is rate limiting), ok with the status named. 401/403: reached but the credentials are
    refused: not ok. Other 4xx, 5xx, timeouts and connection errors: not ok.
    """
    started = time.perf_counter()
    try:
        async with session.get(url, headers=headers, params=params,
                               timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            await response.read()
            status = response.status
    except asyncio.TimeoutError:
        return Check(name, False, f"GET {url}: no answer within {timeout:g}s")
    except aiohttp.ClientError as exc:
        return Check(name, False, f"GET {url}: {type(exc).__name__}: {exc}")
    ms = (time.perf_counter() - started) * 1000
    if status < 400:
        return Check(name, True, f"GET {url}: HTTP {status} in {ms:.0f} ms")
    if status in (401, 403):
        return Check(name, False, f"GET {url}: HTTP {status}: credentials refused (check the API key)")
    if status in (404, 405, 429):
        return Check(name, True, f"GET {url}: HTTP {status} in {ms:.0f} ms (the server answers)")
    return Check(name, False, f"GET {url}: HTTP {status}")


def state_check(bot: Any) -> Check:
    status = bot.state.status
    if status == "memory":
        return Check("state", True, "memory (one process)")
    if status == "up":
        return Check("state", True, "redis reachable")
    return Check("state", False, "redis unreachable: answering from local memory")


async def plugin_checks(bot: Any, probe: bool, timeout: float = 2.0) -> list[Check]:
    """Every plugin's ``skillbot_health`` answer; a failing implementation is a failed check."""
    checks: list[Check] = []
    for result in await bot.hooks.health(bot, probe, timeout):
        if not result.ok:
            checks.append(Check(f"plugin {result.plugin}", False,
                                "skillbot_health failed or timed out (see the log)", result.plugin))
            continue
        if result.value is None:
            continue
        items = result.value if isinstance(result.value, (list, tuple)) else [result.value]
        checks.extend(as_check(item, result.plugin) for item in items)
    return checks


# ---- HTTP ------------------------------------------------------------------------------------------

def current_bot(app: web.Application) -> Any:
    """The running bot (a settings reload swaps it in the app's one ``BotHolder``)."""
    return app[BOTS_KEY].bot


def authorized(request: web.Request) -> bool:
    """True when no ``server.admin_token`` is set or the request carries it as a Bearer token."""
    token = current_bot(request.app).settings.server.admin_token
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def reload_status(app: web.Application) -> dict[str, Any] | None:
    from .reload import RELOADER_KEY

    reloader = app.get(RELOADER_KEY)
    return reloader.status() if reloader is not None else None


def bot_status(bot: Any) -> str:
    """"starting", "degraded" (Redis away: answering from memory) or "ok"."""
    if not bot.started:
        return "starting"
    return "degraded" if bot.state.status == "down" else "ok"


def accounts_section(app: web.Application, details: bool) -> dict[str, Any] | None:
    """Each account's path and status ("ok", "degraded", "starting" or "not served"); with
    ``details`` also its state backend, why it is not served and its last reload. None when the
    application serves the default account only."""
    from .reload import RELOADER_KEY

    accounts = app.get(ACCOUNTS_KEY)
    if accounts is None or not accounts.named:
        return None
    reloader = app.get(RELOADER_KEY)
    default_bot = accounts.default.bot
    section: dict[str, Any] = {DEFAULT_ACCOUNT: {"path": default_bot.settings.server.path,
                                                 "status": bot_status(default_bot)}}
    if details:
        section[DEFAULT_ACCOUNT]["state"] = default_bot.state.status
    for name, account in accounts.named.items():
        entry: dict[str, Any] = {"path": account.path}
        bot = account.gateway.bot if account.gateway is not None else None
        entry["status"] = bot_status(bot) if account.served and bot is not None else "not served"
        if details:
            if bot is not None:
                entry["state"] = bot.state.status
            if account.error:
                entry["error"] = account.error
            reload = reloader.account_reload_status(name) if reloader is not None else None
            if reload is not None:
                entry["reload"] = reload
        section[name] = entry
    return section


async def healthz(request: web.Request) -> web.Response:
    """Liveness plus the state backend: "ok", or "degraded" while Redis is away (still 200).

    With details (no ``server.admin_token``, or the token given), ``plugins`` lists what each plugin
    reports of its own (``skillbot_health``, no I/O: e.g. the knowledge index's counts and age)
    without changing the status. With ``server.admin_token`` set, a request without the token gets
    the status only. With
    several accounts, ``accounts`` gives each one's status; an account not served (or degraded)
    makes the whole "degraded", still 200: the others answer.
    """
    bot = current_bot(request.app)
    state = bot.state.status
    status = bot_status(bot)
    body: dict[str, Any] = {"status": status}
    details = authorized(request)
    accounts = accounts_section(request.app, details)
    if accounts is not None:
        if status == "ok" and any(a["status"] != "ok" for a in accounts.values()):
            body["status"] = "degraded"
        body["accounts"] = accounts
    if details:
        body["state"] = state
        reload = reload_status(request.app)
        if reload is not None:
            body["reload"] = reload
        if bot.started:  # what the plugins report of their own (no I/O); liveness does not depend on it
            body["plugins"] = [c.to_dict() for c in await plugin_checks(bot, probe=False)]
    return web.json_response(body, status=200 if bot.started else 503)


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the state backend and every plugin's services (``skillbot_health``, no I/O);
    with several accounts, each account's under ``accounts`` (one not served: "degraded").

    503 only while the bot is not started: a dead Redis or model provider makes the bot
    "degraded" (it still answers, from memory or with a polite apology), not unready.
    """
    bot = current_bot(request.app)
    if not bot.started:
        return web.json_response({"status": "starting"}, status=503)
    checks = [state_check(bot)] + await plugin_checks(bot, probe=False)
    status = "ok" if all(c.ok for c in checks) else "degraded"
    body: dict[str, Any] = {"status": status}
    details = authorized(request)
    accounts = accounts_section(request.app, details)
    if accounts is not None:
        for name, gateway in request.app[ACCOUNTS_KEY].served()[1:]:
            own = [state_check(gateway.bot)] + await plugin_checks(gateway.bot, probe=False)
            if not all(c.ok for c in own) and accounts[name]["status"] == "ok":
                accounts[name]["status"] = "degraded"
            if details:
                accounts[name]["checks"] = [c.to_dict() for c in own]
        if any(a["status"] != "ok" for a in accounts.values()):
            body["status"] = "degraded"
        body["accounts"] = accounts
    if details:
        body["checks"] = [c.to_dict() for c in checks]
        reload = reload_status(request.app)
        if reload is not None:
            body["reload"] = reload
    return web.json_response(body)
