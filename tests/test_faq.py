"""The FAQ engine: the operator's file, its validation, and retrieval over jieba tokens."""
from __future__ import annotations

import itertools

import jinja2.meta
import pytest

from core.processing.segmenter import Segmenter
from core.processing.templating import text_environment
from plugins.faq.config import Config
from plugins.faq.engine import (
    PER_MESSAGE_VARIABLES,
    FaqError,
    FaqIndex,
    load_faq,
    parse_faq,
)

ENV = text_environment()


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    s = Segmenter()
    s.initialize()
    return s


@pytest.fixture(scope="module")
def demo(seg):
    data = load_faq(Config().resolved_path(), ENV)
    seg.add_words(data.jieba_words())
    return data, FaqIndex(data, seg)


def best(index, seg, text):
    matches = index.search(text, seg.tokenize(text), limit=3)
    return matches[0] if matches else None


# ---- the demo file -------------------------------------------------------------------------------

def test_demo_faq_is_large_varied_and_every_answer_renders(demo):
    data, _ = demo
    assert len(data.entries) >= 30
    for topic in ("business_hours", "return_goods", "refund", "shipping_fee", "free_shipping",
                  "ship_time", "track_order", "invoice", "contact_service", "points", "coupon",
                  "size_guide", "payment", "change_address", "cancel_order", "warranty",
                  "seven_day_return", "price_protection", "store_location", "presale",
                  "out_of_stock", "wrong_item", "damaged", "bulk_purchase", "privacy"):
        assert topic in data.entries
    known = set(data.variables) | PER_MESSAGE_VARIABLES
    for entry in data.entries.values():
        assert len(entry.questions) >= 3, entry.id
        used = jinja2.meta.find_undeclared_variables(ENV.parse(entry.answer))
        assert used <= known, f"{entry.id} uses undefined {used - known}"
        text = entry.template.render(data.variables)
        assert text.strip() and "{{" not in text and "{%" not in text


# ---- validation ----------------------------------------------------------------------------------

GOOD = '[[entry]]\nid = "a"\nquestions = ["怎么退款"]\nanswer = "退款说明"\n'


