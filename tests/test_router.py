"""The segmenter (jieba) and the intent router, on real jieba dictionaries (no stand-ins)."""
from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import ClickEvent, Intent, LocationMessage, SubscribeEvent, TextMessage
from core.processing.router import (
    EXAMPLE_FLOOR,
    KEYWORD_BASE,
    KEYWORD_STEP,
    PATTERN_SCORE,
    IntentRouter,
    SimilarityIndex,
    noisy_or,
)
from core.processing.segmenter import Segmenter
from core.settings import PROJECT_ROOT, default_cache_dir


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    s = Segmenter()
    s.initialize()
    return s


def text(content: str) -> TextMessage:
    return TextMessage(to_user="gh", from_user="u1", create_time=0, msg_type="text", text=content,
                       content=content)


WEATHER = Intent("weather", keywords={"天气": ["天气预报", "气温", "下雨", "冷", "热"]},
                 patterns=[r"^那(?P<place>[\u4e00-\u9fff]{2,6})呢[？?]?$"],
                 examples=["北京明天天气怎么样", "明天会下雨吗"], priority=10, plugin="weather")


# ---- segmenter ---------------------------------------------------------------------------------

def test_tokenize_drops_punctuation_and_spaces_and_lowercases(seg):
    assert seg.tokenize("我想退货！！ 怎么办?") == ["我", "想", "退货", "怎么办"]
    assert seg.tokenize("这个APP怎么用") == ["这个", "app", "怎么", "用"]
    # full-width letters and digits are folded (NFKC) before cutting
    assert seg.tokenize("ＡＰＰ１２３") == ["app123"]
    assert seg.tokenize("") == [] and seg.tokenize("，。！") == []


def test_initialize_is_idempotent_and_jieba_cache_is_outside_the_project(seg):
    assert seg.initialized
    assert seg.initialize() == 0.0
    # jieba's prefix-dictionary cache lives in the cache folder ([paths] cache_dir, by default
    # ~/.cache/skillbot), never in the source tree (tests/test_paths.py runs a bot to check that)
    assert seg.cache_dir == default_cache_dir() / "jieba"
    assert not seg.cache_dir.resolve().is_relative_to(PROJECT_ROOT)
    assert (seg.cache_dir / "jieba.cache").is_file()


def test_added_words_stay_whole_and_do_not_leak_between_segmenters():
    a, b = Segmenter(), Segmenter()
    a.initialize()
    b.initialize()
    assert "小满优选" not in a.tokenize("小满优选的客服")
    assert a.add_words(["小满优选", ("七天无理由", None, "n"), ("天猫精灵", 500, None)]) == 3
    assert a.tokenize("小满优选的客服")[0] == "小满优选"
    assert "七天无理由" in a.tokenize("支持七天无理由退货吗")
    assert "小满优选" not in b.tokenize("小满优选的客服")  # b has its own dictionary


def test_add_words_rejects_bad_items(seg):
    with pytest.raises(TypeError):
        seg.add_words([42])
    with pytest.raises(ValueError):
        seg.add_words([("词语", 0, None)])
    assert seg.add_words(["", "  "]) == 0


def test_weights_ignore_stop_words_filler_and_numbers(seg):
    assert seg.weight("的") == 0.0 and seg.weight("请问") == 0.0 and seg.weight("吗") == 0.0
    assert seg.weight("12345") == 1.0
    assert seg.weight("退款") > seg.weight("怎么") > 0
    features = seg.features(seg.tokenize("能开发票吗"))
    # 开发票 is one token; its dictionary part 发票 and (weakly) its characters are features too
    assert {"开发票", "发票"} <= set(features) and features["票"] < features["发票"]
    assert "吗" not in features


# ---- similarity ------------------------------------------------------------------------------

def test_similarity_is_one_for_the_same_text_and_independent_of_other_texts(seg):
    small, large = SimilarityIndex(), SimilarityIndex()
    small.add("refund", seg.features(seg.tokenize("怎么申请退款")))
    large.add("refund", seg.features(seg.tokenize("怎么申请退款")))
    for i in range(300):
        large.add(f"other{i}", seg.features(seg.tokenize(f"第{i}号商品怎么申请保修")))
    query = seg.features(seg.tokenize("请问怎么申请退款呀"))
    s_small, doc = small.best(query)
    assert s_small == pytest.approx(1.0)
    overlaps = large.overlaps(query)
    s_large = large.score(overlaps[0], sum(query.values()), 0)
    assert s_large == pytest.approx(s_small)  # the score of a pair never depends on the rest


def test_noisy_or_combines_evidence_within_bounds():
    assert noisy_or([]) == 0.0
    assert noisy_or([0.5]) == 0.5
    assert noisy_or([0.5, 0.5]) == pytest.approx(0.75)
    assert noisy_or([1.5, -1]) == 1.0


