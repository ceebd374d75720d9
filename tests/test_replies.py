"""Every reply type renders to XML that parses back to the same values."""
import pytest

from core.access.replies import (
    Article,
    ImageReply,
    MusicReply,
    NewsReply,
    TextReply,
    VideoReply,
    VoiceReply,
    reply_from_dict,
    reply_to_dict,
)
from core.access.wechat_xml import ReplyRenderer, cdata, parse_xml, truncate_utf8

MARKER = "…（截断）"


@pytest.fixture
def renderer():
    return ReplyRenderer(truncation_marker=MARKER)


def back(xml: str) -> dict:
    return parse_xml(xml.encode("utf-8"))


@pytest.mark.parametrize("text", ["你好", "a]]>b", "]]>", "]]]]>", "😀🇨🇳👨‍👩‍👧", "<b>&amp;</b>", "line1\nline2",
                                  "ends with ]", "CDATA[ ]] > ]]>]]>"])
def test_text_round_trip_exact(renderer, text):
    fields = back(renderer.render(TextReply(text), to_user="user", from_user="gh_x", create_time=123))
    assert fields["Content"] == text
    assert (fields["ToUserName"], fields["FromUserName"], fields["CreateTime"], fields["MsgType"]) == \
        ("user", "gh_x", "123", "text")


def test_control_characters_are_removed_so_xml_stays_valid(renderer):
    fields = back(renderer.render(TextReply("a\x00b\x08c\x1fd"), to_user="u", from_user="g"))
    assert fields["Content"] == "abcd"


def test_image_voice_video_music(renderer):
    assert back(renderer.render(ImageReply("m1"), "u", "g"))["Image"] == {"MediaId": "m1"}
    assert back(renderer.render(VoiceReply("m2"), "u", "g"))["Voice"] == {"MediaId": "m2"}
    video = back(renderer.render(VideoReply("m3", title="标题]]>", description="描述"), "u", "g"))
    assert video["MsgType"] == "video" and video["Video"] == {"MediaId": "m3", "Title": "标题]]>", "Description": "描述"}
    music = back(renderer.render(MusicReply("thumb", title="歌", description="d", music_url="http://m",
                                            hq_music_url="http://hq"), "u", "g"))
    assert music["Music"] == {"Title": "歌", "Description": "d", "MusicUrl": "http://m", "HQMusicUrl": "http://hq",
                              "ThumbMediaId": "thumb"}


def test_news_limits(renderer):
    articles = [Article(f"标题{i}", "描述", "http://p", f"http://u/{i}") for i in range(10)]
    one = back(renderer.render(NewsReply(articles), "u", "g", answering_user_message=True))
    assert one["ArticleCount"] == "1" and one["Articles"]["item"]["Title"] == "标题0"
    eight = back(renderer.render(NewsReply(articles), "u", "g", answering_user_message=False))
    assert eight["ArticleCount"] == "8" and len(eight["Articles"]["item"]) == 8
    assert eight["Articles"]["item"][7]["Url"] == "http://u/7"


def test_long_text_is_cut_to_2047_bytes_on_a_character_boundary(renderer):
    text = "天气晴朗" * 400 + "😀" * 100  # far over 2047 bytes, 3- and 4-byte characters
    content = back(renderer.render(TextReply(text), "u", "g"))["Content"]
    assert len(content.encode("utf-8")) <= 2047
    assert content.endswith(MARKER)
    assert text.startswith(content[: -len(MARKER)])
    assert len(content.encode("utf-8")) > 2040  # uses the room it has


def test_text_at_exactly_2047_bytes_is_untouched():
    text = "a" * 2044 + "天"  # 2047 bytes
    assert truncate_utf8(text, 2047, MARKER) == text
    over = text + "b"
    cut = truncate_utf8(over, 2047, MARKER)
    assert len(cut.encode()) <= 2047 and cut.endswith(MARKER)


def test_emoji_boundary_never_split():
    text = "😀" * 600  # 4 bytes each
    cut = truncate_utf8(text, 2047, "")
    assert cut == "😀" * 511


def test_cdata_split():
    assert cdata("a]]>b") == "<![CDATA[a]]]]><![CDATA[>b]]>"


def test_reply_dict_round_trip():
    for reply in [TextReply("x", plugin="p", intent="i"), NewsReply([Article("t", "d", "p", "u")]),
                  MusicReply("t", title="x")]:
        again = reply_from_dict(reply_to_dict(reply))
        assert again == reply and again.plugin == reply.plugin


# ---- one of each: the WeChat-side client opens what the renderer writes, with the same cdata ----

@pytest.mark.parametrize("reply", [
    TextReply("你好 ]]> 世界"), ImageReply("media-1"), VoiceReply("media-2"),
    VideoReply("media-3", title="视频", description="说明"),
    MusicReply("thumb", title="歌", description="词", music_url="http://m", hq_music_url="http://hq"),
    NewsReply([Article("标题", "摘要", "http://p", "http://u")]),
])
def test_the_client_reads_back_every_reply_the_renderer_writes(renderer, reply):
    from core.operations.wechat_client import reply_from_fields

    assert reply_from_fields(back(renderer.render(reply, to_user="u", from_user="g"))) == reply


