"""WeChat's 5-second window, simulated faithfully with shortened times.

A try that gets any answer within its time ends the message; an unanswered try is followed by the
next, three in all. Whatever the model's latency: one model call and exactly one delivered answer.
"""
from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from core import TextReply, hookimpl
from core.simulator import deliver_like_wechat, text_xml
from tests.standins.wechat_api_server import WeChatAPIState, create_wechat_api_app

TRY_TIMEOUT = 1.0  # WeChat's 5 s, scaled down
WINDOW = {"delivery": {"try_budget": 0.7, "hold_seconds": 1.5}}


class SlowModel:
    """A fallback standing in for a model with a fixed latency; counts its calls per message."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls: list[str] = []

    @hookimpl
    async def skillbot_fallback(self, ctx):
        self.calls.append(ctx.message.msg_id)
        await asyncio.sleep(self.latency)
        return TextReply(f"答：{ctx.message.text}")


async def harness(wechat, latency: float, overrides: dict | None = None):
    model = SlowModel(latency)
    settings = {**WINDOW, "pipeline": {"plugin_timeout": 30}}
    for key, value in (overrides or {}).items():
        settings[key] = {**settings.get(key, {}), **value}
    h = await wechat(enabled=["welcome"], plugins={"model": model}, overrides=settings)
    return h, model


def answered(results):
    return [r for r in results if r.status is not None]


@pytest.mark.parametrize("latency,answered_on", [(0.05, 1), (1.3, 2), (2.3, 3)])
async def test_answer_lands_on_the_try_it_can(wechat, latency, answered_on):
    h, model = await harness(wechat, latency)
    url = str(h.client.make_url(h.path))
    results = await deliver_like_wechat(h.client.session, url, h.signer, text_xml("你好", msg_id=9001),
                                        try_timeout=TRY_TIMEOUT)
    assert [r.status for r in results] == [None] * (answered_on - 1) + [200]
    assert h.signer.open_reply(results[-1].body)["Content"] == "答：你好"
    assert model.calls == ["9001"]  # retries joined the work in flight


async def test_answer_after_the_third_try_comes_with_the_next_message(wechat):
    h, model = await harness(wechat, 3.5)
    url = str(h.client.make_url(h.path))
    results = await deliver_like_wechat(h.client.session, url, h.signer,
                                        text_xml("慢问题", msg_id=9100, from_user="o_slow"), try_timeout=TRY_TIMEOUT)
    assert [r.status for r in results] == [None, None, 200]
    assert h.signer.open_reply(results[-1].body)["Content"] == "正在思考中，请稍候发送任意消息获取回答。"
    await asyncio.sleep(1.0)  # the model finishes meanwhile
    model.latency = 0.0
    results = await deliver_like_wechat(h.client.session, url, h.signer,
                                        text_xml("好了吗", msg_id=9101, from_user="o_slow"), try_timeout=TRY_TIMEOUT)
    content = h.signer.open_reply(results[-1].body)["Content"]
    assert content.startswith("答：慢问题") and content.endswith("答：好了吗")
    # and never again
    results = await deliver_like_wechat(h.client.session, url, h.signer,
                                        text_xml("再来", msg_id=9102, from_user="o_slow"), try_timeout=TRY_TIMEOUT)
    assert h.signer.open_reply(results[-1].body)["Content"] == "答：再来"
    assert model.calls == ["9100", "9101", "9102"]


async def test_hundred_concurrent_users_each_answered_once(wechat):
    h, model = await harness(wechat, 1.3)
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
    assert sorted(contents) == sorted(f"答：问题{i}" for i in range(100))
    assert sorted(model.calls) == sorted(str(20000 + i) for i in range(100))


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

@pytest.fixture
async def wechat_api(aiohttp_server, monkeypatch):
    state = WeChatAPIState()
    server = await aiohttp_server(create_wechat_api_app(state))
    monkeypatch.setenv("WECHAT_APP_SECRET", state.secret)
    return state, str(server.make_url("")).rstrip("/")


async def cs_harness(wechat, wechat_api, latency: float, endpoint: str = "stable"):
    state, base = wechat_api
    return await harness(wechat, latency, {"delivery": {"mode": "customer_service", "api_base": base,
                                                        "token_endpoint": endpoint}})


async def wait_for(predicate, timeout: float = 5.0):
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("endpoint", ["stable", "classic"])
async def test_customer_service_acks_then_pushes_once(wechat, wechat_api, endpoint):
    state, _ = wechat_api
    (h, model) = await cs_harness(wechat, wechat_api, 1.3, endpoint)
    url = str(h.client.make_url(h.path))
    results = await deliver_like_wechat(h.client.session, url, h.signer,
                                        text_xml("客服问题", msg_id=7001, from_user="o_cs"), try_timeout=TRY_TIMEOUT)
    assert [(r.status, r.body) for r in results] == [(200, "success")]
    await wait_for(lambda: state.sent)
    await asyncio.sleep(0.3)
    assert state.sent == [{"touser": "o_cs", "msgtype": "text", "text": {"content": "答：客服问题"}}]
    assert model.calls == ["7001"]
    assert (state.stable_calls, state.classic_calls) == ((1, 0) if endpoint == "stable" else (0, 1))


async def test_customer_service_refetches_token_once_on_40001(wechat, wechat_api):
    state, _ = wechat_api
    h, model = await cs_harness(wechat, wechat_api, 0.0)
    state.send_errors = [40001]
    await h.say("第一条", user="o_t")
    await wait_for(lambda: state.sent)
    assert state.sent[0]["text"]["content"] == "答：第一条"
    assert state.token_fetches == 2 and [code for code, _ in state.rejected] == [40001]


@pytest.mark.parametrize("code", [45015, 45047, 48001])
async def test_customer_service_failure_falls_back_to_next_message(wechat, wechat_api, code, caplog):
    state, _ = wechat_api
    h, model = await cs_harness(wechat, wechat_api, 0.0)
    state.send_errors = [code]
    await h.say("问一下", user="o_f")
    await wait_for(lambda: state.rejected)
    await asyncio.sleep(0.2)
    assert str(code) in caplog.text
    # the answer was kept: the next message's push carries it
    await h.say("在吗", user="o_f")
    await wait_for(lambda: state.sent)
    assert state.sent[0]["text"]["content"] == "答：问一下\n\n答：在吗"


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
