"""Differential fuzzing of the two hot-path rewrites against what they replaced (fixed seeds, fast).

1. ``parse_xml`` (expat callbacks) against defusedxml.ElementTree plus the old tree walk
   (tests/test_messages.py ``_reference_fields``): random mutations of the peer samples give the
   same fields, or both refuse; nothing but ``XMLRejected`` comes out. Through the real webhook
   every such body gets 200/400/403/413, 200 exactly when it parses into a message, and no
   traceback or error line in the log.
2. The text reply written from the template's format string against Jinja rendering the template:
   byte for byte, for random contents (emoji, control characters, ``]]>``, format-string
   characters, cuts at the 2047-byte limit, empty); operator templates that do more than write
   values go through Jinja.
"""
from __future__ import annotations

import logging
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.access.messages import MessageFieldError, build_message
from core.access.replies import TextReply
from core.access.wechat_xml import MAX_TEXT_BYTES, ReplyRenderer, XMLRejected, parse_xml, truncate_utf8
from core.operations.wechat_client import WeChatSigner, text_xml
from tests.test_messages import _reference_fields
from tests.test_peer_samples import load_samples

SEEDS = [xml.encode("utf-8") for _kind, _cls, xml in load_samples()]

#: Pieces inserted into the seeds: CDATA ends, markup, entities, DTDs, comments, processing
#: instructions, BOMs, broken UTF-8, namespaces, deep nesting and long text.
FRAGMENTS = [
    b"<![CDATA[x]]>y]]>", b"]]>", b"<![CDATA[", b"<![CDATA[a]]]]><![CDATA[>b]]>", b"<a>", b"</a>",
    b"<b k='v'>t</b>", b"<i>1</i><i>2</i>", b"<a/>", b"&amp;", b"&lt;&gt;", b"&#20013;", b"&#x1F600;",
    b"&#0;", b"&#xD800;", b"&undefined;", b"&lol;", b"<!DOCTYPE xml>", b'<!DOCTYPE x [<!ENTITY e "v">]>',
    b'<!DOCTYPE xml SYSTEM "http://evil.example/x.dtd">', b'<!ENTITY e SYSTEM "file:///etc/passwd">',
    b'<!DOCTYPE x [<!ENTITY % p "x"> <!ATTLIST xml a CDATA "1">]>', b"<!-- c -->", b"<!-- -- -->",
    b"<?pi x?>", b"<?xml version='1.0'?>", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80",
    b"\x80", b"\x00", b"\x01", b"\x0b", b"\r\n", b" \t ", "中文😀".encode(), b"<", b">", b"&", b"'", b'"',
    b"<xml>", b"</xml>", b"<Content>", b"</Content>", b"<MsgType>text</MsgType>",
    b"<w:a xmlns:w='urn:w'>1</w:a>", b"<w:a>1</w:a>", b" xmlns='urn:x'", b" a='1'", b" a='1' a='2'",
    *(b"<d>" * n + b"1" + b"</d>" * n for n in (5, 6, 7, 8, 40)), b"x" * 20_000, b"]]>" * 500,
]
ENCODINGS = ["utf-8", "UTF-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "gbk", "gb2312", "big5",
             "latin-1", "iso-8859-2", "ascii", "cp1252", "cp037", "koi8-r", "no-such-encoding", "hex", "rot13",
             "base64", "idna", "utf-7", ""]


def mutate(doc: bytes, ops: list[tuple]) -> bytes:
    """Apply mutation ops (each a tuple drawn by ``ops_strategy`` or ``random_ops``) to ``doc``."""
    for op, a, b in ops:
        at = a % (len(doc) + 1)
        if op == "insert":
            doc = doc[:at] + FRAGMENTS[b % len(FRAGMENTS)] + doc[at:]
        elif op == "delete":
            doc = doc[:at] + doc[at + b % 16 + 1:]
        elif op == "byte":
            doc = doc[:at] + bytes([b % 256]) + doc[at + 1:]
        elif op == "duplicate":
            doc = doc[:at] + doc[at:at + b % 64 + 1] + doc[at:]
        elif op == "cdata":  # a region wrapped in CDATA, whatever markup it cuts through
            end = at + b % 40
            doc = doc[:at] + b"<![CDATA[" + doc[at:end] + b"]]>" + doc[end:]
        elif op == "declare":  # an encoding declared, and the text written in it when Python can
            name = ENCODINGS[b % len(ENCODINGS)]
            text = doc.decode("utf-8", "replace")
            if text.startswith("<?xml"):
                text = text[text.find("?>") + 2:] if "?>" in text else text
            declared = f'<?xml version="1.0" encoding="{name}"?>' + text
            try:
                doc = declared.encode(name, "replace") if a % 2 else declared.encode("utf-8")
            except LookupError:
                doc = declared.encode("utf-8")
            except (UnicodeError, TypeError, ValueError):
                doc = declared.encode("utf-8")
    return doc


