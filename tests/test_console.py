"""The operator console (/admin, core/operations/console*.py): login and CSRF, the traffic ring,
question grouping, FAQ writes (backup, hot reload seen by a real message), transcripts off by
default, plugin switches. Through the app built by create_app, over its real HTTP handler."""
from __future__ import annotations

import html as html_module
import json
import logging
import re
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import pytest

from core import Counter, hookimpl
from core.app import create_app
from core.appkeys import ACCOUNTS_KEY, GATEWAY_KEY
from core.operations.chat_console import signer_for
from core.operations.console import percentile, session_nonce
from core.operations.console_questions import (FaqEditError, bigram_similarity, embedding_similarity,
                                               frequent_texts, group_questions, write_faq)
from core.operations.console_traffic import TrafficRing, Transcripts
from core.operations.metrics import Histogram
from core.operations.wechat_client import text_xml
from core.settings import load_settings
from core.testing import running_bot

TOKEN = "console-s3cret"
NO_ANSWER = "抱歉，我暂时没有理解您的意思，可以换个说法试试。"

FAQ = '''\
# The shop's FAQ: comments must survive the console's edits.
[[entry]]
id = "shipping"
questions = [
    "运费多少",
    "包邮吗",  # the common one
]
answer = "满 99 元包邮。"

[[entry]]
id = "invoice"
questions = ["怎么开发票", "能开发票吗"]
answer = "下单时选择开具发票即可。"
'''

SETTINGS = '''\
[server]
admin_token = "{token}"
reload_interval = 0

[wechat]
token = "testtoken"

[ratelimit]
burst = 1000

[paths]
data_dir = "{data}"

[console]
transcripts = {transcripts}

[plugins]
enabled = ["faq", "smalltalk"]
entry_points = false

[plugins.faq]
path = "{faq}"
reload_interval = 0.05      # the test waits for the reload, not a time
'''

#: A group the FAQ below misses: session 7's model answers 能寄到新疆吗, this group's text before
#: it, with the shipping entry on its own, while it still declines 新疆发货吗.
LOG_ROWS = [
    ("2026-11-26T01:00:00Z", "declined", "新疆发货吗", "shipping", "0.4000", "-"),
    ("2026-11-26T01:01:00Z", "declined", "新疆发货吗", "shipping", "0.4000", "-"),
    ("2026-11-26T01:02:00Z", "declined", "新疆发不发货", "shipping", "0.3900", "-"),
    ("2026-11-26T01:03:00Z", "low", "发票抬头写错了怎么办", "invoice", "0.6000", "faq"),
]


def write_log(data: Path, rows=LOG_ROWS) -> None:
    path = data / "faq" / "questions.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")


class Console:
    def __init__(self, app, client, tmp: Path) -> None:
        self.app, self.client, self.tmp = app, client, tmp
        self.signer = signer_for(app[GATEWAY_KEY].bot.settings)
        self.faq = tmp / "faq.toml"
        self.data = tmp / "data"

    async def login(self, token: str = TOKEN):
        return await self.client.post("/admin/login", data={"token": token}, allow_redirects=False)

    async def csrf(self, page: str = "/admin/overview") -> str:
        html = await (await self.client.get(page)).text()
        return re.search(r'name="csrf" value="([^"]+)"', html).group(1)

    async def say(self, text: str, user: str = "o_customer") -> str:
        request = self.signer.sign(text_xml(text, from_user=user))
        response = await self.client.post("/wechat", params=request.params, data=request.body)
        assert response.status == 200
        fields = self.signer.open_reply(await response.text())
        return fields["Content"] if fields else ""


