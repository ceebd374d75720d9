"""Streamed model answers inside WeChat's window, exactly once, in order (issue 15 items 2-4).

The real LLM plugin talks to the local OpenAI-compatible stand-in, which streams its answer
slowly after a delay before the first token; WeChat's three tries are simulated as in
tests/test_delivery_window.py, times scaled down (a try waits 1 s instead of 5). Every test
checks what the user would notice: when the first words arrive, and that the parts, joined,
are the model's text (after Markdown -> plain text) with nothing lost or repeated.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from core.appkeys import BOTS_KEY, DELIVERY_KEY
from core.operations.wechat_client import deliver_like_wechat, text_xml
from core.state.delivery_records import MemoryAnswerStore, TakeRequest
from core.state.redis_store import RedisAnswerStore, connect
from plugins.llm.plaintext import markdown_to_text
from tests.standins.openai_server import OpenAIStandIn, streamed

TRY_TIMEOUT = 1.0  # WeChat's 5 s, scaled down
WINDOW = {"delivery": {"try_budget": 0.7, "hold_seconds": 1.5}}
HINT = "（回复「继续」查看更多）"
PENDING = "正在思考中，请稍候发送任意消息获取回答。"
STILL_WRITING = "还在写，请稍后回复「继续」查看。"

SENTENCES = [f"这是第{i}句话，说明一件事。" for i in range(1, 9)]


def backend(request, name: str) -> dict:
    if name == "memory":
        return {}
    url = request.getfixturevalue("redis_url")
    return {"state": {"backend": "redis", "redis_url": url, "key_prefix": f"stream{id(request)}:"}}


async def harness(wechat, llm, overrides: dict | None = None):
    settings = {**WINDOW, "plugins": {"llm": {"providers": [llm.provider(timeout=10.0)]}}}
    for key, value in (overrides or {}).items():
        settings[key] = {**settings.get(key, {}), **value}
    return await wechat(enabled=["welcome", "llm"], overrides=settings)


async def post(h, text: str, msg_id: int, user: str) -> str | None:
    """One try answered at once (no timeout): its text, or None for ``success``."""
    response = await h.post_xml(text_xml(text, msg_id=msg_id, from_user=user))
    body = await response.text()
    assert response.status == 200, body
    return None if body == "success" else h.signer.open_reply(body)["Content"]


async def like_wechat(h, text: str, msg_id: int, user: str):
    url = str(h.client.make_url(h.path))
    return await deliver_like_wechat(h.client.session, url, h.signer,
                                     text_xml(text, msg_id=msg_id, from_user=user), try_timeout=TRY_TIMEOUT)


async def read_on(h, user: str, first: str, msg_id: int, limit: int = 40) -> list[str]:
    """Send 「继续」 until no hint is left; returns every text the user saw, hints removed."""
    seen = [first]
    while seen[-1].endswith(HINT) or seen[-1] == STILL_WRITING:
        assert len(seen) < limit, seen
        if seen[-1] == STILL_WRITING:
            await asyncio.sleep(0.2)
        msg_id += 1
        content = await post(h, "继续", msg_id, user)
        assert content is not None and len(content.encode()) <= 2047
        seen.append(content)
    return [s.removesuffix(HINT) for s in seen if s != STILL_WRITING]


async def first_sentences_then_the_rest(h, body: bytes, user: str, msg_id: int) -> None:
    """A try's reply carried the first sentences and the hint; once the model has finished,
    「继续」 brings the rest, the whole answer once."""
    first = h.signer.open_reply(body)["Content"]
    assert first.startswith(SENTENCES[0]) and first.endswith(HINT)
    await asyncio.sleep(1.5)
    parts = await read_on(h, user, first, msg_id)
    assert "".join(parts) == "".join(SENTENCES)


def squeeze(text: str) -> str:
    """The words without the whitespace (parts are cut at sentence and paragraph ends)."""
    return "".join(text.split())


@pytest.mark.parametrize("store", ["memory", "redis"])
@pytest.mark.parametrize("first_delay,answered_on", [(0.0, 1), (0.9, 2), (1.9, 3)])
async def test_first_sentences_arrive_on_the_try_they_are_ready(wechat, llm, request, store, first_delay,
                                                                answered_on):
    h = await harness(wechat, llm, backend(request, store))
    # The first sentence is complete when the second begins: first_delay + 0.15 s.
    llm.state.default = streamed(pieces=SENTENCES, first_delay=first_delay, gap=0.15)
    results = await like_wechat(h, "讲讲", 8001, "o_s1")
    assert [r.status for r in results] == [None] * (answered_on - 1) + [200]
    first = h.signer.open_reply(results[-1].body)["Content"]
    # Some sentences, not yet all of them: the hint says more follows.
    assert first.endswith(HINT) and first.startswith(SENTENCES[0])
    assert first.removesuffix(HINT) != "".join(SENTENCES)
    await asyncio.sleep(2.5)  # the model finishes
    parts = await read_on(h, "o_s1", first, 8100)
    assert "".join(parts) == "".join(SENTENCES)  # nothing lost, nothing repeated
    assert llm.user_texts() == ["讲讲"]


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_pending_text_only_without_a_sentence_and_the_next_message_gets_it_at_once(wechat, llm, request,
                                                                                         store):
    h = await harness(wechat, llm, backend(request, store))
    llm.state.default = streamed(pieces=SENTENCES[:3], first_delay=3.2, gap=0.1)
    results = await like_wechat(h, "慢问题", 8201, "o_s2")
    assert [r.status for r in results] == [None, None, 200]
    assert h.signer.open_reply(results[-1].body)["Content"] == PENDING
    await asyncio.sleep(0.8)  # the first answer is written now; the next one is as slow
    llm.state.default = streamed(pieces=["第二个问题的回答。", "就这些。"], first_delay=3.2, gap=0.1)
    started = time.monotonic()
    results = await like_wechat(h, "还在吗", 8202, "o_s2")
    # The waiting answer comes in the first try, without waiting for the new model call.
    assert [r.status for r in results] == [200]
    assert time.monotonic() - started < TRY_TIMEOUT
    first = h.signer.open_reply(results[-1].body)["Content"]
    assert first == "".join(SENTENCES[:3]) + HINT
    # 「继续」 while the second answer is still being written: the "still writing" text.
    assert await post(h, "继续", 8203, "o_s2") == STILL_WRITING
    await asyncio.sleep(3.8)
    rest = await read_on(h, "o_s2", await post(h, "继续", 8204, "o_s2"), 8300)
    assert "".join(rest) == "第二个问题的回答。就这些。"
    assert llm.user_texts() == ["慢问题", "还在吗"]


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_long_streamed_answer_in_parts_and_a_lost_reply_is_repeated(wechat, llm, request, store):
    """Paragraphs of a long Markdown answer: every part at most 2047 bytes, cut at sentence or
    paragraph ends; a retry of a try whose reply was lost gets that reply again."""
    h = await harness(wechat, llm, backend(request, store))
    paragraph = "**要点**：" + "这一段讲一个细节，并且讲得很长。" * 40
    markdown = "\n\n".join([f"## 第{i}部分\n\n{paragraph}" for i in range(1, 4)])
    llm.state.default = streamed(markdown, first_delay=0.1, gap=0.0)
    first = await post(h, "长回答", 8401, "o_s3")
    assert first is not None and first.endswith(HINT) and len(first.encode()) <= 2047
    assert await post(h, "长回答", 8401, "o_s3") == first  # the same try again (its reply was lost)
    parts = await read_on(h, "o_s3", first, 8500)
    assert len(parts) >= 3
    assert squeeze("".join(parts)) == squeeze(markdown_to_text(markdown))
    assert all(p.rstrip().endswith(("。", "：")) or p.rstrip().endswith("部分") for p in parts)
    assert llm.user_texts() == ["长回答"]


def overloaded(h, monkeypatch, stall: float, times: int = 1) -> None:
    """An overloaded worker: after a try has taken text from the queue, the worker stalls
    ``stall`` seconds before it can write the reply (the first ``times`` such tries)."""
    delivery = h.client.app[DELIVERY_KEY]
    original, left = delivery.take, [times]

    async def take(user, claim=None, **kwargs):
        taken = await original(user, claim, **kwargs)
        if claim is not None and taken.text and left[0] > 0:
            left[0] -= 1
            await asyncio.sleep(stall)
        return taken

    monkeypatch.setattr(delivery, "take", take)


def wechat_waits(h, monkeypatch, seconds: float) -> None:
    """How long the server believes WeChat waits for a try (``delivery.wechat_wait``). The tests'
    ``post`` waits for any reply, so outside a phase that simulates WeChat hanging up the server
    is told WeChat is patient: a try slowed by a loaded test machine is then not taken for one
    WeChat gave up on (its text would be put back while the test still reads it)."""
    monkeypatch.setattr(h.client.app[DELIVERY_KEY].coordinator, "wechat_wait", seconds)


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_last_try_answered_too_late_keeps_its_text_for_the_next_message(wechat, llm, request, store,
                                                                            monkeypatch):
    """The last try takes the first sentences, but its reply is written after WeChat hung up: the
    text goes back to the head of the queue and reaches the user with their next message."""
    h = await harness(wechat, llm, {**backend(request, store), "delivery": {"wechat_wait": TRY_TIMEOUT}})
    overloaded(h, monkeypatch, stall=0.6)
    llm.state.default = streamed(pieces=SENTENCES, first_delay=1.9, gap=0.15)  # ready in the 3rd try
    results = await like_wechat(h, "讲讲", 8601, "o_s5")
    assert [r.status for r in results] == [None, None, None]  # WeChat got no reply in time
    await asyncio.sleep(1.8)  # the model finishes
    wechat_waits(h, monkeypatch, 30.0)
    llm.state.default = streamed(pieces=["好的。"])
    first = await post(h, "还在吗", 8602, "o_s5")
    assert first is not None and first.startswith(SENTENCES[0])  # the missed text first
    parts = await read_on(h, "o_s5", first, 8610)
    assert squeeze("".join(parts)) == squeeze("".join(SENTENCES) + "好的。")  # nothing lost or repeated


async def test_retry_after_a_late_reply_repeats_it_at_once(wechat, llm, monkeypatch):
    """The first try's reply (the first sentences) came too late: the second try carries the same
    reply at once instead of waiting for its budget's end again."""
    h = await harness(wechat, llm)
    overloaded(h, monkeypatch, stall=0.5)
    llm.state.default = streamed(pieces=SENTENCES, first_delay=0.1, gap=0.15)
    results = await like_wechat(h, "讲讲", 8651, "o_s6")
    assert [r.status for r in results] == [None, 200]
    budget = WINDOW["delivery"]["try_budget"]
    assert results[1].ended - results[1].started < budget  # not held to the budget's end
    await first_sentences_then_the_rest(h, results[1].body, "o_s6", 8660)


