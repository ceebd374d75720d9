"""The normaliser every understanding step reads from (core/processing/normalizer.py)."""
from __future__ import annotations

import pytest

from core.processing.normalizer import normalize_text


@pytest.mark.parametrize("raw, normal", [
    ("你們幾點開門", "你们几点开门"),                # traditional -> simplified
    ("香港今日天氣點樣", "香港今日天气点样"),
    ("ＡＢＣ１２３　ｈｉ", "abc123 hi"),              # full-width -> half-width, lower case
    ("Beijing Weather TOMORROW", "beijing weather tomorrow"),
    ("能刷卡不👍👍", "能刷卡不"),                     # emoji removed
    ("明天☔吗", "明天雨吗"),                         # weather pictographs read by their names
    ("要带🌂吗🥶", "要带雨伞吗冷"),
    ("🌈🌻好看", "好看"),                             # RAINBOW, SUNFLOWER: not weather words
    ("天\u200b气怎么样\ufe0f", "天气怎么样"),          # zero-width space, variation selector
    ("多少钱？？？", "多少钱?"),                      # repeated punctuation kept once
    ("  营业\n时间  ", "营业 时间"),                  # white space collapsed and trimmed
    ("", ""),
])
def test_normalize_text(raw, normal):
    assert normalize_text(raw) == normal


def test_normalizing_twice_changes_nothing():
    text = "請問ＶＩＰ會員🎉🎉有折扣嗎？？"
    once = normalize_text(text)
    assert once == "请问vip会员有折扣吗?"
    assert normalize_text(once) == once
