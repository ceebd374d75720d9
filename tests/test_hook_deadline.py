"""Hook calls under their time budget (core/processing/plugin_manager.py, ``bounded``): a call
that finishes without waiting gets no timer; one that waits is cut off at the deadline."""
import asyncio

import pytest

from core.coroutines import bounded


async def test_a_coroutine_that_never_waits_gives_its_value():
    async def at_once():
        return "value"

    assert await bounded(at_once(), 0.5) == "value"


async def test_a_coroutine_that_waits_gets_every_value_it_waits_for():
    async def waits():
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        loop.call_soon(future.set_result, 41)
        got = await future
        await asyncio.sleep(0)
        return got + 1

    assert await bounded(waits(), 1.0) == 42


async def test_a_coroutine_past_its_deadline_is_cancelled_and_cleans_up():
    cleaned = []

    async def slow():
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.append(True)

    with pytest.raises(asyncio.TimeoutError):
        await bounded(slow(), 0.05)
    assert cleaned == [True]


async def test_the_deadline_counts_from_before_the_first_step():
    async def busy_then_wait():
        loop = asyncio.get_running_loop()
        end = loop.time() + 0.08
        while loop.time() < end:  # a first step that takes most of the budget
            pass
        await asyncio.sleep(0.08)
        return "late"

    with pytest.raises(asyncio.TimeoutError):
        await bounded(busy_then_wait(), 0.1)


async def test_exceptions_come_out_as_they_were_raised():
    async def fails_at_once():
        raise ValueError("at once")

    async def fails_later():
        await asyncio.sleep(0)
        raise KeyError("later")

    with pytest.raises(ValueError, match="at once"):
        await bounded(fails_at_once(), 1.0)
    with pytest.raises(KeyError):
        await bounded(fails_later(), 1.0)