@pytest.mark.parametrize("content, message", [
    ("[[entry]\nid = 1", "not valid TOML"),
    ("title = 'x'\n" + GOOD, "unknown key 'title'"),
    ('[[entry]]\nid = "a"\nquestions = ["q"]\n', "entry 'a': answer is missing"),
    ('[[entry]]\nid = "a"\nquestions = []\nanswer = "x"\n', "entry 'a': questions: must not be empty"),
    ('[[entry]]\nid = "a"\nquestions = "q"\nanswer = "x"\n', "entry 'a': questions: expected a list"),
    ('[[entry]]\nid = "a b"\nquestions = ["q"]\nanswer = "x"\n', "entry #1: id must be"),
    (GOOD + GOOD, "entry 'a': duplicate id"),
    ('[[entry]]\nid = "a"\nquestions = ["q"]\nanswer = "{{ name"\n', "entry 'a': answer template line 1"),
    ('[[entry]]\nid = "a"\nquestions = ["q"]\nanswer = "x"\ncolour = "red"\n', "entry 'a': unknown key 'colour'"),
    ('[synonyms]\n"退款" = ["退钱"]\n"返还" = ["退钱"]\n' + GOOD, "synonym '退钱' listed under both"),
    ("[variables]\nphone = [1]\n" + GOOD, "[variables] must map"),
    ("", "no [[entry]] tables"),
])
def test_broken_files_are_rejected_with_the_reason(content, message):
    with pytest.raises(FaqError) as info:
        parse_faq(content.encode(), ENV, source="faq.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("faq.toml")


def test_missing_file_and_bad_encoding_are_reported(tmp_path):
    with pytest.raises(FaqError, match="cannot read"):
        load_faq(tmp_path / "nope.toml", ENV)
    with pytest.raises(FaqError, match="not UTF-8"):
        parse_faq("问题".encode("gbk"), ENV)


def test_answers_using_per_message_variables_are_marked_dynamic():
    data = parse_faq('''
[[entry]]
id = "static"
questions = ["q1"]
answer = "电话 {{ phone }}"
[[entry]]
id = "personal"
questions = ["q2"]
answer = "{{ nickname or '亲' }}，今天是 {{ date }}"
'''.encode(), ENV)
    assert not data.entries["static"].dynamic
    assert data.entries["personal"].dynamic
    assert data.version and len(data.version) == 12


# ---- retrieval -------------------------------------------------------------------------------------

def test_paraphrases_reach_their_entry(demo, seg):
    _, index = demo
    for text, entry in [("我要退钱", "refund"), ("邮费多少", "shipping_fee"), ("能开票不", "invoice"),
                        ("包裹走到哪了", "track_order"), ("天气预报这个APP怎么退款", "refund"),
                        ("下雨天快递会延迟吗", "shipping_delay")]:
        match = best(index, seg, text)
        assert match is not None and match.entry_id == entry, (text, match)
        assert 0.0 < match.score <= 1.0


def test_synonyms_fold_into_their_word(demo, seg):
    _, index = demo
    features, _ = index.features("咋退钱", seg.tokenize("咋退钱"))
    assert "退款" in features and "怎么" in features


def test_a_keyword_inside_a_longer_keyword_does_not_count(demo, seg):
    _, index = demo
    match = best(index, seg, "买多少可以免运费")
    assert match.entry_id == "free_shipping" and match.keywords == ["免运费"]


def test_chit_chat_scores_below_the_default_threshold(demo, seg):
    _, index = demo
    threshold = Config().threshold
    for text in ("你好", "讲个笑话", "你是谁", "今天心情不好", "北京明天天气怎么样", "人生的意义是什么"):
        match = best(index, seg, text)
        assert match is None or match.score < threshold, (text, match)


def test_the_faq_as_a_whole_covers_words_no_single_entry_has(seg):
    data = parse_faq("""
[[entry]]
id = "tuition"
questions = ["学费多少钱"]
answer = "保教费每月 2800 元，伙食费每天 18 元。"

[[entry]]
id = "bus"
questions = ["有校车吗"]
answer = "校车覆盖周边三公里。"
""".encode(), ENV)
    index = FaqIndex(data, seg)
    text = "校车和伙食费怎么收"
    cover_q, cover_a, cover_all, _ = index.coverages(text, seg.tokenize(text))
    # 校车 is in one entry's question, 伙食费 in another's answer: only the whole FAQ has both
    assert cover_all > max(cover_q.max(), cover_a.max()) and cover_all > 0.5
    assert index.coverage(text, seg.tokenize(text))[0].tolist() == cover_q.tolist()
    other = "今天股市涨了吗"
    assert index.coverages(other, seg.tokenize(other))[2] < 0.2


# ---- one threshold for a 10-entry and a 5,000-entry FAQ ---------------------------------------------

ADJ = ["智能", "无线", "便携", "家用", "迷你", "专业", "静音", "折叠", "复古", "儿童",
       "商务", "户外", "加厚", "超薄", "大容量", "多功能", "陶瓷", "不锈钢", "实木", "竹制"]
NOUN = ["电饭煲", "吹风机", "台灯", "加湿器", "耳机", "保温杯", "背包", "跑鞋", "雨伞", "键盘",
        "电热水壶", "空气炸锅", "行李箱", "榨汁机", "电风扇", "收纳盒", "茶具", "书架", "床垫",
        "枕头", "手表", "音箱", "剃须刀", "牙刷", "咖啡机"]
TOPICS = [["{p}的保修期是多久", "{p}坏了怎么保修"], ["{p}什么时候有货", "{p}缺货了吗"],
          ["{p}的说明书在哪里", "{p}说明书能下载吗"], ["{p}需要上门安装吗", "{p}怎么安装"],
          ["{p}怎么清洗", "{p}可以水洗吗"], ["{p}有哪些颜色", "{p}有别的颜色吗"],
          ["{p}的尺寸是多少", "{p}有多大"], ["{p}能开发票吗", "{p}发票怎么开"],
          ["{p}有赠品吗", "{p}送什么赠品"], ["{p}能七天无理由退货吗", "{p}拆封了还能退货吗"]]


def product_names(count: int) -> list[str]:
    pairs = itertools.islice(itertools.product(ADJ, NOUN), count)
    return [f"{a}{b}{'ABCDEFGHJK'[i % 10]}{i % 97 + 1}" for i, (a, b) in enumerate(pairs)]


def generated_faq(entries: int) -> bytes:
    lines: list[str] = []
    names = product_names((entries + len(TOPICS) - 1) // len(TOPICS))
    for k, (name, topic) in enumerate(itertools.islice(itertools.product(names, TOPICS), entries)):
        questions = ", ".join(f'"{q.format(p=name)}"' for q in topic)
        lines += ["[[entry]]", f'id = "e{k}"', f"questions = [{questions}]", f'answer = "答案 {k}"', ""]
    return "\n".join(lines).encode()


def test_one_threshold_works_on_a_10_and_a_5000_entry_faq(seg):
    threshold = Config().threshold
    product = product_names(1)[0]
    positives = [(f"{product}保修期多长", "e0"), (f"{product}啥时候有货", "e1"),
                 (f"{product}说明书在哪下载", "e2"), (f"{product}能上门安装吗", "e3"),
                 (f"{product}脏了怎么清洗", "e4"), (f"{product}还有别的颜色吗", "e5")]
    negatives = ["你好", "讲个笑话", "今天心情不好", "北京明天天气怎么样", "你是谁", "我想学做菜",
                 "推荐一部好看的电影", "人生的意义是什么", "怎么才能睡个好觉", "帮我写个请假条"]
    scores = {}
    for size in (10, 5000):
        data = parse_faq(generated_faq(size), ENV)
        assert len(data.entries) == size
        index = FaqIndex(data, seg)
        for text, entry in positives:
            match = best(index, seg, text)
            assert match.entry_id == entry and match.score >= threshold, (size, text, match)
            scores.setdefault(text, []).append(match.score)
        for text in negatives:
            match = best(index, seg, text)
            assert match is None or match.score < threshold, (size, text, match)
    # the score of a message for an entry does not depend on how many other entries exist
    for text, (small, large) in scores.items():
        assert small == pytest.approx(large), text
