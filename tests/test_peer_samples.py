"""Every message and event shape wechatpy's and WeRoBot's tests feed their parsers, posted through
the real gateway: each is answered 2xx and parses into the right kind (tests/data has our own
transcription of those shapes, with our own values)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.access.messages import build_message
from core.access.wechat_xml import parse_xml
from core.appkeys import METRICS_KEY
from core.operations.metrics import kind_label

SAMPLES_FILE = Path(__file__).parent / "data" / "peer_inbound_samples.txt"
HEADER = re.compile(r"^--- (\S+) (\w+) \((.+)\)$")
#: The peers' own unknown-type tests: unknown to us too.
UNKNOWN_KINDS = {"notsure", "unknown", "event.unknown"}


def load_samples() -> list[tuple[str, str, str]]:
    """[(kind, class name, xml)] from the samples file."""
    samples: list[tuple[str, str, str]] = []
    kind = cls = ""
    lines: list[str] = []
    for line in SAMPLES_FILE.read_text(encoding="utf-8").splitlines() + ["--- end End (eof)"]:
        match = HEADER.match(line)
        if match:
            if kind:
                samples.append((kind, cls, "\n".join(lines).strip()))
            kind, cls, _ = match.groups()
            lines = []
        elif kind:
            lines.append(line)
    return samples


SAMPLES = load_samples()


def test_the_samples_cover_every_type():
    kinds = {kind for kind, _, _ in SAMPLES}
    assert len(SAMPLES) >= 150
    for expected in ("text", "image", "voice", "video", "shortvideo", "location", "link", "event.subscribe",
                     "event.unsubscribe", "event.SCAN", "event.LOCATION", "event.CLICK", "event.VIEW",
                     "event.TEMPLATESENDJOBFINISH", "event.MASSSENDJOBFINISH", "event.user_get_card",
                     "event.scancode_push", "event.pic_weixin", "event.location_select"):
        assert expected in kinds
    assert any("> <![CDATA[" in xml for _, _, xml in SAMPLES)  # the 卡券 documentation's layout


@pytest.mark.parametrize("kind,cls,xml", SAMPLES[:3] + [s for s in SAMPLES if "> <![CDATA[event]]>" in s[2]][:3])
def test_a_sample_parses_into_its_kind(kind, cls, xml):
    message = build_message(parse_xml(xml.encode("utf-8")))
    assert (message.kind, type(message).__name__) == (kind, cls)


@pytest.mark.parametrize("mode", ["plain", "safe"])
async def test_every_peer_sample_is_answered_through_the_gateway(wechat, mode):
    h = await wechat(mode=mode, enabled=["welcome"])
    requests = h.client.app[METRICS_KEY].requests
    wrong = []
    for kind, cls, xml in SAMPLES:
        message = build_message(parse_xml(xml.encode("utf-8")))
        label = kind_label(kind)
        before = requests.value(label)
        response = await h.post_xml(xml)
        body = await response.text()
        reply = h.signer.open_reply(body) if response.status == 200 and body != "success" else None
        problems = []
        if not 200 <= response.status < 300:
            problems.append(f"status {response.status}")
        if (message.kind, type(message).__name__) != (kind, cls):
            problems.append(f"parsed as {message.kind} {type(message).__name__}")
        if requests.value(label) != before + 1:
            problems.append(f"not counted as {label}")
        if (label == "other") != (kind in UNKNOWN_KINDS):
            problems.append(f"metric label {label}")
        if reply is not None and reply["ToUserName"] != message.from_user:
            problems.append("reply to someone else")
        if problems:
            wrong.append((kind, problems))
    assert not wrong
