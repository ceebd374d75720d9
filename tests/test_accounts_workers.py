"""Two official accounts (plain and safe, each with its own FAQ) served by two real worker
processes that share one real Redis: each account's state is shared by the workers and kept
apart from the other account's."""
from __future__ import annotations

import uuid

import aiohttp
import redis.asyncio as aioredis

from core.operations.wechat_client import text_xml
from tests.test_accounts import (
    CLINIC_ANSWER,
    DEFAULT_ANSWER,
    PATHS,
    QUESTION,
    SHOP_ANSWER,
    SIGNERS,
    write_settings,
)
from tests.test_workers import Worker

RATE_LIMITED = "您发送消息太频繁了，请稍后再试。"


async def ask(session: aiohttp.ClientSession, worker: Worker, account: str, xml: str) -> str:
    signer = SIGNERS[account]
    request = signer.sign(xml)
    url = f"http://127.0.0.1:{worker.port}{PATHS[account]}"
    async with session.post(url, params=request.params, data=request.body,
                            timeout=aiohttp.ClientTimeout(total=10)) as response:
        assert response.status == 200, await response.text()
        return (signer.open_reply(await response.text()) or {}).get("Content", "")


async def test_two_accounts_across_two_redis_workers(tmp_path, redis_url):
    prefix = f"acc:{uuid.uuid4().hex[:8]}:"
    settings = tmp_path / "settings.toml"
    write_settings(settings, tmp_path, server='host = "127.0.0.1"',
                   state=f'[state]\nbackend = "redis"\nredis_url = "{redis_url}"\nkey_prefix = "{prefix}"',
                   shop_extra="[accounts.shop.ratelimit]\nburst = 2\nrate = 0.01")
    workers = [Worker(settings), Worker(settings)]
    client = aioredis.from_url(redis_url)
    try:
        async with aiohttp.ClientSession() as session:
            for worker in workers:
                await worker.ready(session)
            a, b = workers
            assert await ask(session, a, "shop", text_xml(QUESTION, from_user="o_p")) == SHOP_ANSWER
            assert await ask(session, b, "clinic", text_xml(QUESTION, from_user="o_p")) == CLINIC_ANSWER
            assert await ask(session, b, "default", text_xml(QUESTION, from_user="o_p")) == DEFAULT_ANSWER
            # shop's rate limit is one bucket across both workers (burst 2: the third is refused) ...
            assert await ask(session, b, "shop", text_xml(QUESTION, from_user="o_p")) == SHOP_ANSWER
            assert await ask(session, a, "shop", text_xml(QUESTION, from_user="o_p")) == RATE_LIMITED
            # ... and the same OpenID at the clinic, on either worker, is not limited by it.
            for worker in (a, b, a):
                assert await ask(session, worker, "clinic", text_xml(QUESTION, from_user="o_p")) == CLINIC_ANSWER
            # The same MsgId from the same OpenID at both accounts is two messages, not a retry.
            same = text_xml(QUESTION, from_user="o_q", msg_id=777001)
            assert await ask(session, a, "clinic", same) == CLINIC_ANSWER
            assert await ask(session, b, "default", same) == DEFAULT_ANSWER
        keys = [key.decode() async for key in client.scan_iter(match=f"{prefix}*")]
        assert any(key.startswith(f"{prefix}account:shop:") for key in keys)
        assert any(key.startswith(f"{prefix}account:clinic:") for key in keys)
        assert any(not key.startswith(f"{prefix}account:") for key in keys)  # the default account's
    finally:
        await client.aclose()
        logs = [worker.stop() for worker in workers]
    assert "Traceback" not in "".join(logs)