async def test_first_try_replies_soon_after_the_first_sentence(wechat, llm):
    """A try does not hold a ready sentence until its budget's end: it replies
    ``stream_reply_after`` seconds after the first sentence was stored."""
    h = await harness(wechat, llm, {"delivery": {"stream_reply_after": 0.2}})
    llm.state.default = streamed(pieces=SENTENCES, first_delay=0.1, gap=0.15)
    results = await like_wechat(h, "讲讲", 8671, "o_s7")
    assert [r.status for r in results] == [200]
    # the first sentence is stored at ~0.25 s, the reply ~0.2 s later; the budget ends at 0.7 s
    assert results[0].ended - results[0].started < WINDOW["delivery"]["try_budget"]
    await first_sentences_then_the_rest(h, results[0].body, "o_s7", 8680)


async def test_continue_reply_lost_on_every_try_is_kept_for_the_next_message(wechat, monkeypatch):
    """「继续」 on an overloaded worker: the first try's reply (the next part) is written after
    WeChat hung up, and the later tries are looked at only after WeChat hung up on them too. The
    part is not lost: the next 「继续」 brings it."""
    from core import TextReply, hookimpl

    class Long:
        @hookimpl
        def skillbot_fallback(self, ctx):
            return TextReply("".join(f"第{i}句很长的话。" for i in range(400)))

    h = await wechat(enabled=["welcome"], plugins={"long": Long()},
                     overrides={"delivery": {**WINDOW["delivery"], "wechat_wait": TRY_TIMEOUT}})
    wechat_waits(h, monkeypatch, 30.0)
    first = await post(h, "讲个长故事", 8701, "o_s8")
    wechat_waits(h, monkeypatch, TRY_TIMEOUT)
    assert first is not None and first.endswith(HINT)
    delivery = h.client.app[DELIVERY_KEY]
    original, tries = delivery.on_try, []

    async def stalled(message, log_id, connected):
        tries.append(message.dedup_key)
        if len(tries) > 1:
            await asyncio.sleep(TRY_TIMEOUT + 0.2)  # WeChat hung up before this try was looked at
        outcome = await original(message, log_id, connected)
        if len(tries) == 1:
            await asyncio.sleep(TRY_TIMEOUT + 0.2)  # ... and before the first try's reply was written
        return outcome

    monkeypatch.setattr(delivery, "on_try", stalled)
    results = await like_wechat(h, "继续", 8702, "o_s8")
    assert [r.status for r in results] == [None, None, None]
    monkeypatch.setattr(delivery, "on_try", original)
    await asyncio.sleep(0.5)  # the stalled last try finishes; the user writes again later
    wechat_waits(h, monkeypatch, 30.0)
    parts = await read_on(h, "o_s8", first, 8710)
    assert "".join(parts) == "".join(f"第{i}句很长的话。" for i in range(400))


