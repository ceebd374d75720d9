"""The streaming client against the local stand-in through real sockets: SSE in OpenAI's and
DashScope's chunk shapes, usage from the final chunk, keep-alives, events split across TCP writes,
failover only before the first text, broken and stalled streams, slow first tokens, error events,
providers that cannot stream, plain-text pieces and whole sentences as they finish."""
from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from plugins.llm.client import AllProvidersFailed, EventStreamDecoder, LLMClient, NoProviderConfigured, \
    ProviderFailure
from plugins.llm.config import ProviderConfig
from plugins.llm.plaintext import markdown_to_text
from tests.standins.openai_server import (
    OpenAIStandIn,
    answer,
    broken_stream,
    json_answer,
    rate_limited,
    slow_first_token,
    streamed,
)

MESSAGES = [{"role": "system", "content": "你是助手。"}, {"role": "user", "content": "介绍一下长城"}]
ANSWER_PIECES = ["## 长城", "\n\n长城是", "中国古代的**军事", "防御**工程。", "它东起山海关，",
                 "西至嘉峪关！\n\n", "- 全长约", "两万公里。\n- 始建于", "春秋战国。"]
ANSWER = "".join(ANSWER_PIECES)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def primary():
    async with OpenAIStandIn() as server:
        yield server


@pytest.fixture
async def backup():
    async with OpenAIStandIn() as server:
        server.state.default = streamed("来自备用服务的回答。")
        yield server


def make_client(session, *servers_and_names, **kw) -> LLMClient:
    providers = [ProviderConfig.from_table(s.provider(n, **o), 0) for s, n, o in servers_and_names]
    return LLMClient(providers, session, clock=Clock(), environ={}, **kw)


# ---- a streamed answer ------------------------------------------------------------------------

async def test_pieces_arrive_before_the_stream_ends(session, primary):
    primary.state.default = streamed(pieces=["第一句。", "第二句。", "第三句。"], gap=0.3)
    client = make_client(session, (primary, "main", {}))
    async with client.stream(MESSAGES) as answer_stream:
        pieces = []
        async for piece in answer_stream:
            if not pieces:
                # The model is still writing: the stand-in has not sent [DONE] yet.
                assert primary.state.streams_done == 0
            pieces.append(piece)
    assert pieces == ["第一句。", "第二句。", "第三句。"]
    assert primary.state.streams_done == 1
    completion = answer_stream.completion
    assert completion.text == "第一句。第二句。第三句。" and completion.finish_reason == "stop"
    assert 0 < completion.first_text <= completion.elapsed


