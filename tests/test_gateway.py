"""End to end through aiohttp's test client: signatures, modes, errors, plugin failures."""
from __future__ import annotations

import asyncio
import time

import pytest

from core import Intent, TextReply, hookimpl
from core.access.crypto import MessageCrypto, sha1_signature
from core.access.wechat_xml import cdata, parse_xml
from core.operations.wechat_client import text_xml
from core.testing import send_in_pieces

ONLY_WELCOME = ["welcome"]


class Echo:
    """A fallback that repeats the text, so gateway tests do not depend on the shipped skills."""

    @hookimpl
    def skillbot_fallback(self, ctx):
        return TextReply("回声：" + ctx.message.text) if ctx.message.text else None


class Raises:
    @hookimpl
    def skillbot_intents(self):
        return [Intent("boom", patterns=[r"^boom$"], priority=50)]

    @hookimpl
    def skillbot_handle(self, ctx, candidate):
        raise RuntimeError("secret internal detail")


class Hangs:
    @hookimpl
    def skillbot_intents(self):
        return [Intent("hang", patterns=[r"^hang$"], priority=50)]

    @hookimpl
    async def skillbot_handle(self, ctx, candidate):
        await asyncio.sleep(30)


# ---- URL verification ---------------------------------------------------------------------------

async def test_get_url_verification(wechat):
    h = await wechat(enabled=ONLY_WELCOME)
    params = h.signer.query()
    params["echostr"] = "5837397520665"
    response = await h.client.get(h.path, params=params)
    assert response.status == 200 and await response.text() == "5837397520665"


async def test_get_bad_signature_is_403(wechat):
    h = await wechat(enabled=ONLY_WELCOME)
    params = h.signer.query()
    params["signature"] = "0" * 40
    params["echostr"] = "x"
    response = await h.client.get(h.path, params=params)
    assert response.status == 403 and "x" not in await response.text()


async def test_get_missing_parameters_is_403(wechat):
    h = await wechat(enabled=ONLY_WELCOME)
    assert (await h.client.get(h.path)).status == 403


async def test_many_messages_signed_in_one_second_are_all_answered(wechat):
    """The simulator's signer never reuses a nonce, so requests signed in bulk in the same second
    are never refused as replays of each other (random nonces below 10**9 collided about once in
    60,000, and benchmarks signing that many saw a 403 now and then)."""
    from core.operations.wechat_client import WeChatSigner

    signer = WeChatSigner("t")
    queries = [signer.query(timestamp=1_700_000_000) for _ in range(100_000)]
    assert len({q["nonce"] for q in queries}) == len(queries)
    assert all(0 <= int(q["nonce"]) < 10**9 for q in queries)
    h = await wechat(enabled=["welcome"])
    bodies = [text_xml(f"第{i}条", msg_id=91000 + i, from_user="o_bulk") for i in range(20)]
    requests = [h.signer.sign(body) for body in bodies]
    assert len({r.params["timestamp"] for r in requests}) <= 2  # signed together
    for request in requests:
        response = await h.client.post("/wechat", params=request.params, data=request.body)
        assert response.status == 200


def test_the_replay_digest_does_not_change_between_versions():
    """Workers of two versions share the replay guard in Redis during a rolling deploy: a digest
    written differently would make WeChat's retry of a message look like a replay to the other."""
    from core.access.replay_guard import message_digest

    fields = {"ToUserName": "gh_x", "FromUserName": "o_u", "CreateTime": "1700000000", "MsgType": "text",
              "Content": "你好", "MsgId": "1"}
    assert message_digest(fields) == "acb71ea9c65bd3f384b6bce7acb20af4948538f5046885746c0a10385b9955c5"
    assert message_digest(dict(reversed(fields.items()))) == message_digest(fields)  # the order of the XML's fields