async def test_model_failure_before_any_sentence_gives_the_polite_reply(wechat, llm):
    from tests.standins.openai_server import server_error

    h = await harness(wechat, llm)
    llm.state.default = server_error(500)
    content = await post(h, "你好", 8601, "o_s4")
    assert content == "抱歉，我暂时无法回答这个问题，请稍后再试。"
    await asyncio.sleep(0.2)
    bot = h.client.app[BOTS_KEY].bot
    assert await bot.conversations.history("o_s4") == []  # a failure is kept out of the history
    assert not await bot.state.answers.waiting("o_s4")


# ---- the answer store's queue, memory and Redis alike ---------------------------------------------

def store_for(request, name: str):
    if name == "memory":
        return MemoryAnswerStore()
    return RedisAnswerStore(connect(request.getfixturevalue("redis_url")), f"q{id(request)}:")


def ask(max_bytes: int = 60, claim: str | None = None, stale: float = 60.0, now: float = 0.0) -> TakeRequest:
    return TakeRequest(max_bytes, "+", stale, "【中断】", 60, claim, now)


@pytest.mark.parametrize("store_name", ["memory", "redis"])
async def test_queue_takes_in_order_within_the_byte_limit(request, store_name):
    store = store_for(request, store_name)
    assert await store.enqueue("u", "a", ["一二。", "三四。"], 60, closed=False) is False
    assert await store.append("a", [], 60)  # a heartbeat
    assert await store.enqueue("u", "b", ["五六。"], 60, closed=True) is True
    assert (await store.take("u", ask(12))).text == "一二。"  # 9 bytes a piece: one fits
    taken = await store.take("u", ask(18))
    assert (taken.text, taken.more, taken.writing, taken.content) == ("三四。", True, True, "三四。+")
    assert await store.enqueue("u", "c", ["零。"], 60, closed=True, front=True) is True
    assert (await store.take("u", ask())).text == "零。"  # put back at the head: first
    assert (await store.take("u", ask())).text == ""  # "a" is still being written: "b" waits
    assert await store.append("a", ["七。"], 60, close=True)
    assert await store.wait_closed("a", 0.1)
    taken = await store.take("u", ask())
    assert (taken.text, taken.more) == ("七。\n\n五六。", False)
    assert not await store.waiting("u")
    assert await store.append("a", ["迟到。"], 60) is False  # gone: its producer stops
    await close(store)


