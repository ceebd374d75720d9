"""The answer records' coordinator: the work goes on after a try gives up, once per message."""
import asyncio

from core.state.delivery_records import DeliveryCoordinator, MemoryAnswerStore


async def test_work_that_waits_goes_on_in_a_task_after_the_try_gives_up():
    coordinator = DeliveryCoordinator(MemoryAnswerStore(), "passive", try_budget=0.05, record_ttl=60)
    finished = asyncio.Event()

    async def work():
        await asyncio.sleep(0.2)
        finished.set()
        return {"type": "text", "content": "慢"}

    first = await coordinator.on_try("k", work, lambda record: asyncio.sleep(0))
    assert first.action == "hold" and len(coordinator.tasks) == 1  # the rest of the work
    await asyncio.wait_for(finished.wait(), 5)
    second = await coordinator.on_try("k", work, lambda record: asyncio.sleep(0))
    assert (second.action, second.payload, second.try_number) == ("answer", {"type": "text", "content": "慢"}, 2)


async def test_the_work_started_at_once_is_the_one_the_record_keeps():
    coordinator = DeliveryCoordinator(MemoryAnswerStore(), "passive", try_budget=0.5, record_ttl=60)
    calls = []

    async def work():
        calls.append(1)
        return {"type": "text", "content": "好"}

    outcomes = [await coordinator.on_try("k", work, lambda record: asyncio.sleep(0)) for _ in range(3)]
    assert calls == [1]
    assert [o.action for o in outcomes] == ["answer", "answer", "answer"]
    assert [o.repeated for o in outcomes] == [False, True, True]