async def test_stale_timestamp_is_403_as_replay(wechat):
    h = await wechat(enabled=ONLY_WELCOME, plugins={"echo": Echo()})
    response = await h.post_xml(text_xml("你好"), timestamp=int(time.time()) - 301)
    assert response.status == 403
    response = await h.post_xml(text_xml("你好"), timestamp=int(time.time()) + 10)
    assert response.status == 200


async def test_timestamp_window_is_configurable(wechat):
    h = await wechat(enabled=ONLY_WELCOME, plugins={"echo": Echo()},
                     overrides={"wechat": {"timestamp_window": 3600}})
    response = await h.post_xml(text_xml("你好"), timestamp=int(time.time()) - 1800)
    assert response.status == 200


# ---- the three modes ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
async def test_text_round_trip_in_every_mode(wechat, mode):
    h = await wechat(mode=mode, enabled=ONLY_WELCOME, plugins={"echo": Echo()})
    status, fields, body = await h.say("你好]]>😀", user="o_abc")
    assert status == 200
    if mode == "plain":
        assert "<Encrypt>" not in body
    else:
        outer = parse_xml(body.encode())
        assert set(outer) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    assert fields["Content"] == "回声：你好]]>😀"
    assert fields["ToUserName"] == "o_abc" and fields["FromUserName"] == "gh_skillbot"