@pytest.fixture
def console(aiohttp_client, tmp_path):
    async def make(token: str = TOKEN, transcripts: bool | None = None, extra: str = "",
                   plugins: dict | None = None) -> Console:
        (tmp_path / "faq.toml").write_text(FAQ, encoding="utf-8")
        text = SETTINGS.format(token=token, data=tmp_path / "data", faq=tmp_path / "faq.toml",
                               transcripts="false" if transcripts is None else str(transcripts).lower())
        if transcripts is None:  # the default: the key absent
            text = text.replace("[console]\ntranscripts = false\n", "")
        text += extra
        (tmp_path / "settings.toml").write_text(text, encoding="utf-8")
        app = create_app(load_settings(tmp_path / "settings.toml"), plugins)
        return Console(app, await aiohttp_client(app), tmp_path)
    return make


# ---- units -----------------------------------------------------------------------------------

def test_grouping_puts_similar_questions_together_with_counts():
    groups = group_questions(LOG_ROWS, bigram_similarity(), 0.3)
    assert [(g.text, g.count) for g in groups] == [("新疆发货吗", 3), ("发票抬头写错了怎么办", 1)]
    first = groups[0]
    assert first.members == [("新疆发货吗", 2), ("新疆发不发货", 1)]
    assert first.kinds["declined"] == 3 and first.nearest == "shipping"
    # A higher threshold keeps them apart; handled texts are left out.
    assert len(group_questions(LOG_ROWS, bigram_similarity(), 0.9)) == 3
    assert [g.text for g in group_questions(LOG_ROWS, bigram_similarity(), 0.3,
                                            {"新疆发货吗", "新疆发不发货"})] == ["发票抬头写错了怎么办"]


async def test_grouping_by_the_bots_embeddings_joins_questions_with_no_shared_words():
    rows = [("2026-11-26T01:00:00Z", "declined", text, "-", "0.4", "-")
            for text in ("能寄到新疆吗", "新疆能发货吗", "发票抬头写错了怎么办", "开错发票了能重开吗")]
    assert len(group_questions(rows, bigram_similarity(), 0.5)) == 4  # bigrams see nothing alike
    async with running_bot({"semantic": {"enabled": True}}) as bot:
        threshold = bot.settings.console.group_threshold_semantic
        similarity = await embedding_similarity(frequent_texts(rows), bot.embeddings.embed_query)
    groups = group_questions(rows, similarity, threshold)
    assert sorted(sorted(t for t, _ in g.members) for g in groups) == sorted([
        sorted(["开错发票了能重开吗", "发票抬头写错了怎么办"]), sorted(["能寄到新疆吗", "新疆能发货吗"])])


def test_faq_write_adds_a_phrasing_keeps_comments_and_backs_up(tmp_path):
    path = tmp_path / "faq.toml"
    path.write_text(FAQ, encoding="utf-8")
    backup = write_faq(path, "phrasing", "shipping", "新疆发货吗",
                       now=datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc))
    assert backup.name.startswith("faq.toml.20261126T030000") and backup.read_text(encoding="utf-8") == FAQ
    text = path.read_text(encoding="utf-8")
    assert "# The shop's FAQ" in text and "# the common one" in text
    entries = {e["id"]: e for e in tomllib.loads(text)["entry"]}
    assert entries["shipping"]["questions"] == ["运费多少", "包邮吗", "新疆发货吗"]
    write_faq(path, "phrasing", "invoice", "发票抬头错了")  # a one-line array
    assert tomllib.loads(path.read_text(encoding="utf-8"))["entry"][1]["questions"][-1] == "发票抬头错了"
    write_faq(path, "entry", "gift_wrap", "可以包装成礼物吗", answer="可以，下单时备注“礼物”。")
    entries = {e["id"]: e for e in tomllib.loads(path.read_text(encoding="utf-8"))["entry"]}
    assert entries["gift_wrap"]["answer"] == "可以，下单时备注“礼物”。"
    for edit, entry, reason in (("phrasing", "nope", "unknown_entry"), ("entry", "shipping", "duplicate_id"),
                                ("entry", "bad id", "bad_id"), ("phrasing", "shipping", "already_there")):
        with pytest.raises(FaqEditError, match=reason):
            write_faq(path, edit, entry, "新疆发货吗", answer="x")


