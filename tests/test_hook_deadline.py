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
