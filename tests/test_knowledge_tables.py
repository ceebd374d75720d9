"""Table rows written with their column names (plugins/knowledge/documents.py, ``table_blocks``): when a
table's first row is a header, in each format, and how a labelled table is chunked and cut."""
from __future__ import annotations

from pathlib import Path

from plugins.knowledge.chunking import chunk_document, split_sentences
from plugins.knowledge.documents import Block, Document, has_header, labelled_row, read_document
from tests.data.knowledge.corpus import to_html, to_markdown, to_text, write_docx

LOANS = [["读者证类型", "可借册数", "借期"], ["成人读者证", "10册", "30天"], ["少儿读者证", "5册", "21天"]]
LOAN_RECORDS = ["读者证类型：成人读者证，可借册数：10册，借期：30天", "读者证类型：少儿读者证，可借册数：5册，借期：21天"]
#: A two-column key/value table with no header: its first pair names nothing.
CONTACTS = [["联系人", "王老师"], ["电话", "028-8566-3200"], ["地址", "文昌路66号"], ["公众号", "城南书房"]]


def _doc(*tables: list[list[str]]) -> tuple:
    return ("借阅规则", [("一、借阅", [("table", rows) for rows in tables])])


def _rows(path: Path) -> list[Block]:
    return [b for b in read_document(path).blocks if b.kind in ("table", "record")]


def test_a_header_row_names_the_columns_of_every_row_in_each_format(tmp_path):
    for name, render in (("loans.md", to_markdown), ("loans.html", to_html), ("loans.txt", to_text)):
        (tmp_path / name).write_text(render(_doc(LOANS)), encoding="utf-8")
    write_docx(_doc(LOANS), tmp_path / "loans.docx")
    for name in ("loans.md", "loans.html", "loans.txt", "loans.docx"):
        # Markdown by its |---| rule; HTML of <td> cells, TXT and DOCX by the rule for unmarked tables
        assert _rows(tmp_path / name) == [Block("record", text) for text in LOAN_RECORDS], name


def test_a_headerless_key_value_table_is_kept_as_it_is(tmp_path):
    (tmp_path / "contacts.html").write_text(to_html(_doc(CONTACTS)), encoding="utf-8")
    (tmp_path / "contacts.txt").write_text(to_text(_doc(CONTACTS)), encoding="utf-8")
    write_docx(_doc(CONTACTS), tmp_path / "contacts.docx")
    for name in ("contacts.html", "contacts.txt", "contacts.docx"):
        assert _rows(tmp_path / name) == [Block("table", " | ".join(row)) for row in CONTACTS], name
    # even when every value under the first pair is a figure: two columns need two rows of figures
    assert not has_header([["联系人", "王老师"], ["电话", "028-8566-3200"]], None)
    # a key/value table marked by <th> in its first column, not its first row
    html = "<table><tr><th>联系人</th><td>王老师</td></tr><tr><th>电话</th><td>028-8566-3200</td></tr></table>"
    (tmp_path / "marked.html").write_text(html, encoding="utf-8")
    assert _rows(tmp_path / "marked.html") == [Block("table", "联系人 | 王老师"), Block("table", "电话 | 028-8566-3200")]


def test_the_rule_for_an_unmarked_first_row():
    data = [["书法", "24课时", "3000元"], ["编程", "48课时", "6800元"]]
    assert has_header([["课程", "课时", "费用"], *data], None)
    # a first row with figures in every column is data: no column is told apart from the rows below
    assert not has_header([["绘画", "24课时", "2800元"], *data], None)
    # nothing below is a figure: the first row cannot be told from the others
    assert not has_header([["课程", "老师", "教室"], ["书法", "王老师", "一楼"], ["编程", "李老师", "二楼"]], None)
    # a sentence, a repeated cell or an empty one is no column name
    assert not has_header([["课程费用如下：", "课时", "费用"], *data], None)
    assert not has_header([["课程", "费用", "费用"], *data], None)
    assert not has_header([["课程", "", "费用"], *data], None)
    # a header that marks itself is believed, a header row of empty cells names nothing
    assert has_header([["课程", "老师"], ["书法", "王老师"]], True)
    assert not has_header([["", ""], ["书法", "王老师"]], True)
    assert not has_header([["课程", "课时", "费用"]], True)  # no rows under it