@pytest.mark.parametrize("store_name", ["memory", "redis"])
async def test_queue_ends_an_abandoned_answer_and_claims_once(request, store_name):
    store = store_for(request, store_name)
    await store.begin("msg:1", 60)
    await store.enqueue("u", "msg:1", ["甲。"], 60, closed=False)
    later = time.time() + 120  # its producer has been silent for two minutes
    taken = await store.take("u", ask(claim="msg:1", now=later))
    assert (taken.text, taken.more) == ("甲。【中断】", False)
    assert await store.reply_of("msg:1") == {"type": "text", "content": "甲。【中断】"}
    await store.enqueue("u", "x", ["乙。"], 60, closed=True)
    again = await store.take("u", ask(claim="msg:1"))
    assert again.claimed_before and again.text == ""
    assert (await store.take("u", ask())).text == "乙。"  # the refused claim took nothing
    await close(store)


@pytest.mark.parametrize("store_name", ["memory", "redis"])
async def test_push_counts_are_shared_by_workers_and_never_pass_the_limit(request, store_name):
    """Customer-service pushes since the user's last message, counted where every worker sees them
    (Redis: two stores with one prefix are two workers), reserved atomically."""
    a = store_for(request, store_name)
    b = a if store_name == "memory" else store_for(request, store_name)
    assert await a.pushes("u") == 0
    assert await a.reserve_pushes("u", 3, 5)
    assert await b.pushes("u") == 3
    assert not await b.reserve_pushes("u", 3, 5)  # would be a 6th: WeChat refuses it (45047)
    assert await b.pushes("u") == 3  # a refused reservation counts nothing
    assert await b.reserve_pushes("u", 2, 5)
    assert not await a.reserve_pushes("u", 1, 5)
    await a.release_pushes("u", 1)  # that send failed
    assert await b.pushes("u") == 4
    await b.reset_pushes("u")  # the user wrote, to the other worker
    assert await a.pushes("u") == 0 and await a.pushes("other") == 0
    granted = await asyncio.gather(*(w.reserve_pushes("v", 1, 5) for w in (a, b) * 6))
    assert sum(granted) == 5 and await a.pushes("v") == 5
    await a.release_pushes("v", 9)
    assert await b.pushes("v") == 0
    await close(a)
    if b is not a:
        await close(b)