# ---- text routing ----------------------------------------------------------------------------

def route(router, seg, content):
    return router.route(text(content), content, seg.tokenize(content))


def test_single_character_keywords_match_whole_tokens_only(seg):
    router = IntentRouter([WEATHER], seg, threshold=0.35, margin=0.05)
    assert route(router, seg, "今天冷吗").chosen  # 冷 is a token here
    assert not route(router, seg, "冷柜坏了找谁修").chosen  # 冷柜 is one word: not a hit
    assert not route(router, seg, "热水器漏水").chosen


def test_multi_character_keywords_match_inside_tokens_and_count_once(seg):
    router = IntentRouter([WEATHER], seg, threshold=0.0, margin=0.05)
    result = route(router, seg, "天气预报准吗")  # jieba keeps 天气预报 whole; 天气 is inside it
    (candidate,) = result.candidates
    assert candidate.evidence["keywords"] == ["天气"]  # one canonical keyword, not three
    two = Intent("two", keywords=["退款", "发票"])
    r2 = IntentRouter([two], seg, 0.0, 0.05)
    assert route(r2, seg, "退款和发票").candidates[0].score == pytest.approx(KEYWORD_BASE + KEYWORD_STEP)


def test_patterns_fill_slots_from_named_groups(seg):
    router = IntentRouter([WEATHER], seg, threshold=0.35, margin=0.05)
    result = route(router, seg, "那上海呢？")
    assert result.chosen[0].slots == {"place": "上海"}
    assert result.chosen[0].score >= PATTERN_SCORE


def test_bad_pattern_names_the_intent_and_word_boundaries_are_warned(seg, caplog):
    with pytest.raises(ValueError, match="intent 'broken'"):
        IntentRouter([Intent("broken", patterns=["(unclosed"])], seg)
    with caplog.at_level(logging.WARNING, logger="skillbot.router"):
        IntentRouter([Intent("bounded", patterns=[r"\b天气\b"])], seg)
    assert "does not separate Chinese words" in caplog.text


def test_examples_score_paraphrases_and_ignore_shared_time_words(seg):
    chat = Intent("shop", examples=["你们几点开门", "周末营业吗"])
    router = IntentRouter([chat], seg, threshold=0.35, margin=0.05)
    assert route(router, seg, "请问你们周末营业吗").chosen
    weak = route(router, seg, "周末去哪里玩")
    # sharing 周末 is some similarity, but rescaled above the floor it stays under the threshold
    assert not weak.chosen
    (candidate,) = weak.candidates
    sim = candidate.evidence["example_score"]
    assert candidate.score == pytest.approx((sim - EXAMPLE_FLOOR) / (1 - EXAMPLE_FLOOR), abs=1e-3)


def test_scorer_is_called_with_normalised_text_and_tokens_and_its_slots_are_kept(seg):
    seen = []

    def scorer(content, tokens):
        seen.append((content, tokens))
        return (0.8, {"faq_id": "refund"}) if "退款" in tokens else (0.0, {})

    faq = Intent("faq", scorer=scorer, plugin="faq")
    router = IntentRouter([WEATHER, faq], seg, 0.35, 0.05)
    result = router.route(text("天氣預報這個ＡＰＰ怎麼退款😀"), "天氣預報這個ＡＰＰ怎麼退款😀")
    # scorers read the normalised text: simplified, half-width, lower case, no emoji
    assert seen[-1] == ("天气预报这个app怎么退款", ["天气预报", "这个", "app", "怎么", "退款"])
    assert [c.name for c in result.chosen] == ["faq", "weather"]
    assert result.chosen[0].slots == {"faq_id": "refund"}
    assert result.chosen[0].evidence["scorer"] == 0.8


def test_a_failing_scorer_scores_zero_and_is_logged(seg, caplog):
    def broken(content, tokens):
        raise RuntimeError("boom")

    router = IntentRouter([Intent("bad", scorer=broken, plugin="p"), WEATHER], seg, 0.35, 0.05)
    with caplog.at_level(logging.ERROR, logger="skillbot.router"):
        result = route(router, seg, "明天会下雨吗")
    assert [c.name for c in result.chosen] == ["weather"]
    assert "scorer raised" in caplog.text


def test_near_ties_are_marked_ambiguous_and_ordered_by_priority(seg):
    low = Intent("low", keywords=["发票"], priority=0)
    high = Intent("high", keywords=["发票"], priority=3)
    router = IntentRouter([low, high], seg, threshold=0.35, margin=0.05)
    result = route(router, seg, "发票")
    assert result.ambiguous
    assert [c.name for c in result.chosen] == ["high", "low"]
    assert result.chosen[0].score - result.chosen[1].score == pytest.approx(0.03)
    # outside the margin the score order stands and nothing is ambiguous
    wide = IntentRouter([low, high], seg, threshold=0.35, margin=0.01)
    assert not route(wide, seg, "发票").ambiguous


