"""A local stand-in for an OpenAI-compatible chat completions server (no internet in tests).

It speaks the real wire format: ``POST /v1/chat/completions`` answers with ``id``, ``object:
"chat.completion"``, ``created``, ``model``, ``choices[{index, message{role, content},
finish_reason}]`` and ``usage``; errors come back as real providers send them (OpenAI-style JSON
error bodies, 429 with ``Retry-After``, an nginx-style HTML 502 page, broken JSON, a dropped
connection).

A request with ``"stream": true`` gets server-sent events, chunked, in the shapes OpenAI and
DashScope's compatible mode send (``data: {"object": "chat.completion.chunk", ...}`` lines, a
first chunk with the role, a last chunk with ``finish_reason``, with ``stream_options:
{"include_usage": true}`` a usage chunk with empty ``choices``, then ``data: [DONE]``), optionally
with keep-alive comments, events split across TCP writes (even inside a UTF-8 character), a slow
first token, or a connection that breaks mid-way. ``state.can_stream = False`` makes it answer
stream requests with a plain JSON body, as servers without streaming do.

Each request takes the next behaviour from ``state.script`` (a deque), or ``state.default`` when
the script is empty. ``state.delay`` adds seconds before every answer. Every request received is
kept in ``state.calls`` (JSON body and headers) so tests can check what the client sent.

    async with OpenAIStandIn() as llm:
        llm.state.script.extend([rate_limited(retry_after=7), answer("你好")])
        llm.state.delay = 3.0
        ... base_url=llm.base_url ...
        assert len(llm.state.calls) == 2

With the pytest-aiohttp fixture: ``server = await aiohttp_server(make_app())`` and
``state_of(server.app)``.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web

_ids = itertools.count(1)


@dataclass
class Behaviour:
    """How to answer one request.

    kind: "answer" (a normal completion), "error" (``status`` + ``body``), "malformed" (a 200 with
        broken JSON), "html" (``status`` with an HTML page), "empty_choices", "disconnect" (close
        the connection without answering).
    text: the answer for "answer"; None echoes the last user message (``回声：…``).
    finish_reason: "stop", "length", "content_filter"...
    delay: seconds to wait before answering (added to ``state.delay``).
    """

    kind: str = "answer"
    text: str | None = None
    finish_reason: str = "stop"
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content: Any = ...  # overrides message.content exactly (None, a list of parts...)
    # ---- streamed answers (requests with "stream": true) ----
    #: the answer's pieces, one chunk each (None: the text cut every 3 characters)
    pieces: list[str] | None = None
    #: "openai" or "dashscope": the chunk shapes and field order each sends
    flavour: str = "openai"
    #: send ": keep-alive" comments before the first token and between chunks
    keepalive: bool = False
    #: write each event in pieces of this many bytes, pausing between them (0: whole events)
    split_bytes: int = 0
    #: seconds between the response headers and the first content chunk
    first_delay: float = 0.0
    #: seconds between content chunks
    gap: float = 0.0
    #: close the connection after this many content chunks (None: finish normally)
    break_after: int | None = None
    #: what ends each event ("\n\n"; "\r\n\r\n" for CRLF servers)
    separator: str = "\n\n"
    #: raw SSE events to send after the content chunks instead of the normal ending
    tail: list[str] | None = None
    #: answer with a plain JSON body even to a stream request
    json_only: bool = False


# ---- behaviour builders --------------------------------------------------------------------------

def answer(text: str | None = None, *, finish_reason: str = "stop", delay: float = 0.0) -> Behaviour:
    return Behaviour("answer", text=text, finish_reason=finish_reason, delay=delay)


def cut(text: str = "这是一个很长的回答，说到一半") -> Behaviour:
    """An answer stopped by max_tokens (``finish_reason: "length"``)."""
    return Behaviour("answer", text=text, finish_reason="length")


def filtered() -> Behaviour:
    """The provider's moderation stopped the answer (``finish_reason: "content_filter"``)."""
    return Behaviour("answer", text="", finish_reason="content_filter")


def openai_error(status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, headers: dict[str, str] | None = None) -> Behaviour:
    """An error with OpenAI's body shape (also used by DeepSeek, DashScope compatible mode...)."""
    return Behaviour("error", status=status, headers=dict(headers or {}),
                     body={"error": {"message": message, "type": type_, "param": None, "code": code}})


