"""Hostile or odd inbound traffic through the real gateway (issue 12): record keys per user and
per event, refused structures, unusable locations, bounded metric labels, unforgeable log lines,
and malformed HTTP answered quietly."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from core import TextReply, hookimpl
from core.app import WebhookRunner, create_app
from core.operations.logs import hash_user, make_handler
from core.operations.wechat_client import event_xml, message_xml, text_xml
from core.testing import build_settings
from tests.standins.weather_server import WeatherStandIn

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Echo:
    """Repeats the text, so each user's answer is recognisably theirs."""

    @hookimpl
    def skillbot_fallback(self, ctx):
        return TextReply("回声：" + ctx.message.text) if ctx.message.text else None


# ---- records keyed by user and by event (items 2 and 4) -----------------------------------------

async def test_a_second_user_with_the_same_msgid_gets_their_own_answer(wechat):
    h = await wechat(enabled=["welcome"], plugins={"echo": Echo()})
    _, alice, _ = await h.say("北京天气", user="o_alice", msg_id=6054768590064713728)
    _, bob, _ = await h.say("上海天气", user="o_bob", msg_id=6054768590064713728)
    assert alice["Content"] == "回声：北京天气" and alice["ToUserName"] == "o_alice"
    assert bob["Content"] == "回声：上海天气" and bob["ToUserName"] == "o_bob"


async def test_subscribe_in_the_same_second_as_a_location_report_gets_the_welcome(wechat):
    h = await wechat(enabled=["welcome"], overrides={"plugins": {"welcome": {"message": "欢迎！"}}})
    second = int(time.time())
    status, _, body = await h.event("LOCATION", {"Latitude": "23.1", "Longitude": "113.3", "Precision": "30"},
                                    user="o_new", create_time=second)
    assert status == 200 and body == "success"
    status, fields, _ = await h.event("subscribe", user="o_new", create_time=second)
    assert status == 200 and fields is not None and fields["Content"] == "欢迎！"


# ---- refused structures (item 7) ----------------------------------------------------------------

