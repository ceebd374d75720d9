"""The sensitive-word engine on its own: normalisation, bypasses, false positives, masking
offsets, actions, the allow list, list files and reloading."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.filter.config import Config
from plugins.filter.engine import (
    Entry,
    FilterEngine,
    ListError,
    WordFilter,
    read_allow_list,
    read_word_list,
    strictest,
)
from plugins.filter.normalize import (
    Normaliser,
    fold_char,
    normaliser_for,
    t2s_table,
    visible_length,
)

DATA = Path(__file__).resolve().parent.parent / "plugins" / "filter" / "data"


@pytest.fixture(scope="module")
def demo() -> FilterEngine:
    """The shipped demo lists with the default category actions."""
    config = Config()
    word_filter = WordFilter([DATA / "demo_words.txt"], [DATA / "demo_allow.txt"],
                             config.categories, config.default_action, config.hard_separators)
    return word_filter.load()


def words(engine: FilterEngine, text: str) -> list[str]:
    return [hit.word for hit in engine.scan(text)]


# ---- normalisation --------------------------------------------------------------------------

def test_fold_char_covers_each_normalisation():
    assert fold_char("Ｓ") == "s"          # full-width -> half-width, case folded
    assert fold_char("Ａ") == "a"
    assert fold_char("辦") == "办"          # traditional -> simplified
    assert fold_char("證") == "证"
    assert fold_char("é") == "e"           # accents dropped
    assert fold_char("ß") == "ss"          # case folding, not just lower()
    assert fold_char("Ⓢ") == "s"           # symbols that NFKC turns into letters
    assert fold_char("①") == "1"
    for noise in (" ", "*", "@", "￥", "$", "\u200b", "\u200d", "\ufeff", "😂", "\ufe0f", "\u0301",
                  "。", "\t", "\u00ad"):
        assert fold_char(noise) == "", repr(noise)


def test_t2s_table_is_single_characters_from_opencc():
    table = t2s_table()
    assert len(table) > 2000
    assert table["賭"] == "赌" and table["們"] == "们" and table["髮"] == "发"
    assert all(len(k) == 1 and len(v) == 1 for k, v in table.items())


def test_normaliser_list_and_table_agree_everywhere_in_the_bmp():
    normaliser = normaliser_for()
    sample = range(0, 0x10000, 7)
    for cp in sample:
        assert normaliser.codes[cp] == normaliser.table[cp], hex(cp)


def test_hard_separators_fold_to_a_boundary_and_can_be_changed():
    default = normaliser_for()
    assert default("他不傻，逼急了") == "他不傻\n逼急了"
    assert default("傻,逼") == "傻逼"          # ASCII comma: noise
    custom = normaliser_for("")
    assert custom("他不傻，逼急了") == "他不傻逼急了"


INTERESTING = ("傻逼ＳＢsb 　*@￥\u200b\u200d\ufeff\u0301\ufe0f😂👨👩🏽🇨🇳，。㍿ﬁÅİß辦證𠀀\U000e0041"
               "\n\r\t\ud83d")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.one_of(st.sampled_from(INTERESTING), st.characters()), max_size=40))
def test_fast_normalisation_and_mapping_match_the_reference(text):
    normaliser = normaliser_for()
    reference, index = normaliser.with_map(text)
    assert normaliser(text) == reference
    assert normaliser.origins(text, list(range(len(reference)))) == index


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.one_of(st.sampled_from(INTERESTING + "逼傻操你"), st.characters()),
               max_size=30))
def test_masking_never_touches_text_outside_the_hits(text):
    engine = FilterEngine([Entry("傻逼"), Entry("sb"), Entry("操你")])
    hits = engine.scan(text)
    masked = engine.mask(text, hits)
    if not hits:
        assert masked == text
        return
    first, last = min(h.start for h in hits), max(h.end for h in hits)
    assert masked.startswith(text[:first])
    assert masked.endswith(text[last:])
    for hit in hits:
        assert text[hit.start:hit.end] == hit.text
        assert engine.normalise(hit.text).replace("\n", "") != ""


# ---- bypasses are caught --------------------------------------------------------------------

@pytest.mark.parametrize("text, word", [
    ("你是傻逼", "傻逼"),
    ("你是傻 逼", "傻逼"),                  # space
    ("你是傻　逼", "傻逼"),                 # ideographic space
    ("你是傻*逼", "傻逼"),                  # symbol
    ("你是傻@逼", "傻逼"),
    ("你是傻￥逼", "傻逼"),                 # full-width yuan sign
    ("你是傻.逼", "傻逼"),                  # ASCII punctuation
    ("你是傻,逼", "傻逼"),
    ("你是傻 * @ 逼", "傻逼"),              # several noise characters
    ("你是傻\u200b逼", "傻逼"),             # zero-width space
    ("你是傻\u200d逼", "傻逼"),             # zero-width joiner
    ("你是傻\ufeff逼", "傻逼"),             # BOM / zero-width no-break space
    ("你是傻\u00ad逼", "傻逼"),             # soft hyphen
    ("你是傻😂逼", "傻逼"),                 # emoji
    ("你是傻👨\u200d👩\u200d👧逼", "傻逼"),  # emoji ZWJ sequence
    ("你是傻\ufe0f逼", "傻逼"),             # variation selector
    ("你是傻\t逼", "傻逼"),
    ("你就是个SB", "sb"),
    ("你就是个ＳＢ", "sb"),                 # full-width
    ("你就是个Ｓ Ｂ", "sb"),
    ("你就是个S.B.", "sb"),
    ("你就是个sB!", "sb"),
    ("你就是个ⓈⒷ", "sb"),                 # circled letters
    ("SB", "sb"),
    ("操 你", "操你"),
    ("專業辦證", "办证"),                   # traditional characters
    ("代-开-发-票，速联系", "代开发票"),
    ("草泥馬", "草泥马"),
])
def test_bypass_variants_are_caught(demo, text, word):
    assert word in words(demo, text)


def test_traditional_gambling_is_found_with_its_category(demo):
    (hit,) = demo.scan("網上賭博害人")
    assert (hit.word, hit.category, hit.action, hit.text) == ("赌博", "gambling", "log", "賭博")


# ---- ordinary sentences are not flagged -----------------------------------------------------

ORDINARY = [
    "他一点也不傻，逼急了也会反抗。",          # 傻，逼 across a clause boundary
    "你别装傻。逼问之下他才说了实话",
    "他有点傻\n逼真的演技骗过了所有人",
    "逼真的画面让人震撼",
    "傻瓜相机其实很好用",
    "我们去办证大厅办理身份证",                # allow list
    "请先阅读办证指南，再去办证中心排队",
    "大麻哈鱼是一种洄游鱼类",
    "大麻纤维可以用来做布料",
    "明天体操比赛几点开始？",
    "这件事让我很操心",
    "博物馆周一闭馆",
    "发票请开增值税专用发票",
    "他赌气不肯吃饭",
    "My husband is at home",                  # sb inside a word
    "It was bright and sunny",                # s b across a space inside words
    "Plug the USB cable in",
    "It's. But why?",
    "this boy is smart",
    "Mrs. Brown called",
    "SBS电视台的新闻",
    "白天和黑夜",
    "小明他妈妈的手艺很好",
    "冰激凌太好吃了",
    "请问今天北京天气怎么样",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_sentences_are_not_flagged(demo, text):
    assert demo.scan(text) == []


def test_there_are_at_least_twenty_ordinary_sentences_with_listed_characters(demo):
    listed_chars = {c for e in read_word_list(DATA / "demo_words.txt") for c in e.word.lower()}
    with_listed = [t for t in ORDINARY if any(c in listed_chars for c in t.lower())]
    assert len(with_listed) >= 20


def test_latin_entries_match_only_at_word_boundaries(demo):
    assert words(demo, "husband") == []
    assert words(demo, "xsb") == []
    assert words(demo, "sbx") == []
    assert words(demo, "你是sb吗") == ["sb"]
    assert words(demo, "sb!") == ["sb"]
    assert words(demo, "(sb)") == ["sb"]


def test_allow_list_wins_only_where_it_covers_the_hit():
    engine = FilterEngine([Entry("傻逼")], [Entry("逼格")])
    assert [h.text for h in engine.scan("这张照片很有逼格")] == []
    # 逼格 overlaps the hit but does not cover 傻: still flagged
    assert [h.text for h in engine.scan("傻逼格")] == ["傻逼"]
    engine = FilterEngine([Entry("办证")], [Entry("办证大厅")])
    assert engine.scan("办 证 大 厅") == []          # noise applies to the allow list too
    assert [h.word for h in engine.scan("办证大厅门口有人办证")] == ["办证"]


def test_an_allowed_word_equal_to_a_listed_word_is_allowed():
    engine = FilterEngine([Entry("博彩")], [Entry("博彩")])
    assert engine.scan("博彩") == []
    assert engine.words == 0


# ---- masking offsets ------------------------------------------------------------------------

def mask(engine: FilterEngine, text: str) -> str:
    return engine.mask(text, engine.scan(text))


def test_masking_replaces_exactly_the_original_characters(demo):
    assert mask(demo, "你好傻逼吗") == "你好**吗"
    (hit,) = demo.scan("你好傻逼吗")
    assert (hit.start, hit.end, hit.text) == (2, 4, "傻逼")
    # noise inside the word is part of the span; one mask per visible character
    assert mask(demo, "你好傻 * 逼吗") == "你好*****吗"
    assert mask(demo, "你好傻\u200b逼吗") == "你好**吗"
    assert mask(demo, "ＳＢ，走开") == "**，走开"


def test_masking_with_surrogate_pairs_around_and_inside(demo):
    text = "😀傻逼😀"
    (hit,) = demo.scan(text)
    assert (hit.start, hit.end) == (1, 3)
    assert mask(demo, text) == "😀**😀"
    assert mask(demo, "𠀀傻😂逼𠀀") == "𠀀***𠀀"
    assert mask(demo, "🇨🇳傻逼🇨🇳") == "🇨🇳**🇨🇳"
    assert mask(demo, "傻逼👨\u200d👩\u200d👧") == "**👨\u200d👩\u200d👧"


def test_masking_takes_the_combining_marks_of_the_last_character(demo):
    text = "傻逼\u0301\u0301!"
    (hit,) = demo.scan(text)
    assert (hit.start, hit.end) == (0, 4)
    assert mask(demo, text) == "**!"
    assert mask(demo, "s\u0301b\u0301 ok") == "** ok"
    assert mask(demo, "傻逼\ufe0f") == "**"


def test_masking_an_expanded_compatibility_character():
    engine = FilterEngine([Entry("株式会社"), Entry("fi")])
    text = "㍿です"
    (hit,) = engine.scan(text)
    assert (hit.start, hit.end, hit.text) == (0, 1, "㍿")
    assert engine.mask(text, [hit]) == "*です"
    assert engine.mask("ﬁ!", engine.scan("ﬁ!")) == "*!"


def test_overlapping_and_adjacent_hits_merge(demo):
    assert mask(demo, "傻逼和草泥马") == "**和***"
    engine = FilterEngine([Entry("操你"), Entry("操你妈")])
    text = "操你妈的"
    assert sorted(h.word for h in engine.scan(text)) == ["操你", "操你妈"]
    assert engine.mask(text, engine.scan(text)) == "***的"
    assert engine.mask(text, engine.scan(text), mask_char="■") == "■■■的"


def test_visible_length():
    assert visible_length("傻逼") == 2
    assert visible_length("e\u0301") == 1
    assert visible_length("👨\u200d👩\u200d👧") == 1
    assert visible_length("🇨🇳🇺🇸") == 2
    assert visible_length("👍🏽") == 1
    assert visible_length("a\u200bb") == 2


# ---- actions --------------------------------------------------------------------------------

def test_actions_by_category(demo):
    by_word = {h.word: h.action for h in demo.scan("傻逼 脑残 赌博 冰毒 办证")}
    assert by_word == {"傻逼": "block", "脑残": "mask", "赌博": "log", "冰毒": "block",
                       "办证": "block"}
    assert strictest(demo.scan("脑残，赌博")) == "mask"
    assert strictest(demo.scan("我不赌博")) == "log"
    assert strictest([]) is None


def test_unknown_category_gets_the_default_action():
    engine = FilterEngine([Entry("甲乙", "nosuch"), Entry("丙丁")], actions={"x": "log"},
                          default_action="mask")
    assert {h.action for h in engine.scan("甲乙丙丁")} == {"mask"}


def test_the_strictest_action_wins_for_a_word_listed_twice():
    engine = FilterEngine([Entry("赌博", "gambling"), Entry("賭博", "crime")],
                          actions={"gambling": "log", "crime": "block"})
    (hit,) = engine.scan("赌博")
    assert (hit.category, hit.action) == ("crime", "block")


def test_unknown_action_is_refused():
    with pytest.raises(ValueError):
        FilterEngine([Entry("x")], actions={"a": "delete"})


def test_entries_that_fold_to_nothing_are_skipped(caplog):
    with caplog.at_level(logging.WARNING, "skillbot.filter"):
        engine = FilterEngine([Entry("***"), Entry("傻逼")])
    assert engine.words == 1
    assert "fold to nothing" in caplog.text


def test_empty_lists_find_nothing():
    engine = FilterEngine([])
    assert engine.scan("傻逼") == []


# ---- list files -----------------------------------------------------------------------------

def test_list_format(tmp_path):
    path = tmp_path / "words.txt"
    path.write_bytes("\ufeff# comment\r\n\r\n傻逼\r\n  # indented comment\n赌博\tgambling\n"
                     "  白 痴 \tinsult\n".encode("utf-8"))
    entries = read_word_list(path)
    assert [(e.word, e.category) for e in entries] == [("傻逼", ""), ("赌博", "gambling"),
                                                       ("白 痴", "insult")]
    assert entries[1].source == "words.txt:5"


@pytest.mark.parametrize("content, message", [
    (b"ok\n\xff\xfe bad\n", "words.txt:2: not valid UTF-8"),
    ("ok\na\tb\tc\n".encode(), "words.txt:2: more than one tab"),
    ("ok\n\tcat\n".encode(), "words.txt:2: empty word"),
    ("ok\nword\tbad cat\n".encode(), "words.txt:2: category 'bad cat' contains spaces"),
    (b"ok\nx\x00y\n", "words.txt:2: NUL"),
])
def test_broken_list_files_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "words.txt"
    path.write_bytes(content)
    with pytest.raises(ListError) as info:
        read_word_list(path)
    assert message in str(info.value)


def test_missing_list_file(tmp_path):
    with pytest.raises(ListError, match="cannot read"):
        read_word_list(tmp_path / "nope.txt")


def test_allow_list_ignores_notes_after_a_tab():
    assert [e.word for e in read_allow_list(DATA / "demo_allow.txt")][:2] == ["办证大厅", "办证中心"]


# ---- reloading ------------------------------------------------------------------------------

def touch_later(path: Path) -> None:
    """Make sure the next stat differs even on coarse-mtime file systems."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_reload_when_a_file_changes(tmp_path):
    words_file = tmp_path / "words.txt"
    words_file.write_text("傻逼\n", encoding="utf-8")
    allow_file = tmp_path / "allow.txt"
    allow_file.write_text("", encoding="utf-8")
    word_filter = WordFilter([words_file], [allow_file])
    first = word_filter.load()
    assert word_filter.reload_if_changed() is False          # nothing changed
    assert word_filter.engine is first
    words_file.write_text("傻逼\n冰毒\n", encoding="utf-8")
    touch_later(words_file)
    assert word_filter.reload_if_changed() is True
    assert [h.word for h in word_filter.engine.scan("冰 毒")] == ["冰毒"]
    allow_file.write_text("冰毒检测\n", encoding="utf-8")
    touch_later(allow_file)
    assert word_filter.reload_if_changed() is True
    assert word_filter.engine.scan("冰毒检测") == []