def test_priority_nudge_is_capped(seg):
    huge = Intent("huge", keywords=["发票"], priority=1000)
    result = route(IntentRouter([huge], seg, 0.0, 0.05), seg, "发票")
    assert result.candidates[0].score == pytest.approx(KEYWORD_BASE + 0.05)


def test_threshold_keeps_weak_candidates_out_of_chosen(seg):
    router = IntentRouter([WEATHER], seg, threshold=0.9, margin=0.05)
    result = route(router, seg, "今天冷吗")
    assert result.candidates and not result.chosen
    with pytest.raises(ValueError):
        IntentRouter([], seg, threshold=1.5)


def test_router_tokenizes_when_not_given_tokens(seg):
    router = IntentRouter([WEATHER], seg)
    assert router.route(None, "明天会下雨吗").tokens == ["明天", "会", "下雨", "吗"]


def test_explanation_is_logged_at_debug(seg, caplog):
    router = IntentRouter([WEATHER], seg)
    with caplog.at_level(logging.DEBUG, logger="skillbot.router"):
        result = route(router, seg, "北京明天天气怎么样")
    assert "route '北京明天天气怎么样' -> ['weather']" in caplog.text
    explained = result.explain()
    assert explained["candidates"][0]["intent"] == "weather"
    assert explained["candidates"][0]["chosen"] is True
    assert "keywords" in explained["candidates"][0]["evidence"]


# ---- non-text messages -------------------------------------------------------------------------

def test_message_types_and_events_score_one(seg):
    location = Intent("where", msg_types=["location"])
    hello = Intent("hello", events=["subscribe"])
    menu = Intent("menu", events=["CLICK"], event_keys=["HELP"])
    router = IntentRouter([location, hello, menu, WEATHER], seg)
    loc = LocationMessage(to_user="gh", from_user="u", create_time=0, msg_type="location",
                          latitude=30.0, longitude=120.0)
    assert [(c.name, c.score) for c in router.route(loc, "").chosen] == [("where", 1.0)]
    sub = SubscribeEvent(to_user="gh", from_user="u", create_time=0, msg_type="event", event="subscribe")
    assert [c.name for c in router.route(sub, "").chosen] == ["hello"]
    click = ClickEvent(to_user="gh", from_user="u", create_time=0, msg_type="event", event="CLICK", key="HELP")
    other = ClickEvent(to_user="gh", from_user="u", create_time=0, msg_type="event", event="CLICK", key="X")
    assert [c.name for c in router.route(click, "").chosen] == ["menu"]
    assert router.route(other, "").chosen == []


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("天气冷热下雨那上海呢退款发票的了吗？! abc123我你好")), max_size=30))
def test_scores_are_always_between_zero_and_one(content):
    seg = _shared_segmenter()
    faq = Intent("faq", scorer=lambda t, toks: (0.7, {"n": len(toks)}) if toks else (0.0, {}))
    router = IntentRouter([WEATHER, faq, Intent("ex", examples=["你好"])], seg, 0.35, 0.05)
    result = router.route(text(content), content, seg.tokenize(content))
    assert all(0.0 <= c.score <= 1.0 for c in result.candidates)
    assert all(c.score >= 0.35 for c in result.chosen)


_SEG: list[Segmenter] = []


def _shared_segmenter() -> Segmenter:
    if not _SEG:
        _SEG.append(Segmenter())
        _SEG[0].initialize()
    return _SEG[0]


def test_a_pure_scorer_is_called_once_per_text_and_memo_key(seg):
    calls = []
    day = ["2026-11-26"]

    def scorer(content, tokens):
        calls.append(content)
        return (0.9, {"day": day[0]}) if "下雨" in tokens else (0.0, {})

    router = IntentRouter([Intent("rain", scorer=scorer, memo_key=lambda: day[0], plugin="p")], seg)
    first = router.route(text("明天会下雨吗"), "明天会下雨吗")
    first.chosen[0].slots["day"] = "changed by a skill"
    again = router.route(text("明天会下雨吗"), "明天会下雨吗")
    assert calls == ["明天会下雨吗"]
    assert again.chosen[0].slots == {"day": "2026-11-26"}  # a copy: what a skill changed stays its own
    day[0] = "2026-11-27"  # the key changed (a new day): asked again
    assert router.route(text("明天会下雨吗"), "明天会下雨吗").chosen[0].slots == {"day": "2026-11-27"}
    assert len(calls) == 2


def test_a_scorer_without_memo_key_is_called_for_every_message_and_no_route_is_kept(seg):
    calls = []

    def scorer(content, tokens):
        calls.append(content)
        return 0.9, {}

    router = IntentRouter([WEATHER, Intent("faq", scorer=scorer, plugin="faq")], seg)
    for _ in range(3):
        router.route(text("怎么退款"), "怎么退款")
    assert len(calls) == 3
    assert not router.memoisable and router.memo_key(text("怎么退款"), "怎么退款") is None


