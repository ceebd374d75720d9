"""Typed inbound WeChat messages and events, and the parser that builds them from XML fields."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..operations.logs import hash_user


def _key_part(value: Any) -> str:
    """One part of a record key, with ``:`` (the separator) and ``%`` escaped so parts cannot run
    into each other (a user ``a:b`` never shares a key with user ``a``)."""
    return str(value).replace("%", "%25").replace(":", "%3A")


def message_key(user: str, msg_id: str) -> str:
    """The record key of a message: WeChat's MsgId is unique per user, not across users."""
    return f"msg:{_key_part(user)}:{_key_part(msg_id)}"


def event_key(user: str, create_time: int, event: str, key: str = "") -> str:
    """The record key of an event (events have no MsgId): two events in the same second differ by
    their type or EventKey (a LOCATION report and a subscribe often share a CreateTime)."""
    return f"evt:{_key_part(user)}:{create_time}:{_key_part(event)}:{_key_part(key)}"


@dataclass
class Message:
    """Any inbound message. ``fields`` keeps every XML field as received (text values)."""

    to_user: str
    from_user: str
    create_time: int
    msg_type: str
    fields: dict[str, Any] = field(default_factory=dict, repr=False)
    msg_id: str | None = None
    #: What the pipeline reads as the user's words: text content or voice recognition.
    #: The inbound filter may rewrite it (masking); ``fields`` keeps the original.
    text: str = ""
    is_event: ClassVar[bool] = False

    @property
    def dedup_key(self) -> str:
        """WeChat's retry identity, which keys the answer record: the user and MsgId for messages;
        the user, CreateTime, type and EventKey for events (and messages without a MsgId)."""
        return self._key(self.from_user)

    @property
    def log_key(self) -> str:
        """``dedup_key`` with the user hashed, for log lines."""
        return self._key(hash_user(self.from_user))

    def _key(self, user: str) -> str:
        if self.msg_id:
            return message_key(user, self.msg_id)
        return event_key(user, self.create_time, self.msg_type)

    @property
    def kind(self) -> str:
        """``text``, ``image``... for messages; ``event.subscribe``, ``event.CLICK``... for events."""
        return self.msg_type


@dataclass
class TextMessage(Message):
    content: str = ""
    msg_data_id: str | None = None
    idx: str | None = None


@dataclass
class ImageMessage(Message):
    pic_url: str = ""
    media_id: str = ""


@dataclass
class VoiceMessage(Message):
    media_id: str = ""
    format: str = ""
    recognition: str = ""


@dataclass
class VideoMessage(Message):
    media_id: str = ""
    thumb_media_id: str = ""


@dataclass
class ShortVideoMessage(VideoMessage):
    pass


@dataclass
class LocationMessage(Message):
    latitude: float = 0.0
    longitude: float = 0.0
    scale: int = 0
    label: str = ""


@dataclass
class LinkMessage(Message):
    title: str = ""
    description: str = ""
    url: str = ""


@dataclass
class UnknownMessage(Message):
    """A message type this version does not know; every field is in ``fields``."""


# ---- events -------------------------------------------------------------------------------------

@dataclass
class Event(Message):
    event: str = ""
    is_event: ClassVar[bool] = True

    @property
    def kind(self) -> str:
        return f"event.{self.event}"

    def _key(self, user: str) -> str:
        return event_key(user, self.create_time, self.event, _s(self.fields, "EventKey"))


@dataclass
class SubscribeEvent(Event):
    #: Scene value of a scan-to-subscribe (``qrscene_`` stripped), else None.
    scene: str | None = None
    ticket: str | None = None


@dataclass
class UnsubscribeEvent(Event):
    pass


@dataclass
class ScanEvent(Event):
    scene: str = ""
    ticket: str = ""


@dataclass
class LocationEvent(Event):
    latitude: float = 0.0
    longitude: float = 0.0
    precision: float = 0.0


@dataclass
class ClickEvent(Event):
    key: str = ""


@dataclass
class ViewEvent(Event):
    url: str = ""
    menu_id: str | None = None


@dataclass
class TemplateSendJobFinishEvent(Event):
    status: str = ""
    job_id: str | None = None


@dataclass
class MassSendJobFinishEvent(Event):
    status: str = ""
    job_id: str | None = None
    total_count: int | None = None
    filter_count: int | None = None
    sent_count: int | None = None
    error_count: int | None = None


@dataclass
class UnknownEvent(Event):
    """An event type this version does not know; every field is in ``fields``."""


#: Sanity bounds: map zoom levels stop near 20; a position error beyond Earth's size is no position.
MAX_SCALE = 30
MAX_PRECISION_METRES = 20_000_000.0


class MessageFieldError(ValueError):
    """A required field is missing or has the wrong type."""


def _int(value: Any, name: str, default: int | None = None) -> int | None:
    if value in (None, ""):
        if default is not None:
            return default
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        raise MessageFieldError(f"{name} is not an integer") from None


_DECIMAL = re.compile(r"[+-]?[0-9]{1,12}(?:\.[0-9]{0,20})?")


