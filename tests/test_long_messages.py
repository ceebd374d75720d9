"""A 63 KB message is answered without holding the event loop (issue 12, item 6).

jieba's HMM is pure Python and grows faster than linearly with a run of characters: on the old
pipeline one 21,000-character message held every other user for seconds. The router now reads
only ``[router] max_text_chars`` characters and tokenises them in its own thread. These tests
check behaviour, not time: which thread ran jieba and on how many characters, and that short
messages sent meanwhile are answered.
"""
from __future__ import annotations

import asyncio
import random
import threading

from core.appkeys import GATEWAY_KEY

# 21,000 CJK characters (3 bytes each in UTF-8) and no punctuation: the HMM's worst case, in a
# body just under the 64 KiB limit.
random.seed(12)
LONG_TEXT = "".join(chr(random.randint(0x4E00, 0x9FA5)) for _ in range(21_000))


class JiebaSpy:
    """Records, for every jieba cut of the bot's segmenter, the thread it ran in and its length."""

    def __init__(self, segmenter) -> None:
        self.calls: list[tuple[str, int]] = []
        tokenizer = segmenter._tk
        real_cut = tokenizer.cut

        def cut(sentence, *args, **kwargs):
            self.calls.append((threading.current_thread().name, len(sentence)))
            return real_cut(sentence, *args, **kwargs)

        tokenizer.cut = cut


async def test_a_63_kb_message_is_answered_and_jieba_never_runs_on_the_loop(wechat):
    h = await wechat()
    bot = h.client.app[GATEWAY_KEY].bot
    spy = JiebaSpy(bot.segmenter)
    xml_bytes = len(LONG_TEXT.encode())
    assert 62_000 < xml_bytes < 64_000

    status, reply, _ = await h.say(LONG_TEXT, user="o_long")
    assert status == 200 and reply is not None and reply["MsgType"] == "text" and reply["Content"]

    loop_thread = threading.current_thread().name
    assert spy.calls, "the long message was never tokenised"
    on_loop = [n for thread, n in spy.calls if thread == loop_thread]
    assert on_loop == [], f"jieba ran on the event loop over {on_loop} characters"
    limit = bot.settings.router.max_text_chars
    assert max(n for _, n in spy.calls) <= limit


async def test_short_messages_are_answered_while_long_ones_arrive(wechat):
    """Short messages sent together with three 63 KB ones all get their own answer; the loop
    never runs jieba, and runs no callback of a second or more (asyncio's slow-callback report in
    debug mode: a coarse guard, far above the ~0.1 s seen here under load and far below the
    seconds the old pipeline took)."""
    h = await wechat()
    spy = JiebaSpy(h.client.app[GATEWAY_KEY].bot.segmenter)
    loop = asyncio.get_running_loop()
    slow: list[str] = []
    original_debug, original_threshold = loop.get_debug(), loop.slow_callback_duration
    import logging

    class SlowCallbacks(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "took" in record.getMessage():
                slow.append(record.getMessage()[:200])

    handler = SlowCallbacks()
    logging.getLogger("asyncio").addHandler(handler)
    loop.set_debug(True)
    loop.slow_callback_duration = 1.0
    try:
        longs = [h.say(LONG_TEXT[i:] + LONG_TEXT[:i], user=f"o_long_{i}") for i in range(3)]
        shorts = [h.say("你好，怎么退货", user=f"o_short_{i}") for i in range(10)]
        results = await asyncio.gather(*longs, *shorts)
    finally:
        loop.set_debug(original_debug)
        loop.slow_callback_duration = original_threshold
        logging.getLogger("asyncio").removeHandler(handler)
    for status, reply, _ in results:
        assert status == 200 and reply is not None and reply["Content"]
    short_answers = {reply["Content"] for _, reply, _ in results[3:]}
    assert len(short_answers) == 1 and "退货" in short_answers.pop()
    assert slow == []
    assert spy.calls and all(thread != threading.current_thread().name for thread, _ in spy.calls)


async def test_the_weather_skill_reads_only_the_bound(wechat, monkeypatch):
    """The weather skill re-reads the question when it answers; a 21,000-character weather
    question must be read only as far as the router's bound (its place scan is quadratic)."""
    import sys

    h = await wechat()
    bot = h.client.app[GATEWAY_KEY].bot
    module = sys.modules[type(bot.pm.get_plugin("weather")).__module__]
    lengths: list[int] = []
    real = module.understand

    def understand(text, *args, **kwargs):
        lengths.append(len(text))
        return real(text, *args, **kwargs)

    monkeypatch.setattr(module, "understand", understand)
    text = ("我想问一下明天北京天气怎么样" * 2000)[:21_000]
    status, reply, _ = await h.say(text, user="o_long_weather")
    assert status == 200 and reply is not None
    assert lengths and max(lengths) <= bot.settings.router.max_text_chars


async def test_routing_reads_only_the_first_max_text_chars(wechat):
    """A weather question past the bound does not route; the same question at the start does."""
    h = await wechat(overrides={"router": {"max_text_chars": 50}})
    router = h.client.app[GATEWAY_KEY].bot.router
    filler = "嗯" * 60
    late = await router.route_off_loop(None, filler + "怎么退货")
    early = await router.route_off_loop(None, "怎么退货" + filler)
    assert [c.name for c in early.chosen] == ["faq"]
    assert late.chosen == [] and len("".join(late.tokens)) <= 50
