"""Test helpers for Skillbot and its plugin authors.

    async with running_bot({"plugins": {"enabled": ["myskill"]}}) as bot:
        reply = await bot.send("你好")
        assert "你好" in reply.content

Also available as pytest fixtures (``make_bot``) when ``pytest_plugins = ["core.testing"]``.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlencode

from .access.messages import Message, build_message
from .access.replies import Reply
from .processing.bot import Bot
from .processing.context import MessageContext
from .settings import PROJECT_ROOT, Settings, load_settings

_ids = itertools.count(1)


def default_test_settings_path() -> Path | None:
    env = os.environ.get("SKILLBOT_TEST_SETTINGS")
    if env:
        return Path(env)
    path = PROJECT_ROOT / "tests" / "settings.test.toml"
    return path if path.is_file() else None


class TestBot:
    """A started ``Bot`` with one-line helpers that build WeChat messages and run the pipeline."""

    __test__ = False  # not a pytest test class

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.last_context: MessageContext | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bot, name)

    def _fields(self, user: str, msg_type: str, **fields: Any) -> dict[str, Any]:
        base = {"ToUserName": "gh_test", "FromUserName": user,
                "CreateTime": str(int(time.time()) * 1000 + next(_ids)), "MsgType": msg_type}
        if msg_type != "event":
            base["MsgId"] = str(10**15 + next(_ids))
        base.update({k: str(v) for k, v in fields.items()})
        return base

    def text_message(self, text: str, user: str = "test_user") -> Message:
        """A text message as WeChat would send it (for ``bot.answer(...)``)."""
        return build_message(self._fields(user, "text", Content=text))

    async def send_message(self, message: Message) -> Reply:
        """Run ``message`` through every stage of the pipeline (「继续」 and the rate limit too)."""
        ctx = MessageContext(bot=self.bot, message=message)
        self.last_context = ctx
        return await self.bot.process(message, ctx)

    async def send(self, text: str, user: str = "test_user") -> Reply:
        return await self.send_message(self.text_message(text, user))

    async def send_event(self, event: str, user: str = "test_user", **fields: Any) -> Reply:
        return await self.send_message(build_message(self._fields(user, "event", Event=event, **fields)))

    async def send_location(self, latitude: float, longitude: float, label: str = "",
                            user: str = "test_user") -> Reply:
        return await self.send_message(build_message(self._fields(
            user, "location", Location_X=latitude, Location_Y=longitude, Scale=15, Label=label)))

    async def send_voice(self, recognition: str, user: str = "test_user") -> Reply:
        return await self.send_message(build_message(self._fields(
            user, "voice", MediaId="media", Format="amr", Recognition=recognition)))


@dataclass
class RawResponse:
    """What ``send_in_pieces`` read back: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


#: A TCP segment's payload on a typical Ethernet path (1500-byte MTU less IP, TCP and options).
SEGMENT_BYTES = 1448


async def send_in_pieces(host: str, port: int, path: str, body: bytes, params: dict[str, str] | None = None,
                         *, method: str = "POST", chunked: bool = False, segment: int = SEGMENT_BYTES,
                         pause: float = 0.005, headers: dict[str, str] | None = None,
                         timeout: float = 10.0) -> RawResponse:
    """Write one HTTP/1.1 request through a real TCP socket in ``segment``-byte pieces with a pause
    after each (TCP_NODELAY on), as a request crosses a real network, and read the response.

    ``chunked`` sends the body with ``Transfer-Encoding: chunked`` (no Content-Length), one chunk
    per segment. Loopback tests through an HTTP client deliver a body in one read; this does not.
    """
    target = path + ("?" + urlencode(params) if params else "")
    head = {"Host": f"{host}:{port}", "Content-Type": "text/xml", "Connection": "close", **(headers or {})}
    pieces = [body[i:i + segment] for i in range(0, len(body), segment)]
    if chunked:
        head["Transfer-Encoding"] = "chunked"
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    else:
        head.setdefault("Content-Length", str(len(body)))
        payload = body
    raw = (f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items())
           + "\r\n").encode("latin-1") + payload
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(raw), segment):
            writer.write(raw[i:i + segment])
            await writer.drain()
            await asyncio.sleep(pause)
        response = await asyncio.wait_for(reader.read(), timeout)  # until the server closes
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    return _parse_response(response)


def _parse_response(raw: bytes) -> RawResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        decoded, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2:]
        body = decoded
    elif "content-length" in headers:
        body = body[:int(headers["content-length"])]
    return RawResponse(status, headers, body)


def build_settings(settings_overrides: dict[str, Any] | None = None,
                   settings_path: str | Path | None | bool = True) -> Settings:
    path = default_test_settings_path() if settings_path is True else (settings_path or None)
    return load_settings(path, settings_overrides)


@asynccontextmanager
async def running_bot(settings_overrides: dict[str, Any] | None = None,
                      plugins: dict[str, Any] | list[Any] | None = None,
                      settings_path: str | Path | None | bool = True) -> AsyncIterator[TestBot]:
    """Start a bot from the test settings (plus overrides and extra plugin objects); stop it after."""
    if isinstance(plugins, list):
        plugins = {f"test_plugin_{i}": p for i, p in enumerate(plugins)}
    bot = Bot(build_settings(settings_overrides, settings_path), plugins)
    await bot.start()
    try:
        yield TestBot(bot)
    finally:
        await bot.stop()


def toml_text(data: dict[str, Any]) -> str:
    """``data`` as TOML (tables, strings, numbers, booleans, lists), for writing settings files."""
    import json
    import re

    def key(k: str) -> str:
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{key(str(k))} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(f"cannot write {type(v).__name__} as TOML")

    lines: list[str] = []

    def table(path: list[str], items: dict[str, Any]) -> None:
        # Non-empty dicts become [tables]; empty ones stay inline "{}".
        scalars = {k: v for k, v in items.items() if not (isinstance(v, dict) and v)}
        if path and (scalars or not items):
            lines.append("[" + ".".join(key(p) for p in path) + "]")
        lines.extend(f"{key(k)} = {value(v)}" for k, v in scalars.items())
        if path and (scalars or not items):
            lines.append("")
        for k, v in items.items():
            if isinstance(v, dict) and v:
                table(path + [k], v)

    table([], data)
    return "\n".join(lines) + "\n"


def write_settings(path: str | Path, overrides: dict[str, Any] | None = None,
                   base: str | Path | None | bool = True) -> Path:
    """Write a settings file: the test settings (or ``base``) merged with ``overrides``."""
    import tomllib

    from .settings import deep_merge

    base_path = default_test_settings_path() if base is True else (base or None)
    data: dict[str, Any] = {}
    if base_path is not None:
        with open(base_path, "rb") as fh:
            data = tomllib.load(fh)
    data = deep_merge(data, overrides or {})
    path = Path(path)
    path.write_text(toml_text(data), encoding="utf-8")
    return path


try:  # pytest fixtures, when pytest is installed
    import pytest

    @pytest.fixture
    def make_bot():
        """``async with make_bot(overrides, plugins=...) as bot: await bot.send(...)``."""
        return running_bot
except ImportError:  # pragma: no cover
    pass