def test_html_th_cells_mark_the_header_and_markdown_without_a_rule_is_judged_by_its_cells(tmp_path):
    html = "<table><tr><th>课程</th><th>老师</th></tr><tr><td>书法</td><td>王老师</td></tr></table><p>报名请到前台。</p>"
    (tmp_path / "teachers.html").write_text(html, encoding="utf-8")
    blocks = read_document(tmp_path / "teachers.html").blocks
    assert blocks == [Block("record", "课程：书法，老师：王老师"), Block("paragraph", "报名请到前台。")]
    (tmp_path / "contacts.md").write_text("# 联系\n\n" + "\n".join(f"| {k} | {v} |" for k, v in CONTACTS) + "\n",
                                          encoding="utf-8")
    assert _rows(tmp_path / "contacts.md") == [Block("table", " | ".join(row)) for row in CONTACTS]


def test_empty_missing_extra_and_merged_cells():
    names = ["课程", "平日价", "周末价"]
    assert labelled_row(names, ["书法", "", "480元"]) == "课程：书法，周末价：480元"  # empty: left out
    assert labelled_row(names, ["书法", "380元"]) == "课程：书法，平日价：380元"  # fewer: from the left
    assert labelled_row(names, ["书法", "380元", "480元", "含教材"]) == "课程：书法，平日价：380元，周末价：480元，含教材"
    assert labelled_row(names, ["书法", "380元", "380元"]) == "课程：书法，平日价、周末价：380元"  # merged
    assert labelled_row(["", "上午", "下午"], ["周一", "9:00", "14:00"]) == "周一，上午：9:00，下午：14:00"
    # the separators are no sentence ends: the row is embedded as one sentence
    row = labelled_row(names, ["书法", "380元。", "480元；"])
    assert row == "课程：书法，平日价：380元，周末价：480元" and split_sentences(row) == [row]


def docx_with_merged_cell(path: Path, rows: list[list[str]], row: int, first: int, text: str) -> Path:
    """A DOCX of one table whose cells ``first`` and ``first + 1`` of ``row`` are merged into ``text``."""
    import docx

    document = docx.Document()
    table = document.add_table(rows=len(rows), cols=len(rows[0]))
    for r, cells in enumerate(rows):
        for c, cell in enumerate(cells):
            table.cell(r, c).text = cell
    table.cell(row, first).merge(table.cell(row, first + 1)).text = text
    document.save(str(path))
    return path


def test_a_merged_docx_cell_is_written_once_with_both_column_names(tmp_path):
    docx_with_merged_cell(tmp_path / "tickets.docx", [["票种", "平日价", "周末价"], ["全天票", "380元", "480元"],
                                                      ["夜场票", "", ""]], 2, 1, "200元")
    assert _rows(tmp_path / "tickets.docx") == [Block("record", "票种：全天票，平日价：380元，周末价：480元"),
                                                 Block("record", "票种：夜场票，平日价、周末价：200元")]