def test_the_simulated_wechat_client_writes_xml_the_webhook_accepts_whatever_is_typed():
    """The client's inbound XML uses the same cdata as the renderer: characters XML 1.0 forbids
    are dropped instead of making a message the webhook must refuse."""
    from core.operations.wechat_client import text_xml

    assert back(text_xml("a\x00b\x1bc]]>d"))["Content"] == "abc]]>d"


def test_the_chat_console_shows_the_words_of_any_reply(renderer):
    from core.operations.chat_console import shown_text

    news = NewsReply([Article("标题一", "摘要一"), Article("标题二")])
    assert shown_text(back(renderer.render(news, to_user="u", from_user="g",
                                           answering_user_message=False))) == "标题一 摘要一\n标题二"
    assert shown_text(back(renderer.render(ImageReply("m"), to_user="u", from_user="g"))) == "[image]"
    assert shown_text(None) == ""


def test_an_answer_record_keeps_the_reply_and_its_explanation_in_one_form():
    from core.access.replies import Answer, record_without_explanation

    answer = Answer(TextReply("答", plugin="faq", intent="hours"), {"route": {"chosen": ["hours"]}})
    record = answer.to_record()
    assert record == {**reply_to_dict(answer.reply), "explain": answer.explanation}
    assert record_without_explanation(record) == reply_to_dict(answer.reply) == answer.to_record(explained=False)
    again = Answer.from_record(record)
    assert (again.reply, again.plugin, again.intent, again.explanation) == \
        (answer.reply, "faq", "hours", answer.explanation)
    shown = again.explained_try(2, {"render": 0.12345})
    assert shown["try"] == 2 and shown["timings_ms"] == {"render": 0.123} and shown["plugin"] == "faq"
    assert "try" not in again.explanation  # explaining a try leaves the answer as it was


def test_reply_templates_are_read_once_when_the_renderer_is_built(tmp_path):
    """The renderer reads its templates (the included head too) when it is built, not on every
    reply; a settings reload builds a new renderer, which reads the files as they are then."""
    head = tmp_path / "_head.xml.j2"
    shipped = ReplyRenderer().env.loader.get_source(ReplyRenderer().env, "_head.xml.j2")[0]
    head.write_text(shipped, encoding="utf-8")
    renderer = ReplyRenderer(template_dirs=[tmp_path])
    before = renderer.render(TextReply("你好"), to_user="u", from_user="g", create_time=1)
    head.write_text(shipped.replace("<CreateTime>", "<Changed/><CreateTime>"), encoding="utf-8")
    assert renderer.render(TextReply("你好"), to_user="u", from_user="g", create_time=1) == before
    assert "<Changed/>" in ReplyRenderer(template_dirs=[tmp_path]).render(
        TextReply("你好"), to_user="u", from_user="g", create_time=1)


TEXTS = ["你好", "a]]>b", "a\x00b\x08c", "{content} {0} %s }{", "😀" * 700, "x" * 3000, "", "  spaced  "]
#: Operator text templates: two the renderer can write without Jinja, two it must run Jinja for.
OPERATOR_TEXT = {
    "plain": '<xml>{% include "_head.xml.j2" %}<MsgType><![CDATA[text]]></MsgType>'
             "<Content>{{ content|cdata }}</Content><Extra>{literal}</Extra></xml>",
    "reordered": "<xml><Content>{{ content|cdata }}</Content><CreateTime>{{ create_time }}</CreateTime>"
                 "<ToUserName>{{ to_user|cdata }}</ToUserName><FromUserName>{{ from_user|cdata }}"
                 "</FromUserName><MsgType><![CDATA[text]]></MsgType></xml>",
    "conditional": '<xml>{% include "_head.xml.j2" %}<MsgType><![CDATA[text]]></MsgType>'
                   "<Content>{{ (content if content|length < 50 else 'long')|cdata }}</Content></xml>",
    "twice": '<xml>{% include "_head.xml.j2" %}<MsgType><![CDATA[text]]></MsgType>'
             "<Content>{{ content|cdata }}{{ content|cdata }}</Content></xml>",
}


@pytest.mark.parametrize("name", ["shipped", *OPERATOR_TEXT])
def test_text_replies_are_what_the_template_renders(tmp_path, name):
    """A text reply is written without running Jinja when the template allows (the shipped one
    does): byte for byte what the template renders, for any text and any operator template."""
    if name != "shipped":
        (tmp_path / "text.xml.j2").write_text(OPERATOR_TEXT[name], encoding="utf-8")
    renderer = ReplyRenderer(truncation_marker=MARKER, template_dirs=[tmp_path])
    assert (renderer._text_format is not None) == (name in ("shipped", "plain", "reordered"))
    template = renderer._templates["text"]
    for text in TEXTS:
        for to_user in ("o_user", "o_]]>{x}"):
            given = renderer.render(TextReply(text), to_user=to_user, from_user="gh_x", create_time=1700000000)
            expected = template.render(to_user=to_user, from_user="gh_x", create_time=1700000000,
                                       content=truncate_utf8(text, 2047, MARKER))
            assert given == expected
