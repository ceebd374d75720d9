"""The operator console at ``/admin``: a login page, traffic charts, the FAQ's unanswered
questions grouped by similarity (one click turns a group into an FAQ phrasing or entry),
opt-in transcripts and the plugin switches. Pages are Jinja2 templates (templates/console/),
their script and style static files (static/console.*); all wording is in those files.

Access: everything answers 404 while ``server.admin_token`` is empty (read per request, so a
settings reload turns the console on or off). The login form posts the token; the answer is a
session cookie (HttpOnly, SameSite=Strict, path /admin) signed with a key derived from the token,
so any worker accepts it and changing the token logs everyone out. Every POST needs a same-origin
request and the session's CSRF token (an HMAC of the session's nonce), sent as a form field.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from ..appkeys import ACCOUNTS_KEY, BOTS_KEY, DEFAULT_ACCOUNT
from ..processing.plugin_manager import discover_plugins
from .console_questions import (FaqEditError, bigram_similarity, embedding_similarity, faq_entries,
                                frequent_texts, group_questions, mark_handled, read_handled,
                                read_question_log, write_faq)
from .console_traffic import DIMENSIONS
from .logs import hash_user
from .simulator import same_origin

log = logging.getLogger("skillbot.console")
audit = logging.getLogger("skillbot.audit")
HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
STATIC_FILES = {"console.css": "text/css", "console.js": "text/javascript"}
COOKIE = "skillbot_console"
#: How long a login lasts.
SESSION_SECONDS = 12 * 3600
#: "same-origin", not "no-referrer": with no referrer Chromium sends "Origin: null" on form posts.
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"}
_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates" / "console"),
                                autoescape=True, undefined=jinja2.StrictUndefined)
_TEMPLATES.filters["hash_user"] = hash_user
_TEMPLATES.filters["clock"] = lambda t: time.strftime("%m-%d %H:%M:%S", time.gmtime(t))


# ---- sessions --------------------------------------------------------------------------------

def admin_token(request: web.Request) -> str:
    return request.app[BOTS_KEY].bot.settings.server.admin_token


def _key(token: str) -> bytes:
    return hashlib.sha256(f"skillbot-console\0{token}".encode("utf-8")).digest()


def _mac(token: str, text: str) -> str:
    return hmac.new(_key(token), text.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def new_session(token: str, now: float | None = None) -> str:
    issued = str(int(now if now is not None else time.time()))
    nonce = secrets.token_urlsafe(16)
    return f"{issued}.{nonce}.{_mac(token, f'{issued}.{nonce}')}"


def session_nonce(token: str, cookie: str, now: float | None = None) -> str | None:
    """The nonce of a valid, unexpired session cookie; None otherwise."""
    issued, _, rest = cookie.partition(".")
    nonce, _, mac = rest.partition(".")
    if not (token and issued.isdigit() and nonce and mac):
        return None
    if not hmac.compare_digest(_mac(token, f"{issued}.{nonce}").encode(), mac.encode()):
        return None
    age = (now if now is not None else time.time()) - int(issued)
    return nonce if -60 <= age <= SESSION_SECONDS else None


def csrf_token(token: str, nonce: str) -> str:
    return _mac(token, f"csrf.{nonce}")


def _session(request: web.Request) -> str | None:
    return session_nonce(admin_token(request), request.cookies.get(COOKIE, ""))


def _enabled_or_404(request: web.Request) -> str:
    token = admin_token(request)
    if not token:
        raise web.HTTPNotFound(text="not found")
    return token


async def _checked_form(request: web.Request) -> tuple[str, dict[str, str]]:
    """The session nonce and the form of an authorised POST: logged in, same origin, CSRF token."""
    token = _enabled_or_404(request)
    nonce = _session(request)
    if nonce is None:
        raise refused("not_logged_in")
    if not same_origin(request):
        raise refused("cross_origin")
    form = {k: str(v) for k, v in (await request.post()).items()}
    if not hmac.compare_digest(form.get("csrf", "").encode(), csrf_token(token, nonce).encode()):
        raise refused("bad_csrf")
    return nonce, form


def refused(reason: str) -> web.HTTPForbidden:
    """A 403 with the console's page saying why (``reason``: a key of refused.html)."""
    log.warning("console request refused: %s", reason)
    return web.HTTPForbidden(text=_TEMPLATES.get_template("refused.html").render(reason=reason),
                             content_type="text/html", headers=PAGE_HEADERS)