def test_traffic_ring_is_bounded_and_counts_by_dimension():
    ring = TrafficRing(minutes=3)
    for minute in range(10):
        ring.record("faq.shipping", "faq", "answered", now=minute * 60.0)
    ring.record("none", "core", "no_answer", now=9 * 60.0 + 5)
    assert len(ring.buckets) == 3
    series = ring.series("outcome", now=9 * 60.0 + 30)
    assert series["rows"] == {"answered": [1, 1, 1], "no_answer": [0, 0, 1]}
    assert series["labels"] == ["answered", "no_answer"]


def test_transcripts_drop_lines_past_their_retention():
    kept = Transcripts()
    kept.record("u1", "你好", "您好", retention_hours=1, now=0.0)
    kept.record("u1", "在吗", "在的", retention_hours=1, now=3000.0)
    kept.record("u2", "hi", "hello", retention_hours=1, now=4000.0)
    assert [line[1] for line in kept.users["u1"]] == ["在吗"]  # the first is over an hour old


def test_percentiles_from_a_metrics_histogram():
    histogram = Histogram("h", "help", ("stage",), buckets=(0.1, 0.2, 0.4))
    for value in [0.05] * 50 + [0.15] * 45 + [0.3] * 5:
        histogram.observe(value, "pipeline")
    assert percentile(histogram, ("pipeline",), 0.5) == pytest.approx(0.1)
    assert percentile(histogram, ("pipeline",), 0.95) == pytest.approx(0.2)
    assert percentile(histogram, ("pipeline",), 0.99) == pytest.approx(0.2 + 0.2 * 4 / 5)
    assert percentile(histogram, ("other",), 0.5) is None


# ---- the web console -------------------------------------------------------------------------

async def test_console_is_absent_without_an_admin_token(console):
    c = await console(token="")
    for path in ("/admin", "/admin/overview", "/admin/static/console.js"):
        assert (await c.client.get(path)).status == 404
    assert (await c.login("")).status == 404


async def test_login_page_wrong_token_session_cookie_and_logout(console, caplog):
    caplog.set_level(logging.INFO, logger="skillbot.audit")
    c = await console()
    page = await c.client.get("/admin/questions")
    assert page.status == 401 and 'action="/admin/login"' in await page.text()
    refused = await c.login("wrong")
    assert refused.status == 403 and "口令不正确" in await refused.text()
    assert "skillbot_console" not in refused.cookies
    ok = await c.login()
    assert ok.status == 303 and ok.headers["Location"] == "/admin/overview"
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert session_nonce(TOKEN, ok.cookies["skillbot_console"].value) is not None
    assert session_nonce("another-token", ok.cookies["skillbot_console"].value) is None
    overview = await c.client.get("/admin/overview")
    assert overview.status == 200 and "流量概览" in await overview.text()
    csrf = await c.csrf()
    out = await c.client.post("/admin/logout", data={"csrf": csrf}, allow_redirects=False)
    assert out.status == 303
    assert (await c.client.get("/admin/overview")).status == 401
    outcomes = [json.loads(r.getMessage())["outcome"] for r in caplog.records if r.name == "skillbot.audit"]
    assert outcomes == ["refused", "ok"]


async def test_every_post_needs_the_session_csrf_token_and_the_same_origin(console):
    c = await console()
    write_log(c.data)
    form = {"account": "default", "edit": "phrasing", "entry": "shipping", "text": "新疆发货吗",
            "members": json.dumps(["新疆发货吗"])}
    assert (await c.client.post("/admin/questions/add", data=form, allow_redirects=False)).status == 403
    await c.login()
    csrf = await c.csrf()
    stale = await c.client.post("/admin/questions/add", data={**form, "csrf": "0" * 32}, allow_redirects=False)
    assert stale.status == 403 and "安全令牌不符" in await stale.text()
    assert (await c.client.post("/admin/questions/add", data={**form, "csrf": csrf}, allow_redirects=False,
                                headers={"Origin": "https://evil.example"})).status == 403
    assert (await c.client.post("/admin/plugins/switch", data={"plugin": "weather", "enabled": "1"},
                                allow_redirects=False)).status == 403
    assert c.faq.read_text(encoding="utf-8") == FAQ  # nothing written