OP_NAMES = ["insert", "delete", "byte", "duplicate", "cdata", "declare"]
ops_strategy = st.lists(st.tuples(st.sampled_from(OP_NAMES), st.integers(0, 10**6) | st.just(0), st.integers(0, 10**6)),
                        max_size=6)


def random_ops(rng: random.Random) -> list[tuple]:
    # a fifth of the ops at the document's start, where a DOCTYPE, a BOM or a declaration counts
    return [(rng.choice(OP_NAMES), 0 if rng.random() < 0.2 else rng.randrange(10**6), rng.randrange(10**6))
            for _ in range(rng.randrange(7))]


def outcome(body: bytes) -> dict | None:
    """parse_xml's fields, or None when it refuses; any other exception fails the test."""
    try:
        return parse_xml(body)
    except XMLRejected:
        return None


@settings(max_examples=1500, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(seed=st.sampled_from(SEEDS), ops=ops_strategy)
def test_mutated_documents_parse_as_defusedxml_elementtree_parses_them(seed, ops):
    body = mutate(seed, ops)
    assert outcome(body) == _reference_fields(body)


def test_the_mutations_reach_both_outcomes():
    """The fuzzing is worth something only if it makes documents both parsers accept and documents
    they refuse, hostile ones among them."""
    rng = random.Random(20261126)
    bodies = [mutate(rng.choice(SEEDS), random_ops(rng)) for _ in range(600)]
    accepted = sum(outcome(b) is not None for b in bodies)
    assert 50 < accepted < 550
    refusals = set()
    for body in bodies:
        try:
            parse_xml(body)
        except XMLRejected as exc:
            refusals.add(str(exc).split(":")[0])
    assert {"malformed XML", "hostile XML refused"} <= refusals


def _parses_into_message(body: bytes) -> bool:
    try:
        build_message(parse_xml(body))
    except (XMLRejected, MessageFieldError):
        return False
    return True


@pytest.mark.parametrize("mode", ["plain", "safe"])
async def test_every_mutated_body_through_the_webhook_is_200_400_403_or_413_without_a_traceback(
        aiohttp_client, caplog, mode):
    """Plain mode: 200 exactly when the body is a message (nothing a client sent lost), 400 when
    not, 413 when too large. Safe mode: the outer document is mutated after encryption, so a body
    that still carries its Encrypt gets 200 or 403 (msg_signature), anything else 400 or 413."""
    from core.app import create_app
    from core.testing import build_settings

    settings = build_settings({"wechat": {"mode": mode}, "plugins": {"enabled": ["welcome"]}})
    client = await aiohttp_client(create_app(settings))
    signer = WeChatSigner(settings.wechat.resolved_token(), mode, settings.wechat.resolved_aes_key(),
                          settings.wechat.app_id)
    rng = random.Random(7 if mode == "plain" else 8)
    caplog.set_level(logging.INFO)
    statuses: dict[int, int] = {}
    for i in range(120):
        if mode == "plain":
            params = signer.query(nonce=f"n{i}")
            body = mutate(rng.choice(SEEDS), random_ops(rng))
        else:
            signed = signer.sign(text_xml(f"第{i}条 ]]> {{x}}", from_user=f"o_fuzz_{i}", msg_id=10_000 + i))
            params, body = signed.params, mutate(signed.body, random_ops(rng))
        if rng.random() < 0.03:
            body += b"<!-- " + b"x" * settings.server.max_body_bytes + b" -->"
        response = await client.post(settings.server.path, params=params, data=body)
        await response.read()
        statuses[response.status] = statuses.get(response.status, 0) + 1
        if len(body) > settings.server.max_body_bytes:
            assert response.status == 413
        elif mode == "plain":
            assert response.status == (200 if _parses_into_message(body) else 400), body
        else:
            assert response.status in (200, 400, 403), body
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]
    assert {200, 400, 413} <= set(statuses)  # every kind of body was made