def test_equal_neighbouring_cells_are_kept_unless_the_document_says_they_are_one_merged_cell(tmp_path):
    # a timetable with no header row: two equal cells side by side are two values, in every format
    hours = [["周一", "休息", "休息"], ["周二", "9:00-12:00", "14:00-17:00"]]
    for name, render in (("hours.html", to_html), ("hours.txt", to_text)):
        (tmp_path / name).write_text(render(_doc(hours)), encoding="utf-8")
    markdown = "# 开放时间\n\n" + "\n".join(f"| {' | '.join(row)} |" for row in hours) + "\n"  # no |---| rule
    (tmp_path / "hours.md").write_text(markdown, encoding="utf-8")
    write_docx(_doc(hours), tmp_path / "hours.docx")
    for name in ("hours.md", "hours.html", "hours.txt", "hours.docx"):
        assert _rows(tmp_path / name) == [Block("table", " | ".join(row)) for row in hours], name
    # a DOCX cell merged across two columns is one value, written once
    assert _rows(docx_with_merged_cell(tmp_path / "merged.docx", hours, 0, 1, "全天休息")) == [Block("table", "周一 | 全天休息"),
                                               Block("table", "周二 | 9:00-12:00 | 14:00-17:00")]


def test_a_long_labelled_table_is_cut_between_rows_and_every_part_reads_on_its_own(tmp_path):
    rows = [["课程", "课时", "费用"]] + [[f"课程{i}", f"{i + 10}课时", f"{i}00元"] for i in range(30)]
    rows.insert(16, rows[0])  # a header repeated on a second page
    (tmp_path / "fees.md").write_text(to_markdown(_doc(rows)), encoding="utf-8")
    (tmp_path / "fees.html").write_text(to_html(_doc(rows)), encoding="utf-8")
    for name in ("fees.md", "fees.html"):
        chunks = chunk_document(read_document(tmp_path / name), max_chars=120)
        assert len(chunks) > 3
        lines = [line for c in chunks for line in c.text.split("\n")]
        assert lines == [f"课程：课程{i}，课时：{i + 10}课时，费用：{i}00元" for i in range(30)]  # no header line
        assert all(c.heading_path == ["一、借阅"] and len(c.text) <= 120 for c in chunks)
        assert all(s.startswith("课程：") for c in chunks for s in c.sentences())


def test_a_long_cell_keeps_its_row_whole_and_a_table_of_unknown_header_repeats_its_first_row():
    long = "。".join(f"第{i}条说明" for i in range(40)) + "。"
    doc = Document("价目", [Block("record", labelled_row(["项目", "说明"], ["打印", long])),
                            Block("paragraph", "以上价格含税。")])
    chunks = chunk_document(doc, max_chars=60)
    assert chunks[0].text == f"项目：打印，说明：{long[:-1]}" and chunks[1].text == "以上价格含税。"
    unknown = [Block("table", "课程 | 老师")] + [Block("table", f"课程{i} | 老师{i}") for i in range(20)]
    chunks = chunk_document(Document("课表", unknown), max_chars=60)
    assert len(chunks) > 1 and all(c.text.startswith("课程 | 老师\n") for c in chunks)


async def test_an_index_built_by_an_earlier_reading_reads_every_file_again_once(tmp_path, monkeypatch):
    # an operator upgrading keeps the index on disk: files unchanged since, written as the earlier
    # version read them (pipes), are read again once so their tables get their column names
    from core.testing import running_bot
    from plugins.knowledge import indexer
    from tests.test_knowledge import knowledge, knowledge_settings, wait_for_index

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "loans.md").write_text(to_markdown(_doc(LOANS)), encoding="utf-8")
    settings = knowledge_settings(folder, tmp_path / "index")
    current = indexer.READING
    monkeypatch.setattr(indexer, "READING", 1)
    async with running_bot(settings) as bot:
        await wait_for_index(knowledge(bot), 1)
        assert (await knowledge(bot).store.documents())["loans.md"].signature.startswith("r1:")
    monkeypatch.setattr(indexer, "READING", current)
    async with running_bot(settings) as bot:
        plugin = knowledge(bot)
        await wait_for_index(plugin, 1)
        assert (await plugin.store.documents())["loans.md"].signature.startswith(f"r{current}:")  # read again
        report = await plugin.sync()
        assert not report.changed  # once
        kept, _ = await plugin.retriever.search("少儿读者证能借几本")
        assert kept and kept[0].chunk.text.startswith("读者证类型：")