async def test_a_group_becomes_a_phrasing_that_the_bot_then_answers(console, caplog):
    caplog.set_level(logging.INFO, logger="skillbot.audit")
    c = await console()
    write_log(c.data)
    assert await c.say("新疆发货吗") != "满 99 元包邮。"
    await c.login()
    html = await (await c.client.get("/admin/questions")).text()
    # the group counts every logged asking: the three written above, and the one just sent when
    # the FAQ logged it as a near miss (whether it does depends on the shipped decline model)
    logged = (c.data / "faq" / "questions.tsv").read_text(encoding="utf-8").splitlines()
    asked = sum(line.split("\t")[2] in ("新疆发货吗", "新疆发不发货") for line in logged)
    assert asked >= 3
    assert "新疆发货吗" in html and f"{asked} 次" in html and "新疆发不发货" in html
    csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    members = html_module.unescape(re.search(r"name=\"members\" value='([^']*)'", html).group(1))
    assert json.loads(members) == ["新疆发货吗", "新疆发不发货"]  # what the page posts
    done = await c.client.post("/admin/questions/add", allow_redirects=False, data={
        "csrf": csrf, "account": "default", "edit": "phrasing", "entry": "shipping", "text": "新疆发货吗",
        "members": members})
    assert done.status == 303 and "done=phrasing" in done.headers["Location"]
    assert list(c.tmp.glob("faq.toml.*.bak"))
    html = await (await c.client.get("/admin/questions")).text()
    assert "新疆发货吗" not in html and "发票抬头写错了怎么办" in html  # the group is gone
    for _ in range(400):  # the FAQ plugin's watcher reloads the file (every 0.05 s here)
        if await c.say("新疆发货吗") == "满 99 元包邮。":
            break
    else:
        raise AssertionError("the new phrasing was never answered from the FAQ")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "skillbot.audit"]
    assert lines[-1]["action"] == "faq_phrasing" and lines[-1]["outcome"] == "ok"
    assert lines[-1]["entry"] == "shipping"


async def test_transcripts_are_off_by_default_and_nothing_is_kept(console):
    c = await console()
    assert c.app[GATEWAY_KEY].bot.settings.console.transcripts is False
    await c.say("我的手机号是 13800000000")
    assert c.app[GATEWAY_KEY].metrics.transcripts.users == {}
    await c.login()
    html = await (await c.client.get("/admin/transcripts")).text()
    assert "会话记录未开启" in html and "隐私提示" in html and "13800000000" not in html


async def test_transcripts_when_turned_on_list_hashed_users(console):
    c = await console(transcripts=True)
    await c.say("运费多少", user="o_customer_1")
    await c.login()
    html = await (await c.client.get("/admin/transcripts")).text()
    assert "o_customer_1" not in html
    hashed = re.search(r"user=([0-9a-f]{10})", html).group(1)
    html = await (await c.client.get(f"/admin/transcripts?user={hashed}")).text()
    assert "用户：运费多少" in html and "机器人：满 99 元包邮。" in html


