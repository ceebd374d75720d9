"""A try whose answer never waits is answered without a task of its own, and the work that
does wait still runs on in one (core/coroutines.py, DeliveryCoordinator.run_now)."""
import asyncio

from core import hookimpl
from core.access.replies import TextReply
from core.state.delivery_records import DeliveryCoordinator, MemoryAnswerStore


class AtOnce:
    @hookimpl
    def skillbot_fallback(self, ctx):
        return TextReply("马上：" + ctx.message.text)


def tracked(monkeypatch) -> list:
    made: list = []
    original = DeliveryCoordinator._track

    def track(self, task):
        made.append(task)
        return original(self, task)

    monkeypatch.setattr(DeliveryCoordinator, "_track", track)
    return made


async def test_an_answer_that_never_waits_needs_no_task(wechat, monkeypatch):
    made = tracked(monkeypatch)
    h = await wechat(enabled=[], plugins={"now": AtOnce()})
    await h.say("你好", msg_id=1)  # a text's first routing runs in the routing thread: it waits
    made.clear()
    status, reply, _ = await h.say("你好", msg_id=2)  # its kept route: nothing waits
    assert status == 200 and reply["Content"] == "马上：你好"
    assert made == []
    # The same message again (WeChat's retry) gets the same reply.
    status, again, _ = await h.say("你好", msg_id=2)
    assert status == 200 and again["Content"] == "马上：你好"


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
    assert coordinator.tasks == set()
