"""WeChat's 5-second window, simulated faithfully with shortened times.

A try that gets any answer within its time ends the message; an unanswered try is followed by the
next, three in all. Whatever the model's latency: one model call and exactly one delivered answer.
"""
from __future__ import annotations

import asyncio

import pytest

from core import TextReply, hookimpl
from core.operations.wechat_client import deliver_like_wechat, text_xml
from tests.standins.openai_server import OpenAIStandIn

TRY_TIMEOUT = 1.0  # WeChat's 5 s, scaled down
WINDOW = {"delivery": {"try_budget": 0.7, "hold_seconds": 1.5}}


async def harness(wechat, llm, latency: float, overrides: dict | None = None):
    llm.state.delay = latency
    settings = {**WINDOW, "plugins": {"llm": {"providers": [llm.provider(timeout=10.0)]}}}
    for key, value in (overrides or {}).items():
        settings[key] = {**settings.get(key, {}), **value}
    return await wechat(enabled=["welcome", "llm"], overrides=settings)


def answered(results):
    return [r for r in results if r.status is not None]


@pytest.mark.parametrize("latency,answered_on", [(0.05, 1), (1.3, 2), (2.3, 3)])
async def test_answer_lands_on_the_try_it_can(wechat, llm, latency, answered_on):
    h = await harness(wechat, llm, latency)
    url = str(h.client.make_url(h.path))
    results = await deliver_like_wechat(h.client.session, url, h.signer, text_xml("你好", msg_id=9001),
                                        try_timeout=TRY_TIMEOUT)
    assert [r.status for r in results] == [None] * (answered_on - 1) + [200]
    assert h.signer.open_reply(results[-1].body)["Content"] == "回声：你好"
    assert llm.user_texts() == ["你好"]  # retries joined the work in flight: one model call


async def test_answer_after_the_third_try_comes_with_the_next_message(wechat, llm):
    h = await harness(wechat, llm, 3.5)
    url = str(h.client.make_url(h.path))
    results = await deliver_like_wechat(h.client.session, url, h.signer,
                                        text_xml("慢问题", msg_id=9100, from_user="o_slow"), try_timeout=TRY_TIMEOUT)
    assert [r.status for r in results] == [None, None, 200]
    assert h.signer.open_reply(results[-1].body)["Content"] == "正在思考中，请稍候发送任意消息获取回答。"
    await asyncio.sleep(1.0)  # the model finishes meanwhile
    llm.state.delay = 0.0
    results = await deliver_like_wechat(h.client.session, url, h.signer,
                                        text_xml("好了吗", msg_id=9101, from_user="o_slow"), try_timeout=TRY_TIMEOUT)
    # The waiting answer comes at once, in the first try; the new one follows in the queue.
    assert [r.status for r in results] == [200]
    seen = [h.signer.open_reply(results[-1].body)["Content"]]
    assert seen[0].startswith("回声：慢问题")
    if seen[-1].endswith("（回复「继续」查看更多）"):
        await asyncio.sleep(0.3)
        status, fields, _ = await _post(h, text_xml("继续", msg_id=9103, from_user="o_slow"))
        seen.append(fields["Content"])
    assert "\n\n".join(s.removesuffix("（回复「继续」查看更多）") for s in seen) == "回声：慢问题\n\n回声：好了吗"
    # and never again
    results = await deliver_like_wechat(h.client.session, url, h.signer,
                                        text_xml("再来", msg_id=9102, from_user="o_slow"), try_timeout=TRY_TIMEOUT)
    assert h.signer.open_reply(results[-1].body)["Content"] == "回声：再来"
    assert llm.user_texts() == ["慢问题", "好了吗", "再来"]


def backend(request, name: str) -> dict:
    """Settings for the answer records' backend: local memory, or a real Redis."""
    if name == "memory":
        return {}
    url = request.getfixturevalue("redis_url")
    return {"state": {"backend": "redis", "redis_url": url, "key_prefix": f"retry{id(request)}:"}}


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_retries_of_an_answered_message_get_the_same_answer(wechat, llm, request, store):
    """WeChat retries a message only when our reply did not reach it in time: each retry of an
    answered try gets that answer again (not ``success``, not the "still thinking" text)."""
    h = await harness(wechat, llm, 0.0, backend(request, store))
    xml = text_xml("你好", msg_id=9300, from_user="o_lost")
    contents = []
    for _ in range(3):  # three tries whose replies were all lost on the way back
        status, fields, body = await _post(h, xml)
        assert status == 200, body
        contents.append(fields["Content"] if fields else body)
    assert contents == ["回声：你好"] * 3
    assert llm.user_texts() == ["你好"]


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_retry_of_an_answer_kept_for_the_next_message_is_not_delivered_twice(wechat, llm, request, store):
    h = await harness(wechat, llm, 3.5, backend(request, store))
    url = str(h.client.make_url(h.path))
    xml = text_xml("慢问题", msg_id=9400, from_user="o_kept")
    results = await deliver_like_wechat(h.client.session, url, h.signer, xml, try_timeout=TRY_TIMEOUT)
    assert h.signer.open_reply(results[-1].body)["Content"] == "正在思考中，请稍候发送任意消息获取回答。"
    await asyncio.sleep(1.0)  # the model finishes: the answer is kept for the next message
    llm.state.delay = 0.0
    assert await _post(h, xml) == (200, None, "success")  # a stray retry does not take it
    status, fields, _ = await _post(h, text_xml("好了吗", msg_id=9401, from_user="o_kept"))
    # The kept answer first, at once; the new one follows (with it if already written, else by 「继续」).
    seen = [fields["Content"]]
    if seen[-1].endswith("（回复「继续」查看更多）"):
        await asyncio.sleep(0.3)
        status, fields, _ = await _post(h, text_xml("继续", msg_id=9402, from_user="o_kept"))
        seen.append(fields["Content"])
    assert "\n\n".join(s.removesuffix("（回复「继续」查看更多）") for s in seen) == "回声：慢问题\n\n回声：好了吗"
    assert llm.user_texts() == ["慢问题", "好了吗"]


