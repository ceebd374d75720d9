"""``run.py chat``: talk to the bot from a terminal, through the real webhook.

Every line becomes the XML WeChat would send, signed (and encrypted in compatible/safe mode) with
the account's settings, and is posted over HTTP the way WeChat does it (up to three tries, five
seconds each). The reply is opened (decrypted, signature checked) and printed with the plugin and
intent that answered and the time each stage took.

Without ``--url`` the bot runs inside this process on a free loopback port and the explanation is
read from its gateway directly. With ``--url`` it is fetched from the bot's
``GET /simulator/api/explain`` endpoint, which answers when ``[simulator] enabled = true`` or when
the request carries ``server.admin_token`` (``--token`` / ``SKILLBOT_ADMIN_TOKEN``).

Commands (anything else is sent as a text message)::

    /subscribe [SCENE]     follow the account (SCENE: scan-to-subscribe qrscene value)
    /unsubscribe           unfollow
    /scan SCENE            scan a QR code while following
    /click KEY             tap a custom-menu CLICK button
    /view URL              tap a custom-menu VIEW button
    /location LAT LON      the LOCATION event (the app reporting where the user is)
    /place LAT LON [LABEL] a location message (the user sharing a place)
    /voice TEXT            a voice message recognised as TEXT
    /image                 an image message
    /user OPENID           talk as another user from now on
    /help, /quit
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, TextIO

import aiohttp
from yarl import URL

from ..access.crypto import sha1_signature
from ..access.messages import event_key, message_key
from ..access.replies import reply_text
from ..settings import Settings
from .wechat_client import TryResult, WeChatSigner, deliver_like_wechat, message_xml, reply_from_fields

DEFAULT_USER = "o_chat_user"
ACCOUNT = "gh_skillbot"
_msg_ids = itertools.count(int(time.time() * 1000) * 1000 + os.getpid() % 1000)

HELP = """commands: /subscribe [SCENE]  /unsubscribe  /scan SCENE  /click KEY  /view URL
          /location LAT LON  /place LAT LON [LABEL]  /voice TEXT  /image
          /user OPENID  /help  /quit      (//text sends a text starting with /)"""


class CommandError(ValueError):
    """A chat command with missing or malformed arguments."""


@dataclass
class Inbound:
    """One message to send: its XML, WeChat's retry key for it, and a short description."""

    xml: str
    key: str
    kind: str


@dataclass
class Exchange:
    """What happened to one message: each try, the reply's fields, and the bot's explanation."""

    inbound: Inbound
    tries: list[TryResult]
    reply: dict[str, Any] | None = None
    explain: dict[str, Any] | None = None
    error: str = ""
    elapsed_ms: float = 0.0

    @property
    def status(self) -> int | None:
        return self.tries[-1].status if self.tries else None

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.inbound.kind, "key": self.inbound.key, "status": self.status,
                "ok": self.ok, "error": self.error, "reply": self.reply,
                "text": shown_text(self.reply), "explain": self.explain,
                "plugin": (self.explain or {}).get("plugin"), "intent": (self.explain or {}).get("intent"),
                "elapsed_ms": round(self.elapsed_ms, 1),
                "tries": [{"try": t.try_number, "status": t.status,
                           "ms": round((t.ended - t.started) * 1000, 1)} for t in self.tries]}


# ---- building messages -----------------------------------------------------------------------------