async def test_safe_mode_reply_signature_checks_out_by_hand(wechat):
    h = await wechat(mode="safe", enabled=ONLY_WELCOME, plugins={"echo": Echo()})
    response = await h.post_xml(text_xml("hi"))
    outer = parse_xml((await response.text()).encode())
    assert outer["MsgSignature"] == sha1_signature("testtoken", outer["TimeStamp"], outer["Nonce"], outer["Encrypt"])
    inner = MessageCrypto("testtoken", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx_test_app_id").decrypt(outer["Encrypt"])
    assert parse_xml(inner.encode())["Content"] == "回声：hi"


async def test_plain_request_in_plain_mode_gets_plain_reply_even_with_key(wechat):
    h = await wechat(mode="plain", enabled=ONLY_WELCOME, plugins={"echo": Echo()})
    status, fields, body = await h.say("hi")
    assert "<Encrypt>" not in body and fields["Content"] == "回声：hi"


async def test_compatible_mode_accepts_plaintext_requests(wechat):
    h = await wechat(mode="compatible", enabled=ONLY_WELCOME, plugins={"echo": Echo()})
    params = h.signer.query()
    response = await h.client.post(h.path, params=params, data=text_xml("明文").encode())
    assert response.status == 200
    assert parse_xml((await response.text()).encode())["Content"] == "回声：明文"


async def test_safe_mode_refuses_plaintext_body(wechat):
    h = await wechat(mode="safe", enabled=ONLY_WELCOME, plugins={"echo": Echo()})
    response = await h.client.post(h.path, params=h.signer.query(), data=text_xml("明文").encode())
    assert response.status == 400


async def test_bad_msg_signature_is_403(wechat):
    h = await wechat(mode="safe", enabled=ONLY_WELCOME, plugins={"echo": Echo()})
    request = h.signer.sign(text_xml("hi"))
    request.params["msg_signature"] = "f" * 40
    response = await h.client.post(h.path, params=request.params, data=request.body)
    assert response.status == 403


async def test_undecryptable_body_is_400(wechat):
    h = await wechat(mode="safe", enabled=ONLY_WELCOME, plugins={"echo": Echo()})
    params = h.signer.query()
    for encrypt in ["bm90IGEgY2lwaGVydGV4dA==", "!!!", MessageCrypto("testtoken", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx_other").encrypt(text_xml("x"))]:
        params = dict(params, encrypt_type="aes",
                      msg_signature=sha1_signature("testtoken", params["timestamp"], params["nonce"], encrypt))
        body = f"<xml><ToUserName>{cdata('gh')}</ToUserName><Encrypt>{cdata(encrypt)}</Encrypt></xml>"
        response = await h.client.post(h.path, params=params, data=body.encode())
        assert response.status == 400, encrypt


# ---- bad input -----------------------------------------------------------------------------------

async def test_wrong_signature_post_is_403(wechat):
    h = await wechat(enabled=ONLY_WELCOME, plugins={"echo": Echo()})
    request = h.signer.sign(text_xml("hi"))
    request.params["signature"] = "0" * 40
    response = await h.client.post(h.path, params=request.params, data=request.body)
    assert response.status == 403


@pytest.mark.parametrize("body", [
    b"not xml at all", b"<xml><ToUserName>a</ToUserName>", b"",
    b"<xml><FromUserName>b</FromUserName><MsgType>text</MsgType></xml>",
    b"<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><MsgType>text</MsgType>"
    b"<CreateTime>yesterday</CreateTime></xml>",
])
async def test_malformed_body_is_400(wechat, body):
    h = await wechat(enabled=ONLY_WELCOME, plugins={"echo": Echo()})
    response = await h.client.post(h.path, params=h.signer.query(), data=body)
    assert response.status == 400
    assert "Traceback" not in await response.text()


async def test_xxe_and_billion_laughs_are_400(wechat):
    h = await wechat(enabled=ONLY_WELCOME, plugins={"echo": Echo()})
    xxe = (b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b"<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><MsgType>text</MsgType>"
           b"<Content>&x;</Content></xml>")
    laughs = (b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
              b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]><xml><Content>&c;</Content></xml>')
    for body in (xxe, laughs):
        response = await h.client.post(h.path, params=h.signer.query(), data=body)
        assert response.status == 400
        assert "root:" not in await response.text()


async def test_oversize_body_is_413(wechat):
    h = await wechat(enabled=ONLY_WELCOME, plugins={"echo": Echo()},
                     overrides={"server": {"max_body_bytes": 1024}})
    response = await h.post_xml(text_xml("长" * 2000))
    assert response.status == 413


async def test_oversize_body_without_content_length_is_413(wechat):
    h = await wechat(enabled=ONLY_WELCOME, plugins={"echo": Echo()},
                     overrides={"server": {"max_body_bytes": 1024}})

    async def chunks():
        for _ in range(10):
            yield b"x" * 512

    response = await h.client.post(h.path, params=h.signer.query(), data=chunks())
    assert response.status == 413


async def test_other_methods_are_405(wechat):
    h = await wechat(enabled=ONLY_WELCOME)
    for method in ("PUT", "DELETE", "PATCH"):
        response = await h.client.request(method, h.path)
        assert response.status == 405


# ---- pipeline failures ---------------------------------------------------------------------------

async def test_plugin_that_raises_is_skipped_and_user_gets_an_answer(wechat, caplog):
    h = await wechat(enabled=ONLY_WELCOME, plugins={"raises": Raises(), "echo": Echo()})
    status, fields, body = await h.say("boom")
    assert status == 200 and fields["Content"] == "回声：boom"
    assert "secret internal detail" not in body
    assert any("raises" in r.getMessage() and "raised" in r.getMessage() for r in caplog.records)


async def test_plugin_that_hangs_is_skipped_after_its_budget(wechat):
    h = await wechat(enabled=ONLY_WELCOME, plugins={"hangs": Hangs(), "echo": Echo()},
                     overrides={"pipeline": {"plugin_timeout": 0.2}})
    status, fields, _ = await h.say("hang")
    assert status == 200 and fields["Content"] == "回声：hang"


async def test_nothing_answers_text_gets_the_configured_reply(wechat):
    h = await wechat(enabled=ONLY_WELCOME, overrides={"pipeline": {"no_answer_reply": "没听懂"}})
    status, fields, _ = await h.say("随便说点什么")
    assert status == 200 and fields["Content"] == "没听懂"


async def test_unhandled_event_gets_success(wechat):
    h = await wechat(enabled=ONLY_WELCOME)
    status, fields, body = await h.event("VIEW", {"EventKey": "https://x"})
    assert status == 200 and body == "success" and fields is None


async def test_welcome_reply_on_subscribe_with_scene(wechat):
    h = await wechat(enabled=ONLY_WELCOME, overrides={"plugins": {"welcome": {
        "message": "欢迎！", "scene_messages": {"store_1": "您来自1号店"}}}})
    status, fields, _ = await h.event("subscribe", {"EventKey": "qrscene_store_1", "Ticket": "T"})
    assert fields["Content"] == "欢迎！\n您来自1号店"
    status, fields, _ = await h.event("subscribe", user="o_other")
    assert fields["Content"] == "欢迎！"


async def test_menu_click_reply(wechat):
    h = await wechat(enabled=ONLY_WELCOME, overrides={"plugins": {"welcome": {
        "click_replies": {"MENU_HOURS": "营业时间 9:00-21:00"}}}})
    status, fields, _ = await h.event("CLICK", {"EventKey": "MENU_HOURS"})
    assert fields["Content"] == "营业时间 9:00-21:00"
    status, fields, body = await h.event("CLICK", {"EventKey": "MENU_OTHER"}, user="o_2")
    assert body == "success"


async def test_same_msgid_twice_runs_the_pipeline_once(wechat):
    calls = []

    class Counting:
        @hookimpl
        async def skillbot_fallback(self, ctx):
            calls.append(ctx.message.msg_id)
            await asyncio.sleep(0.2)
            return TextReply("一次")

    h = await wechat(enabled=ONLY_WELCOME, plugins={"counting": Counting()})
    xml = text_xml("重复", msg_id=424242)
    first, second = await asyncio.gather(h.post_xml(xml), h.post_xml(xml))
    bodies = [await first.text(), await second.text()]
    assert calls == ["424242"]
    # WeChat sends a second try only when it did not get the first one's reply: the same answer
    assert all(h.signer.open_reply(body)["Content"] == "一次" for body in bodies)


async def test_voice_recognition_goes_through_the_pipeline(wechat):
    from core.operations.wechat_client import message_xml
    h = await wechat(enabled=ONLY_WELCOME, plugins={"echo": Echo()})
    response = await h.post_xml(message_xml("voice", {"MediaId": "m", "Format": "amr", "Recognition": "你好"}))
    assert parse_xml((await response.text()).encode())["Content"] == "回声：你好"


async def test_healthz(wechat):
    h = await wechat(enabled=ONLY_WELCOME)
    response = await h.client.get("/healthz")
    assert response.status == 200 and (await response.json())["status"] == "ok"


# ---- bodies arriving in pieces over a real socket ------------------------------------------------

class Counts:
    """Answers with the length of the text it got, so a truncated body cannot pass unnoticed."""

    @hookimpl
    def skillbot_fallback(self, ctx):
        return TextReply(f"收到{len(ctx.message.text)}字")


def _text_of_body_size(mode: str, size: int) -> str:
    """A Chinese text whose signed request body is close to ``size`` bytes in ``mode``."""
    per_char = 3 if mode == "plain" else 4  # base64 of AES adds a third
    return "长" * max(1, (size - 300) // per_char)


@pytest.mark.parametrize("mode", ["plain", "safe"])
@pytest.mark.parametrize("size", [1200, 3000, 20_000, 60_000])
@pytest.mark.parametrize("chunked", [False, True])
async def test_body_in_tcp_pieces_is_read_whole(wechat, mode, size, chunked):
    h = await wechat(mode=mode, enabled=ONLY_WELCOME, plugins={"counts": Counts()})
    text = _text_of_body_size(mode, size)
    request = h.signer.sign(text_xml(text))
    assert size * 0.8 < len(request.body) <= 65536
    server = h.client.server
    response = await send_in_pieces(server.host, server.port, h.path, request.body, request.params,
                                    chunked=chunked)
    assert response.status == 200, response.text
    assert h.signer.open_reply(response.text)["Content"] == f"收到{len(text)}字"


@pytest.mark.parametrize("chunked", [False, True])
async def test_body_over_the_limit_in_pieces_is_413(wechat, chunked):
    h = await wechat(enabled=ONLY_WELCOME, plugins={"counts": Counts()},
                     overrides={"server": {"max_body_bytes": 4096}})
    request = h.signer.sign(text_xml("长" * 3000))
    server = h.client.server
    response = await send_in_pieces(server.host, server.port, h.path, request.body, request.params,
                                    chunked=chunked)
    assert response.status == 413 and response.text == "payload too large"
    # a body just under the limit, in pieces, is still answered
    request = h.signer.sign(text_xml("长" * 1200))
    response = await send_in_pieces(server.host, server.port, h.path, request.body, request.params,
                                    chunked=chunked)
    assert response.status == 200 and h.signer.open_reply(response.text)["Content"] == "收到1200字"


# ---- a signed query carries one message ----------------------------------------------------------

def _state(request, store: str) -> dict:
    if store == "memory":
        return {}
    return {"state": {"backend": "redis", "redis_url": request.getfixturevalue("redis_url"),
                      "key_prefix": f"replay{id(request)}:"}}


def _signed(h, xml: str, timestamp: str, nonce: str, encrypt: bool) -> tuple[dict, bytes]:
    """``xml`` posted under one fixed query (timestamp, nonce), encrypted afresh when ``encrypt``."""
    params = h.signer.query(int(timestamp), nonce)
    if not encrypt:
        return params, xml.encode()
    cipher = h.signer.crypto.encrypt(xml)
    params.update(encrypt_type="aes", msg_signature=h.signer.crypto.sign(timestamp, nonce, cipher))
    return params, f"<xml><ToUserName>{cdata('gh')}</ToUserName><Encrypt>{cdata(cipher)}</Encrypt></xml>".encode()


@pytest.mark.parametrize("store", ["memory", "redis"])
@pytest.mark.parametrize("mode", ["plain", "safe"])
async def test_signed_query_with_another_message_is_403_and_with_the_same_a_retry(wechat, request, store, mode):
    h = await wechat(mode=mode, enabled=ONLY_WELCOME, plugins={"echo": Echo()}, overrides=_state(request, store))
    timestamp, nonce = str(int(time.time())), "20261126"
    original = text_xml("查天气", from_user="o_victim", msg_id=5001)
    params, body = _signed(h, original, timestamp, nonce, mode == "safe")
    first = await h.client.post(h.path, params=params, data=body)
    assert first.status == 200
    for forged in (text_xml("转账", from_user="o_victim", msg_id=5002),
                   text_xml("查天气", from_user="o_someone_else", msg_id=5001)):
        params, body = _signed(h, forged, timestamp, nonce, mode == "safe")
        response = await h.client.post(h.path, params=params, data=body)
        assert response.status == 403 and await response.text() == "forbidden"
    # WeChat's retry of the same message (encrypted again in safe mode) is answered
    params, body = _signed(h, original, timestamp, nonce, mode == "safe")
    retry = await h.client.post(h.path, params=params, data=body)
    assert retry.status == 200
    assert h.signer.open_reply(await retry.text())["Content"] == "回声：查天气"
    if store == "redis":  # remembered where every worker sees it
        import redis as sync_redis
        client = sync_redis.Redis.from_url(request.getfixturevalue("redis_url"))
        assert client.exists(f"replay{id(request)}:signed:{timestamp}:{nonce}:{params['signature']}")
        client.close()


async def test_captured_encrypted_query_cannot_carry_a_plaintext_body(wechat):
    h = await wechat(mode="compatible", enabled=ONLY_WELCOME, plugins={"echo": Echo()})
    request = h.signer.sign(text_xml("你好", from_user="o_victim"))
    assert (await h.client.post(h.path, params=request.params, data=request.body)).status == 200
    captured = {k: request.params[k] for k in ("signature", "timestamp", "nonce")}
    response = await h.client.post(h.path, params=captured, data=text_xml("别的", from_user="o_victim").encode())
    assert response.status == 403