async def _post(h, xml: str) -> tuple[int, dict | None, str]:
    response = await h.post_xml(xml)
    body = await response.text()
    return response.status, (h.signer.open_reply(body) if response.status == 200 else None), body


async def test_hundred_concurrent_users_each_answered_once(wechat, llm):
    h = await harness(wechat, llm, 1.3)
    url = str(h.client.make_url(h.path))

    async def one(i: int):
        return await deliver_like_wechat(h.client.session, url, h.signer,
                                         text_xml(f"问题{i}", msg_id=20000 + i, from_user=f"o_u{i}"),
                                         try_timeout=TRY_TIMEOUT)

    all_results = await asyncio.gather(*(one(i) for i in range(100)))
    contents = []
    for i, results in enumerate(all_results):
        got = answered(results)
        assert len(got) == 1, f"user {i}: {[r.status for r in results]}"
        contents.append(h.signer.open_reply(got[0].body)["Content"])
    assert sorted(contents) == sorted(f"回声：问题{i}" for i in range(100))
    assert sorted(llm.user_texts()) == sorted(f"问题{i}" for i in range(100))


async def test_long_answer_is_split_and_continued(wechat):
    class Long:
        @hookimpl
        def skillbot_fallback(self, ctx):
            return TextReply("这是一个很长的句子。" * 300)  # ~9000 bytes

    h = await wechat(enabled=["welcome"], plugins={"long": Long()})
    status, fields, _ = await h.say("讲个长故事", user="o_long")
    first = fields["Content"]
    assert len(first.encode()) <= 2047 and first.endswith("（回复「继续」查看更多）")
    parts = [first.removesuffix("（回复「继续」查看更多）")]
    for _ in range(10):
        status, fields, _ = await h.say("继续", user="o_long")
        content = fields["Content"]
        assert len(content.encode()) <= 2047
        parts.append(content.removesuffix("（回复「继续」查看更多）"))
        if not content.endswith("（回复「继续」查看更多）"):
            break
    assert "".join(parts) == "这是一个很长的句子。" * 300
    assert all(p.endswith("。") for p in parts)  # cut at sentence ends


# ---- customer-service mode -----------------------------------------------------------------------

async def cs_harness(wechat, llm, wechat_api, latency: float, endpoint: str = "stable"):
    state, base = wechat_api
    return await harness(wechat, llm, latency, {"delivery": {"mode": "customer_service", "api_base": base,
                                                             "token_endpoint": endpoint}})


async def wait_for(predicate, timeout: float = 5.0):
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("endpoint,latency", [("stable", 0.05), ("stable", 1.3), ("classic", 2.3), ("stable", 3.5)])
async def test_customer_service_acks_then_pushes_once(wechat, llm, wechat_api, endpoint, latency):
    state, _ = wechat_api
    h = await cs_harness(wechat, llm, wechat_api, latency, endpoint)
    url = str(h.client.make_url(h.path))
    results = await deliver_like_wechat(h.client.session, url, h.signer,
                                        text_xml("客服问题", msg_id=7001, from_user="o_cs"), try_timeout=TRY_TIMEOUT)
    assert [(r.status, r.body) for r in results] == [(200, "success")]
    await wait_for(lambda: state.sent)
    await asyncio.sleep(0.3)
    assert state.sent == [{"touser": "o_cs", "msgtype": "text", "text": {"content": "回声：客服问题"}}]
    assert llm.user_texts() == ["客服问题"]
    assert (state.stable_calls, state.classic_calls) == ((1, 0) if endpoint == "stable" else (0, 1))


async def test_customer_service_hundred_concurrent_users(wechat, llm, wechat_api):
    state, _ = wechat_api
    h = await cs_harness(wechat, llm, wechat_api, 1.3)
    url = str(h.client.make_url(h.path))
    all_results = await asyncio.gather(*(
        deliver_like_wechat(h.client.session, url, h.signer, text_xml(f"客服{i}", msg_id=30000 + i, from_user=f"o_c{i}"),
                            try_timeout=TRY_TIMEOUT) for i in range(100)))
    assert all([(r.status, r.body) for r in results] == [(200, "success")] for results in all_results)
    await wait_for(lambda: len(state.sent) >= 100, timeout=15)
    await asyncio.sleep(0.3)
    assert sorted((m["touser"], m["text"]["content"]) for m in state.sent) == \
        sorted((f"o_c{i}", f"回声：客服{i}") for i in range(100))
    assert sorted(llm.user_texts()) == sorted(f"客服{i}" for i in range(100))
    assert state.token_fetches == 1