def _decimal(value: Any, low: float, high: float) -> float | None:
    """A plain decimal number within [low, high]; None for anything else (``nan``, ``inf``,
    ``1e308``, words, a nested element, nothing)."""
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value.strip()):
        return None
    number = float(value)
    return number if math.isfinite(number) and low <= number <= high else None


def _coordinates(fields: dict[str, Any], lat_name: str, lon_name: str) -> tuple[float, float] | None:
    """Latitude and longitude when both are usable, else None: the message is then treated as
    carrying no location (see docs/operators.md, "Malformed messages")."""
    lat = _decimal(fields.get(lat_name), -90.0, 90.0)
    lon = _decimal(fields.get(lon_name), -180.0, 180.0)
    return None if lat is None or lon is None else (lat, lon)


def _s(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    return value if isinstance(value, str) else ""


def build_message(fields: dict[str, Any]) -> Message:
    """Build the typed message for a dict of top-level XML fields."""
    for required in ("ToUserName", "FromUserName", "MsgType"):
        if not _s(fields, required):
            raise MessageFieldError(f"missing {required}")
    msg_type = _s(fields, "MsgType")
    base: dict[str, Any] = dict(
        to_user=_s(fields, "ToUserName"),
        from_user=_s(fields, "FromUserName"),
        create_time=_int(fields.get("CreateTime"), "CreateTime", 0),
        msg_type=msg_type,
        fields=fields,
        msg_id=_s(fields, "MsgId") or None,
    )
    if msg_type == "text":
        content = _s(fields, "Content")
        return TextMessage(**base, text=content, content=content,
                           msg_data_id=_s(fields, "MsgDataId") or None, idx=_s(fields, "Idx") or None)
    if msg_type == "image":
        return ImageMessage(**base, pic_url=_s(fields, "PicUrl"), media_id=_s(fields, "MediaId"))
    if msg_type == "voice":
        recognition = _s(fields, "Recognition")
        return VoiceMessage(**base, text=recognition, media_id=_s(fields, "MediaId"),
                            format=_s(fields, "Format"), recognition=recognition)
    if msg_type in ("video", "shortvideo"):
        cls = VideoMessage if msg_type == "video" else ShortVideoMessage
        return cls(**base, media_id=_s(fields, "MediaId"), thumb_media_id=_s(fields, "ThumbMediaId"))
    if msg_type == "location":
        where = _coordinates(fields, "Location_X", "Location_Y")
        if where is None:
            return UnknownMessage(**base)
        scale = _decimal(fields.get("Scale"), 0, MAX_SCALE)  # a map zoom level
        return LocationMessage(**base, latitude=where[0], longitude=where[1],
                               scale=int(scale) if scale is not None else 0, label=_s(fields, "Label"))
    if msg_type == "link":
        return LinkMessage(**base, title=_s(fields, "Title"), description=_s(fields, "Description"),
                           url=_s(fields, "Url"))
    if msg_type == "event":
        return _build_event(fields, base)
    return UnknownMessage(**base)


def _build_event(fields: dict[str, Any], base: dict[str, Any]) -> Event:
    event = _s(fields, "Event")
    base = dict(base, msg_id=None, event=event)
    key = _s(fields, "EventKey")
    ticket = _s(fields, "Ticket") or None
    upper = event.upper()
    if upper == "SUBSCRIBE":
        scene = key[len("qrscene_"):] if key.startswith("qrscene_") else None
        return SubscribeEvent(**base, scene=scene, ticket=ticket)
    if upper == "UNSUBSCRIBE":
        return UnsubscribeEvent(**base)
    if upper == "SCAN":
        return ScanEvent(**base, scene=key, ticket=ticket or "")
    if upper == "LOCATION":
        where = _coordinates(fields, "Latitude", "Longitude")
        if where is None:
            return UnknownEvent(**base)
        precision = _decimal(fields.get("Precision"), 0.0, MAX_PRECISION_METRES)
        return LocationEvent(**base, latitude=where[0], longitude=where[1], precision=precision or 0.0)
    if upper == "CLICK":
        return ClickEvent(**base, key=key)
    if upper == "VIEW":
        return ViewEvent(**base, url=key, menu_id=_s(fields, "MenuId") or None)
    job_id = _s(fields, "MsgID") or _s(fields, "MsgId") or None
    if upper == "TEMPLATESENDJOBFINISH":
        return TemplateSendJobFinishEvent(**base, status=_s(fields, "Status"), job_id=job_id)
    if upper == "MASSSENDJOBFINISH":
        return MassSendJobFinishEvent(
            **base, status=_s(fields, "Status"), job_id=job_id,
            total_count=_int(fields.get("TotalCount"), "TotalCount"),
            filter_count=_int(fields.get("FilterCount"), "FilterCount"),
            sent_count=_int(fields.get("SentCount"), "SentCount"),
            error_count=_int(fields.get("ErrorCount"), "ErrorCount"))
    return UnknownEvent(**base)
