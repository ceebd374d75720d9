"""Markdown from models turned into plain WeChat text."""
from __future__ import annotations

from plugins.llm.plaintext import inline_to_text, markdown_to_text, strip_reasoning


def test_headings_become_plain_lines():
    assert markdown_to_text("# 标题\n## 小标题 ##\n正文") == "标题\n小标题\n正文"
    assert markdown_to_text("#话题 不是标题") == "#话题 不是标题"


def test_setext_headings_and_rules_lose_their_underlines():
    text = markdown_to_text("标题\n===\n内容\n\n---\n\n结尾")
    assert text == "标题\n内容\n\n结尾"


def test_emphasis_markers_are_removed():
    assert inline_to_text("**重要**和__也重要__") == "重要和也重要"
    assert inline_to_text("这是*斜体*和_强调_以及~~删除~~") == "这是斜体和强调以及删除"
    assert inline_to_text("***粗斜体***") == "粗斜体"


def test_emphasis_rules_leave_ordinary_text_alone():
    assert inline_to_text("2*3*4 = 24") == "2*3*4 = 24"
    assert inline_to_text("snake_case_name 和 a * b") == "snake_case_name 和 a * b"
    assert inline_to_text("价格 5* 起") == "价格 5* 起"


def test_inline_code_is_unwrapped_and_protected():
    assert inline_to_text("运行 `pip install **x**` 即可") == "运行 pip install **x** 即可"
    assert inline_to_text("``a ` b``") == "a ` b"


def test_fenced_code_blocks_are_kept_as_indented_text():
    md = "示例：\n```python\ndef f():\n    return **1**\n```\n完毕"
    assert markdown_to_text(md) == "示例：\n  def f():\n      return **1**\n完毕"
    md = "~~~\nx = 1\n\ny = 2\n~~~"
    assert markdown_to_text(md) == "  x = 1\n\n  y = 2"


def test_unclosed_fence_runs_to_the_end():
    assert markdown_to_text("```\ncode **here**") == "  code **here**"


def test_lists_become_bullets_and_numbers():
    md = "- 苹果\n* 香蕉\n+ 橙子\n  - 小橙子\n1. 第一\n2) 第二\n10. 第十"
    assert markdown_to_text(md) == "• 苹果\n• 香蕉\n• 橙子\n  • 小橙子\n1. 第一\n2. 第二\n10. 第十"


def test_task_lists():
    assert markdown_to_text("- [ ] 待办\n- [x] 完成") == "☐ 待办\n☑ 完成"


def test_links_and_images():
    assert inline_to_text("见[官网](https://example.com)") == "见官网（https://example.com）"
    assert inline_to_text("[https://a.cn](https://a.cn)") == "https://a.cn"
    assert inline_to_text('[文档](https://d.cn "标题")') == "文档（https://d.cn）"
    assert inline_to_text("[本页](#anchor)") == "本页"
    assert inline_to_text("![示意图](https://x.cn/a.png)") == "示意图（https://x.cn/a.png）"
    assert inline_to_text("![](https://x.cn/a.png)") == "https://x.cn/a.png"
    assert inline_to_text("<https://x.cn/a_b_c>") == "https://x.cn/a_b_c"
    # Underscores inside a URL are not emphasis.
    assert inline_to_text("[x](https://x.cn/_a_)") == "x（https://x.cn/_a_）"


def test_tables_become_lines():
    md = "| 城市 | 温度 |\n|:---|---:|\n| 北京 | **20℃** |\n| 上海 | 25℃ |\n\n说明"
    assert markdown_to_text(md) == "城市 | 温度\n北京 | 20℃\n上海 | 25℃\n\n说明"


def test_table_without_outer_pipes_and_escaped_pipe():
    md = "A | B\n--- | ---\n1 \\| 2 | 3"
    assert markdown_to_text(md) == "A | B\n1 | 2 | 3"


def test_blockquotes_lose_their_marker():
    assert markdown_to_text("> 引用\n> > 嵌套") == "引用\n嵌套"


def test_blank_line_runs_collapse():
    assert markdown_to_text("甲\n\n\n\n乙\n \n \n\n丙") == "甲\n\n乙\n\n丙"


def test_escapes_and_html_bits():
    assert inline_to_text(r"\*不是斜体\*") == "*不是斜体*"
    assert inline_to_text("第一行<br>第二行<br/>第三行") == "第一行\n第二行\n第三行"
    assert inline_to_text("<b>粗</b><em>斜</em>") == "粗斜"
    assert inline_to_text("1 < 2 且 3 > 2") == "1 < 2 且 3 > 2"


def test_link_definitions_are_dropped():
    assert markdown_to_text("正文\n\n[1]: https://example.com") == "正文"


def test_plain_text_passes_through():
    text = "今天北京晴，最高气温20℃。\n出门记得带水！"
    assert markdown_to_text(text) == text


def test_a_realistic_answer():
    md = (
        "## 推荐路线\n\n"
        "以下是**三条**路线：\n\n"
        "1. **故宫** - 建议上午去\n"
        "2. *颐和园*：下午\n\n"
        "> 提示：提前在[官网](https://www.dpm.org.cn)预约。\n\n\n\n"
        "祝旅途愉快！"
    )
    assert markdown_to_text(md) == (
        "推荐路线\n\n以下是三条路线：\n\n1. 故宫 - 建议上午去\n2. 颐和园：下午\n\n"
        "提示：提前在官网（https://www.dpm.org.cn）预约。\n\n祝旅途愉快！")


def test_strip_reasoning():
    assert strip_reasoning("<think>先想想……</think>\n\n答案是42。") == "答案是42。"
    assert strip_reasoning("<think>还没想完") == ""
    assert strip_reasoning("没有思考标签") == "没有思考标签"