async def test_customer_service_refetches_token_once_on_40001(wechat, llm, wechat_api):
    state, _ = wechat_api
    h = await cs_harness(wechat, llm, wechat_api, 0.0)
    state.send_errors = [40001]
    await h.say("第一条", user="o_t")
    await wait_for(lambda: state.sent)
    assert state.sent[0]["text"]["content"] == "回声：第一条"
    assert state.token_fetches == 2 and [code for code, _ in state.rejected] == [40001]


@pytest.mark.parametrize("code", [45015, 45047, 48001])
async def test_customer_service_failure_falls_back_to_next_message(wechat, llm, wechat_api, code, caplog):
    state, _ = wechat_api
    h = await cs_harness(wechat, llm, wechat_api, 0.0)
    state.send_errors = [code]
    await h.say("问一下", user="o_f")
    await wait_for(lambda: state.rejected)
    await asyncio.sleep(0.2)
    assert str(code) in caplog.text
    # the answer was kept: the next message's push carries it
    await h.say("在吗", user="o_f")
    await wait_for(lambda: state.sent)
    assert state.sent[0]["text"]["content"] == "回声：问一下\n\n回声：在吗"


async def test_customer_service_sends_long_answer_in_ordered_parts(wechat, wechat_api):
    state, _ = wechat_api

    class Long:
        @hookimpl
        def skillbot_fallback(self, ctx):
            return TextReply("第一段内容很长。" * 200 + "结尾。")

    state_, base = wechat_api
    h = await wechat(enabled=["welcome"], plugins={"long": Long()},
                     overrides={"delivery": {"mode": "customer_service", "api_base": base}})
    await h.say("长", user="o_l")
    await wait_for(lambda: len(state.sent) >= 3)
    await asyncio.sleep(0.2)
    texts = [m["text"]["content"] for m in state.sent]
    assert "".join(texts) == "第一段内容很长。" * 200 + "结尾。"
    assert all(len(t.encode()) <= 2047 for t in texts)


async def test_customer_service_without_secret_refuses_to_start(wechat, monkeypatch):
    monkeypatch.delenv("WECHAT_APP_SECRET", raising=False)
    with pytest.raises(Exception) as info:
        await wechat(enabled=["welcome"], overrides={"delivery": {"mode": "customer_service"}})
    assert "app_secret_env" in str(info.value)


async def test_answer_ready_after_wechat_hung_up_is_kept_for_the_next_try():
    """In production aiohttp does not cancel a handler whose client left; such a try must not
    claim the answer (it could not carry it), so the next try delivers it."""
    from core.state.delivery_records import (
        ANSWER,
        HOLD,
        DeliveryCoordinator,
        MemoryAnswerStore,
    )

    coordinator = DeliveryCoordinator(MemoryAnswerStore(), "passive", try_budget=0.5, record_ttl=60)
    later: list[dict] = []

    async def work():
        return {"type": "text", "content": "答案"}

    async def deliver_later(payload):
        later.append(payload)

    first = await coordinator.on_try("msg:1", work, deliver_later, connected=lambda: False)
    second = await coordinator.on_try("msg:1", work, deliver_later, connected=lambda: True)
    assert (first.action, second.action) == (HOLD, ANSWER)
    assert second.payload["content"] == "答案"
    # after the last try the answer goes to the next-message path instead
    for _ in range(3):
        last = await coordinator.on_try("msg:2", work, deliver_later, connected=lambda: False)
    await coordinator.drain()
    assert last.action == HOLD and later == [{"type": "text", "content": "答案"}]


async def test_repeated_reply_is_kept_without_its_explanation():
    """A retry of an answered try gets the reply again; the record keeps the reply, not the
    (large) routing explanation, and the first try's explanation is not overwritten."""
    from core.state.delivery_records import (
        ANSWER,
        DeliveryCoordinator,
        MemoryAnswerStore,
    )

    coordinator = DeliveryCoordinator(MemoryAnswerStore(), "passive", try_budget=0.5, record_ttl=60)

    async def work():
        return {"type": "text", "content": "答案", "explain": {"tokens": ["答案"] * 500}}

    async def deliver_later(payload):
        raise AssertionError("an answered message is never delivered later")

    first = await coordinator.on_try("msg:3", work, deliver_later)
    second = await coordinator.on_try("msg:3", work, deliver_later)
    assert (first.action, first.repeated, "explain" in first.payload) == (ANSWER, False, True)
    assert (second.action, second.repeated) == (ANSWER, True)
    assert second.payload == {"type": "text", "content": "答案"}
    assert coordinator.stats["repeated"] == 1
