"""Streamed answers with two real worker processes on one real Redis: the parts one worker stores
are delivered by the other, exactly once and in order, even when the writing worker is killed."""
from __future__ import annotations

import asyncio
import signal
import uuid

import aiohttp
import pytest

from core.operations.wechat_client import WeChatSigner, text_xml
from tests.standins.openai_server import OpenAIStandIn, streamed
from tests.test_workers import TOKEN, Worker, tries_across, write_settings

HINT = "（回复「继续」查看更多）"
STILL_WRITING = "还在写，请稍后回复「继续」查看。"
LOST = "（回答中断了，请重新提问。）"
SENTENCES = [f"第{i}句，讲一点内容。" for i in range(1, 11)]


async def say(session, url: str, signer: WeChatSigner, text: str, msg_id: int, user: str) -> str:
    results = await tries_across(session, [url], signer, text_xml(text, msg_id=msg_id, from_user=user))
    assert results[-1][1] == 200, results
    return signer.open_reply(results[-1][2])["Content"]


async def read_on(session, urls: list[str], signer, user: str, first: str, msg_id: int) -> list[str]:
    """「继续」 to alternating workers until nothing more is announced; hints removed."""
    seen = [first]
    while seen[-1].endswith(HINT) or seen[-1] == STILL_WRITING:
        assert len(seen) < 40, seen
        if seen[-1] == STILL_WRITING:
            await asyncio.sleep(0.3)
        msg_id += 1
        seen.append(await say(session, urls[msg_id % len(urls)], signer, "继续", msg_id, user))
    return [s.removesuffix(HINT) for s in seen if s != STILL_WRITING]


async def test_two_workers_deliver_a_streamed_answer_exactly_once(tmp_path, redis_url, llm):
    llm.state.default = streamed(pieces=SENTENCES, first_delay=0.8, gap=0.2)
    settings = write_settings(tmp_path, redis_url, f"ws:{uuid.uuid4().hex[:8]}:", llm.base_url)
    workers = [Worker(settings), Worker(settings)]
    signer = WeChatSigner(TOKEN)
    try:
        async with aiohttp.ClientSession() as session:
            for w in workers:
                await w.ready(session)
            urls = [w.url for w in workers]
            # The first try (worker 0) has no sentence yet; the second (worker 1) shows the
            # sentences worker 0 has stored meanwhile.
            results = await tries_across(session, urls, signer, text_xml("讲讲", msg_id=91001, from_user="o_ws"))
            assert [r[1] for r in results] == [None, 200]
            first = signer.open_reply(results[-1][2])["Content"]
            assert first.startswith(SENTENCES[0]) and first.endswith(HINT)
            parts = await read_on(session, urls, signer, "o_ws", first, 91100)
            assert "".join(parts) == "".join(SENTENCES)
            assert llm.state.call_count == 1
    finally:
        logs = [w.stop() for w in workers]
    assert "Traceback" not in "".join(logs)


async def test_a_worker_killed_mid_answer_what_it_stored_is_delivered_by_the_other(tmp_path, redis_url, llm):
    llm.state.default = streamed(pieces=SENTENCES, first_delay=0.1, gap=0.3)
    settings = write_settings(tmp_path, redis_url, f"wk:{uuid.uuid4().hex[:8]}:", llm.base_url,
                              extra="stream_stale_after = 2.0")
    writer, other = Worker(settings), Worker(settings)
    signer = WeChatSigner(TOKEN)
    try:
        async with aiohttp.ClientSession() as session:
            for w in (writer, other):
                await w.ready(session)
            first = await say(session, writer.url, signer, "讲讲", 92001, "o_wk")
            assert first.startswith(SENTENCES[0]) and first.endswith(HINT)
            await asyncio.sleep(1.0)  # a few more sentences are stored...
            writer.proc.send_signal(signal.SIGKILL)  # ...and the worker writing them dies
            writer.proc.wait(timeout=10)
            parts = await read_on(session, [other.url], signer, "o_wk", first, 92100)
    finally:
        other_log = other.stop()
        writer.stop()
    text = "".join(parts)
    # What was written before the kill, once, in order, then the note; the rest never came.
    assert text.endswith(LOST)
    delivered = text.removesuffix(LOST)
    assert "".join(SENTENCES).startswith(delivered)
    assert len(delivered) > len(first.removesuffix(HINT))  # more than the first try showed
    assert delivered != "".join(SENTENCES)
    assert "Traceback" not in other_log
