"""The reply without a model shows the part of a long passage nearest the question
(plugins/knowledge/excerpt.py); the whole passage when it fits."""
from __future__ import annotations

from plugins.knowledge.excerpt import CUT, excerpt

ROWS = "入学须知如下。请仔细阅读。\n读者证类型：少儿读者证，可借册数：5册\n读者证类型：成人读者证，可借册数：10册\n读者证类型：老年读者证，可借册数：8册"


def weigh_word(word: str):
    return lambda sentence: 1.0 if word in sentence else 0.0


def test_a_passage_that_fits_is_shown_whole():
    assert excerpt(ROWS, len(ROWS)) == ROWS
    assert excerpt(ROWS, len(ROWS), weigh_word("老年")) == ROWS


def test_without_any_sentence_near_the_question_it_is_cut_from_the_start_at_a_sentence_end():
    assert excerpt(ROWS, 40) == "入学须知如下。请仔细阅读。\n读者证类型：少儿读者证，可借册数：5册"
    assert excerpt(ROWS, 40, weigh_word("没有的词")) == excerpt(ROWS, 40)


def test_the_sentences_nearest_the_question_are_kept_whole_with_their_line_breaks():
    assert excerpt(ROWS, 45, weigh_word("老年")) == "读者证类型：成人读者证，可借册数：10册\n读者证类型：老年读者证，可借册数：8册"
    # the heaviest sentence first, then the heaviest run (0.2 + 0.5 over 0.5), then the earliest
    weights = {"入学须知如下。": 0.2, "读者证类型：少儿读者证，可借册数：5册": 0.5, "读者证类型：老年读者证，可借册数：8册": 0.5}
    assert excerpt(ROWS, 45, lambda s: weights.get(s, 0.0)) == "入学须知如下。请仔细阅读。\n读者证类型：少儿读者证，可借册数：5册"
    weights["入学须知如下。"] = 0.0  # runs of one weight: the earliest, with what comes before its row
    assert excerpt(ROWS, 45, lambda s: weights.get(s, 0.0)).startswith("入学须知如下。请仔细阅读。\n读者证类型：少儿")


def test_a_nearest_sentence_longer_than_the_limit_is_cut_and_marked():
    text = "简介。" + "老年读者证" + "可借阅图书" * 20 + "。"
    out = excerpt(text, 30, weigh_word("老年"))
    assert out.startswith("老年读者证") and out.endswith(CUT) and len(out) == 30
    assert excerpt("一句很长的话" * 10, 20) == ("一句很长的话" * 10)[:19] + CUT


def test_sentences_in_latin_script_keep_the_space_between_them():
    text = "Open daily? Yes; closed on Monday! 周一闭馆。\n" + "其他说明很长的一段话。" * 20
    assert excerpt(text, 60, weigh_word("Yes")) == "Open daily? Yes; closed on Monday! 周一闭馆。\n其他说明很长的一段话。"