def rate_limited(retry_after: str | float | None = 20, message: str = "Rate limit reached for requests") -> Behaviour:
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return openai_error(429, message, "requests", "rate_limit_exceeded", headers)


def server_error(status: int = 500) -> Behaviour:
    return openai_error(status, "The server had an error while processing your request.", "server_error")


def unauthorized() -> Behaviour:
    return openai_error(401, "Incorrect API key provided: sk-****. You can find your API key at "
                        "https://platform.openai.com/account/api-keys.", "invalid_request_error",
                        "invalid_api_key")


def dashscope_inspection_failed() -> Behaviour:
    """DashScope compatible mode refusing the input as inappropriate (HTTP 400)."""
    return openai_error(400, "Input data may contain inappropriate content.",
                        "data_inspection_failed", "data_inspection_failed")


def ollama_error(status: int = 404, message: str = "model \"qwen2.5\" not found, try pulling it first") -> Behaviour:
    """Ollama's error shape: ``{"error": "text"}``."""
    return Behaviour("error", status=status, body={"error": message})


def html_502() -> Behaviour:
    return Behaviour("html", status=502, body=(
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"))


def malformed() -> Behaviour:
    return Behaviour("malformed")


def empty_choices() -> Behaviour:
    return Behaviour("empty_choices")


def disconnect() -> Behaviour:
    return Behaviour("disconnect")


def slow(seconds: float, text: str | None = None) -> Behaviour:
    """No response at all (not even headers) for ``seconds``."""
    return Behaviour("answer", text=text, delay=seconds)


def streamed(text: str | None = None, *, pieces: list[str] | None = None, **options: Any) -> Behaviour:
    """A streamed answer; ``options`` are ``Behaviour`` fields (flavour, keepalive, gap...)."""
    if pieces is not None and text is None:
        text = "".join(pieces)
    return Behaviour("answer", text=text, pieces=pieces, **options)


def broken_stream(pieces: list[str], after: int | None = None, **options: Any) -> Behaviour:
    """A stream whose connection drops after ``after`` chunks (default: all ``pieces``)."""
    return streamed(pieces=pieces, break_after=len(pieces) if after is None else after, **options)


def slow_first_token(seconds: float, text: str | None = None, **options: Any) -> Behaviour:
    """Headers at once, then nothing for ``seconds`` (keep-alive comments if asked), then text."""
    return streamed(text, first_delay=seconds, **options)


def json_answer(text: str | None = None) -> Behaviour:
    """A plain ``chat.completion`` JSON body even when a stream was asked for."""
    return Behaviour("answer", text=text, json_only=True)


# ---- the server ----------------------------------------------------------------------------------

@dataclass
class Call:
    """One request as received."""

    body: Any
    headers: dict[str, str]
    path: str
    at: float = field(default_factory=time.monotonic)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", []) if isinstance(self.body, dict) else []


@dataclass
class StandInState:
    model: str = "stand-in-model"
    #: Seconds to wait before every answer (on top of a behaviour's own delay).
    delay: float = 0.0
    script: deque = field(default_factory=deque)
    default: Behaviour = field(default_factory=answer)
    calls: list[Call] = field(default_factory=list)
    #: If set, requests without ``Authorization: Bearer <api_key>`` get a 401.
    api_key: str | None = None
    #: Makes the answer text for "answer" behaviours with ``text=None``.
    responder: Callable[[list[dict[str, Any]]], str] | None = None
    #: /v1/embeddings: the inputs of every request, and what the next requests do (HTTP status
    #: codes to answer with instead of vectors; empty = answer).
    embedding_calls: list[list[str]] = field(default_factory=list)
    embedding_script: deque = field(default_factory=deque)
    #: False: answer stream requests with a plain JSON body (a server that cannot stream).
    can_stream: bool = True
    #: Streams sent to the end (``data: [DONE]`` written).
    streams_done: int = 0
    #: Streams whose client went away while they were being written.
    streams_aborted: int = 0

    @property
    def call_count(self) -> int:
        return len(self.calls)

    def next_behaviour(self) -> Behaviour:
        return self.script.popleft() if self.script else self.default


STATE = web.AppKey("state", StandInState)


def state_of(app: web.Application) -> StandInState:
    return app[STATE]


def _echo(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content", "")
            if isinstance(content, list):  # text and image parts
                content = "".join(part.get("text", "") for part in content
                                  if isinstance(part, dict) and part.get("type") == "text")
            return f"回声：{content}"
    return "回声："


def _chunk(flavour: str, chunk_id: str, model: str, created: int, delta: dict[str, Any] | None,
           finish_reason: str | None, usage: Any = ..., include_usage: bool = False) -> dict[str, Any]:
    """One ``chat.completion.chunk`` as OpenAI or DashScope's compatible mode sends it."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": finish_reason}]
    if flavour == "dashscope":
        if choices:
            choices = [{"delta": delta, "finish_reason": finish_reason, "index": 0, "logprobs": None}]
        data = {"choices": choices, "object": "chat.completion.chunk",
                "usage": None if usage is ... else usage, "created": created,
                "system_fingerprint": None, "model": model, "id": chunk_id}
        if not include_usage:
            data.pop("usage")
        return data
    data = {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_standin", "choices": choices}
    if include_usage:
        data["usage"] = None if usage is ... else usage
    return data


async def _stream(request: web.Request, state: StandInState, behaviour: Behaviour, model: str,
                  text: str, messages: list[dict[str, Any]], include_usage: bool) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    chunk_id = f"chatcmpl-standin{next(_ids):06d}"
    created = int(time.time())
    flavour = behaviour.flavour

    async def send(event: str) -> None:
        raw = event.encode("utf-8")
        size = behaviour.split_bytes if behaviour.split_bytes > 0 else len(raw)
        try:
            for i in range(0, len(raw), size):
                if i:
                    await asyncio.sleep(0.002)
                await response.write(raw[i:i + size])
        except ConnectionResetError:
            state.streams_aborted += 1
            raise

    def data(payload: dict[str, Any]) -> str:
        return "data: " + json.dumps(payload, ensure_ascii=False) + behaviour.separator

    async def wait(seconds: float) -> None:
        if seconds <= 0:
            return
        if not behaviour.keepalive:
            await asyncio.sleep(seconds)
            return
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(0.05, left))
            await send(": keep-alive" + behaviour.separator)

    if behaviour.keepalive:
        await send(": keep-alive" + behaviour.separator)
    first = {"role": "assistant", "content": ""}
    if flavour == "dashscope":
        first = {"content": "", "role": "assistant"}
    await send(data(_chunk(flavour, chunk_id, model, created, first, None,
                           include_usage=include_usage)))
    await wait(behaviour.first_delay)
    if behaviour.content is not ...:
        pieces: list[Any] = [behaviour.content]
    elif behaviour.pieces is not None:
        pieces = list(behaviour.pieces)
    else:
        pieces = [text[i:i + 3] for i in range(0, len(text), 3)]
    for n, piece in enumerate(pieces):
        if behaviour.break_after is not None and n >= behaviour.break_after:
            break
        if n:
            await wait(behaviour.gap)
        await send(data(_chunk(flavour, chunk_id, model, created, {"content": piece}, None,
                               include_usage=include_usage)))
    if behaviour.break_after is not None:
        await asyncio.sleep(0.01)
        if request.transport is not None:
            request.transport.close()
        raise asyncio.CancelledError()
    if behaviour.tail is not None:
        for event in behaviour.tail:
            await send(event)
        await response.write_eof()
        return response
    last = {} if flavour == "openai" else {"content": ""}
    await send(data(_chunk(flavour, chunk_id, model, created, last, behaviour.finish_reason,
                           include_usage=include_usage)))
    if include_usage:
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(text),
                 "total_tokens": prompt_tokens + len(text)}
        await send(data(_chunk(flavour, chunk_id, model, created, None, None, usage,
                               include_usage=True)))
    await send("data: [DONE]" + behaviour.separator)
    state.streams_done += 1
    await response.write_eof()
    return response


def _completion(state: StandInState, model: str, text: str, finish_reason: str,
                messages: list[dict[str, Any]], content: Any = ...) -> dict[str, Any]:
    prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages)
    message: dict[str, Any] = {"role": "assistant", "content": text if content is ... else content}
    return {
        "id": f"chatcmpl-standin{next(_ids):06d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model or state.model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text),
                  "total_tokens": prompt_tokens + len(text)},
        "system_fingerprint": "fp_standin",
    }


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    state.calls.append(Call(body, dict(request.headers), request.path))
    if state.api_key is not None and request.headers.get("Authorization") != f"Bearer {state.api_key}":
        return web.json_response({"error": {"message": "Incorrect API key provided.",
                                            "type": "invalid_request_error", "param": None,
                                            "code": "invalid_api_key"}}, status=401)
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return web.json_response({"error": {"message": "'messages' is a required property",
                                            "type": "invalid_request_error", "param": "messages",
                                            "code": None}}, status=400)
    behaviour = state.next_behaviour()
    delay = state.delay + behaviour.delay
    if delay > 0:
        await asyncio.sleep(delay)
    messages = body["messages"]
    model = body.get("model") or state.model
    if behaviour.kind == "answer":
        if behaviour.text is not None:
            text = behaviour.text
        else:
            text = (state.responder or _echo)(messages)
        if body.get("stream") is True and state.can_stream and not behaviour.json_only:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            return await _stream(request, state, behaviour, model, text, messages, include_usage)
        return web.json_response(_completion(state, model, text, behaviour.finish_reason,
                                             messages, behaviour.content))
    if behaviour.kind == "error":
        return web.json_response(behaviour.body, status=behaviour.status, headers=behaviour.headers)
    if behaviour.kind == "html":
        return web.Response(text=behaviour.body, status=behaviour.status, content_type="text/html",
                            headers=behaviour.headers)
    if behaviour.kind == "malformed":
        return web.Response(text='{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"ind',
                            content_type="application/json")
    if behaviour.kind == "empty_choices":
        data = _completion(state, model, "", "stop", messages)
        data["choices"] = []
        return web.json_response(data)
    if behaviour.kind == "disconnect":
        if request.transport is not None:
            request.transport.close()
        raise asyncio.CancelledError()
    raise AssertionError(f"unknown stand-in behaviour {behaviour.kind!r}")


EMBEDDING_DIM = 64


def hashed_embedding(text: str) -> list[float]:
    """A deterministic stand-in embedding: character bigrams hashed into 64 buckets.

    Texts sharing characters get similar vectors, which is all the tests of providers, failover
    and caches need (the real model is tested through the local provider).
    """
    import zlib

    vector = [0.0] * EMBEDDING_DIM
    grams = [text[i:i + 2] for i in range(max(1, len(text) - 1))]
    for gram in grams:
        vector[zlib.crc32(gram.encode()) % EMBEDDING_DIM] += 1.0
    return vector


async def _embeddings(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        body = json.loads(await request.read())
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("input"), (list, str)):
        return web.json_response({"error": {"message": "'input' is a required property"}}, status=400)
    inputs = [body["input"]] if isinstance(body["input"], str) else list(body["input"])
    state.embedding_calls.append(inputs)
    if state.embedding_script:
        status = state.embedding_script.popleft()
        if isinstance(status, (int, float)) and status < 100:  # a delay in seconds, then answer
            await asyncio.sleep(status)
        else:
            return web.json_response({"error": {"message": "stand-in failure"}}, status=int(status))
    data = [{"object": "embedding", "index": i, "embedding": hashed_embedding(t)}
            for i, t in enumerate(inputs)]
    return web.json_response({"object": "list", "data": data, "model": body.get("model") or state.model,
                              "usage": {"prompt_tokens": 0, "total_tokens": 0}})


async def _models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"object": "list", "data": [
        {"id": state.model, "object": "model", "created": 0, "owned_by": "standin"}]})


def make_app(state: StandInState | None = None) -> web.Application:
    """The stand-in as an ``aiohttp.web.Application`` (state at ``app[STATE]``)."""
    app = web.Application()
    app[STATE] = state or StandInState()
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/embeddings", _embeddings)
    return app


class OpenAIStandIn:
    """Run the stand-in on 127.0.0.1 (a free port) for the length of an ``async with`` block."""

    def __init__(self, state: StandInState | None = None) -> None:
        self.app = make_app(state)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def state(self) -> StandInState:
        return self.app[STATE]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def user_texts(self) -> list[str]:
        """The user text of every request received (one per model call), in order."""
        return [call.messages[-1]["content"] for call in self.state.calls]

    def provider(self, name: str = "standin", **overrides: Any) -> dict[str, Any]:
        """A ``[[plugins.llm.providers]]`` table pointing at this server."""
        table: dict[str, Any] = {"name": name, "base_url": self.base_url, "model": "standin-chat",
                                 "api_key_env": "", "timeout": 5.0}
        table.update(overrides)
        return table

    async def start(self) -> "OpenAIStandIn":
        self._runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "OpenAIStandIn":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