async def test_plugin_switch_writes_the_settings_and_a_refusal_shows_why(console, caplog):
    caplog.set_level(logging.INFO, logger="skillbot.audit")
    c = await console()
    await c.login()
    csrf = await c.csrf("/admin/plugins")
    done = await c.client.post("/admin/plugins/switch", data={
        "csrf": csrf, "account": "default", "plugin": "smalltalk", "enabled": "0"})
    assert "已保存到配置文件并重新加载" in await done.text()
    assert tomllib.loads((c.tmp / "settings.toml").read_text())["plugins"]["enabled"] == ["faq"]
    refused = await c.client.post("/admin/plugins/switch", data={
        "csrf": csrf, "account": "default", "plugin": "no_such_plugin", "enabled": "1"})
    assert "找不到这个插件" in await refused.text()
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "skillbot.audit"]
    assert [(l["plugin"], l["outcome"]) for l in lines if l["action"] == "plugin"] == [
        ("smalltalk", "applied"), ("no_such_plugin", "refused")]


class Tokens:
    """A plugin with its own counter, as the llm plugin keeps its model tokens."""

    def __init__(self) -> None:
        self.used = Counter("skillbot_test_tokens_total", "Tokens the test plugin used.", ("provider", "kind"))

    @hookimpl
    def skillbot_metrics(self):
        return [self.used]

    @hookimpl
    def skillbot_message_done(self, ctx, reply):
        self.used.inc("standin", "prompt", amount=12)


async def test_overview_shows_traffic_latency_by_dimension_and_the_plugins_counters(console):
    c = await console(plugins={"tokens": Tokens()})
    await c.say("运费多少")
    await c.login()
    html = await (await c.client.get("/admin/overview")).text()
    data = json.loads(re.search(r'id="traffic-data">(.*?)</script>', html, re.S).group(1))
    assert data["plugin"]["labels"] == ["faq"] and sum(data["plugin"]["rows"]["faq"]) == 1
    assert data["outcome"]["labels"] == ["answered"] and data["account"]["labels"] == ["default"]
    assert "毫秒" in html
    counters = html[html.index('id="plugin-counters"'):]
    assert "skillbot_test_tokens_total" in counters and "Tokens the test plugin used." in counters
    assert re.search(r"<td>standin</td><td>prompt</td><td>12</td>", counters)


async def test_accounts_each_have_their_traffic_and_plugin_list(console, caplog):
    caplog.set_level(logging.INFO, logger="skillbot.audit")
    c = await console(extra='[accounts.shop.wechat]\ntoken = "shoptoken"\nmode = "plain"\n')
    shop = c.app[ACCOUNTS_KEY].named["shop"].gateway
    signer = signer_for(shop.bot.settings)
    for text in ("运费多少", "包邮吗"):
        request = signer.sign(text_xml(text, from_user="o_shop_customer"))
        reply = await c.client.post("/wechat/shop", params=request.params, data=request.body)
        assert signer.open_reply(await reply.text())["Content"] == "满 99 元包邮。"
    await c.say("运费多少")
    await c.login()
    html = await (await c.client.get("/admin/overview?account=shop")).text()
    data = json.loads(re.search(r'id="traffic-data">(.*?)</script>', html, re.S).group(1))
    assert {k: sum(v) for k, v in data["account"]["rows"].items()} == {"default": 1, "shop": 2}
    assert sum(data["plugin"]["rows"]["faq"]) == 2  # the shop's own
    assert (await c.client.get("/admin/overview?account=nope")).status == 404
    html = await (await c.client.get("/admin/plugins?account=shop")).text()
    assert 'data-plugin="faq"' in html and "[accounts.shop.plugins] enabled" in html


