"""Shared fixtures: bots built by the same factory run.py uses, and a WeChat stand-in client."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import pytest

from core.app import create_app
from core.operations.wechat_client import WeChatSigner, event_xml, text_xml
from core.settings import deep_merge
from core.testing import RawResponse, build_settings, make_bot, send_in_pieces  # noqa: F401  (make_bot: the plugin-author fixture)
from tests.standins.openai_server import OpenAIStandIn

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


#: Small enough that an ordinary signed message (300-700 bytes) crosses the socket in pieces.
POST_SEGMENT_BYTES = 256


class SocketResponse:
    """The parts of aiohttp's client response the tests read, over ``send_in_pieces``' answer."""

    def __init__(self, raw: RawResponse) -> None:
        self.raw = raw
        self.status = raw.status
        self.headers = raw.headers
        self.content_type = raw.headers.get("content-type", "").split(";")[0].strip()

    async def text(self) -> str:
        return self.raw.text

    async def read(self) -> bytes:
        return self.raw.body

    async def json(self) -> Any:
        return json.loads(self.raw.text)


@dataclass
class WeChatHarness:
    """Posts signed (and encrypted) requests to a test app, as WeChat's servers would."""

    client: Any
    signer: WeChatSigner
    path: str

    async def post_xml(self, xml: str, timestamp: int | None = None, **kw: Any) -> "SocketResponse":
        """Post as WeChat's servers do over a real network: through a TCP socket, the request
        written in segments with pauses (core.testing.send_in_pieces), so the webhook never sees
        a body that arrived in one read unless it really fits in one segment."""
        request = self.signer.sign(xml, timestamp)
        server = self.client.server
        raw = await send_in_pieces(server.host, server.port, self.path, request.body, request.params,
                                   segment=POST_SEGMENT_BYTES, pause=0.001, headers=kw.get("headers"))
        return SocketResponse(raw)

    async def say(self, text: str, user: str = "o_user_1", **kw: Any) -> tuple[int, dict | None, str]:
        response = await self.post_xml(text_xml(text, from_user=user, **kw))
        body = await response.text()
        return response.status, (self.signer.open_reply(body) if response.status == 200 else None), body

    async def event(self, event: str, fields: dict | None = None, user: str = "o_user_1", **kw: Any):
        response = await self.post_xml(event_xml(event, fields, from_user=user, **kw))
        body = await response.text()
        return response.status, (self.signer.open_reply(body) if response.status == 200 else None), body


@pytest.fixture
def wechat(aiohttp_client):
    """``h = await wechat(mode="safe", overrides={...}, plugins={...})`` -> WeChatHarness."""

    async def make(mode: str = "plain", overrides: dict | None = None, plugins: dict | None = None,
                   enabled: list[str] | None = None) -> WeChatHarness:
        base: dict = {"wechat": {"mode": mode}}
        if enabled is not None:
            base["plugins"] = {"enabled": enabled}
        settings = build_settings(deep_merge(base, overrides or {}))
        app = create_app(settings, plugins)
        client = await aiohttp_client(app)
        signer = WeChatSigner(settings.wechat.resolved_token(), mode, settings.wechat.resolved_aes_key(),
                              settings.wechat.app_id)
        return WeChatHarness(client, signer, settings.server.path)

    return make


# ---- Redis: a real server, never a fake ----------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        ok = client.ping()
        client.close()
        return bool(ok)
    except Exception:
        return False


class PrivateRedis:
    """A redis-server of the test's own on a free port, which the test may stop and start."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(50):
            if _ping(self.url):
                return
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


def redis_binary(why: str) -> str:
    """The redis-server binary, or fail (when CI requires Redis) or skip, saying why."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("SKILLBOT_REQUIRE_REDIS"):
            pytest.fail(f"redis-server is required here (SKILLBOT_REQUIRE_REDIS): {why}")
        pytest.skip(f"no redis-server binary: {why}")
    return binary


@pytest.fixture(scope="session")
def redis_url():
    """REDIS_URL if it answers; else a private redis-server on a free port; else skip with the reason."""
    url = os.environ.get("REDIS_URL")
    if url and _ping(url):
        yield url
        return
    server = PrivateRedis(redis_binary("set REDIS_URL or install redis-server to run the Redis-backed tests"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def private_redis():
    """A private redis-server the test can stop and start (never the shared one)."""
    server = PrivateRedis(redis_binary("the test stops and starts its own Redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def llm():
    """A local OpenAI-compatible stand-in (tests/standins/openai_server.py) for the real LLM
    plugin to talk to; a test module may define its own ``llm`` to set it up differently."""
    async with OpenAIStandIn() as server:
        yield server


@pytest.fixture
async def wechat_api(aiohttp_server, monkeypatch):
    """The WeChat API stand-in (tests/standins/wechat_api_server.py) for customer-service mode:
    its state and base URL, with the AppSecret it expects in the environment."""
    from tests.standins.wechat_api_server import WeChatAPIState, create_wechat_api_app

    state = WeChatAPIState()
    server = await aiohttp_server(create_wechat_api_app(state))
    monkeypatch.setenv("WECHAT_APP_SECRET", state.secret)
    return state, str(server.make_url("")).rstrip("/")