def test_a_kept_route_is_a_copy_keyed_by_text_type_and_memo_keys(seg):
    version = [1]
    faq = Intent("faq", scorer=lambda content, tokens: (0.8, {"faq_id": "refund", "alt": ["a"]}),
                 memo_key=lambda: version[0], plugin="faq")
    router = IntentRouter([WEATHER, faq], seg, 0.35, 0.05)
    message = text("怎么退款")
    key = router.memo_key(message, "怎么退款")
    assert router.recall(key) is None
    route = router.route(message, "怎么退款")
    router.remember(key, route)
    kept = router.recall(key)
    assert kept == route and kept is not route and kept.chosen[0] is kept.candidates[0]
    kept.chosen[0].slots["faq_id"] = "other"
    kept.tokens.append("x")
    assert router.recall(key).chosen[0].slots["faq_id"] == "refund" and router.recall(key).tokens == route.tokens
    assert router.memo_key(message, "怎么退货") != key
    assert router.memo_key(SubscribeEvent(to_user="gh", from_user="u1", create_time=0, msg_type="event",
                                          event="subscribe"), "怎么退款") is None
    version[0] = 2  # the skill's data changed: the kept route is not found
    assert router.recall(router.memo_key(message, "怎么退款")) is None


async def test_a_repeated_text_is_answered_from_the_kept_route_without_routing_again():
    from core import hookimpl
    from core.testing import running_bot

    class Rooms:
        calls = 0

        @hookimpl
        def skillbot_intents(self):
            def scorer(content, tokens):
                Rooms.calls += 1
                return (0.9, {}) if "会议室" in tokens else (0.0, {})
            return [Intent("room", scorer=scorer, memo_key=lambda: "v1")]

        @hookimpl
        async def skillbot_handle(self, ctx, candidate):
            from core import TextReply
            return TextReply("已预订") if candidate.name == "room" else None

    async with running_bot({"plugins": {"enabled": ["weather"]}, "semantic": {"enabled": False}},
                           [Rooms()]) as bot:
        for user in ("u1", "u2", "u3"):
            assert (await bot.send("帮我订个会议室", user=user)).content == "已预订"
        assert Rooms.calls == 1
        assert len(bot.bot.router._routes) == 1


async def test_a_short_text_seen_before_is_scored_on_the_loop_only_while_the_routing_thread_is_idle(seg):
    import asyncio
    import threading

    from core.processing import router as router_module

    threads = []

    def scorer(content, tokens):
        threads.append(threading.current_thread().name)
        return 0.9, {}

    router = IntentRouter([WEATHER, Intent("faq", scorer=scorer, plugin="faq")], seg)
    await router.route_off_loop(text("怎么退款"), "怎么退款")
    assert threads[-1].startswith("skillbot-routing")  # new text: jieba runs off the loop
    await router.route_off_loop(text("怎么退款"), "怎么退款")
    assert threads[-1] == threading.current_thread().name  # seen: no hop, same answer
    release = threading.Event()
    busy = asyncio.ensure_future(router_module._ROUTING_THREAD.run(release.wait, 5))
    await asyncio.sleep(0.05)
    assert not router_module._ROUTING_THREAD.idle()
    routed = asyncio.ensure_future(router.route_off_loop(text("怎么退款"), "怎么退款"))
    await asyncio.sleep(0.05)
    assert not routed.done()  # queued behind the busy thread: never two scorers at once
    release.set()
    await busy
    assert [c.name for c in (await routed).chosen] == ["faq"]
    assert threads[-1].startswith("skillbot-routing")
    assert router_module._ROUTING_THREAD.idle()


def test_long_texts_are_neither_kept_nor_memoised(seg):
    from core.processing.router import MEMO_MAX_CHARS

    router = IntentRouter([WEATHER], seg)
    long_text = "明天会下雨吗" * (MEMO_MAX_CHARS // 6 + 1)
    router.route(text(long_text), long_text)
    assert not router.analysed(router.bounded(long_text))
    assert router.memo_key(text(long_text), long_text) is None
    router.route(text("明天会下雨吗"), "明天会下雨吗")
    assert router.analysed("明天会下雨吗")


def test_tokens_a_caller_gives_are_used_for_that_route_only(seg):
    router = IntentRouter([WEATHER], seg)
    given = router.route(text("明天会下雨吗"), "明天会下雨吗", ["下雨"])
    assert given.tokens == ["下雨"] and not router.analysed("明天会下雨吗")
    assert router.route(text("明天会下雨吗"), "明天会下雨吗").tokens == seg.tokenize("明天会下雨吗")
