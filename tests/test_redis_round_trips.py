"""The Redis path costs few round trips (issue 13 item 10): each store operation is one command,
the commands of messages in flight share writes to Redis. Counted on the client's connections
(a write is a round trip), through the whole webhook, FAQ answers as in bench/bench_redis.py."""
from __future__ import annotations

import asyncio

import uuid

import pytest
from redis.asyncio.connection import Connection

from core.operations.wechat_client import text_xml

QUESTIONS = ["你们几点营业", "怎么退货", "客服电话多少", "发货要多久"]


@pytest.fixture
def prefix():
    return f"rt:{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def writes(monkeypatch):
    """How many times a Redis connection was written to, and how many commands were packed."""
    counts = {"writes": 0, "commands": 0}
    send, pack = Connection.send_packed_command, Connection.pack_command

    async def counted_send(self, command, check_health=True):
        counts["writes"] += 1
        return await send(self, command, check_health)

    def counted_pack(self, *args):
        counts["commands"] += 1
        return pack(self, *args)

    monkeypatch.setattr(Connection, "send_packed_command", counted_send)
    monkeypatch.setattr(Connection, "pack_command", counted_pack)
    try:
        import hiredis
    except ImportError:
        pass
    else:
        hiredis_pack = hiredis.pack_command

        def counted_hiredis_pack(command):
            counts["commands"] += 1
            return hiredis_pack(command)

        monkeypatch.setattr(hiredis, "pack_command", counted_hiredis_pack)
    return counts


async def faq_worker(wechat, redis_url, prefix):
    return await wechat(enabled=["filter", "faq"], overrides={
        "state": {"backend": "redis", "redis_url": redis_url, "key_prefix": prefix}})


async def ask(h, i: int) -> str:
    response = await h.post_xml(text_xml(QUESTIONS[i % len(QUESTIONS)], msg_id=900_000 + i, from_user=f"o_rt_{i % 5}"))
    assert response.status == 200
    return h.signer.open_reply(await response.text())["Content"]


async def test_one_message_at_a_time_costs_at_most_eight_round_trips_of_one_command(wechat, redis_url, prefix, writes):
    h = await faq_worker(wechat, redis_url, prefix)
    for i in range(len(QUESTIONS)):  # warm-up: scripts loaded, cached answers, connections open
        await ask(h, i)
    await asyncio.sleep(0.05)
    before = dict(writes)
    messages = 20
    for i in range(100, 100 + messages):
        assert await ask(h, i)
    await asyncio.sleep(0.05)  # writes after the reply land
    # replay guard, try count + result, rate limit, kept answers, history + slots, history
    # append, result, delivery claim; the FAQ's cached answer is served from the near copy
    assert (writes["writes"] - before["writes"]) / messages <= 8
    assert (writes["commands"] - before["commands"]) / messages <= 9


async def test_messages_in_flight_share_round_trips(wechat, redis_url, prefix, writes):
    h = await faq_worker(wechat, redis_url, prefix)
    for i in range(len(QUESTIONS)):
        await ask(h, i)
    await asyncio.sleep(0.05)
    before = writes["writes"]
    messages = 40
    answers = await asyncio.gather(*(ask(h, i) for i in range(200, 200 + messages)))
    assert all(answers)
    await asyncio.sleep(0.05)
    assert (writes["writes"] - before) / messages <= 2


async def test_a_redis_that_stops_answering_costs_one_deadline_then_memory_answers(wechat, private_redis, prefix):
    """Replies of a batch share one deadline (the client's 0.5 s socket timeout): a frozen Redis
    fails the batch, the worker falls over to memory and the message is still answered."""
    import os
    import signal

    h = await faq_worker(wechat, private_redis.url, prefix)
    assert await ask(h, 0)
    os.kill(private_redis.proc.pid, signal.SIGSTOP)
    try:
        reply = await asyncio.wait_for(ask(h, 1), 5)
        assert reply  # answered from local memory
        assert (await (await h.client.get("/healthz")).json())["state"] == "down"
    finally:
        os.kill(private_redis.proc.pid, signal.SIGCONT)