def warnings_and_worse(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_deep_nesting_is_400_with_one_warning_line(wechat, caplog):
    h = await wechat(enabled=["welcome"], plugins={"echo": Echo()})
    xml = text_xml("hi").replace("</xml>", "<a>" * 1000 + "</a>" * 1000 + "</xml>")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        response = await h.post_xml(xml)
        assert response.status == 400 and await response.text() == "bad request"
    records = warnings_and_worse(caplog)
    assert len(records) == 1 and records[0].exc_info is None
    assert "nested deeper" in records[0].getMessage()


@pytest.mark.parametrize("encoding", ["no-such-encoding", "hex", "base64"])
async def test_an_unknown_declared_encoding_is_400_with_one_warning_line(wechat, caplog, encoding):
    """A body declaring an encoding Python cannot decode text with is the client's mistake: 400 and
    one warning line, not an "unhandled error" traceback and a silent ``success``."""
    h = await wechat(enabled=["welcome"], plugins={"echo": Echo()})
    xml = f'<?xml version="1.0" encoding="{encoding}"?>' + text_xml("hi")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        response = await h.post_xml(xml)
        assert response.status == 400 and await response.text() == "bad request"
    records = warnings_and_worse(caplog)
    assert len(records) == 1 and records[0].exc_info is None and records[0].levelno == logging.WARNING


async def test_a_duplicated_content_is_400_not_a_silent_drop(wechat):
    h = await wechat(enabled=["welcome"], plugins={"echo": Echo()})
    xml = text_xml("第一", msg_id=11).replace("</xml>", "<Content><![CDATA[第二]]></Content></xml>")
    response = await h.post_xml(xml)
    assert response.status == 400 and await response.text() == "bad request"


# ---- unusable locations (item 8) ----------------------------------------------------------------

@pytest.fixture
async def weather_standin(aiohttp_server):
    stand_in = WeatherStandIn()
    server = await aiohttp_server(stand_in.app())
    stand_in.base_url = str(server.make_url("")).rstrip("/")
    return stand_in


@pytest.mark.parametrize("lat,lon", [("nan", "116.4"), ("39.9", "inf"), ("1e308", "116.4"), ("95", "116.4")])
async def test_unusable_coordinates_never_reach_the_weather_provider(wechat, weather_standin, lat, lon):
    h = await wechat(enabled=["weather"], overrides={
        "plugins": {"weather": {"base_url": weather_standin.base_url, "timeout": 1.0}},
        "pipeline": {"unsupported_reply": "收到位置啦，但读不出坐标。"}})
    response = await h.post_xml(message_xml(
        "location", {"Location_X": lat, "Location_Y": lon, "Scale": "15", "Label": ""}, from_user="o_loc"))
    assert response.status == 200
    assert h.signer.open_reply(await response.text())["Content"] == "收到位置啦，但读不出坐标。"
    status, _, body = await h.event("LOCATION", {"Latitude": lat, "Longitude": lon, "Precision": "30"},
                                    user="o_loc")
    assert status == 200 and body == "success"
    status, fields, _ = await h.say("明天天气怎么样", user="o_loc")
    assert status == 200 and "你所在位置" not in fields["Content"]  # nothing was remembered
    assert weather_standin.count() == 0


# ---- metric labels (item 9) ---------------------------------------------------------------------

async def test_made_up_types_share_the_other_label_and_metrics_stay_small(wechat):
    h = await wechat(enabled=["welcome"])
    await h.say("你好")
    baseline = len(await (await h.client.get("/metrics")).read())
    for i in range(150):
        await h.post_xml(message_xml(f"madeup_{i}", {"Content": "x"}, msg_id=1000 + i))
        await h.post_xml(event_xml(f"MADEUP_EVENT_{i}", from_user=f"o_{i}"))
    text = (await (await h.client.get("/metrics")).read()).decode("utf-8")
    assert len(text) - baseline < 3000, len(text) - baseline
    assert 'skillbot_requests_total{type="other"} 300' in text
    assert 'type="other"' in text and "madeup" not in text.lower()


# ---- log lines (item 10) ------------------------------------------------------------------------

LINE_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
FORGED = "2026-01-01 00:00:00,000 CRITICAL skillbot forged"


@pytest.fixture
def log_output():
    """What ``setup_logging``'s handler writes, text and JSON, while a test runs."""
    streams = {"text": io.StringIO(), "json": io.StringIO()}
    handlers = [make_handler(False, streams["text"]), make_handler(True, streams["json"])]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    for handler in handlers:
        root.addHandler(handler)
    try:
        yield streams
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        root.setLevel(level)


async def test_control_characters_cannot_forge_log_lines_and_users_are_hashed(wechat, log_output):
    h = await wechat(enabled=["welcome"], plugins={"echo": Echo()})
    evil_user = "o_evil_openid\n" + FORGED
    for _ in range(2):  # the second try is a retry: its line names the record key
        await h.post_xml(message_xml("text", {"Content": "hi"}, msg_id="77\n" + FORGED))
        await h.post_xml(event_xml("CLICK", {"EventKey": "K"}, from_user=evil_user, create_time=1700000000))
    namespaced = text_xml("hi").replace("<xml>", f'<xml xmlns="urn:x&#10;{FORGED}&#13;">', 1)
    assert (await h.post_xml(namespaced)).status == 400

    text = log_output["text"].getvalue()
    lines = text.splitlines()
    assert sum("try=2" in line for line in lines) == 2
    assert "rejected 400" in text
    assert all(LINE_START.match(line) for line in lines), [line for line in lines if not LINE_START.match(line)]
    assert "\\n" + FORGED in text and "o_evil_openid" not in text
    assert hash_user(evil_user) in text
    for line in log_output["json"].getvalue().splitlines():
        record = json.loads(line)
        assert "\n" not in record["message"] and "\r" not in record["message"]
        assert "o_evil_openid" not in line


def test_extras_are_escaped_too():
    stream = io.StringIO()
    handler = make_handler(False, stream)
    log = logging.getLogger("skillbot.test_extras")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("value %r and %s", "a\nb", object.__new__(type("X", (), {"__str__": lambda s: "c\rd"})),
                    extra={"msg_id": "m\n" + FORGED})
    finally:
        log.removeHandler(handler)
        log.propagate = True
    assert stream.getvalue().count("\n") == 1
    assert "[m\\n2026" in stream.getvalue() and "c\\rd" in stream.getvalue()


# ---- malformed HTTP (item 13) -------------------------------------------------------------------

MALFORMED = {
    "request line over 8 KiB": b"GET /wechat?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\x01: <script>\r\n\r\n",
    "bad version": b"GET / HTTP/9<script>\r\nHost: x\r\n\r\n",
    "unsupported Content-Encoding": b"POST /wechat HTTP/1.1\r\nHost: x\r\nContent-Encoding: br\r\n"
                                    b"Content-Length: 5\r\nConnection: close\r\n\r\nhello",
    "undecodable gzip body": b"POST /wechat HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
                             b"Content-Length: 5\r\nConnection: close\r\n\r\nhello",
}


async def raw_exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_http_gets_a_fixed_400_and_one_warning_line(name, caplog):
    runner = WebhookRunner(create_app(build_settings({"plugins": {"enabled": ["welcome"]}})), access_log=None)
    await runner.setup()
    try:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(runner, sock)
        await site.start()
        caplog.clear()
        with caplog.at_level(logging.INFO):
            answer = await raw_exchange(sock.getsockname()[1], MALFORMED[name])
            await asyncio.sleep(0.05)  # aiohttp drains the connection after answering
    finally:
        await runner.cleanup()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")) and body == b"bad request"
    records = warnings_and_worse(caplog)
    assert [r.levelname for r in records] == ["WARNING"], [r.getMessage() for r in records]
    assert records[0].exc_info is None and "malformed HTTP request" in records[0].getMessage()


async def test_an_aiohttp_without_the_internals_it_reaches_serves_with_its_own_handler(monkeypatch, caplog):
    # a later aiohttp whose server keeps its settings elsewhere: one warning at start-up, and
    # requests are still answered (by aiohttp's own connection handler), not failed per connection
    from aiohttp.web_protocol import RequestHandler
    from aiohttp.web_server import Server

    built = Server.__init__

    def keeps_its_settings_elsewhere(self, *args, **kw):
        built(self, *args, **kw)
        self.settings = self.__dict__.pop("_kwargs")

    monkeypatch.setattr(Server, "__init__", keeps_its_settings_elsewhere)
    monkeypatch.setattr(Server, "__call__", lambda self: RequestHandler(self, loop=self._loop, **self.settings))
    runner = WebhookRunner(create_app(build_settings({"plugins": {"enabled": ["welcome"]}})), access_log=None)
    with caplog.at_level(logging.WARNING):
        await runner.setup()
    try:
        assert type(runner.server) is Server
        assert [r.getMessage() for r in warnings_and_worse(caplog)] == [
            f"aiohttp {aiohttp.__version__}: serving with its own connection handler; a malformed HTTP "
            "request gets aiohttp's 400 text and log line"]
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        answer = await raw_exchange(sock.getsockname()[1], b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200")
    finally:
        await runner.cleanup()


def test_the_served_bot_answers_malformed_http_quietly(tmp_path):
    """``run.py`` (not a test runner) serves through the same runner: the log shows no traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = tmp_path / "settings.toml"
    settings.write_text('[server]\nhost = "127.0.0.1"\nreload_interval = 0\n[wechat]\ntoken = "t"\n'
                        '[plugins]\nenabled = ["welcome"]\nentry_points = false\n', encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "run.py"), "--settings", str(settings),
                             "--port", str(port)], cwd=PROJECT_ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the bot did not start"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        answers = [asyncio.run(raw_exchange(port, MALFORMED[name])) for name in MALFORMED]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    assert all(a.partition(b"\r\n\r\n")[2] == b"bad request" for a in answers)
    assert output.count("malformed HTTP request") == len(MALFORMED), output
    assert "Traceback" not in output and " ERROR " not in output, output
    assert proc.returncode == 0, output


def test_text_lines_carry_the_time_as_logging_writes_it():
    """The text formatter makes the time's text once a second: every line still has its own."""
    from core.operations.logs import TEXT_FORMAT, TextFormatter

    ours, standard = TextFormatter(), logging.Formatter(TEXT_FORMAT)
    for created in (1700000000.001, 1700000000.999, 1700000001.5, 1700000000.25, 1700003600.0):
        record = logging.LogRecord("skillbot.t", logging.INFO, __file__, 1, "m %s", ("x",), None)
        record.created, record.msecs, record.msg_id = created, (created - int(created)) * 1000, "-"
        assert ours.format(record) == standard.format(record)