@pytest.mark.parametrize("flavour", ["openai", "dashscope"])
@pytest.mark.parametrize("split_bytes", [0, 5])
@pytest.mark.parametrize("separator", ["\n\n", "\r\n\r\n"])
async def test_recorded_chunk_shapes_with_usage_from_the_final_chunk(session, primary, flavour,
                                                                     split_bytes, separator):
    # split_bytes=5 cuts events, lines and three-byte UTF-8 characters across TCP writes.
    primary.state.default = streamed(pieces=ANSWER_PIECES, flavour=flavour, keepalive=True,
                                     split_bytes=split_bytes, separator=separator)
    client = make_client(session, (primary, "main", {}))
    async with client.stream(MESSAGES) as answer_stream:
        plain = "".join([piece async for piece in answer_stream])
    completion = answer_stream.completion
    assert completion.text == ANSWER
    assert plain == markdown_to_text(ANSWER)
    assert completion.completion_tokens == len(ANSWER)
    assert completion.prompt_tokens == sum(len(m["content"]) for m in MESSAGES)
    assert completion.model == "standin-chat"
    assert [(a.provider, a.outcome) for a in completion.attempts] == [("main", "ok")]
    body = primary.state.calls[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_no_usage_when_the_provider_sends_none(session, primary):
    primary.state.default = streamed("好的。")
    client = make_client(session, (primary, "main", {"extra_body": {"stream_options": {"include_usage": False}}}))
    completion = await client.complete(MESSAGES)
    assert completion.text == "好的。"
    assert completion.prompt_tokens == 0 and completion.completion_tokens == 0


async def test_markdown_is_never_let_out_half_done(session, primary):
    pieces = ["我们", "**重点", "**是：", "多喝水。然后", "看`代", "码`。\n| 项 | 值 |\n", "|---|---|\n",
              "| a | b |\n"]
    primary.state.default = streamed(pieces=pieces)
    client = make_client(session, (primary, "main", {}))
    async with client.stream(MESSAGES) as answer_stream:
        seen = [piece async for piece in answer_stream]
    assert all("*" not in piece and "`" not in piece and "|---" not in piece for piece in seen)
    # The first sentence is let out as soon as it is complete, before its line ends.
    assert seen[0] == "我们重点是：多喝水。"
    assert "".join(seen) == markdown_to_text("".join(pieces))


async def test_sentences_as_they_finish(session, primary):
    primary.state.default = streamed(pieces=ANSWER_PIECES, split_bytes=7)
    client = make_client(session, (primary, "main", {}))
    async with client.stream(MESSAGES) as answer_stream:
        sentences = [s async for s in answer_stream.sentences()]
    assert [s.content for s in sentences] == [
        "长城", "长城是中国古代的军事防御工程。", "它东起山海关，西至嘉峪关！", "• 全长约两万公里。",
        "• 始建于春秋战国。"]
    assert [s.ends_paragraph for s in sentences] == [True, False, True, False, True]
    assert "".join(s.text for s in sentences) == markdown_to_text(ANSWER)


async def test_reasoning_split_across_chunks_is_removed(session, primary):
    primary.state.default = streamed(pieces=["<thi", "nk>用户想知道", "长城。</th", "ink>\n\n", "长城很长。"])
    completion = await make_client(session, (primary, "main", {})).complete(MESSAGES)
    assert completion.text == "长城很长。"


async def test_what_might_have_begun_a_tag_is_kept_at_the_end(session, primary):
    primary.state.default = streamed(pieces=["1 ", "<"])
    completion = await make_client(session, (primary, "main", {})).complete(MESSAGES)
    assert completion.text == "1 <"


async def test_an_answer_stream_is_read_once(session, primary):
    client = make_client(session, (primary, "main", {}))
    async with client.stream(MESSAGES) as answer_stream:
        await answer_stream.collect()
        with pytest.raises(RuntimeError):
            await answer_stream.collect()


# ---- failover only before the first text -------------------------------------------------------

async def test_a_stream_broken_before_any_text_fails_over(session, primary, backup):
    primary.state.script.append(broken_stream(["没说完"], after=0))
    client = make_client(session, (primary, "first", {}), (backup, "second", {}))
    completion = await client.complete(MESSAGES)
    assert completion.text == "来自备用服务的回答。" and completion.provider == "second"
    assert [(a.provider, a.outcome) for a in completion.attempts] == [("first", "connection"),
                                                                       ("second", "ok")]
    assert client.breaker("first").failures == 1


async def test_a_stream_broken_after_text_ends_the_answer_there(session, primary, backup, caplog):
    primary.state.script.append(broken_stream(["长城是中国古代的", "防御工程。它东起"]))
    client = make_client(session, (primary, "first", {}), (backup, "second", {}))
    with caplog.at_level(logging.WARNING, logger="skillbot.llm"):
        async with client.stream(MESSAGES) as answer_stream:
            plain = "".join([piece async for piece in answer_stream])
    completion = answer_stream.completion
    assert completion.interrupted and completion.provider == "first"
    assert completion.text == "长城是中国古代的防御工程。它东起"
    assert plain == "长城是中国古代的防御工程。它东起"
    assert [(a.provider, a.outcome) for a in completion.attempts] == [("first", "interrupted")]
    assert backup.state.calls == []            # never asked: the user has seen the beginning
    assert client.breaker("first").failures == 1
    assert "the stream broke after" in caplog.text and "Traceback" not in caplog.text


async def test_a_stream_that_stalls_after_text_ends_the_answer(session, primary, backup):
    primary.state.script.append(streamed(pieces=["第一句。", "第二句。"], gap=2.0))
    client = make_client(session, (primary, "first", {"timeout": 0.8}), (backup, "second", {}))
    completion = await client.complete(MESSAGES)
    assert completion.interrupted and completion.text == "第一句。"
    assert completion.attempts[0].outcome == "interrupted" and "stalled" in completion.attempts[0].detail
    assert backup.state.calls == []


async def test_the_answers_deadline_after_text_is_not_held_against_the_provider(session, primary, backup):
    primary.state.script.append(streamed(pieces=["第一句。", "第二句。"], gap=2.0))
    client = make_client(session, (primary, "first", {"timeout": 5}), (backup, "second", {}))
    completion = await client.complete(MESSAGES, timeout=0.8)
    assert completion.interrupted and completion.text == "第一句。"
    assert client.breaker("first").failures == 0 and client.breaker("first").state == "closed"


@pytest.mark.parametrize("keepalive", [False, True])
async def test_a_slow_first_token_fails_over_even_with_keepalives(session, primary, backup, keepalive):
    primary.state.script.append(slow_first_token(1.0, "太慢了。", keepalive=keepalive))
    client = make_client(session, (primary, "first", {"timeout": 0.3}), (backup, "second", {}))
    completion = await client.complete(MESSAGES)
    assert completion.provider == "second"
    first = completion.attempts[0]
    assert (first.provider, first.outcome) == ("first", "timeout") and "no text within" in first.detail
    assert client.breaker("first").failures == 1


async def test_a_slow_first_token_within_the_timeout_is_waited_for(session, primary, backup):
    primary.state.script.append(slow_first_token(0.3, "想好了。", keepalive=True))
    completion = await make_client(session, (primary, "first", {"timeout": 2}),
                                   (backup, "second", {})).complete(MESSAGES)
    assert completion.provider == "first" and completion.text == "想好了。"
    assert backup.state.calls == []


async def test_a_429_before_streaming_fails_over_and_skips_the_provider(session, primary, backup):
    primary.state.script.append(rate_limited(retry_after=7))
    client = make_client(session, (primary, "first", {}), (backup, "second", {}))
    completion = await client.complete(MESSAGES)
    assert completion.provider == "second"
    assert (completion.attempts[0].outcome, completion.attempts[0].status) == ("rate_limited", 429)
    assert client.breaker("first").state == "open"
    assert client.breaker("first").retry_in == pytest.approx(7)


ERROR_EVENT = 'data: {"error": {"message": "Internal error", "type": "server_error", "code": "500"}}\n\n'


@pytest.mark.parametrize("tail, outcome", [
    ([ERROR_EVENT], "server_error"),
    (["data: {not json\n\n"], "malformed"),
    (['data: ["a list"]\n\n'], "malformed"),
    ([], "connection"),                       # ended without finish_reason or [DONE]
    (["data: [DONE]\n\n"], "empty"),          # finished without any text
])
async def test_bad_streams_before_any_text_fail_over(session, primary, backup, tail, outcome):
    primary.state.script.append(streamed(pieces=[], tail=tail))
    client = make_client(session, (primary, "first", {}), (backup, "second", {}))
    completion = await client.complete(MESSAGES)
    assert completion.provider == "second"
    assert completion.attempts[0].outcome == outcome


async def test_an_error_event_after_text_interrupts(session, primary, backup):
    primary.state.script.append(streamed(pieces=["开头。"], tail=[ERROR_EVENT]))
    client = make_client(session, (primary, "first", {}), (backup, "second", {}))
    completion = await client.complete(MESSAGES)
    assert completion.interrupted and completion.text == "开头。"
    assert "Internal error" in completion.attempts[0].detail


async def test_a_moderation_error_event_is_a_refusal(session, primary, backup):
    event = ('data: {"error": {"message": "Output data may contain inappropriate content.", '
             '"type": "data_inspection_failed", "code": "data_inspection_failed"}}\n\n')
    primary.state.script.append(streamed(pieces=[], tail=[event]))
    client = make_client(session, (primary, "first", {}), (backup, "second", {}))
    completion = await client.complete(MESSAGES)
    assert completion.filtered and completion.provider == "first"
    assert backup.state.calls == []


async def test_finish_reason_without_done_is_a_complete_answer(session, primary):
    stop = ('data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}\n\n')
    primary.state.script.append(streamed(pieces=["说到一半"], tail=[stop]))
    completion = await make_client(session, (primary, "main", {})).complete(MESSAGES)
    assert completion.truncated and completion.text == "说到一半"


# ---- providers that cannot stream --------------------------------------------------------------

async def test_a_provider_set_not_to_stream(session, primary):
    primary.state.default = answer("不用流式的回答。")
    completion = await make_client(session, (primary, "main", {"stream": False})).complete(MESSAGES)
    assert completion.text == "不用流式的回答。" and completion.completion_tokens > 0
    body = primary.state.calls[0].body
    assert body["stream"] is False and "stream_options" not in body
    assert primary.state.calls[0].headers["Accept"] == "application/json"


@pytest.mark.parametrize("how", ["server", "behaviour"])
async def test_a_json_body_answering_a_stream_request(session, primary, how):
    if how == "server":
        primary.state.can_stream = False
        primary.state.default = answer("**JSON** 回答。")
    else:
        primary.state.default = json_answer("**JSON** 回答。")
    client = make_client(session, (primary, "main", {}))
    async with client.stream(MESSAGES) as answer_stream:
        pieces = [piece async for piece in answer_stream]
    assert pieces == ["JSON 回答。"]
    assert answer_stream.completion.text == "**JSON** 回答。"
    assert answer_stream.completion.completion_tokens > 0
    assert primary.state.calls[0].body["stream"] is True


# ---- stopping, and vision providers --------------------------------------------------------------

async def test_stopping_early_closes_the_stream_without_a_verdict(session, primary):
    primary.state.default = streamed(pieces=["第一句。", "第二句。"], gap=5.0, keepalive=True)
    client = make_client(session, (primary, "main", {"timeout": 10}))
    async with client.stream(MESSAGES) as answer_stream:
        async for piece in answer_stream:
            assert piece == "第一句。"   # let out at once, not when the next piece comes
            break
    assert answer_stream.completion is None
    assert client.breaker("main").failures == 0
    # The connection is closed: the stand-in's next keep-alive write fails.
    await asyncio.wait_for(_until(lambda: primary.state.streams_aborted == 1), 3)
    assert primary.state.streams_done == 0


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def test_cancelling_before_the_first_text_leaves_the_breaker_as_it_was(session, primary):
    primary.state.default = slow_first_token(5.0, "晚了。")
    client = make_client(session, (primary, "main", {"timeout": 10}))
    task = asyncio.create_task(client.complete(MESSAGES))
    await _until(lambda: primary.state.calls)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.breaker("main").failures == 0 and client.breaker("main").allow()


async def test_vision_uses_only_vision_providers(session, primary, backup):
    client = make_client(session, (primary, "text-only", {}), (backup, "eyes", {"vision": True}))
    completion = await client.complete(MESSAGES, vision=True)
    assert completion.provider == "eyes" and primary.state.calls == []
    text_only = make_client(session, (primary, "text-only", {}))
    with pytest.raises(NoProviderConfigured):
        await text_only.complete(MESSAGES, vision=True)


async def test_every_provider_failing_before_text_raises(session, primary, backup):
    primary.state.default = broken_stream(["x"], after=0)
    backup.state.default = slow_first_token(1.0)
    client = make_client(session, (primary, "first", {}), (backup, "second", {"timeout": 0.2}))
    with pytest.raises(AllProvidersFailed) as info:
        async with client.stream(MESSAGES) as answer_stream:
            async for _ in answer_stream:
                pass
    assert [a.outcome for a in info.value.attempts] == ["connection", "timeout"]


# ---- the event-stream decoder ------------------------------------------------------------------

def test_event_stream_decoder_lines_comments_and_multiline_data():
    decoder = EventStreamDecoder()
    raw = (b": keep-alive\r\n\r\nevent: message\rid: 7\rdata: {\"a\":\rdata: 1}\r\r"
           b"data: [DONE]\n\n")
    events = []
    for i in range(len(raw)):
        events += decoder.feed(raw[i:i + 1])
    assert events == ['{"a":\n1}', "[DONE]"]
    assert json.loads(events[0]) == {"a": 1}


def test_event_stream_decoder_without_blank_lines_and_oversize_events():
    decoder = EventStreamDecoder()
    assert decoder.feed(b'data: {"x": 1}\ndata: {"x": 2}\ndata: [DONE]\n') == ['{"x": 1}', '{"x": 2}', "[DONE]"]
    small = EventStreamDecoder(max_event_bytes=100)
    with pytest.raises(ProviderFailure) as info:
        small.feed(b"data: " + b"x" * 200)
    assert info.value.outcome == "malformed"