def render(name: str, status: int = 200, **values: Any) -> web.Response:
    html = _TEMPLATES.get_template(name).render(**values)
    return web.Response(text=html, status=status, content_type="text/html", headers=PAGE_HEADERS)


def _audit(action: str, **fields: Any) -> None:
    audit.info(json.dumps({"event": "console", "action": action, **fields}, ensure_ascii=False))


# ---- accounts --------------------------------------------------------------------------------

def _accounts(request: web.Request) -> list[tuple[str, Any]]:
    return request.app[ACCOUNTS_KEY].served()


def _account(request: web.Request, name: str | None = None) -> tuple[str, Any]:
    wanted = name if name is not None else request.query.get("account", DEFAULT_ACCOUNT)
    for account, gateway in _accounts(request):
        if account == wanted:
            return account, gateway
    raise web.HTTPNotFound(text="no such account")


async def _page(request: web.Request, name: str, **values: Any) -> web.Response:
    """A logged-in page (else the login page), with what every page shows."""
    token = _enabled_or_404(request)
    nonce = _session(request)
    if nonce is None:
        return render("login.html", status=401, error=None)
    account, _ = _account(request)
    return render(name, csrf=csrf_token(token, nonce), accounts=[a for a, _ in _accounts(request)],
                  account=account, query=request.query, **values)


# ---- login -----------------------------------------------------------------------------------

async def login_page(request: web.Request) -> web.StreamResponse:
    _enabled_or_404(request)
    if _session(request) is not None:
        raise web.HTTPSeeOther("/admin/overview")
    return render("login.html", error=None)


async def login(request: web.Request) -> web.StreamResponse:
    token = _enabled_or_404(request)
    if not same_origin(request):
        raise refused("cross_origin")
    form = await request.post()
    given = str(form.get("token", ""))
    if not hmac.compare_digest(given.encode(), token.encode()):
        log.warning("console login refused from %s: wrong token", request.remote)
        _audit("login", outcome="refused", remote=request.remote)
        return render("login.html", status=403, error="wrong_token")
    _audit("login", outcome="ok", remote=request.remote)
    response = web.HTTPSeeOther("/admin/overview")
    response.set_cookie(COOKIE, new_session(token), max_age=SESSION_SECONDS, path="/admin",
                        httponly=True, samesite="Strict", secure=request.secure)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    await _checked_form(request)
    response = web.HTTPSeeOther("/admin")
    response.del_cookie(COOKIE, path="/admin")
    raise response


async def static(request: web.Request) -> web.StreamResponse:
    _enabled_or_404(request)
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound(text="not found")
    return web.FileResponse(STATIC / name, headers={"Content-Type": STATIC_FILES[name],
                                                    "Cache-Control": "no-store"})


# ---- overview --------------------------------------------------------------------------------

def percentile(histogram: Any, labels: tuple[str, ...], q: float) -> float | None:
    """The ``q`` quantile (seconds) of a metrics histogram, linear within its bucket; None when
    empty; the largest bound when it lies beyond the last bucket."""
    entry = histogram.data.get(labels)
    if not entry or not entry[2]:
        return None
    counts, _, total = entry
    rank = q * total
    seen, lower = 0, 0.0
    for bound, count in zip(histogram.buckets, counts):
        if count and seen + count >= rank:
            return lower + (bound - lower) * (rank - seen) / count
        seen += count
        lower = bound
    return histogram.buckets[-1]