def _number(value: str, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise CommandError(f"{what} must be a number, got {value!r}") from None


class Composer:
    """Builds inbound messages for one simulated user; events get increasing CreateTimes.

    WeChat identifies an event retry by sender and CreateTime, so two events in the same second
    would look like one event tried twice; the composer never reuses a second per user.
    """

    def __init__(self, user: str = DEFAULT_USER) -> None:
        self.user = user
        self._last_time: dict[str, int] = {}

    def _time(self) -> int:
        now = max(int(time.time()), self._last_time.get(self.user, 0) + 1)
        self._last_time[self.user] = now
        return now

    def message(self, msg_type: str, fields: dict[str, Any], kind: str | None = None) -> Inbound:
        msg_id = next(_msg_ids)
        xml = message_xml(msg_type, fields, to_user=ACCOUNT, from_user=self.user,
                          create_time=int(time.time()), msg_id=msg_id)
        return Inbound(xml, message_key(self.user, str(msg_id)), kind or msg_type)

    def event(self, event: str, fields: dict[str, Any] | None = None) -> Inbound:
        create_time = self._time()
        xml = message_xml("event", {"Event": event, **(fields or {})}, to_user=ACCOUNT,
                          from_user=self.user, create_time=create_time)
        key = event_key(self.user, create_time, event, str((fields or {}).get("EventKey", "")).strip())
        return Inbound(xml, key, f"event.{event}")

    def text(self, content: str) -> Inbound:
        return self.message("text", {"Content": content})

    def build(self, kind: str, args: dict[str, Any]) -> Inbound:
        """One message from a structured request (what the web simulator posts)."""
        if kind == "text":
            return self.text(str(args.get("text", "")))
        if kind == "subscribe":
            scene = str(args.get("scene") or "")
            return self.event("subscribe", {"EventKey": f"qrscene_{scene}"} if scene else {})
        if kind == "unsubscribe":
            return self.event("unsubscribe")
        if kind == "scan":
            return self.event("SCAN", {"EventKey": str(args.get("scene") or ""), "Ticket": "simulated"})
        if kind == "click":
            if not args.get("key"):
                raise CommandError("click needs a menu KEY")
            return self.event("CLICK", {"EventKey": str(args["key"])})
        if kind == "view":
            if not args.get("url"):
                raise CommandError("view needs a URL")
            return self.event("VIEW", {"EventKey": str(args["url"])})
        if kind == "location":
            lat, lon = _number(str(args.get("lat", "")), "latitude"), _number(str(args.get("lon", "")), "longitude")
            return self.event("LOCATION", {"Latitude": lat, "Longitude": lon,
                                           "Precision": _number(str(args.get("precision", 30)), "precision")})
        if kind == "place":
            lat, lon = _number(str(args.get("lat", "")), "latitude"), _number(str(args.get("lon", "")), "longitude")
            return self.message("location", {"Location_X": lat, "Location_Y": lon, "Scale": 15,
                                             "Label": str(args.get("label") or "")})
        if kind == "voice":
            return self.message("voice", {"MediaId": "simulated_media", "Format": "amr",
                                          "Recognition": str(args.get("text", ""))})
        if kind == "image":
            return self.message("image", {"PicUrl": "http://127.0.0.1/simulated.jpg",
                                          "MediaId": "simulated_media"})
        raise CommandError(f"unknown message kind {kind!r}")

    def parse(self, line: str) -> Inbound | str | None:
        """A chat line as a message; "quit", "help" or None (handled here, nothing to send)."""
        line = line.strip()
        if not line:
            return None
        if line.startswith("//"):
            return self.text(line[1:])
        if not line.startswith("/"):
            return self.text(line)
        command, _, rest = line[1:].partition(" ")
        words = rest.split()
        command = command.lower()
        if command in ("quit", "exit", "q"):
            return "quit"
        if command in ("help", "?"):
            return "help"
        if command == "user":
            if not words:
                raise CommandError("/user needs an OPENID")
            self.user = words[0]
            return None
        if command in ("subscribe", "scan"):
            return self.build(command, {"scene": words[0] if words else ""})
        if command == "unsubscribe":
            return self.build(command, {})
        if command == "click":
            return self.build(command, {"key": rest.strip()})
        if command == "view":
            return self.build(command, {"url": rest.strip()})
        if command in ("location", "place"):
            if len(words) < 2:
                raise CommandError(f"/{command} needs LAT LON")
            return self.build(command, {"lat": words[0], "lon": words[1], "label": " ".join(words[2:])})
        if command == "voice":
            return self.build(command, {"text": rest.strip()})
        if command == "image":
            return self.build(command, {})
        raise CommandError(f"unknown command /{command} (try /help)")


# ---- sending --------------------------------------------------------------------------------------

ExplainSource = Callable[[str], Awaitable[dict[str, Any] | None]]


def signer_for(settings: Settings) -> WeChatSigner:
    wechat = settings.wechat
    return WeChatSigner(wechat.resolved_token(), wechat.mode, wechat.resolved_aes_key(), wechat.app_id)


class ChatClient:
    """Posts inbound messages to a webhook URL as WeChat would and collects what came back."""

    def __init__(self, session: aiohttp.ClientSession, url: str, signer: WeChatSigner,
                 explain: ExplainSource | None = None, try_timeout: float = 5.0) -> None:
        self.session = session
        self.url = url
        self.signer = signer
        self.explain = explain
        self.try_timeout = try_timeout

    async def send(self, inbound: Inbound) -> Exchange:
        started = time.perf_counter()
        tries = await deliver_like_wechat(self.session, self.url, self.signer, inbound.xml,
                                          try_timeout=self.try_timeout)
        exchange = Exchange(inbound, tries)
        last = tries[-1]
        if last.status is None:
            exchange.error = "no answer within any of the three tries"
        elif last.status != 200:
            exchange.error = f"HTTP {last.status}: {(last.body or '').strip()[:200]}"
        else:
            try:
                exchange.reply = self.signer.open_reply(last.body or "")
            except Exception as exc:  # a reply that does not decrypt or verify is worth showing
                exchange.error = f"reply cannot be opened: {exc}"
        if self.explain is not None and last.status == 200:
            try:
                exchange.explain = await self.explain(inbound.key)
            except Exception as exc:  # the reply still counts; only the explanation is missing
                exchange.explain = {"unavailable": f"explanation not fetched: {type(exc).__name__}: {exc}"}
        exchange.elapsed_ms = (time.perf_counter() - started) * 1000
        return exchange


def remote_explainer(session: aiohttp.ClientSession, webhook_url: str, token: str = "",
                     signer: WeChatSigner | None = None) -> ExplainSource:
    """Explanations from a running bot's ``/simulator/api/explain`` endpoint.

    With a signer each request is signed with the account's WeChat token over the key, which the
    bot accepts while its simulator is on (core/operations/simulator.py); ``token`` is ``server.admin_token``.
    """
    base = str(URL(webhook_url).origin())
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def fetch(key: str) -> dict[str, Any] | None:
        params = {"key": key}
        if signer is not None:
            query = signer.query()
            params.update(timestamp=query["timestamp"], nonce=query["nonce"],
                          signature=sha1_signature(signer.token, query["timestamp"], query["nonce"], key))
        async with session.get(f"{base}/simulator/api/explain", params=params, headers=headers,
                               timeout=aiohttp.ClientTimeout(total=5)) as response:
            if response.status == 404:
                data = await response.json(content_type=None) if response.content_type == "application/json" else {}
                if data.get("error") == "unknown key":
                    return None
                return {"unavailable": "the bot does not serve explanations: enable [simulator] or "
                        "pass --token with server.admin_token"}
            if response.status in (401, 403):
                return {"unavailable": "explanation refused: pass --token with server.admin_token"}
            response.raise_for_status()
            return await response.json()
    return fetch


# ---- printing -------------------------------------------------------------------------------------

def shown_text(fields: dict[str, Any] | None) -> str:
    """What the user would see of a reply's fields, in one string: its words
    (``replies.reply_text``), or ``[image]`` and the like for a reply without any."""
    if fields is None:
        return ""
    reply = reply_from_fields(fields)
    return (reply_text(reply) if reply is not None else "") or f"[{fields.get('MsgType')}]"


STAGES = ("verify", "parse", "inbound", "route", "skill", "fallback", "outbound", "render", "total")


def describe(exchange: Exchange, verbose: bool = False) -> list[str]:
    """Lines for the terminal: the reply, then who answered and how long each stage took."""
    lines = []
    if exchange.error:
        lines.append(f"!! {exchange.error}")
    elif exchange.reply is None:
        lines.append("bot> (no reply: the bot acknowledged with \"success\")")
    else:
        text = shown_text(exchange.reply)
        first, *rest = text.split("\n") or [""]
        lines.append(f"bot> {first}")
        lines.extend(f"     {line}" for line in rest)
    explain = exchange.explain
    tries = ", ".join(f"try {t.try_number}: {t.status if t.status is not None else 'no answer'}"
                      for t in exchange.tries)
    if explain and "unavailable" not in explain:
        timings = explain.get("timings_ms", {})
        stages = " · ".join(f"{name} {timings[name]:.1f}" for name in STAGES if name in timings)
        lines.append(f"     [{explain.get('plugin') or '-'} / {explain.get('intent') or '-'}] "
                     f"ms: {stages}" + (f"  ({tries})" if len(exchange.tries) > 1 else ""))
        route = explain.get("route") or {}
        candidates = route.get("candidates") or []
        if candidates:
            shown = candidates if verbose else candidates[:3]
            lines.append("     route: " + ", ".join(
                f"{c['intent']} {c['score']:.2f}{' *' if c.get('chosen') else ''}" for c in shown))
        for block in explain.get("blocks") or []:  # the plugins' own (skillbot_explain)
            lines.append(f"     {block.get('title') or block.get('plugin')}: {block.get('summary', '')}".rstrip())
            if verbose:
                lines.extend(f"       - {item}" for item in block.get("items") or [])
    else:
        reason = (explain or {}).get("unavailable") or "no explanation (the answer was not ready on an answered try)"
        lines.append(f"     [{reason}] ({tries})")
    return lines


# ---- running --------------------------------------------------------------------------------------

@asynccontextmanager
async def local_bot(settings: Settings) -> AsyncIterator[tuple[str, Any]]:
    """The bot served on a free loopback port in this process: yields (webhook URL, app)."""
    from aiohttp import web

    from ..app import create_app

    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}{settings.server.path}", app
    finally:
        await runner.cleanup()