async def close(store) -> None:
    if isinstance(store, RedisAnswerStore):
        await store.notifier.stop()
        await store.r.aclose()


# ---- customer-service mode ------------------------------------------------------------------------

async def cs_harness(wechat, llm, wechat_api, **delivery):
    _, base = wechat_api
    return await harness(wechat, llm, {"delivery": {"mode": "customer_service", "api_base": base,
                                                    "typing_refresh": 1.0, **delivery}})


async def wait_for(predicate, timeout: float = 8.0):
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


PARAGRAPHS = ["第一段的第一句。第一段的第二句。", "第二段只有一句。", "第三段开头。第三段中间。第三段结尾。"]


def paragraph_pieces(gap_pieces: int = 3) -> list[str]:
    text = "\n\n".join(PARAGRAPHS)
    return [text[i:i + gap_pieces] for i in range(0, len(text), gap_pieces)]


def long_answer(llm, paragraphs: int, repeats: int, gap: float) -> tuple[list[str], str]:
    """The stand-in's next answer: ``paragraphs`` long paragraphs, streamed 40 characters at a time."""
    parts = [f"第{i}段：" + "这一段讲一个细节，讲得很长。" * repeats for i in range(1, paragraphs + 1)]
    text = "\n\n".join(parts)
    llm.state.default = streamed(pieces=[text[i:i + 40] for i in range(0, len(text), 40)], first_delay=0.1, gap=gap)
    return parts, text


