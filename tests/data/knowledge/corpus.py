"""The documents of an invented organisation (青禾书院, an after-school academy) in five formats,
with questions whose answer passage is known and questions the documents do not cover.

``write_corpus(folder)`` writes the Markdown, TXT, HTML and DOCX files (python-docx) and copies the
PDF carried beside this file (``refund_and_leave.pdf``, made by ``python tests/data/knowledge/corpus.py``
with fpdf2 and the WenQuanYi Zen Hei font: a real PDF with embedded CJK glyphs and a ToUnicode map).
"""
from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).parent
PDF = HERE / "refund_and_leave.pdf"
FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")

# Each document: title, then sections of (heading, [items]); an item is a paragraph (str), a list
# ("list", [...]) or a table ("table", [[header...], [row...], ...]).
ENROLMENT = ("青禾书院招生简章", [
    ("一、课程设置", [
        "青禾书院面向6至16岁的青少年开设以下课程，每班不超过12人。",
        ("list", ["少儿编程：适合8至14岁，从Scratch图形化编程学到Python。",
                  "英语口语：外教与中教搭配，注重日常会话。",
                  "书法：硬笔与毛笔，从楷书入门。",
                  "围棋：启蒙班与提高班，按棋力分班。"]),
    ]),
    ("二、课程费用", [
        ("table", [["课程", "课时", "费用"], ["少儿编程", "48课时", "6800元"], ["英语口语", "40课时", "5200元"],
                   ["书法", "32课时", "3600元"], ["围棋", "32课时", "3900元"]]),
        "教材费已包含在课程费用中，不另外收费。",
    ]),
    ("三、报名方式", [
        "报名需携带学生户口本或身份证复印件，到前台填写报名表；也可以在公众号菜单“在线报名”提交。报名时缴纳200元定金，定金可抵学费。",
    ]),
    ("四、试听课", [
        "每位新学员可以免费试听一节课。试听需要提前一天预约，名额有限，约满为止。",
    ]),
    ("五、开班时间", [
        "春季班3月1日开课，秋季班9月10日开课，暑期集训营7月15日开营，为期三周。",
    ]),
    ("六、优惠政策", [
        "兄弟姐妹同时报名，每人学费减免10%。老学员续费享受九五折。以上优惠不可叠加使用。",
    ]),
])

REFUND = ("退费与请假管理办法", [
    ("第一章 退费", [
        "开课前申请退费的，全额退还已交费用。开课后已上课时未满总课时三分之一的，退还剩余课时费用的80%；"
        "已上课时超过总课时三分之一的，不予退费。",
        "退费申请审核通过后，款项在7个工作日内按原支付方式退回。",
    ]),
    ("第二章 请假与补课", [
        "学员请假须至少提前24小时通过班主任或公众号提交。每期课程最多请假4次，请假的课程可以在本期内安排补课。",
        "未请假而缺课的，视为已上课，不安排补课。",
    ]),
    ("第三章 转班", [
        "开课后两周内，学员可以免费转班一次。转入课程的费用多退少补。",
    ]),
])

CAMPUSES = ("校区与开放时间", [
    ("西湖校区", [
        "地址：杭州市西湖区文三路188号青禾大厦3楼。",
        "交通：地铁2号线文三路站B口出站，步行约5分钟。",
    ]),
    ("滨江校区", [
        "地址：杭州市滨江区江南大道1024号2楼。",
        "大厦地下停车场对学员家长前两小时免费停车，离开时在前台盖章。",
    ]),
    ("开放时间", [
        ("table", [["日期", "开放时间"], ["周一至周五", "14:00-21:00"], ["周六、周日", "8:30-18:00"],
                   ["法定节假日（含国庆、春节）", "休息"]]),
    ]),
    ("联系方式", [
        "前台电话：0571-8888-6060（开放时间内有人接听）。电子邮箱：hello@qinghe.example。",
    ]),
])

