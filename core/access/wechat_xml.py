"""Inbound XML parsing (hostile input refused) and outbound reply rendering with Jinja2."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from xml.parsers import expat

import jinja2
from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden

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


class _FieldsBuilder:
    """Builds the fields of a WeChat document while expat reads it, with defusedxml's refusals.

    Expat's callbacks make the dict directly (no element tree in between); what it refuses is
    what ``defusedxml.ElementTree`` refuses with ``forbid_dtd``, ``forbid_entities`` and
    ``forbid_external`` (its handlers, its exceptions): any DTD, entity declaration or external
    reference stops the parse.
    """

    __slots__ = ("stack", "root")

    def __init__(self) -> None:
        #: The open elements: [tag, children's values (None while it has none), text pieces].
        self.stack: list[list[Any]] = []
        self.root: tuple[str, Any] | None = None

    def parser(self) -> Any:
        # The namespace separator of ElementTree's parser: a namespaced tag reads "{uri}tag".
        parser = expat.ParserCreate(None, "}")
        parser.buffer_text = True
        parser.StartElementHandler = self.start
        parser.EndElementHandler = self.end
        parser.CharacterDataHandler = self.data
        parser.StartDoctypeDeclHandler = _refuse_dtd
        parser.EntityDeclHandler = _refuse_entity
        parser.UnparsedEntityDeclHandler = _refuse_unparsed_entity
        parser.ExternalEntityRefHandler = _refuse_external
        return parser

    def start(self, tag: str, _attributes: Any) -> None:
        if len(self.stack) >= MAX_DEPTH:  # its parent, at MAX_DEPTH, would hold elements
            raise XMLRejected(f"elements nested deeper than {MAX_DEPTH}")
        self.stack.append(["{" + tag if "}" in tag else tag, None, []])

    def data(self, text: str) -> None:
        if self.stack:
            self.stack[-1][2].append(text)

    def end(self, _tag: str) -> None:
        tag, children, text = self.stack.pop()
        # Whitespace around a CDATA section is layout, not value (WeChat's own 卡券 samples
        # write <MsgType> <![CDATA[event]]> </MsgType>); wechatpy and WeRoBot strip it too.
        value = "".join(text).strip() if children is None else children
        if not self.stack:
            self.root = (tag, value)
            return
        parent = self.stack[-1]
        if parent[1] is None:
            parent[1] = {}
        fields = parent[1]
        if tag in fields:
            if len(self.stack) == 1:
                # Which value would be the message? A parser differential waiting to happen.
                raise XMLRejected(f"duplicated field <{tag}>")
            existing = fields[tag]
            fields[tag] = existing + [value] if isinstance(existing, list) else [existing, value]
        else:
            fields[tag] = value


def _refuse_dtd(name: str, sysid: str | None, pubid: str | None, _has_internal_subset: bool) -> None:
    raise DTDForbidden(name, sysid, pubid)


def _refuse_entity(name: str, _is_parameter: bool, value: str | None, base: str | None, sysid: str | None,
                   pubid: str | None, notation_name: str | None) -> None:
    raise EntitiesForbidden(name, value, base, sysid, pubid, notation_name)


def _refuse_unparsed_entity(name: str, base: str | None, sysid: str | None, pubid: str | None,
                            notation_name: str | None) -> None:
    raise EntitiesForbidden(name, None, base, sysid, pubid, notation_name)


def _refuse_external(context: str, base: str | None, sysid: str | None, pubid: str | None) -> None:
    raise ExternalReferenceForbidden(context, base, sysid, pubid)


def parse_xml(body: bytes | str) -> dict[str, Any]:
    """Parse a WeChat XML document into a dict of its top-level fields.

    DTDs, entity declarations and external references are refused (XXE, billion laughs), and so
    are a top-level field given twice and elements nested deeper than ``MAX_DEPTH``. Text values
    are stripped of surrounding whitespace; repeated nested elements (``<item>`` lists) become lists.
    """
    builder = _FieldsBuilder()
    try:
        builder.parser().Parse(body, True)
    except DefusedXmlException as exc:
        raise XMLRejected(f"hostile XML refused: {type(exc).__name__}") from None
    except (expat.ExpatError, ValueError, TypeError) as exc:
        raise XMLRejected(f"malformed XML: {exc}") from None
    if builder.root is None:
        raise XMLRejected("malformed XML: no element found")
    tag, fields = builder.root
    if tag != "xml":
        raise XMLRejected(f"unexpected root element <{tag}>")
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
