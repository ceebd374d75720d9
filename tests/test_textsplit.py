"""split_for_wechat: parts within the byte limit, cut at sentence ends, never inside a character."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.access.textsplit import split_for_wechat


def nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def squeeze(text: str) -> str:
    return "".join(text.split())


def test_short_text_is_one_unchanged_part():
    assert split_for_wechat("今天天气不错。") == ["今天天气不错。"]


def test_empty_and_blank_text_give_no_parts():
    assert split_for_wechat("") == []
    assert split_for_wechat(" \n\t ") == []


def test_exactly_the_limit_is_one_part_and_one_more_byte_splits():
    exact = "a" * 2047
    assert split_for_wechat(exact) == [exact]
    over = "a" * 2048
    parts = split_for_wechat(over)
    assert [nbytes(p) for p in parts] == [2047, 1]


def test_exact_boundary_with_three_byte_characters():
    # 682 Chinese characters are 2046 bytes; one ASCII character makes 2047 exactly.
    text = "中" * 682 + "a"
    assert nbytes(text) == 2047
    assert split_for_wechat(text) == [text]
    text2 = "中" * 683  # 2049 bytes: the 683rd character does not fit
    parts = split_for_wechat(text2)
    assert [nbytes(p) for p in parts] == [2046, 3]


def test_cuts_at_the_last_sentence_end_that_fits():
    sentence = "这是一个用来测试的句子，" * 10 + "到此结束。"  # 365 bytes
    text = sentence * 12
    parts = split_for_wechat(text)
    assert len(parts) > 1
    for part in parts:
        assert nbytes(part) <= 2047
        assert part.endswith("。")
    assert "".join(parts) == text


def test_exclamation_question_semicolon_and_newline_are_sentence_ends():
    for end in ("！", "？", "!", "?", "；", "\n"):
        unit = "字" * 30 + end
        parts = split_for_wechat(unit * 40, max_bytes=200)
        assert all(nbytes(p) <= 200 for p in parts)
        # Every part but possibly the last ends exactly at a sentence end.
        for part in parts[:-1]:
            assert part.endswith(end.strip() or "字") or part.endswith(end)


def test_closing_quote_stays_with_its_sentence():
    text = ("他说：“今天真是太好了！”" + "然后我们一起出门散步" * 3) * 20
    parts = split_for_wechat(text, max_bytes=300)
    for part in parts[:-1]:
        assert not part.startswith("”")
    assert squeeze("".join(parts)) == squeeze(text)


def test_falls_back_to_a_comma_then_to_a_character_boundary():
    text = ("没有句号的一段话，" * 200)
    parts = split_for_wechat(text, max_bytes=100)
    assert all(nbytes(p) <= 100 for p in parts)
    assert all(p.endswith("，") for p in parts[:-1])
    no_breaks = "字" * 1000
    parts = split_for_wechat(no_breaks, max_bytes=100)
    assert all(nbytes(p) <= 100 for p in parts)
    assert "".join(parts) == no_breaks


def test_emoji_are_never_cut():
    text = "😀" * 600  # 4 bytes each: 2400 bytes
    parts = split_for_wechat(text)
    assert [nbytes(p) for p in parts] == [2044, 356]
    for part in parts:
        part.encode("utf-8")  # would fail on a broken surrogate/character
        assert set(part) == {"😀"}


def test_odd_limit_with_mixed_widths():
    text = ("a中😀é" * 300)
    parts = split_for_wechat(text, max_bytes=7)
    assert all(0 < nbytes(p) <= 7 for p in parts)
    assert "".join(parts) == text


def test_whitespace_at_cuts_is_dropped_and_no_empty_parts():
    text = ("第一段内容。\n\n\n" + "第二段内容。   ") * 300
    parts = split_for_wechat(text, max_bytes=120)
    assert all(p and p == p.strip() for p in parts)
    assert squeeze("".join(parts)) == squeeze(text)


def test_rejects_a_limit_below_one_character():
    with pytest.raises(ValueError):
        split_for_wechat("abc", max_bytes=3)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab中文，。！？\n 😀é；")), max_size=800),
       st.integers(min_value=4, max_value=300))
def test_property_parts_fit_and_keep_every_character(text, limit):
    parts = split_for_wechat(text, max_bytes=limit)
    for part in parts:
        assert 0 < nbytes(part) <= limit
        assert part.strip() == part or nbytes(text) <= limit
    assert squeeze("".join(parts)) == squeeze(text)