async def test_customer_service_types_and_pushes_paragraphs_in_order(wechat, llm, wechat_api):
    state, _ = wechat_api
    h = await cs_harness(wechat, llm, wechat_api, push_gather=0)
    llm.state.default = streamed(pieces=paragraph_pieces(), first_delay=0.5, gap=0.12)
    assert await post(h, "分段讲", 8701, "o_c1") is None  # acknowledged at once
    await wait_for(lambda: state.typing and state.typing[-1][1] == "CancelTyping")
    texts = [m["text"]["content"] for m in state.sent]
    assert texts == PARAGRAPHS  # one message per paragraph, as each ended, in order
    commands = [c for u, c in state.typing if u == "o_c1"]
    assert commands[-1] == "CancelTyping" and commands.count("Typing") >= 2  # refreshed meanwhile
    assert llm.user_texts() == ["分段讲"]


async def test_customer_service_gathers_paragraphs_after_the_first_push(wechat, llm, wechat_api):
    """By default the first paragraph is pushed as it ends; the next ones written within
    ``push_gather`` seconds of that push go together, so WeChat's five messages carry more."""
    state, _ = wechat_api
    h = await cs_harness(wechat, llm, wechat_api)  # push_gather 6 s; the answer takes ~2.5 s
    llm.state.default = streamed(pieces=paragraph_pieces(), first_delay=0.3, gap=0.12)
    assert await post(h, "分段讲", 8751, "o_c7") is None
    await wait_for(lambda: state.typing and state.typing[-1][1] == "CancelTyping")
    texts = [m["text"]["content"] for m in state.sent]
    assert texts == [PARAGRAPHS[0], "\n\n".join(PARAGRAPHS[1:])]


async def test_customer_service_pushes_a_full_message_without_waiting_for_the_gathering(wechat, llm, wechat_api):
    """Gathering never holds back a message's worth of text: with ``push_gather`` far longer
    than the answer, the paragraphs still go as soon as a full message is ready, and all of it
    arrives once, in order."""
    state, _ = wechat_api
    h = await cs_harness(wechat, llm, wechat_api, push_gather=60)
    paragraphs, text = long_answer(llm, paragraphs=5, repeats=20, gap=0.02)  # ~850 bytes each
    await post(h, "长回答", 8761, "o_c8")
    await wait_for(lambda: state.typing and state.typing[-1][1] == "CancelTyping")
    pushed = [m["text"]["content"] for m in state.sent]
    assert pushed[0] == paragraphs[0]  # the first paragraph at once
    assert 3 <= len(pushed) <= 4  # not one per paragraph, and not held to the end
    assert all(len(p.encode()) <= 2048 for p in pushed)
    assert squeeze("".join(pushed)) == squeeze(text)


@pytest.mark.parametrize("code", [45047, 48001])
async def test_customer_service_refusal_falls_back_to_continue(wechat, llm, wechat_api, code):
    state, _ = wechat_api
    h = await cs_harness(wechat, llm, wechat_api)
    state.send_errors = [0, code]  # the first paragraph goes, the second is refused
    llm.state.default = streamed(pieces=paragraph_pieces(), first_delay=0.1, gap=0.1)
    await post(h, "分段讲", 8801, "o_c2")
    await wait_for(lambda: [c for c, _ in state.rejected] == [code])
    await asyncio.sleep(1.5)  # the model finishes; the rest waits in the queue
    assert [m["text"]["content"] for m in state.sent] == PARAGRAPHS[:1]
    await post(h, "继续", 8802, "o_c2")  # the user writes: the rest is pushed
    await wait_for(lambda: len(state.sent) >= 2)
    await asyncio.sleep(0.3)
    pushed = [m["text"]["content"] for m in state.sent]
    assert squeeze("".join(pushed)) == squeeze("".join(PARAGRAPHS))
    assert state.typing[-1] == ("o_c2", "CancelTyping")


