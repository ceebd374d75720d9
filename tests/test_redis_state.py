"""The Redis backend against a real Redis server (never a fake), and failover to memory."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from core import TextReply, hookimpl
from core.state.conversation import Turn
from core.state.redis_store import (
    RedisAnswerStore,
    RedisCache,
    RedisConversationStore,
    RedisRateLimiter,
    RedisTokenStore,
    connect,
)
from core.state.stores import build_state
from core.testing import build_settings


@pytest.fixture
async def redis_client(redis_url):
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def prefix():
    return f"test:{uuid.uuid4().hex[:8]}:"


async def test_conversation_store_round_trip_trim_and_clear(redis_client, prefix):
    store = RedisConversationStore(redis_client, prefix, max_turns=4, max_chars=50, idle_seconds=60)
    for i in range(6):
        await store.append("u", Turn("user", f"问题{i}"), Turn("assistant", f"回答{i}", plugin="p", intent="i"))
    history = await store.history("u")
    assert [t.text for t in history] == ["问题4", "回答4", "问题5", "回答5"]
    assert history[-1].plugin == "p"
    await store.update_slots("u", place={"name": "北京"}, day="明天")
    assert await store.slots("u") == {"place": {"name": "北京"}, "day": "明天"}
    assert 0 < await redis_client.ttl(f"{prefix}conv:u") <= 60
    await store.clear("u")
    assert await store.history("u") == [] and await store.slots("u") == {}


async def test_conversation_char_bound(redis_client, prefix):
    store = RedisConversationStore(redis_client, prefix, max_turns=10, max_chars=10, idle_seconds=60)
    await store.append("u", Turn("user", "一二三四五六"), Turn("assistant", "七八九十一二"))
    assert [t.text for t in await store.history("u")] == ["七八九十一二"]


async def test_answer_result_crosses_workers_through_pubsub(redis_url, prefix):
    a, b = connect(redis_url), connect(redis_url)
    worker_a, worker_b = RedisAnswerStore(a, prefix), RedisAnswerStore(b, prefix)
    try:
        assert await worker_a.begin("msg:1", 60) == 1
        assert await worker_b.begin("msg:1", 60) == 2
        waiter = asyncio.ensure_future(worker_b.wait_result("msg:1", 5))
        await asyncio.sleep(0.2)
        assert not waiter.done()
        await worker_a.finish("msg:1", {"type": "text", "content": "好"}, 60)
        assert await asyncio.wait_for(waiter, 2) == {"type": "text", "content": "好"}
        assert await worker_b.wait_result("msg:2", 0.2) is None
        claims = await asyncio.gather(worker_a.claim_delivery("msg:1", 60), worker_b.claim_delivery("msg:1", 60))
        assert sorted(claims) == [False, True]
    finally:
        await worker_a.notifier.stop()
        await worker_b.notifier.stop()
        await a.aclose()
        await b.aclose()


async def test_answers_waiting_for_the_user(redis_client, prefix):
    """The user's queue (tests/test_streaming_delivery.py covers it in depth, memory and Redis)."""
    from core.state.delivery_records import TakeRequest

    store = RedisAnswerStore(redis_client, prefix)
    assert not await store.waiting("u")
    await store.enqueue("u", "kept:1", ["一"], 60, closed=True)
    await store.enqueue("u", "kept:2", ["二"], 60, closed=True)
    assert await store.waiting("u")
    taken = await store.take("u", TakeRequest(2047, "+", 60, "", 60))
    assert (taken.text, taken.more, taken.content) == ("一\n\n二", False, "一\n\n二")
    assert not await store.waiting("u")


async def test_cache_and_token_store(redis_client, prefix):
    cache = RedisCache(redis_client, prefix, "weather", ttl=60)
    await cache.set("北京:明天", {"t": [1, 2]})
    assert await cache.get("北京:明天") == {"t": [1, 2]}
    assert await cache.get("nope") is None
    await cache.set("short", 1, ttl=0.05)
    await asyncio.sleep(0.15)
    assert await cache.get("short") is None
    tokens = RedisTokenStore(redis_client, prefix)
    assert await tokens.get_token() is None
    await tokens.set_token("T1", 9999999999)
    assert await tokens.get_token() == ("T1", 9999999999.0)
    lock = await tokens.lock("access_token", ttl=5)
    async with lock:
        other = await tokens.lock("access_token", ttl=5)
        assert not await other.acquire(blocking=False)


async def test_rate_limiter_token_bucket(redis_client, prefix):
    limiter = RedisRateLimiter(redis_client, prefix, rate=0.001, burst=3)
    results = [await limiter.allow("u") for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert await limiter.allow("other")


# ---- through the bot -----------------------------------------------------------------------------

class Echo:
    @hookimpl
    def skillbot_fallback(self, ctx):
        return TextReply(f"第{len(ctx.history) // 2 + 1}轮：{ctx.message.text}")


async def test_bot_uses_redis_for_context(wechat, redis_url, prefix):
    overrides = {"state": {"backend": "redis", "redis_url": redis_url, "key_prefix": prefix}}
    h1 = await wechat(enabled=["welcome"], plugins={"echo": Echo()}, overrides=overrides)
    h2 = await wechat(enabled=["welcome"], plugins={"echo": Echo()}, overrides=overrides)
    assert (await h1.say("一", user="o_r"))[1]["Content"] == "第1轮：一"
    assert (await h2.say("二", user="o_r"))[1]["Content"] == "第2轮：二"  # the other bot saw turn 1
    health = await (await h1.client.get("/healthz")).json()
    assert health["state"] == "up"


async def test_redis_unreachable_at_start_degrades_to_memory(wechat, caplog):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    h = await wechat(enabled=["welcome"], plugins={"echo": Echo()},
                     overrides={"state": {"backend": "redis", "redis_url": f"redis://127.0.0.1:{port}/0"}})
    for i in range(5):
        status, fields, _ = await h.say(f"消息{i}", user="o_d")
        assert status == 200 and fields["Content"].endswith(f"消息{i}")
    assert (await h.say("再一条", user="o_d"))[1]["Content"] == "第6轮：再一条"  # memory kept the context
    response = await h.client.get("/healthz")
    assert (await response.json())["state"] == "down" and (await response.json())["status"] == "degraded"
    unreachable_logs = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(unreachable_logs) == 1  # once per change, not per message


def test_memory_backend_builds_without_redis():
    state = build_state(build_settings())
    assert state.backend == "memory" and state.status == "memory"