# ---- 2. text replies: the format string against Jinja -------------------------------------------

MARKER = "…（截断）"
#: Characters that could confuse CDATA, a format string, XML or a byte cut.
PIECES = ["]]>", "]]", "]", ">", "<![CDATA[", "{", "}", "{}", "{0}", "{content}", "{to_user!r}", "%", "%s", "%(x)s",
          "😀", "👨‍👩‍👧", "🇨🇳", "中", "é", "\x00", "\x01", "\x08", "\x0b", "\x1f", "\x7f", "\ufffe", "\uffff",
          "\ud7ff", "\ue000", "\ue001", "\r\n", "\t", " ", "&amp;", "<b>", "\\", "'", '"', "\u200b"]
content_strategy = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=30).map("".join),
    st.text(max_size=60),
    # around the 2047-byte limit: filler, then pieces that straddle the cut
    st.tuples(st.integers(MAX_TEXT_BYTES - 12, MAX_TEXT_BYTES + 2), st.lists(st.sampled_from(PIECES), max_size=8))
      .map(lambda t: "a" * t[0] + "".join(t[1])),
    st.tuples(st.sampled_from(["😀", "中", "é", "]]>"]), st.integers(500, 800)).map(lambda t: t[0] * t[1]),
    st.just(""),
)
user_strategy = st.one_of(st.sampled_from(["o_user", "", "gh_x", "o_]]>{x}%s"]),
                          st.lists(st.sampled_from(PIECES), max_size=5).map("".join))

_SHIPPED = ReplyRenderer(truncation_marker=MARKER)


@settings(max_examples=800, deadline=None, derandomize=True, database=None)
@given(content=content_strategy, to_user=user_strategy, from_user=user_strategy,
       create_time=st.integers(1, 2**40))  # (0 means now, in both paths)
def test_the_text_format_string_writes_what_jinja_renders(content, to_user, from_user, create_time):
    assert _SHIPPED._text_format is not None  # the shipped template takes the fast path
    given_xml = _SHIPPED.render(TextReply(content), to_user=to_user, from_user=from_user, create_time=create_time)
    expected = _SHIPPED._templates["text"].render(to_user=to_user, from_user=from_user, create_time=create_time,
                                                  content=truncate_utf8(content, MAX_TEXT_BYTES, MARKER))
    assert given_xml.encode("utf-8", "surrogatepass") == expected.encode("utf-8", "surrogatepass")


#: Operator text templates that do something with a value (filters, conditions, loops, slices,
#: sets, arithmetic, a value left out or written twice): none may take the format string.
JINJA_ONLY = [
    "<xml>{% include '_head.xml.j2' %}<Content>{{ content|upper|cdata }}</Content></xml>",
    "<xml>{% include '_head.xml.j2' %}<Content>{% if content %}{{ content|cdata }}{% else %}空{% endif %}</Content></xml>",
    "<xml>{% include '_head.xml.j2' %}<Content>{{ content[:10]|cdata }}</Content></xml>",
    "<xml>{% include '_head.xml.j2' %}<Content>{{ content|replace('{', '(')|cdata }}</Content></xml>",
    "<xml>{% include '_head.xml.j2' %}{% set c = content ~ '!' %}<Content>{{ c|cdata }}</Content></xml>",
    "<xml>{% include '_head.xml.j2' %}<Content>{% for ch in content %}{{ ch }}{% endfor %}</Content></xml>",
    "<xml><ToUserName>{{ to_user|cdata }}</ToUserName><CreateTime>{{ create_time + 1 }}</CreateTime>"
    "<Content>{{ content|cdata }}</Content><F>{{ from_user|cdata }}</F></xml>",
    "<xml><ToUserName>{{ to_user|cdata }}</ToUserName><Content>{{ content|cdata }}</Content></xml>",
    "<xml>{% include '_head.xml.j2' %}<Content>{{ content|cdata }}</Content><Again>{{ to_user|cdata }}</Again></xml>",
    "<xml>{% include '_head.xml.j2' %}<Content>{{ content|cdata(1) }}</Content></xml>",
    "<xml>{% include '_head.xml.j2' %}<Content>{{ content|cdata|trim }}</Content></xml>",
    "<xml>{% include '_head.xml.j2' %}<Content>{{ content }}</Content></xml>",
    # a constant written through Jinja: text in effect, but Jinja writes it (no harm, just slower)
    "<xml>{% include '_head.xml.j2' %}<Content>{{ content|cdata }}</Content><L>{{ '{' }}</L></xml>",
]
#: Operator templates that only write text and values: these may take it, literal braces and all.
FAST = [
    "<xml>{% include '_head.xml.j2' %}<Content>{{ content|cdata }}</Content><L>{x} }{ %s {0}</L></xml>",
    "{% raw %}{content}{% endraw %}<xml>{% include '_head.xml.j2' %}<Content>{{ content|cdata }}</Content></xml>",
    "<xml><Content>{{ content|cdata }}</Content>{% include '_head.xml.j2' %}</xml>",
]