async def converse(client: ChatClient, composer: Composer, lines: list[str] | None, out: TextIO,
                   stdin: TextIO, as_json: bool = False, verbose: bool = False) -> int:
    """Send ``lines`` (one-shot) or read lines from ``stdin`` until EOF or /quit. Returns an exit code."""
    interactive = lines is None
    failures = 0
    prompt = interactive and stdin.isatty() and not as_json
    if interactive and not as_json:
        print(f"Chatting with {client.url} as {composer.user}. /help for commands, /quit to leave.", file=out)
    loop = asyncio.get_running_loop()
    queue = iter(lines or [])
    while True:
        if interactive:
            if prompt:
                print(f"{composer.user}> ", end="", file=out, flush=True)
            line = await loop.run_in_executor(None, stdin.readline)
            if not line:
                break
        else:
            line = next(queue, None)
            if line is None:
                break
        try:
            inbound = composer.parse(line)
        except CommandError as exc:
            print(f"!! {exc}", file=out, flush=True)
            failures += 1
            continue
        if inbound == "quit":
            break
        if inbound == "help":
            print(HELP, file=out, flush=True)
            continue
        if inbound is None:
            continue
        assert isinstance(inbound, Inbound)
        exchange = await client.send(inbound)
        if not exchange.ok:
            failures += 1
        if as_json:
            print(json.dumps(exchange.to_dict(), ensure_ascii=False), file=out, flush=True)
        else:
            print("\n".join(describe(exchange, verbose)), file=out, flush=True)
    return 1 if failures and not interactive else 0


async def chat_main(args: argparse.Namespace, settings: Settings) -> int:
    composer = Composer(args.user)
    lines = [" ".join(args.text)] if args.text else None
    signer = signer_for(settings)
    async with aiohttp.ClientSession() as session:
        if args.url:
            token = args.token or os.environ.get("SKILLBOT_ADMIN_TOKEN", "")
            client = ChatClient(session, args.url, signer, remote_explainer(session, args.url, token, signer))
            return await converse(client, composer, lines, sys.stdout, sys.stdin, args.json, args.verbose)
        async with local_bot(settings) as (url, app):
            from ..appkeys import DELIVERY_KEY

            delivery = app[DELIVERY_KEY]

            async def local_explain(key: str) -> dict[str, Any] | None:
                return delivery.explanations.get(key)

            client = ChatClient(session, url, signer, local_explain)
            return await converse(client, composer, lines, sys.stdout, sys.stdin, args.json, args.verbose)


__all__ = ["Composer", "ChatClient", "Exchange", "Inbound", "CommandError", "describe", "local_bot",
           "signer_for", "remote_explainer", "shown_text"]