def plugin_counters(metrics: Any) -> list[tuple[str, str, tuple[str, ...], list[tuple[tuple[str, ...], int]]]]:
    """The counters plugins keep (``skillbot_metrics``: the model's tokens among them), as
    (name, help, label names, rows), rendered without knowing what they count."""
    return [(family.name, family.help, tuple(family.label_names),
             [(labels, int(value)) for labels, value in sorted(family.values.items())])
            for family in metrics._plugin_families() if getattr(family, "kind", "") == "counter"]


async def overview(request: web.Request) -> web.Response:
    now = time.time()
    charts: dict[str, Any] = {}
    accounts = _accounts(request)
    by_account: dict[str, list[int]] = {}
    start = 0
    for name, gateway in accounts:
        outcome = gateway.metrics.traffic.series("outcome", now)
        start = outcome["start"]
        total = [sum(column) for column in zip(*outcome["rows"].values())] if outcome["rows"] else []
        if total:
            by_account[name] = total
    charts["account"] = {"start": start, "labels": list(by_account), "rows": by_account}
    account, gateway = _account(request)
    for dimension in DIMENSIONS:
        charts[dimension] = gateway.metrics.traffic.series(dimension, now)
    latency = []
    for name, gw in accounts:
        stages = gw.metrics.stages
        latency.append((name, stages.count("pipeline"),
                        *[percentile(stages, ("pipeline",), q) for q in (0.5, 0.95, 0.99)]))
    counters = [(name, *family) for name, gw in accounts for family in plugin_counters(gw.metrics)]
    return await _page(request, "overview.html", charts=json.dumps(charts, separators=(",", ":")),
                       latency=latency, counters=counters)


# ---- questions -------------------------------------------------------------------------------

def faq_file(settings: Any) -> Path | None:
    """The account's FAQ file, when the FAQ plugin is enabled and comes from a folder."""
    if "faq" not in settings.plugins.enabled:
        return None
    source = discover_plugins(settings).get("faq")
    if source is None or source.origin != "folder":
        return None
    value = (settings.plugin_tables.get("faq") or {}).get("path", "data/faq.toml")
    return settings.plugin_path("faq", "path", value, Path(source.location))


async def groups_of(bot: Any) -> list[Any]:
    """The account's unanswered questions grouped, by embeddings when the bot has them."""
    settings = bot.settings
    data_dir = settings.data_dir
    rows, handled = await asyncio.to_thread(lambda: (read_question_log(data_dir), read_handled(data_dir)))
    similarity, threshold = None, settings.console.group_threshold_semantic
    embeddings = getattr(bot, "embeddings", None)
    if embeddings is not None and embeddings.enabled and rows:
        try:
            similarity = await embedding_similarity(frequent_texts(rows, handled), embeddings.embed_query)
        except Exception as exc:  # the service is optional here: fall back to bigrams
            log.warning("console: embeddings unavailable for grouping (%s); using bigrams", type(exc).__name__)
    if similarity is None:
        similarity, threshold = bigram_similarity(), settings.console.group_threshold
    return await asyncio.to_thread(group_questions, rows, similarity, threshold, handled)


async def questions(request: web.Request) -> web.Response:
    _enabled_or_404(request)
    if _session(request) is None:
        return await _page(request, "login.html")
    _, gateway = _account(request)
    bot = gateway.bot
    path = faq_file(bot.settings)
    entries, unreadable = [], False
    if path is not None:
        try:
            entries = await asyncio.to_thread(faq_entries, path)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            log.warning("console: FAQ file %s unreadable: %s", path, exc)
            path, unreadable = None, True
    groups = await groups_of(bot)
    return await _page(request, "questions.html", groups=groups, entries=entries,
                       faq_path=str(path) if path else None, unreadable=unreadable)


