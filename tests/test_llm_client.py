"""LLMClient against local OpenAI-compatible stand-ins: answers, every error shape, failover,
circuit breakers (with an injected clock), 429 Retry-After, timeouts and cancellation."""
from __future__ import annotations

import asyncio
import email.utils
import logging
import time

import aiohttp
import pytest

from plugins.llm.client import (
    AllProvidersFailed,
    CircuitBreaker,
    LLMClient,
    NoProviderConfigured,
    describe_error_body,
    parse_retry_after,
)
from plugins.llm.config import ProviderConfig
from tests.standins.openai_server import (
    Behaviour,
    OpenAIStandIn,
    answer,
    cut,
    dashscope_inspection_failed,
    disconnect,
    empty_choices,
    filtered,
    html_502,
    malformed,
    ollama_error,
    openai_error,
    rate_limited,
    server_error,
    slow,
    unauthorized,
)

MESSAGES = [{"role": "system", "content": "你是助手。"}, {"role": "user", "content": "你好"}]


class Clock:
    """A hand-driven monotonic clock for the circuit breakers."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
        server.state.default = answer("来自备用服务的回答")
        yield server


def provider(server: OpenAIStandIn, name: str, **overrides) -> ProviderConfig:
    return ProviderConfig.from_table(server.provider(name, **overrides), 0)


def make_client(session, *servers_and_names, clock=None, environ=None, **kw) -> LLMClient:
    providers = [provider(s, n, **o) for s, n, o in servers_and_names]
    return LLMClient(providers, session, clock=clock or Clock(), environ=environ or {}, **kw)


# ---- a normal answer ---------------------------------------------------------------------------

async def test_answer_with_usage_and_the_real_request_shape(session, primary):
    primary.state.default = answer("你好！有什么可以帮你？")
    client = make_client(session, (primary, "main", {"api_key_env": "STANDIN_KEY", "temperature": 0.3,
                                                     "max_tokens": 256}),
                         environ={"STANDIN_KEY": "sk-test-123"})
    completion = await client.complete(MESSAGES)
    assert completion.text == "你好！有什么可以帮你？"
    assert completion.finish_reason == "stop" and not completion.truncated
    assert completion.provider == "main" and completion.model == "standin-chat"
    assert completion.completion_tokens == len("你好！有什么可以帮你？")
    assert completion.prompt_tokens > 0 and completion.total_tokens > completion.prompt_tokens
    assert [(a.provider, a.outcome) for a in completion.attempts] == [("main", "ok")]
    call = primary.state.calls[0]
    assert call.path == "/v1/chat/completions"
    assert call.body == {"model": "standin-chat", "messages": MESSAGES, "stream": True,
                         "stream_options": {"include_usage": True},
                         "temperature": 0.3, "max_tokens": 256}
    assert call.headers["Authorization"] == "Bearer sk-test-123"
    assert call.headers["Accept"] == "text/event-stream"
    assert completion.metrics()["provider"] == "main"


async def test_no_key_env_sends_no_authorization_and_extra_body_is_merged(session, primary):
    client = make_client(session, (primary, "local", {"max_tokens": 0,
                                                      "extra_body": {"enable_thinking": False}}))
    await client.complete(MESSAGES)
    call = primary.state.calls[0]
    assert "Authorization" not in call.headers
    assert "max_tokens" not in call.body
    assert call.body["enable_thinking"] is False


async def test_reasoning_blocks_and_content_parts(session, primary):
    primary.state.script.extend([
        answer("<think>用户在打招呼。</think>\n\n你好！"),
        Behaviour("answer", text="x", content=[{"type": "text", "text": "第一段"},
                                               {"type": "text", "text": "第二段"}]),
    ])
    client = make_client(session, (primary, "main", {}))
    assert (await client.complete(MESSAGES)).text == "你好！"
    assert (await client.complete(MESSAGES)).text == "第一段第二段"


async def test_cut_answer_is_returned_as_truncated(session, primary):
    primary.state.script.append(cut("很长的回答说到一半"))
    completion = await make_client(session, (primary, "main", {})).complete(MESSAGES)
    assert completion.truncated and completion.text == "很长的回答说到一半"


# ---- no provider ----------------------------------------------------------------------------------

async def test_no_provider_configured(session):
    client = LLMClient([], session)
    assert not client.configured
    with pytest.raises(NoProviderConfigured):
        await client.complete(MESSAGES)


async def test_a_provider_without_its_key_is_disabled(session, primary):
    client = make_client(session, (primary, "cloud", {"api_key_env": "MISSING_KEY"}), environ={})
    assert client.disabled == {"cloud": "environment variable MISSING_KEY is not set"}
    with pytest.raises(NoProviderConfigured):
        await client.complete(MESSAGES)
    assert primary.state.calls == []


# ---- failover on every error shape ----------------------------------------------------------------

@pytest.mark.parametrize("behaviour, outcome, status", [
    (server_error(500), "server_error", 500),
    (server_error(503), "server_error", 503),
    (html_502(), "server_error", 502),
    (malformed(), "malformed", 200),
    (empty_choices(), "empty", 200),
    (answer(""), "empty", 200),
    (Behaviour("answer", text="", finish_reason="length"), "empty", 200),
    (answer("<think>想了很久"), "empty", 200),
    (Behaviour("answer", content=None), "empty", 200),
    (Behaviour("answer", content=42), "malformed", 200),
    (Behaviour("error", status=200, body={"error": {"message": "Internal error", "code": "500"}}),
     "server_error", 200),
    (rate_limited(retry_after=None), "rate_limited", 429),
    (unauthorized(), "client_error", 401),
    (openai_error(400, "This model's maximum context length is 8192 tokens.",
                  code="context_length_exceeded"), "client_error", 400),
    (ollama_error(), "client_error", 404),
    (disconnect(), "connection", None),
    (slow(2.0), "timeout", None),
], ids=lambda v: v if isinstance(v, (str, int)) or v is None else getattr(v, "kind", "b"))
async def test_failover_to_the_next_provider(session, primary, backup, behaviour, outcome, status):
    primary.state.script.append(behaviour)
    client = make_client(session, (primary, "first", {"timeout": 0.3}), (backup, "second", {}))
    completion = await client.complete(MESSAGES)
    assert completion.text == "来自备用服务的回答"
    assert completion.provider == "second"
    first = completion.attempts[0]
    assert (first.provider, first.outcome, first.status) == ("first", outcome, status)
    assert completion.attempts[1].outcome == "ok"
    assert len(primary.state.calls) == 1 and len(backup.state.calls) == 1
    assert client.breaker("first").failures == 1
    assert client.breaker("second").failures == 0


async def test_client_errors_are_logged_as_configuration_errors(session, primary, backup, caplog):
    primary.state.script.append(unauthorized())
    client = make_client(session, (primary, "first", {}), (backup, "second", {}))
    with caplog.at_level(logging.WARNING, logger="skillbot.llm"):
        await client.complete(MESSAGES)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "check its base_url, model and API key" in errors[0].getMessage()
    assert "invalid_api_key" in errors[0].getMessage()


async def test_the_api_key_never_reaches_the_log(session, primary, caplog):
    primary.state.default = unauthorized()
    client = make_client(session, (primary, "only", {"api_key_env": "K"}), environ={"K": "sk-secret-999"})
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(AllProvidersFailed):
            await client.complete(MESSAGES)
    assert "sk-secret-999" not in caplog.text


async def test_all_providers_failing_raises_with_every_attempt(session, primary, backup):
    primary.state.default = server_error(500)
    backup.state.default = html_502()
    client = make_client(session, (primary, "first", {}), (backup, "second", {}))
    with pytest.raises(AllProvidersFailed) as info:
        await client.complete(MESSAGES)
    assert [(a.provider, a.outcome, a.status) for a in info.value.attempts] == [
        ("first", "server_error", 500), ("second", "server_error", 502)]
    assert "502 Bad Gateway" in info.value.attempts[1].detail


# ---- content filter: a refusal, not a failure -------------------------------------------------------

async def test_content_filter_finish_reason_does_not_fail_over(session, primary, backup):
    primary.state.script.append(filtered())
    client = make_client(session, (primary, "first", {}), (backup, "second", {}))
    completion = await client.complete(MESSAGES)
    assert completion.filtered and completion.text == "" and completion.provider == "first"
    assert backup.state.calls == []
    assert client.breaker("first").failures == 0


async def test_provider_moderation_errors_count_as_content_filter(session, primary, backup):
    primary.state.script.extend([
        dashscope_inspection_failed(),
        openai_error(400, "The request was rejected because it was considered high risk", "content_filter"),
        openai_error(400, "系统检测到输入或生成内容可能包含不安全或敏感内容", "", "1301"),
    ])
    client = make_client(session, (primary, "first", {}), (backup, "second", {}))
    for _ in range(3):
        completion = await client.complete(MESSAGES)
        assert completion.filtered and completion.provider == "first"
    assert backup.state.calls == []


# ---- circuit breaker --------------------------------------------------------------------------------

async def test_breaker_skips_a_dead_provider_then_tries_it_half_open(session, primary, backup):
    clock = Clock()
    primary.state.default = server_error(500)
    client = make_client(session, (primary, "first", {}), (backup, "second", {}), clock=clock,
                         breaker_failures=3, breaker_reset_seconds=30)
    for _ in range(3):
        assert (await client.complete(MESSAGES)).provider == "second"
    assert client.breaker("first").state == "open"
    # Open: the dead provider is not even asked.
    for _ in range(4):
        completion = await client.complete(MESSAGES)
        assert completion.attempts[0].outcome == "skipped"
    assert len(primary.state.calls) == 3
    # Still open just before the reset time.
    clock.advance(29.9)
    await client.complete(MESSAGES)
    assert len(primary.state.calls) == 3
    # Half-open: one trial. It fails: open again for another reset period.
    clock.advance(0.2)
    await client.complete(MESSAGES)
    assert len(primary.state.calls) == 4
    assert client.breaker("first").state == "open"
    await client.complete(MESSAGES)
    assert len(primary.state.calls) == 4
    # The provider recovers; after the next reset period the trial succeeds and closes it.
    primary.state.default = answer("我回来了")
    clock.advance(30)
    completion = await client.complete(MESSAGES)
    assert completion.provider == "first" and completion.text == "我回来了"
    assert client.breaker("first").state == "closed" and client.breaker("first").failures == 0


async def test_a_success_resets_the_consecutive_failure_count(session, primary, backup):
    primary.state.script.extend([server_error(), server_error(), answer("好"), server_error(),
                                 server_error()])
    client = make_client(session, (primary, "first", {}), (backup, "second", {}),
                         breaker_failures=3)
    for _ in range(5):
        await client.complete(MESSAGES)
    assert client.breaker("first").state == "closed"
    assert client.breaker("first").failures == 2


async def test_half_open_lets_only_one_trial_through():
    clock = Clock()
    breaker = CircuitBreaker(failures=1, reset_seconds=10, clock=clock)
    breaker.failure()
    assert not breaker.allow()
    clock.advance(10)
    assert breaker.allow()          # the trial
    assert not breaker.allow()      # a concurrent request while the trial runs
    breaker.release()               # the trial was cancelled: no verdict
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


async def test_all_breakers_open_fails_fast_without_requests(session, primary):
    clock = Clock()
    primary.state.default = server_error(500)
    client = make_client(session, (primary, "only", {}), clock=clock, breaker_failures=1)
    with pytest.raises(AllProvidersFailed):
        await client.complete(MESSAGES)
    with pytest.raises(AllProvidersFailed) as info:
        await client.complete(MESSAGES)
    assert [a.outcome for a in info.value.attempts] == ["skipped"]
    assert len(primary.state.calls) == 1


# ---- 429 Retry-After ------------------------------------------------------------------------------

async def test_429_retry_after_skips_the_provider_for_that_long(session, primary, backup):
    clock = Clock()
    primary.state.script.append(rate_limited(retry_after=7))
    client = make_client(session, (primary, "first", {}), (backup, "second", {}), clock=clock,
                         breaker_failures=3, breaker_reset_seconds=30)
    completion = await client.complete(MESSAGES)
    assert completion.provider == "second"
    assert completion.attempts[0].outcome == "rate_limited"
    assert client.breaker("first").state == "open"
    clock.advance(6.5)
    assert (await client.complete(MESSAGES)).attempts[0].outcome == "skipped"
    clock.advance(1.0)
    completion = await client.complete(MESSAGES)
    assert completion.provider == "first"
    assert len(primary.state.calls) == 2


async def test_retry_after_is_capped(session, primary, backup):
    clock = Clock()
    primary.state.script.append(rate_limited(retry_after=86400))
    client = make_client(session, (primary, "first", {}), (backup, "second", {}), clock=clock,
                         max_retry_after=60)
    await client.complete(MESSAGES)
    assert client.breaker("first").retry_in == pytest.approx(60)


def test_parse_retry_after_forms():
    assert parse_retry_after({"Retry-After": "12"}) == 12
    assert parse_retry_after({"Retry-After": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    assert parse_retry_after({}) is None
    assert parse_retry_after({"Retry-After": "soon"}) is None
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=lambda: 1_000_000) == pytest.approx(30)
    assert parse_retry_after({"Retry-After": "-5"}) == 0


# ---- timeouts, deadlines and cancellation ----------------------------------------------------------

async def test_overall_deadline_stops_without_blaming_the_provider(session, primary, backup):
    primary.state.delay = 2.0
    client = make_client(session, (primary, "first", {"timeout": 10}), (backup, "second", {}))
    with pytest.raises(AllProvidersFailed) as info:
        await client.complete(MESSAGES, timeout=0.3)
    outcomes = [(a.provider, a.outcome) for a in info.value.attempts]
    assert outcomes[0] == ("first", "timeout")
    assert ("second", "deadline") in outcomes or len(outcomes) == 1
    assert backup.state.calls == []
    assert client.breaker("first").failures == 0


async def test_a_deadline_already_past_tries_nobody(session, primary):
    client = make_client(session, (primary, "first", {}))
    with pytest.raises(AllProvidersFailed) as info:
        await client.complete(MESSAGES, deadline=time.monotonic() - 1)
    assert [a.outcome for a in info.value.attempts] == ["deadline"]
    assert primary.state.calls == []
    assert client.breaker("first").allow()


async def test_cancellation_propagates_and_releases_a_half_open_trial(session, primary):
    clock = Clock()
    client = make_client(session, (primary, "first", {}), clock=clock, breaker_failures=1)
    primary.state.script.append(server_error())
    with pytest.raises(AllProvidersFailed):
        await client.complete(MESSAGES)
    clock.advance(31)
    primary.state.delay = 5.0
    task = asyncio.create_task(client.complete(MESSAGES))
    while not primary.state.calls[1:]:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    breaker = client.breaker("first")
    assert breaker.state == "half_open"
    assert breaker.allow()  # the cancelled trial did not keep the provider locked


async def test_wait_for_timeout_around_complete_cancels_cleanly(session, primary):
    primary.state.delay = 5.0
    client = make_client(session, (primary, "first", {}))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.complete(MESSAGES), 0.2)
    assert client.breaker("first").failures == 0


# ---- error body descriptions ------------------------------------------------------------------------

def test_describe_error_bodies():
    text, codes = describe_error_body(
        b'{"error": {"message": "Incorrect API key", "type": "invalid_request_error", '
        b'"param": null, "code": "invalid_api_key"}}')
    assert text == "invalid_request_error invalid_api_key Incorrect API key"
    assert codes == {"invalid_request_error", "invalid_api_key"}
    assert describe_error_body(b'{"error": "model not found"}') == ("model not found", set())
    text, codes = describe_error_body(
        b'{"object": "error", "message": "The model `x` does not exist.", "type": "NotFoundError", '
        b'"param": null, "code": 404}')
    assert text.endswith("The model `x` does not exist.") and "404" in codes
    assert describe_error_body(b'{"detail": "Not Found"}')[0] == "Not Found"
    assert describe_error_body(b"<html><head><title>502 Bad Gateway</title></head></html>")[0] == \
        "502 Bad Gateway"
    assert describe_error_body(b"upstream connect error")[0] == "upstream connect error"
    assert "empty body" in describe_error_body(b"", "text/plain")[0]
