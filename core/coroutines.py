"""Hook calls under a deadline without a timer for the calls that never wait.

Most hook calls of a message in memory mode (a kept route, a cached FAQ answer) finish without
ever waiting; an ``asyncio.timeout`` made for each would be much of their cost. ``bounded`` runs
such a coroutine's first step at once, in the caller's task, and sets the timer only when it
yields, continuing it exactly as ``await`` would (``resumed``).

Only within one task: a first step run in one task and continued in another would leave any
``asyncio.timeout`` entered during that step bound to the first task (``current_task`` at its
entry), which Python 3.11 offers no way to move.
"""
from __future__ import annotations

import asyncio
import types
from typing import Any


@types.coroutine
def resumed(coro: Any, step: Any) -> Any:
    """The rest of ``coro`` after a first step that yielded ``step``: what ``await coro`` would
    have done from there (each yield passed to the task, each value and exception sent back)."""
    while True:
        try:
            sent = yield step
        except BaseException as exc:  # thrown in by the task: cancellation (a deadline), closing
            try:
                step = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                step = coro.send(sent)
            except StopIteration as done:
                return done.value


async def bounded(awaitable: Any, seconds: float) -> Any:
    """``await awaitable`` in this task, cancelled after ``seconds`` (``asyncio.TimeoutError``).

    A coroutine's first step runs before any timer is set: most hook calls (a cache hit, a
    lookup) finish without waiting and need none. One that waits goes on under the deadline,
    counted from before its first step.
    """
    if type(awaitable) is not types.CoroutineType:
        async with asyncio.timeout(seconds):
            return await awaitable
    deadline = asyncio.get_running_loop().time() + seconds
    try:
        step = awaitable.send(None)
    except StopIteration as done:
        return done.value
    async with asyncio.timeout_at(deadline):
        return await resumed(awaitable, step)
