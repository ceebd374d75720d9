"""The model's answer from the passages, read as it is written.

The model is the one the llm plugin is configured with, asked through ``skillbot_stream_model``
(its providers, failover and circuit breakers; the pieces come as WeChat plain text). This module
reads the head of the answer, where the model says whether the passages answer the question,
and hands the rest on unchanged.
"""
from __future__ import annotations

import contextlib
from typing import AsyncIterator, Callable

#: Characters of the answer read before deciding whether it says the passages do not answer
#: (the first sentence, and the next one too when the first is a short opening like "您好！").
HEAD_CHARS = 20


async def read_head(pieces: AsyncIterator[str], chars: int = HEAD_CHARS) -> list[str]:
    """The first pieces of an answer, until they hold ``chars`` characters of text or the answer
    ends; [] when it ends with no text (no provider answered in time)."""
    head: list[str] = []
    while sum(len(p.strip()) for p in head) < chars:
        try:
            piece = await anext(pieces)
        except StopAsyncIteration:
            break
        head.append(piece)
    return head if any(p.strip() for p in head) else []


async def with_source(head: list[str], pieces: AsyncIterator[str],
                      source_line: Callable[[str], str]) -> AsyncIterator[str]:
    """The whole answer (``head``, then the rest of ``pieces``), then ``source_line(answer)`` on a
    line of its own when it is not empty."""
    written = "".join(head)
    async with contextlib.aclosing(pieces) as rest:  # type: ignore[type-var]  # closed even if left early
        for piece in head:
            yield piece
        async for piece in rest:
            written += piece
            yield piece
    line = source_line(written)
    if line:
        yield ("" if written.endswith("\n") else "\n") + line