@pytest.fixture(scope="module")
def operator_renderers(tmp_path_factory):
    made = []
    for i, source in enumerate(JINJA_ONLY + FAST):
        folder = tmp_path_factory.mktemp(f"t{i}")
        (folder / "text.xml.j2").write_text(source, encoding="utf-8")
        made.append((source in FAST, ReplyRenderer(truncation_marker=MARKER, template_dirs=[folder])))
    return made


def test_operator_templates_that_do_more_than_write_values_go_through_jinja(operator_renderers):
    rng = random.Random(3)
    for may_be_fast, renderer in operator_renderers:
        if not may_be_fast:
            assert renderer._text_format is None
        for _ in range(60):
            content = "".join(rng.choice(PIECES) for _ in range(rng.randrange(12)))
            if rng.random() < 0.2:
                content = "中" * rng.randrange(670, 700) + content
            to_user = "".join(rng.choice(PIECES) for _ in range(rng.randrange(4)))
            try:
                expected = renderer._templates["text"].render(
                    to_user=to_user, from_user="gh_x", create_time=1700000000,
                    content=truncate_utf8(content, MAX_TEXT_BYTES, MARKER))
            except Exception as exc:  # a template that cannot render this: the renderer fails alike
                with pytest.raises(type(exc)):
                    renderer.render(TextReply(content), to_user=to_user, from_user="gh_x", create_time=1700000000)
                continue
            assert renderer.render(TextReply(content), to_user=to_user, from_user="gh_x",
                                   create_time=1700000000) == expected
    assert sum(r._text_format is not None for _fast, r in operator_renderers) == len(FAST)


@pytest.mark.parametrize("head", [
    "<ToUserName>{{ to_user|cdata }}</ToUserName><FromUserName>{{ from_user|lower|cdata }}</FromUserName>"
    "<CreateTime>{{ create_time }}</CreateTime>",
    "<ToUserName>{{ to_user|cdata }}</ToUserName><FromUserName>{{ from_user|cdata }}</FromUserName>"
    "{% if create_time %}<CreateTime>{{ create_time }}</CreateTime>{% endif %}",
    "<ToUserName>{{ to_user|cdata }}</ToUserName>{% include 'from.xml.j2' %}<CreateTime>{{ create_time }}</CreateTime>",
])
def test_an_operator_head_that_does_more_than_write_values_sends_the_shipped_text_reply_through_jinja(
        tmp_path, head):
    """The shipped text template includes _head.xml.j2: an operator's head with a filter, a
    condition or an include that does either is found through the include and makes Jinja render."""
    (tmp_path / "_head.xml.j2").write_text(head, encoding="utf-8")
    (tmp_path / "from.xml.j2").write_text("<FromUserName>{{ from_user|upper|cdata }}</FromUserName>",
                                          encoding="utf-8")
    renderer = ReplyRenderer(truncation_marker=MARKER, template_dirs=[tmp_path])
    assert renderer._text_format is None
    for content in ("你好", "]]>{0}%s", "中" * 700):
        expected = renderer._templates["text"].render(to_user="o_U", from_user="gh_X", create_time=5,
                                                      content=truncate_utf8(content, MAX_TEXT_BYTES, MARKER))
        assert renderer.render(TextReply(content), to_user="o_U", from_user="gh_X", create_time=5) == expected
