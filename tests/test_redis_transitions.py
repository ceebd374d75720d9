"""Retry dedup across Redis transitions: a message re-sent after Redis goes down or comes back is
joined (one model call) and gets the answer it already got, on this worker and on another one."""
from __future__ import annotations

import asyncio

import pytest
import redis as sync_redis

from core.operations.wechat_client import text_xml
from tests.standins.openai_server import OpenAIStandIn


async def worker(wechat, llm, url: str):
    """One bot process's app (its own local memory) sharing the Redis at ``url``."""
    return await wechat(enabled=["welcome", "llm"], overrides={
        "state": {"backend": "redis", "redis_url": url, "key_prefix": "trans:"},
        "plugins": {"llm": {"providers": [llm.provider()]}}})


async def post(h, xml: str) -> tuple[int, str | None]:
    response = await h.post_xml(xml)
    body = await response.text()
    fields = h.signer.open_reply(body) if response.status == 200 else None
    return response.status, (fields or {}).get("Content", body)


async def state_of(h) -> str:
    return (await (await h.client.get("/healthz")).json())["state"]


async def wait_for_state(h, wanted: str) -> None:
    for _ in range(100):
        if await state_of(h) == wanted:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"state never became {wanted}")


async def test_retry_after_redis_goes_down_is_joined_not_run_again(wechat, llm, private_redis):
    h = await worker(wechat, llm, private_redis.url)
    xml = text_xml("下雨吗", msg_id=7001, from_user="o_down")
    assert await post(h, xml) == (200, "回声：下雨吗")
    private_redis.stop()
    # the reply was lost on its way to WeChat, which tries again, now that Redis is gone
    assert await post(h, xml) == (200, "回声：下雨吗")
    assert await state_of(h) == "down"
    assert llm.user_texts() == ["下雨吗"]


async def test_retry_after_redis_comes_back_is_joined_here_and_on_another_worker(wechat, llm, private_redis):
    first = await worker(wechat, llm, private_redis.url)
    second = await worker(wechat, llm, private_redis.url)
    private_redis.stop()
    xml = text_xml("刮风吗", msg_id=7002, from_user="o_back")
    assert await post(first, xml) == (200, "回声：刮风吗")  # answered from local memory
    assert await state_of(first) == "down"
    private_redis.start()
    await wait_for_state(first, "up")
    # retries on the worker that answered during the outage, then on one that never saw it
    assert await post(first, xml) == (200, "回声：刮风吗")
    client = sync_redis.Redis.from_url(private_redis.url)
    try:
        for _ in range(100):  # the outage's records are copied to Redis on recovery
            if any(client.scan_iter("trans:ans:*:delivered")):
                break
            await asyncio.sleep(0.05)
    finally:
        client.close()
    assert await post(second, xml) == (200, "回声：刮风吗")
    assert llm.user_texts() == ["刮风吗"]
    # a new message still goes through the pipeline once
    assert await post(second, text_xml("晴天", msg_id=7003, from_user="o_back")) == (200, "回声：晴天")
    assert llm.user_texts() == ["刮风吗", "晴天"]