async def test_a_named_accounts_plugins_are_switched_in_its_own_table(console, caplog):
    caplog.set_level(logging.INFO, logger="skillbot.audit")
    c = await console(extra='\n[accounts.shop.wechat]  # the shop\ntoken = "shoptoken"\nmode = "plain"\n'
                            '\n[accounts.cafe.wechat]\ntoken = "cafetoken"\nmode = "plain"\n')
    path = c.tmp / "settings.toml"
    original = path.read_text(encoding="utf-8")
    named = c.app[ACCOUNTS_KEY].named
    default_bot, cafe_bot = c.app[GATEWAY_KEY].bot, named["cafe"].gateway.bot

    async def shop_says(text: str) -> str:
        signer = signer_for(named["shop"].gateway.bot.settings)
        request = signer.sign(text_xml(text, from_user="o_shop_customer"))
        reply = await c.client.post("/wechat/shop", params=request.params, data=request.body)
        return (signer.open_reply(await reply.text()) or {}).get("Content", "")

    assert await shop_says("你好") != NO_ANSWER  # smalltalk answers for the shop
    await c.login()
    csrf = await c.csrf("/admin/plugins?account=shop")
    done = await c.client.post("/admin/plugins/switch", data={
        "csrf": csrf, "account": "shop", "plugin": "smalltalk", "enabled": "0"})
    assert "已保存到配置文件并重新加载" in await done.text()
    text = path.read_text(encoding="utf-8")
    # The file as it was, byte for byte, with the shop's own table added at the end.
    assert text == original.rstrip("\n") + '\n\n[accounts.shop.plugins]\nenabled = ["faq"]\n'
    assert named["shop"].gateway.bot.settings.plugins.enabled == ["faq"]
    assert await shop_says("你好") == NO_ANSWER
    # Only the shop was rebuilt: the default account and the cafe keep their bots and plugins.
    assert c.app[GATEWAY_KEY].bot is default_bot and named["cafe"].gateway.bot is cafe_bot
    assert default_bot.settings.plugins.enabled == cafe_bot.settings.plugins.enabled == ["faq", "smalltalk"]
    assert await c.say("你好") != NO_ANSWER
    html = await (await c.client.get("/admin/plugins?account=shop")).text()
    assert re.search(r'data-plugin="smalltalk"><td></td>', html)  # listed as not enabled
    # Switched on again: the key in the shop's table is rewritten in place.
    done = await c.client.post("/admin/plugins/switch", data={
        "csrf": csrf, "account": "shop", "plugin": "smalltalk", "enabled": "1"})
    assert "已保存到配置文件并重新加载" in await done.text()
    text = path.read_text(encoding="utf-8")
    assert text == original.rstrip("\n") + '\n\n[accounts.shop.plugins]\nenabled = ["faq", "smalltalk"]\n'
    assert await shop_says("你好") != NO_ANSWER
    # A refused switch leaves the file as it was.
    refused = await c.client.post("/admin/plugins/switch", data={
        "csrf": csrf, "account": "shop", "plugin": "no_such_plugin", "enabled": "1"})
    assert "找不到这个插件" in await refused.text()
    assert path.read_text(encoding="utf-8") == text
    assert named["cafe"].gateway.bot is cafe_bot and c.app[GATEWAY_KEY].bot is default_bot
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "skillbot.audit"]
    assert [(l["account"], l["plugin"], l["outcome"]) for l in lines if l["action"] == "plugin"] == [
        ("shop", "smalltalk", "applied"), ("shop", "smalltalk", "applied"), ("shop", "no_such_plugin", "refused")]


async def test_a_broken_faq_file_is_said_on_the_page_and_left_alone(console, caplog):
    c = await console()
    write_log(c.data)
    await c.login()
    broken = FAQ + "\n[[entry]\n"
    c.faq.write_text(broken, encoding="utf-8")
    page = await c.client.get("/admin/questions")
    html = await page.text()
    assert page.status == 200 and "FAQ 文件无法读取" in html and "新疆发货吗" in html
    csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    done = await c.client.post("/admin/questions/add", allow_redirects=False, data={
        "csrf": csrf, "account": "default", "edit": "phrasing", "entry": "shipping", "text": "新疆发货吗"})
    assert done.status == 303 and "error=unreadable_faq" in done.headers["Location"]
    assert c.faq.read_text(encoding="utf-8") == broken and not list(c.tmp.glob("faq.toml.*.bak"))
    assert not [r for r in caplog.records if r.exc_info]  # no traceback