async def test_a_caught_cancellation_inside_is_passed_on_to_the_coroutine():
    async def catches():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0)
            raise

    task = asyncio.ensure_future(bounded(catches(), 5.0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_other_awaitables_are_awaited_under_the_deadline():
    future = asyncio.get_running_loop().create_future()
    with pytest.raises(asyncio.TimeoutError):
        await bounded(future, 0.02)


# ---- bounded against what it replaced: ``async with asyncio.timeout(s): await x`` -------------

async def _plain_await(awaitable, seconds):
    async with asyncio.timeout(seconds):
        return await awaitable


async def _outcome(runner, make, cancel_after_steps=None, message=None):
    """Run ``runner(make(), 5.0)`` in a task, cancel it after ``cancel_after_steps`` loop turns
    (None: never); what came out: ("value", v) or ("raised", type, args), and the task's cancelling()."""
    seen = {}

    async def body():
        error = None
        try:
            seen["result"] = ("value", await runner(make(), 5.0))
        except BaseException as exc:  # noqa: BLE001 (compared, then re-raised below)
            seen["result"], error = ("raised", type(exc), exc.args), exc
        seen["cancelling"] = asyncio.current_task().cancelling()
        try:
            await asyncio.sleep(0)  # whether a cancellation is still pending for the task
            seen["after"] = "clean"
        except asyncio.CancelledError:
            seen["after"] = "cancelled"
        if error is not None:
            raise error

    task = asyncio.ensure_future(body())
    if cancel_after_steps is not None:
        for _ in range(cancel_after_steps):
            await asyncio.sleep(0)
        task.cancel(message)
    try:
        await task
    except BaseException:  # noqa: BLE001
        pass
    return seen


def _first_step_waits_then(ending):
    """A coroutine whose first step waits on a future nobody resolves; cancelled there, it ends as ``ending`` says."""
    async def hook():
        future = asyncio.get_running_loop().create_future()
        try:
            await future
        except asyncio.CancelledError:
            if ending == "reraise":
                raise
            if ending == "swallow":
                return "swallowed"
            if ending == "wait_then_return":
                await asyncio.sleep(0)
                return "after a wait"
            if ending == "other_error":
                raise ValueError("while cancelled") from None
        return "never"
    return hook


@pytest.mark.parametrize("ending", ["reraise", "swallow", "wait_then_return", "other_error"])
@pytest.mark.parametrize("message", [None, "why"])
async def test_a_cancellation_during_the_first_steps_wait_ends_as_a_plain_await_would(ending, message):
    """Cancelled while its first step waits (the task's cancel, not the deadline): the hook sees
    the cancellation and what it does with it comes out exactly as under ``asyncio.timeout`` +
    ``await``: same value or exception (message kept), same ``cancelling()``, no stray cancel after."""
    make = _first_step_waits_then(ending)
    expected = await _outcome(_plain_await, make, cancel_after_steps=2, message=message)
    assert await _outcome(bounded, make, cancel_after_steps=2, message=message) == expected
    assert expected["result"][0] == ("value" if ending in ("swallow", "wait_then_return") else "raised")


async def test_a_hook_that_raises_in_its_first_step_comes_out_as_under_await():
    async def fails_at_once():
        raise RuntimeError("first step")

    async def raises_stop_iteration():  # PEP 479: a RuntimeError, as under await
        raise StopIteration

    for make in (fails_at_once, raises_stop_iteration):
        expected = await _outcome(_plain_await, make)
        assert await _outcome(bounded, make) == expected
        assert expected["result"][1] is RuntimeError and expected["after"] == "clean"


class _Awaitable:
    """Not a coroutine: an object whose ``__await__`` waits on a future, as some libraries' handles do."""

    def __init__(self, value, wait=True):
        self.value, self.wait = value, wait

    def __await__(self):
        if self.wait:
            future = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(future.set_result, None)
            yield from future.__await__()
        return self.value


@pytest.mark.parametrize("kind", ["custom", "custom_no_wait", "generator_coroutine", "future", "task"])
async def test_awaitables_that_are_not_coroutines_give_their_values(kind):
    import types

    @types.coroutine
    def generator_based():
        yield None
        return "gen"

    async def in_a_task():
        await asyncio.sleep(0)
        return "task"

    def make():
        if kind == "custom":
            return _Awaitable("custom")
        if kind == "custom_no_wait":
            return _Awaitable("now", wait=False)
        if kind == "generator_coroutine":
            return generator_based()
        if kind == "task":
            return asyncio.ensure_future(in_a_task())
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, "future")
        return future

    assert await _outcome(bounded, make) == await _outcome(_plain_await, make)
    assert (await _outcome(bounded, make))["result"][0] == "value"


async def test_a_custom_awaitable_that_never_ends_is_cut_off_at_the_deadline():
    class Forever:
        def __await__(self):
            yield from asyncio.get_running_loop().create_future().__await__()

    with pytest.raises(asyncio.TimeoutError):
        await bounded(Forever(), 0.02)


async def test_an_async_generator_is_refused_as_await_refuses_it():
    async def stream():
        yield "piece"

    with pytest.raises(TypeError):
        await _plain_await(stream(), 1.0)
    agen = stream()
    with pytest.raises(TypeError):
        await bounded(agen, 1.0)
    assert [p async for p in agen] == ["piece"]  # untouched: still iterable from the start


async def test_a_plugin_returning_an_async_generator_gets_it_back_unawaited(caplog):
    """skillbot_stream_model returns an async iterator: the hook caller hands it back as it is
    (not awaited, nothing logged), for the caller to iterate under its own limits."""
    import logging

    import pluggy

    from core.processing import hookspecs
    from core.processing.hookspecs import hookimpl
    from core.processing.plugin_manager import HookCaller

    class Streamer:
        @hookimpl
        async def skillbot_stream_model(self, messages, timeout):
            for word in ("你", "好"):
                await asyncio.sleep(0)
                yield word

    class Raiser:
        @hookimpl
        async def skillbot_ask_model(self, messages, timeout):
            raise RuntimeError("in the first step")

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(Streamer(), name="streamer")
    pm.register(Raiser(), name="raiser")
    caller = HookCaller(pm, ["streamer", "raiser"], timeout=0.5)
    caplog.set_level(logging.INFO)
    [impl] = caller.impls("skillbot_stream_model")
    ok, stream = await caller.call_one(impl, "skillbot_stream_model", {"messages": [], "timeout": 1.0})
    assert ok and [p async for p in stream] == ["你", "好"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    [impl] = caller.impls("skillbot_ask_model")
    ok, value = await caller.call_one(impl, "skillbot_ask_model", {"messages": [], "timeout": 1.0})
    assert (ok, value) == (False, None) and caller.failures == {"raiser": 1}
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "raised; skipped" in record.getMessage() and record.exc_info[0] is RuntimeError