async def test_customer_service_stops_before_wechats_limit(wechat, llm, wechat_api):
    """At most ``push_limit`` messages per user message; the last carries the rest at the end."""
    state, _ = wechat_api
    h = await cs_harness(wechat, llm, wechat_api, push_limit=2)
    llm.state.default = streamed(pieces=paragraph_pieces(), first_delay=0.1, gap=0.1)
    await post(h, "分段讲", 8901, "o_c3")
    await wait_for(lambda: len(state.sent) >= 2)
    await asyncio.sleep(0.5)
    texts = [m["text"]["content"] for m in state.sent]
    assert texts == [PARAGRAPHS[0], "\n\n".join(PARAGRAPHS[1:])]


async def test_customer_service_rest_after_the_push_limit_comes_with_continue(wechat, llm, wechat_api):
    """An answer longer than ``push_limit`` messages: the last push ends with the continue hint,
    and each 「继续」 the user sends (acknowledged, a new message for WeChat's count) pushes the
    next part, until the whole answer has arrived, once and in order."""
    state, _ = wechat_api
    h = await cs_harness(wechat, llm, wechat_api, push_limit=2)
    _, text = long_answer(llm, paragraphs=6, repeats=25, gap=0.01)  # ~1 KB each
    await post(h, "长回答", 9001, "o_c4")
    await wait_for(lambda: state.typing and state.typing[-1][1] == "CancelTyping")
    msg_id = 9002
    while state.sent[-1]["text"]["content"].endswith(HINT):
        assert msg_id < 9010
        before = len(state.sent)
        assert await post(h, "继续", msg_id, "o_c4") is None  # acknowledged; the part is pushed
        msg_id += 1
        await wait_for(lambda: len(state.sent) > before)
        await asyncio.sleep(0.1)
    pushed = [m["text"]["content"].removesuffix(HINT) for m in state.sent]
    assert msg_id > 9002 and all(len(p.encode()) <= 2048 for p in pushed)
    assert squeeze("".join(pushed)) == squeeze(text)
    assert llm.user_texts() == ["长回答"]


@pytest.mark.parametrize("key,value,words", [
    ("push_limit", 6, "45047"), ("push_limit", 0, "push_limit"), ("push_gather", 61, "push_gather"), ("typing_refresh", 20.0, "15"),
    ("stream_stale_after", 0.5, "stream_stale_after"), ("continue_wait", " ", "continue_wait"),
    ("stream_reply_after", 6.0, "stream_reply_after"), ("wechat_wait", 6.0, "wechat_wait"),
    ("wechat_wait", 0.8, "try_budget"),
])
def test_streaming_settings_are_checked(key, value, words):
    from core.settings_schema import ConfigError
    from core.testing import build_settings

    with pytest.raises(ConfigError) as info:
        build_settings({"delivery": {key: value}})
    assert words in str(info.value)


async def test_retry_of_a_long_reply_does_not_queue_its_rest_twice(wechat):
    from core import TextReply, hookimpl

    class Long:
        @hookimpl
        def skillbot_fallback(self, ctx):
            return TextReply("这是一个很长的句子。" * 300)

    h = await wechat(enabled=["welcome"], plugins={"long": Long()})
    first = await post(h, "讲个长故事", 8951, "o_long2")
    assert await post(h, "讲个长故事", 8951, "o_long2") == first  # WeChat did not get it: again
    parts = await read_on(h, "o_long2", first, 8960)
    assert "".join(parts) == "这是一个很长的句子。" * 300


async def test_a_stream_expiring_during_a_take_is_still_counted_not_a_key_error():
    """The memory store reads a stream once and updates that object: a stream whose entry expires
    between the read and the update (its pending_ttl ending mid-take) gives its text, no KeyError."""
    store = MemoryAnswerStore(pending_ttl=10)
    await store.enqueue("u", "a", ["一二。", "三四。"], 10, closed=False)
    calls = iter([0.0])
    start = store._streams.timer()
    store._streams.timer = lambda: start + (0.0 if next(calls, None) is not None else 100.0)  # expired after one read
    taken = await store.take("u", ask(12))
    assert taken.text == "一二。"