FAQ_PAGE = ("常见问题", [
    ("上课需要自带电脑吗？", ["少儿编程课由书院提供电脑，学员不需要自带。如果想用自己的笔记本，请提前安装好Scratch 3.0。"]),
    ("教室有没有无线网络？", ["两个校区都有免费Wi-Fi，网络名称为Qinghe-Student，密码请到前台领取。"]),
    ("家长可以陪同上课吗？", ["8岁以下的学员，家长可以在教室后排陪同；其他学员的家长请在休息区等候。"]),
    ("结业有证书吗？", ["完成全部课时且出勤率达到90%的学员，颁发青禾书院结业证书。少儿编程学员还可以报名参加全国青少年编程等级考试。"]),
])

TEACHERS = ("教师团队介绍", [
    ("一、编程组", ["王磊老师，计算机硕士，有十年少儿编程教学经验，负责少儿编程高级班。"]),
    ("二、英语组", ["Emily Chen老师，英语母语水平，持有TESOL国际英语教师资格证书，负责英语口语课程。"]),
    ("三、书法围棋组", ["李静老师，中国书法家协会会员，负责书法课。", "赵明老师，围棋业余五段，负责围棋课。"]),
])

#: (question, the document's file name, a phrase only the answer passage holds)
QUESTIONS = [
    ("少儿编程课多少钱？", "enrolment.docx", "6800"),
    ("书法课学费是多少", "enrolment.docx", "3600"),
    ("围棋课收费多少", "enrolment.docx", "3900"),
    ("怎么报名？", "enrolment.docx", "报名表"),
    ("报名要交定金吗", "enrolment.docx", "200元定金"),
    ("可以免费试听吗", "enrolment.docx", "免费试听"),
    ("秋季班什么时候开课", "enrolment.docx", "9月10日"),
    ("暑期集训营几号开营", "enrolment.docx", "7月15日"),
    ("两个孩子一起报名有优惠吗", "enrolment.docx", "减免10%"),
    ("老学员续费打折吗", "enrolment.docx", "九五折"),
    ("开课以后还能退费吗", "refund_and_leave.pdf", "三分之一"),
    ("退款多久能到账", "refund_and_leave.pdf", "7个工作日"),
    ("请假要提前多久", "refund_and_leave.pdf", "24小时"),
    ("一学期最多能请几次假", "refund_and_leave.pdf", "4次"),
    ("可以转班吗", "refund_and_leave.pdf", "转班一次"),
    ("无故缺课怎么算", "refund_and_leave.pdf", "视为已上课"),
    ("西湖校区在哪里", "campuses.md", "文三路188号"),
    ("滨江校区停车方便吗", "campuses.md", "免费停车"),
    ("周末几点开门", "campuses.md", "8:30"),
    ("国庆节上课吗", "campuses.md", "法定节假日"),
    ("前台电话是多少", "campuses.md", "0571-8888-6060"),
    ("坐地铁怎么去西湖校区", "campuses.md", "2号线"),
    ("上编程课要带电脑吗", "faq.html", "不需要自带"),
    ("教室的wifi密码是多少", "faq.html", "Qinghe-Student"),
    ("家长能陪孩子上课吗", "faq.html", "后排陪同"),
    ("学完有证书吗", "faq.html", "结业证书"),
    ("教材要另外付钱吗", "enrolment.docx", "不另外收费"),
    ("编程课是哪位老师教", "teachers.txt", "王磊"),
    ("英语老师有什么资质", "teachers.txt", "TESOL"),
    ("围棋老师是几段", "teachers.txt", "五段"),
]

#: Questions the documents do not answer: they must be declined or passed on.
UNCOVERED = [
    "今天股市行情怎么样", "帮我写一首关于秋天的诗", "红烧肉怎么做", "地球到月球有多远",
    "推荐几部好看的电影", "感冒了吃什么药", "北京有哪些好玩的地方", "世界上最高的山是什么",
    "怎么减肥最快", "给我讲个笑话", "苹果手机怎么截图", "人工智能会取代人类吗", "信用卡逾期怎么办",
    "猫咪不吃东西怎么办", "翻译一下hello world", "比特币值得投资吗", "周杰伦有哪些歌",
    "高铁票怎么改签", "如何煮出好喝的咖啡", "火星上有水吗",
]


# ---- writers -----------------------------------------------------------------------------------