async def add_to_faq(request: web.Request) -> web.StreamResponse:
    """One group turned into a phrasing of an entry (``edit=phrasing``) or a new entry
    (``edit=entry``); the group's texts are then marked handled."""
    _, form = await _checked_form(request)
    account, gateway = _account(request, form.get("account", DEFAULT_ACCOUNT))
    settings = gateway.bot.settings
    path = faq_file(settings)
    edit, entry_id = form.get("edit", ""), form.get("entry", "").strip()
    text = form.get("text", "")
    try:
        members = [str(m) for m in json.loads(form.get("members", "[]"))]
    except (json.JSONDecodeError, TypeError):
        members = []
    target = "/admin/questions?" + urlencode({"account": account})
    if path is None or not path.is_file():
        raise web.HTTPSeeOther(f"{target}&error=no_faq")
    try:
        backup = await asyncio.to_thread(write_faq, path, edit, entry_id, text, form.get("answer", ""))
    except (FaqEditError, OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        reason = str(exc) if isinstance(exc, FaqEditError) else "unreadable_faq"
        _audit("faq_" + edit, account=account, entry=entry_id, outcome="refused", reason=reason)
        raise web.HTTPSeeOther(f"{target}&error={reason}")
    await asyncio.to_thread(mark_handled, settings.data_dir, members or [text])
    _audit("faq_" + edit, account=account, entry=entry_id, text=" ".join(text.split()),
           outcome="ok", backup=backup.name)
    raise web.HTTPSeeOther(f"{target}&done={edit}")


# ---- transcripts -----------------------------------------------------------------------------

async def transcripts(request: web.Request) -> web.Response:
    _enabled_or_404(request)
    if _session(request) is None:
        return await _page(request, "login.html")
    _, gateway = _account(request)
    console = gateway.bot.settings.console
    kept = gateway.metrics.transcripts
    if console.transcripts:
        kept.expire(console.transcript_retention_hours)
    users = [(hash_user(user), len(lines), lines[-1][0]) for user, lines in reversed(kept.users.items())]
    wanted = request.query.get("user", "")
    shown = next((list(lines) for user, lines in kept.users.items() if hash_user(user) == wanted), None)
    return await _page(request, "transcripts.html", on=console.transcripts,
                       retention=console.transcript_retention_hours, users=users, user=wanted,
                       lines=shown)


# ---- plugins ---------------------------------------------------------------------------------

async def plugins(request: web.Request) -> web.Response:
    _enabled_or_404(request)
    if _session(request) is None:
        return await _page(request, "login.html")
    _, gateway = _account(request)
    operator = gateway.bot.operator
    if operator is not None:
        rows = await asyncio.to_thread(operator.plugins)
    else:
        rows = [{"name": n, "enabled": True, "priority": i + 1, "origin": ""}
                for i, n in enumerate(gateway.bot.settings.plugins.enabled)]
    return await _page(request, "plugins.html", rows=rows, switchable=operator is not None)


async def switch_plugin(request: web.Request) -> web.StreamResponse:
    _, form = await _checked_form(request)
    account, gateway = _account(request, form.get("account", DEFAULT_ACCOUNT))
    name, enabled = form.get("plugin", ""), form.get("enabled") == "1"
    operator = gateway.bot.operator
    target = "/admin/plugins?" + urlencode({"account": account})
    if operator is None:
        _audit("plugin", account=account, plugin=name, enabled=enabled, outcome="refused",
               reason="no_operator_services")
        raise web.HTTPSeeOther(f"{target}&outcome=refused&reason=no_operator_services")
    result = await operator.set_plugin_enabled(name, enabled)
    _audit("plugin", account=account, plugin=name, enabled=enabled, outcome=result.outcome,
           reason=result.reason)
    raise web.HTTPSeeOther(target + "&" + urlencode({"outcome": result.outcome, "reason": result.reason,
                                                     "plugin": name, "enabled": "1" if enabled else "0"}))


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/admin", login_page)
    app.router.add_get("/admin/", login_page)
    app.router.add_post("/admin/login", login)
    app.router.add_post("/admin/logout", logout)
    app.router.add_get("/admin/static/{name}", static)
    app.router.add_get("/admin/overview", overview)
    app.router.add_get("/admin/questions", questions)
    app.router.add_post("/admin/questions/add", add_to_faq)
    app.router.add_get("/admin/transcripts", transcripts)
    app.router.add_get("/admin/plugins", plugins)
    app.router.add_post("/admin/plugins/switch", switch_plugin)
