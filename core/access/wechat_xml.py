"""Inbound XML parsing (hostile input refused) and outbound reply rendering with Jinja2."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from xml.parsers import expat

import jinja2
import jinja2.nodes
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
    except (expat.ExpatError, ValueError, TypeError, LookupError) as exc:
        # LookupError: the document declares an encoding Python does not know, or one that is not
        # a text encoding (encoding="hex"): expat's unknown-encoding handler raises it (so did
        # defusedxml.ElementTree's), and it is the client's mistake like any malformed byte.
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
        self._text_format = text_format(self._templates["text"]) if _plain(self.env, "text.xml.j2") else None

    def render(self, reply: Reply, to_user: str, from_user: str, *, answering_user_message: bool = True,
               create_time: int | None = None) -> str:
        """XML for a reply to ``to_user`` (the inbound From) sent from ``from_user`` (the inbound To).

        ``success`` replies are the caller's business (they are not XML).
        """
        if isinstance(reply, TextReply):
            content = truncate_utf8(reply.content, MAX_TEXT_BYTES, self.truncation_marker)
            if self._text_format is not None:  # the template's own text, without running it
                return self._text_format.format(to_user=cdata(to_user), from_user=cdata(from_user),
                                                create_time=create_time or int(time.time()),
                                                content=cdata(content))
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


#: Markers rendered in place of a text reply's values to find where each goes in its template.
_MARKERS = {name: f"\ue000{name}\ue001" for name in ("to_user", "from_user", "create_time", "content")}
_CDATA_VALUES = ("to_user", "from_user", "content")


def _plain(env: jinja2.Environment, name: str, depth: int = 0) -> bool:
    """Whether template ``name`` only writes text, values (``{{ value }}``, ``{{ value|cdata }}``)
    and templates that do the same (``{% include "..." %}``): nothing that could depend on a value."""
    try:
        body = env.parse(env.loader.get_source(env, name)[0]).body  # type: ignore[union-attr]
    except jinja2.TemplateError:
        return False
    for node in body:
        if isinstance(node, jinja2.nodes.Output):
            for part in node.nodes:
                if isinstance(part, jinja2.nodes.Filter) and part.name == "cdata" and not (
                        part.args or part.kwargs or part.dyn_args or part.dyn_kwargs):
                    part = part.node
                if not isinstance(part, (jinja2.nodes.TemplateData, jinja2.nodes.Name)):
                    return False
        elif isinstance(node, jinja2.nodes.Include) and isinstance(node.template, jinja2.nodes.Const):
            if depth > 4 or not node.with_context or not _plain(env, node.template.value, depth + 1):
                return False
        else:
            return False
    return True


def text_format(template: jinja2.Template) -> str | None:
    """The text reply template (the built-in one or an operator's) as a ``str.format`` string with
    fields ``to_user``, ``from_user``, ``content`` (each given through ``cdata``) and
    ``create_time``: what the template renders, made without running Jinja for every reply
    (~4x faster). None, so Jinja renders each reply, unless the template writes each value once,
    the three through ``cdata``, and the string gives exactly the template's output for test
    replies (CDATA ends, braces, characters XML forbids). Used only for a template that is text
    and values alone (``_plain``)."""
    try:
        marked = template.render(**_MARKERS)
    except Exception:  # a template that does more with its values than writing them
        return None
    slots = {name: (cdata(mark) if name in _CDATA_VALUES else mark) for name, mark in _MARKERS.items()}
    if any(marked.count(slot) != 1 for slot in slots.values()) or marked.count("\ue000") != len(slots):
        return None
    pattern = re.compile("|".join(re.escape(slot) for slot in slots.values()))
    by_slot = {slot: name for name, slot in slots.items()}
    pieces, at = [], 0
    for found in pattern.finditer(marked):
        pieces.append(marked[at:found.start()].replace("{", "{{").replace("}", "}}"))
        pieces.append("{" + by_slot[found.group()] + "}")
        at = found.end()
    pieces.append(marked[at:].replace("{", "{{").replace("}", "}}"))
    fmt = "".join(pieces)
    for values in ({"to_user": "o_u{0}", "from_user": "gh_}{", "create_time": 1700000000,
                    "content": "a]]>b\x01c {content} %s 中文\n😀"},
                   {"to_user": "", "from_user": "g", "create_time": 0, "content": ""}):
        try:
            expected = template.render(**values)
        except Exception:
            return None
        given = fmt.format(to_user=cdata(values["to_user"]), from_user=cdata(values["from_user"]),
                           create_time=values["create_time"], content=cdata(values["content"]))
        if given != expected:
            return None
    return fmt