def test_a_broken_file_keeps_the_previous_lists(tmp_path, caplog):
    words_file = tmp_path / "words.txt"
    words_file.write_text("傻逼\n", encoding="utf-8")
    word_filter = WordFilter([words_file])
    previous = word_filter.load()
    words_file.write_bytes("傻逼\n冰毒\n".encode("utf-8") + b"\xff\xfe\n")
    touch_later(words_file)
    with caplog.at_level(logging.ERROR, "skillbot.filter"):
        assert word_filter.reload_if_changed() is False
    assert word_filter.engine is previous
    assert "keeping the previous lists" in caplog.text and "words.txt:3" in caplog.text
    assert "not valid UTF-8" in word_filter.last_error
    # the same broken state is not retried (or logged) again
    caplog.clear()
    assert word_filter.reload_if_changed() is False
    assert caplog.text == ""
    # once fixed, the new lists are used
    words_file.write_text("傻逼\n冰毒\n", encoding="utf-8")
    touch_later(words_file)
    assert word_filter.reload_if_changed() is True
    assert word_filter.last_error is None
    assert [h.word for h in word_filter.engine.scan("冰毒")] == ["冰毒"]


def test_a_deleted_file_keeps_the_previous_lists(tmp_path):
    words_file = tmp_path / "words.txt"
    words_file.write_text("傻逼\n", encoding="utf-8")
    word_filter = WordFilter([words_file])
    previous = word_filter.load()
    words_file.unlink()
    assert word_filter.changed() is True
    assert word_filter.reload_if_changed() is False
    assert word_filter.engine is previous
    assert "cannot read" in word_filter.last_error
    assert word_filter.changed() is False      # already tried in this state


def test_load_raises_on_a_broken_file(tmp_path):
    words_file = tmp_path / "words.txt"
    words_file.write_text("a\tb\tc\n", encoding="utf-8")
    with pytest.raises(ListError):
        WordFilter([words_file]).load()


def test_demo_lists_load(demo):
    assert demo.words >= 15 and demo.allowed >= 5
    assert isinstance(demo.normalise, Normaliser)
