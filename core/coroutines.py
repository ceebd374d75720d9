"""Coroutines stepped by hand: a first step in the caller's task, a task or a timer only for
one that waits.

Most of what a message does in memory mode (a kept route, a cached FAQ answer, the answer
records) finishes without ever waiting; a task or an ``asyncio.timeout`` made for it would be
most of its cost. ``started`` and ``bounded`` run such a coroutine's first step at once and set
up the task or the timer only when it yields, continuing it exactly as ``await`` would
(``resumed``).
"""
from __future__ import annotations

import asyncio
import contextvars
import types
from typing import Any, Coroutine


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


async def _rest(coro: Any, step: Any) -> Any:
    return await resumed(coro, step)


def started(coro: Coroutine[Any, Any, Any]) -> tuple[bool, Any]:
    """Run ``coro`` until it first waits, in a copy of the current context (as a new task would).

    ``(True, value)`` when it finished (an exception it raised is raised here), else
    ``(False, (rest, context))``: ``rest`` continues it, to be run in ``context`` (``start_task``).
    """
    context = contextvars.copy_context()
    try:
        step = context.run(coro.send, None)
    except StopIteration as done:
        return True, done.value
    return False, (_rest(coro, step), context)


def start_task(coro: Coroutine[Any, Any, Any]) -> tuple[asyncio.Task | None, Any]:
    """``coro`` started now in this task (``started``); a task continues it only if it waits.
    Returns ``(None, value)`` when it finished at once, else ``(task, None)``."""
    done, value = started(coro)
    if done:
        return None, value
    rest, context = value
    return asyncio.get_running_loop().create_task(rest, context=context), None


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
