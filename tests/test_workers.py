"""Several real worker processes sharing one real Redis behave as one bot; Redis may come and go."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from core.operations.wechat_client import WeChatSigner, text_xml
from core.settings import PROJECT_ROOT
from tests.standins.openai_server import OpenAIStandIn
from tests.standins.wechat_api_server import STATE_KEY, create_wechat_api_app

TOKEN = "workertoken"
TRY_TIMEOUT = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_settings(tmp_path: Path, redis_url: str, prefix: str, llm_url: str, extra: str = "") -> Path:
    path = tmp_path / f"settings-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(f"""
[server]
host = "127.0.0.1"
[wechat]
token = "{TOKEN}"
[delivery]
try_budget = 0.7
hold_seconds = 1.5
{extra}
[state]
backend = "redis"
redis_url = "{redis_url}"
key_prefix = "{prefix}"
[ratelimit]
burst = 1000
[plugins]
enabled = ["welcome", "llm"]
entry_points = false
[[plugins.llm.providers]]
name = "standin"
base_url = "{llm_url}"
model = "standin-model"
timeout = 10.0
""", encoding="utf-8")
    return path


class Worker:
    def __init__(self, settings: Path, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/wechat"
        self.proc = subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "run.py"), "--settings", str(settings), "--port", str(self.port)],
            cwd=PROJECT_ROOT, env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    async def ready(self, session: aiohttp.ClientSession, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited: {self.stop()}")
            try:
                async with session.get(f"http://127.0.0.1:{self.port}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError("worker did not become ready")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out


async def tries_across(session, urls: list[str], signer: WeChatSigner, xml: str) -> list[tuple[int, int | None, str | None]]:
    """WeChat's three tries, each sent to the next worker in turn (a load balancer's round robin)."""
    results = []
    for n in range(3):
        request = signer.sign(xml)
        try:
            async with session.post(urls[n % len(urls)], params=request.params, data=request.body,
                                    timeout=aiohttp.ClientTimeout(total=TRY_TIMEOUT)) as response:
                results.append((n + 1, response.status, await response.text()))
                return results
        except (asyncio.TimeoutError, aiohttp.ClientError):
            results.append((n + 1, None, None))
    return results


async def test_two_workers_answer_each_message_exactly_once(tmp_path, redis_url, llm):
    prefix = f"w:{uuid.uuid4().hex[:8]}:"
    settings = write_settings(tmp_path, redis_url, prefix, llm.base_url)
    workers = [Worker(settings), Worker(settings)]
    signer = WeChatSigner(TOKEN)
    try:
        async with aiohttp.ClientSession() as session:
            for w in workers:
                await w.ready(session)
            urls = [w.url for w in workers]
            llm.state.delay = 1.3  # lands during the second try, which goes to the other worker
            outcomes = await asyncio.gather(*(
                tries_across(session, urls if i % 2 == 0 else urls[::-1], signer,
                             text_xml(f"问题{i}", msg_id=50000 + i, from_user=f"o_w{i}"))
                for i in range(10)))
            for i, results in enumerate(outcomes):
                answered = [r for r in results if r[1] is not None]
                assert len(answered) == 1 and answered[0][0] == 2, results
                assert signer.open_reply(answered[0][2])["Content"] == f"回声：问题{i}"
            assert llm.state.call_count == 10  # one model call per MsgId across both workers

            # context written by one worker is read by the other
            llm.state.delay = 0.0
            await tries_across(session, [urls[0]], signer, text_xml("我叫小明", msg_id=60001, from_user="o_ctx"))
            await tries_across(session, [urls[1]], signer, text_xml("我叫什么", msg_id=60002, from_user="o_ctx"))
            sent = llm.state.calls[-1].messages
            assert any(m["role"] == "user" and m["content"] == "我叫小明" for m in sent)
            assert any(m["role"] == "assistant" and m["content"] == "回声：我叫小明" for m in sent)
    finally:
        logs = [w.stop() for w in workers]
    assert "Traceback" not in "".join(logs)


async def test_two_workers_refresh_the_access_token_once(tmp_path, redis_url, llm, aiohttp_server):
    api = await aiohttp_server(create_wechat_api_app())
    state = api.app[STATE_KEY]
    prefix = f"w:{uuid.uuid4().hex[:8]}:"
    base = str(api.make_url("")).rstrip("/")
    settings = write_settings(tmp_path, redis_url, prefix, llm.base_url,
                              extra=f'mode = "customer_service"\ntoken_endpoint = "classic"\napi_base = "{base}"')
    (tmp_path / "appid.toml").write_text("")
    text = settings.read_text().replace(f'token = "{TOKEN}"', f'token = "{TOKEN}"\napp_id = "{state.app_id}"')
    settings.write_text(text)
    env = {"WECHAT_APP_SECRET": state.secret}
    workers = [Worker(settings, env), Worker(settings, env)]
    signer = WeChatSigner(TOKEN)
    try:
        async with aiohttp.ClientSession() as session:
            for w in workers:
                await w.ready(session)
            await asyncio.gather(*(
                tries_across(session, [workers[i % 2].url], signer, text_xml(f"推送{i}", msg_id=70000 + i,
                                                                             from_user=f"o_p{i}"))
                for i in range(6)))
            for _ in range(100):
                if len(state.sent) >= 6:
                    break
                await asyncio.sleep(0.1)
    finally:
        for w in workers:
            w.stop()
    assert sorted(m["text"]["content"] for m in state.sent) == sorted(f"回声：推送{i}" for i in range(6))
    assert state.token_fetches == 1 and state.classic_calls == 1  # one refresh, shared by both workers


def test_workers_flag_refuses_memory_backend(tmp_path):
    settings = tmp_path / "s.toml"
    settings.write_text('[state]\nbackend = "memory"\n')
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "run.py"), "--settings", str(settings),
                             "--workers", "2", "--port", str(free_port())],
                            capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)
    assert result.returncode == 2
    assert "refusing to start 2 workers" in result.stderr and "redis" in result.stderr


async def test_workers_flag_serves_on_one_port(tmp_path, redis_url, llm):
    settings = write_settings(tmp_path, redis_url, f"w:{uuid.uuid4().hex[:8]}:", llm.base_url)
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "run.py"), "--settings", str(settings),
                             "--workers", "2", "--port", str(port)], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    signer = WeChatSigner(TOKEN)
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 40
            answered = 0
            while time.monotonic() < deadline and answered < 5:
                try:
                    results = await tries_across(session, [f"http://127.0.0.1:{port}/wechat"], signer,
                                                 text_xml("你好", msg_id=80000 + answered, from_user="o_n"))
                    if results[-1][1] == 200:
                        answered += 1
                        continue
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.3)
            assert answered == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # nothing of this test may outlive it
            except ProcessLookupError:
                pass
    assert out.count("Skillbot listening") == 2


# ---- Redis stopped and started in the middle of a run -------------------------------------------

async def test_redis_stopped_and_started_mid_run_every_message_answered(wechat, private_redis, caplog):
    from core import TextReply, hookimpl

    class Echo:
        @hookimpl
        def skillbot_fallback(self, ctx):
            return TextReply("收到：" + ctx.message.text)

    import redis as sync_redis
    h = await wechat(enabled=["welcome"], plugins={"echo": Echo()},
                     overrides={"state": {"backend": "redis", "redis_url": private_redis.url, "key_prefix": "flap:"}})
    statuses = []
    for i in range(30):
        if i == 10:
            private_redis.stop()
        if i == 20:
            private_redis.start()
            for _ in range(40):  # the bot reconnects by itself
                if (await (await h.client.get("/healthz")).json())["state"] == "up":
                    break
                await asyncio.sleep(0.1)
        status, fields, _ = await h.say(f"消息{i}", user=f"o_flap{i}")
        statuses.append((status, fields["Content"] if fields else None))
        if i == 15:
            assert (await (await h.client.get("/healthz")).json())["status"] == "degraded"
    assert statuses == [(200, f"收到：消息{i}") for i in range(30)]
    assert (await (await h.client.get("/healthz")).json())["status"] == "ok"
    # new state goes to Redis again
    client = sync_redis.Redis.from_url(private_redis.url)
    assert client.exists("flap:conv:o_flap29") and not client.exists("flap:conv:o_flap15")
    client.close()
    changes = [r.getMessage() for r in caplog.records if "Redis" in r.getMessage() and r.name == "skillbot.state"]
    assert len([c for c in changes if "unreachable" in c]) == 1
    assert len([c for c in changes if "reachable: shared" in c]) == 1  # the recovery
