"""Inbound XML parsing (hostile input refused) and outbound reply rendering with Jinja2."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_et
import jinja2
from defusedxml import DefusedXmlException

from .replies import NewsReply, Reply, TextReply

#: Characters XML 1.0 forbids even inside CDATA; removed from outgoing text.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
MAX_TEXT_BYTES = 2047
MAX_ARTICLES_REPLY = 1
MAX_ARTICLES_OTHER = 8


class XMLRejected(ValueError):
    """Inbound XML that is malformed or hostile (DTD, entities)."""


#: WeChat's deepest documented message nests four elements under <xml> (SendPicsInfo > PicList >
#: item > PicMd5Sum); deeper input is refused before recursing into it.
MAX_DEPTH = 8


def _element_value(element: Element, depth: int = 1) -> Any:
    children = list(element)
    if not children:
        # Whitespace around a CDATA section is layout, not value (WeChat's own 卡券 samples
        # write <MsgType> <![CDATA[event]]> </MsgType>); wechatpy and WeRoBot strip it too.
        return (element.text or "").strip()
    if depth >= MAX_DEPTH:
        raise XMLRejected(f"elements nested deeper than {MAX_DEPTH}")
    value: dict[str, Any] = {}
    for child in children:
        item = _element_value(child, depth + 1)
        if child.tag in value:
            if depth == 1:
                # Which value would be the message? A parser differential waiting to happen.
                raise XMLRejected(f"duplicated field <{child.tag}>")
            existing = value[child.tag]
            value[child.tag] = existing + [item] if isinstance(existing, list) else [existing, item]
        else:
            value[child.tag] = item
    return value


def parse_xml(body: bytes | str) -> dict[str, Any]:
    """Parse a WeChat XML document into a dict of its top-level fields.

    DTDs, entity declarations and external references are refused (XXE, billion laughs), and so
    are a top-level field given twice and elements nested deeper than ``MAX_DEPTH``. Text values
    are stripped of surrounding whitespace; repeated nested elements (``<item>`` lists) become lists.
    """
    try:
        root = safe_et.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise XMLRejected(f"hostile XML refused: {type(exc).__name__}") from None
    except (ParseError, ValueError, TypeError) as exc:
        raise XMLRejected(f"malformed XML: {exc}") from None
    if root.tag != "xml":
        raise XMLRejected(f"unexpected root element <{root.tag}>")
    fields = _element_value(root)
    if not isinstance(fields, dict):
        raise XMLRejected("empty <xml> document")
    return fields


def cdata(value: Any) -> str:
    """Wrap text in CDATA so any text, ``]]>`` included, survives exactly."""
    text = _XML_ILLEGAL.sub("", "" if value is None else str(value))
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def truncate_utf8(text: str, limit: int = MAX_TEXT_BYTES, marker: str = "") -> str:
    """Cut text at a character boundary so text + marker fits in ``limit`` UTF-8 bytes."""
    if len(text.encode("utf-8")) <= limit:
        return text
    budget = limit - len(marker.encode("utf-8"))
    if budget <= 0:
        return marker.encode("utf-8")[:limit].decode("utf-8", "ignore")
    cut = text.encode("utf-8")[:budget].decode("utf-8", "ignore")
    return cut + marker


class ReplyRenderer:
    """Renders ``Reply`` objects into passive-reply XML with the templates in core/access/templates/reply."""

    def __init__(self, truncation_marker: str = "", template_dirs: list[str | Path] | None = None) -> None:
        folders = [str(p) for p in (template_dirs or []) if Path(p).is_dir()]
        folders.append(str(Path(__file__).parent / "templates" / "reply"))
        # Read once: a settings reload builds a new renderer. (With auto_reload, every reply
        # would stat the included _head.xml.j2, a system call per message on the hot path.)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders), autoescape=False, auto_reload=False,
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.filters["cdata"] = cdata
        self.truncation_marker = truncation_marker
        self._templates = {name: self.env.get_template(f"{name}.xml.j2")
                           for name in ("text", "image", "voice", "video", "music", "news", "encrypted")}

    def render(self, reply: Reply, to_user: str, from_user: str, *, answering_user_message: bool = True,
               create_time: int | None = None) -> str:
        """XML for a reply to ``to_user`` (the inbound From) sent from ``from_user`` (the inbound To).

        ``success`` replies are the caller's business (they are not XML).
        """
        if isinstance(reply, TextReply):
            content = truncate_utf8(reply.content, MAX_TEXT_BYTES, self.truncation_marker)
            values: dict[str, Any] = {"content": content}
        elif isinstance(reply, NewsReply):
            limit = MAX_ARTICLES_REPLY if answering_user_message else MAX_ARTICLES_OTHER
            values = {"articles": reply.articles[:limit]}
        else:
            values = {k: v for k, v in vars(reply).items() if k not in ("plugin", "intent", "record")}
        template = self._templates[reply.reply_type]
        return template.render(to_user=to_user, from_user=from_user,
                               create_time=create_time or int(time.time()), **values)

    def render_encrypted(self, encrypted: str, signature: str, timestamp: str, nonce: str) -> str:
        return self._templates["encrypted"].render(encrypt=encrypted, signature=signature,
                                                   timestamp=timestamp, nonce=nonce)
