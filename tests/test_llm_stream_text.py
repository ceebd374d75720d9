"""The streamed answer's text on its way to the user: Markdown turned into plain text piece by
piece (never half a construct, the same result as converting the whole answer), reasoning
blocks removed across pieces, and sentences/paragraphs cut as they finish."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.llm.client import ReasoningFilter
from plugins.llm.plaintext import MarkdownStream, markdown_to_text, strip_reasoning
from plugins.llm.sentences import Sentence, SentenceAssembler

#: Answers in the shapes models write (and every Markdown construct the converter knows).
SAMPLES = [
    "## 推荐路线\n\n以下是**三条**路线：\n\n1. **故宫** - 建议上午去。门票60元！\n2. *颐和园*：下午\n\n"
    "> 提示：提前在[官网](https://www.dpm.org.cn)预约。\n\n\n\n祝旅途愉快！",
    "示例：\n```python\ndef f():\n    return **1**\n```\n完毕。好的",
    "~~~\nx = 1\n\ny = 2\n~~~",
    "```\ncode **here**",
    "- 苹果。很甜！\n* 香蕉\n+ 橙子\n  - 小橙子\n1. 第一\n2) 第二。第二句\n10. 第十",
    "- [ ] 待办。明天\n- [x] 完成",
    "| 城市 | 温度 |\n|:---|---:|\n| 北京 | **20℃** |\n| 上海 | 25℃ |\n\n说明。结束",
    "A | B\n--- | ---\n1 \\| 2 | 3",
    "竖线 | 不是表格。\n下一行",
    "> 引用。第二句\n> > 嵌套",
    "甲。\n\n\n\n乙\n \n \n\n丙",
    "\\*不是斜体\\*。第一行<br>第二行<br/>第三行。<b>粗</b><em>斜</em>",
    "1 < 2 且 3 > 2。正文\n\n[1]: https://example.com",
    "标题\n===\n内容。更多\n\n---\n\n结尾",
    "# 标题\n## 小标题 ##\n正文。2*3*4 = 24。snake_case_name 和 a * b。",
    "Hello! This is **bold**. And `code.` here. Done.\r\nWindows line. Next\rOld Mac line",
    "运行 `pip install **x**` 即可。见![图](https://x.cn/a.png)。“引号。”他说。",
    "",
    "\n\n  \n",
    "行尾空格。   \n下一行   \n",
]


def streamed(text: str, cuts: list[int]) -> list[str]:
    converter = MarkdownStream()
    points = sorted({c for c in cuts if 0 < c < len(text)})
    pieces = [text[a:b] for a, b in zip([0] + points, points + [len(text)])]
    return [converter.feed(piece) for piece in pieces] + [converter.finish()]


@given(st.sampled_from(SAMPLES), st.lists(st.integers(min_value=1, max_value=300), max_size=40))
@settings(max_examples=400, deadline=None)
def test_streamed_conversion_equals_the_whole_conversion(text, cuts):
    assert "".join(streamed(text, cuts)) == markdown_to_text(text)


@given(st.text(alphabet="ab。!. *_`[]()<>|#-\n>~1", max_size=80),
       st.lists(st.integers(min_value=1, max_value=80), max_size=20))
@settings(max_examples=400, deadline=None)
def test_streamed_conversion_of_arbitrary_markup(text, cuts):
    # Only the documented difference (a line let out early is not made a table header) may
    # differ: without "|" the results are identical.
    text = text.replace("|", "")
    assert "".join(streamed(text, cuts)) == markdown_to_text(text)


def test_a_sentence_is_let_out_before_its_line_ends():
    converter = MarkdownStream()
    assert converter.feed("1. **第一**点。第二") == "1. 第一点。"
    assert converter.feed("点还没") == ""
    assert converter.feed("写完\n2. 下") == "第二点还没写完"
    assert converter.finish() == "\n2. 下"


def test_open_constructs_are_held_back():
    converter = MarkdownStream()
    assert converter.feed("这是**粗体。还没") == ""            # ** still open
    assert converter.feed("完**。然后") == "这是粗体。还没完。"
    assert converter.feed("看[链接。](https://a.cn") == ""     # link still open
    assert converter.feed(")。") == "然后看链接。（https://a.cn）。"
    assert converter.finish() == ""


def test_lines_that_need_what_follows_wait_for_it():
    converter = MarkdownStream()
    assert converter.feed("| 名称。 | 说明。 |\n") == ""     # a table header, or not?
    assert converter.feed("|---|---|\n| 甲。 | 乙。") == "名称。 | 说明。"
    assert converter.feed(" |\n## 标题。很长") == "\n甲。 | 乙。"
    assert converter.feed("\n```\n代码。**x**") == "\n标题。很长"
    assert converter.finish() == "\n  代码。**x**"


def test_crlf_split_between_pieces_is_one_line_break():
    converter = MarkdownStream()
    assert converter.feed("第一行\r") == "第一行"
    assert converter.feed("\n第二行") == ""
    assert converter.finish() == "\n第二行"


@given(st.lists(st.integers(min_value=1, max_value=60), max_size=30))
@settings(max_examples=200, deadline=None)
def test_reasoning_filter_matches_strip_reasoning(cuts):
    text = "<think>用户问长城。\n先想想</think>\n\n长城很长。<THINK>再想</think> 结束"
    think = ReasoningFilter()
    points = sorted({c for c in cuts if 0 < c < len(text)})
    pieces = [text[a:b] for a, b in zip([0] + points, points + [len(text)])]
    assert "".join(think.feed(p) for p in pieces) + think.finish() == strip_reasoning(text) == "长城很长。结束"


def test_an_unclosed_reasoning_block_drops_the_rest():
    think = ReasoningFilter()
    assert think.feed("<think>想了很") + think.feed("久</thi") + think.finish() == \
        strip_reasoning("<think>想了很久</thi") == ""
    think = ReasoningFilter()
    assert think.feed("a <thi") == "a " and think.finish() == "<thi"


# ---- sentences ----------------------------------------------------------------------------------

def assemble(text: str, size: int) -> list[Sentence]:
    assembler = SentenceAssembler()
    out: list[Sentence] = []
    for i in range(0, len(text), size):
        out += assembler.feed(text[i:i + size])
    return out + assembler.finish()


def test_sentences_end_at_chinese_and_english_sentence_ends():
    text = "今天晴。明天呢？后天！Hello there. It is 3.14 now! 第二段：“好的。”他说；结束……\n\n新段落"
    sentences = assemble(text, 1)
    assert [s.content for s in sentences] == [
        "今天晴。", "明天呢？", "后天！", "Hello there.", "It is 3.14 now!", "第二段：“好的。”",
        "他说；", "结束……", "新段落"]
    assert [s.ends_paragraph for s in sentences][-2:] == [True, True]
    assert not any(s.ends_paragraph for s in sentences[:-2])


def test_list_numbers_and_lines():
    sentences = assemble("1. 第一项\n2. 第二项\n  缩进的行", 3)
    assert [s.text for s in sentences] == ["1. 第一项\n", "2. 第二项\n", "  缩进的行"]


def test_a_sentence_waits_for_its_closing_quote_and_the_whitespace_after_it():
    assembler = SentenceAssembler()
    assert assembler.feed("他说：“好的。") == []
    assert assembler.feed("”") == []
    assert assembler.feed("\n") == []
    assert assembler.feed("\n下") == [Sentence("他说：“好的。”\n\n", True)]
    assert assembler.finish() == [Sentence("下", True)]


@given(st.text(alphabet="甲乙。！？.!? \n”a1", max_size=120), st.integers(min_value=1, max_value=9))
@settings(max_examples=300, deadline=None)
def test_sentences_join_to_the_text(text, size):
    sentences = assemble(text, size)
    assert "".join(s.text for s in sentences) == text
    assert all(s.text.strip() for s in sentences[:-1])