def to_markdown(doc: tuple) -> str:
    title, sections = doc
    out = [f"# {title}", ""]
    for heading, items in sections:
        out += [f"## {heading}", ""]
        for item in items:
            if isinstance(item, str):
                out += [item, ""]
            elif item[0] == "list":
                out += [f"- {x}" for x in item[1]] + [""]
            else:
                rows = item[1]
                out.append("| " + " | ".join(rows[0]) + " |")
                out.append("|" + "---|" * len(rows[0]))
                out += ["| " + " | ".join(r) + " |" for r in rows[1:]] + [""]
    return "\n".join(out)


def to_text(doc: tuple) -> str:
    title, sections = doc
    out = [title, ""]
    for heading, items in sections:
        out += [heading]
        for item in items:
            if isinstance(item, str):
                out += [item, ""]
            elif item[0] == "list":
                out += [f"- {x}" for x in item[1]] + [""]
            else:
                out += ["\t".join(r) for r in item[1]] + [""]
    return "\n".join(out)


def to_html(doc: tuple) -> str:
    title, sections = doc
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>",
           "<script>var tracking = '不应出现在索引里';</script></head><body>",
           "<nav>首页 | 关于我们 | 联系我们</nav>", f"<h1>{title}</h1>"]
    for heading, items in sections:
        out.append(f"<h2>{heading}</h2>")
        for item in items:
            if isinstance(item, str):
                out.append(f"<p>{item}</p>")
            elif item[0] == "list":
                out.append("<ul>" + "".join(f"<li>{x}</li>" for x in item[1]) + "</ul>")
            else:
                out.append("<table>" + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>"
                                               for r in item[1]) + "</table>")
    out.append("</body></html>")
    return "\n".join(out)


def write_docx(doc: tuple, path: Path) -> None:
    import docx

    title, sections = doc
    document = docx.Document()
    document.core_properties.title = title
    document.add_heading(title, level=0)
    for heading, items in sections:
        document.add_heading(heading, level=1)
        for item in items:
            if isinstance(item, str):
                document.add_paragraph(item)
            elif item[0] == "list":
                for x in item[1]:
                    document.add_paragraph(x, style="List Bullet")
            else:
                rows = item[1]
                table = document.add_table(rows=len(rows), cols=len(rows[0]))
                for r, row in enumerate(rows):
                    for c, cell in enumerate(row):
                        table.cell(r, c).text = cell
    document.save(str(path))


def write_pdf(doc: tuple, path: Path) -> None:
    from fpdf import FPDF

    title, sections = doc
    pdf = FPDF()
    pdf.set_title(title)
    pdf.add_font("zenhei", "", str(FONT), collection_font_number=0)
    pdf.add_page()
    pdf.set_font("zenhei", size=16)
    pdf.multi_cell(0, 10, title, new_x="LMARGIN", new_y="NEXT")
    for heading, items in sections:
        pdf.set_font("zenhei", size=13)
        pdf.multi_cell(0, 9, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("zenhei", size=11)
        for item in items:
            pdf.multi_cell(0, 7, item, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
    pdf.output(str(path))


def write_documents(folder: Path, documents: dict[str, tuple], pdfs: dict[str, Path] | None = None) -> dict[str, Path]:
    """Write each document into ``folder`` in the format its file name ends with (.docx, .md,
    .html, .txt); a PDF is copied from its committed file (``pdfs``: file name -> that file).
    Returns every file by name."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / name for name in (*documents, *(pdfs or {}))}
    for name, source in (pdfs or {}).items():
        shutil.copyfile(source, files[name])
    for name, doc in documents.items():
        if name.endswith(".docx"):
            write_docx(doc, files[name])
        else:
            render = {".md": to_markdown, ".html": to_html, ".txt": to_text}[Path(name).suffix]
            files[name].write_text(render(doc), encoding="utf-8")
    return files


def write_corpus(folder: Path) -> dict[str, Path]:
    """Write the five documents into ``folder``; returns them by file name."""
    return write_documents(folder, {"enrolment.docx": ENROLMENT, "campuses.md": CAMPUSES,
                                    "faq.html": FAQ_PAGE, "teachers.txt": TEACHERS},
                           pdfs={"refund_and_leave.pdf": PDF})


if __name__ == "__main__":
    write_pdf(REFUND, PDF)
    print(f"wrote {PDF} ({PDF.stat().st_size} bytes)")
