"""Reply types a plugin returns; the gateway renders them to WeChat's passive-reply XML."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Reply:
    """Base of every reply. ``plugin`` and ``intent`` are filled in by the pipeline."""

    plugin: str | None = field(default=None, kw_only=True, compare=False)
    intent: str | None = field(default=None, kw_only=True, compare=False)
    #: Skip recording this reply in the conversation history (e.g. a filter refusal).
    record: bool = field(default=True, kw_only=True, compare=False)

    reply_type = ""


@dataclass
class TextReply(Reply):
    content: str
    reply_type = "text"


@dataclass
class ImageReply(Reply):
    media_id: str
    reply_type = "image"


@dataclass
class VoiceReply(Reply):
    media_id: str
    reply_type = "voice"


@dataclass
class VideoReply(Reply):
    media_id: str
    title: str = ""
    description: str = ""
    reply_type = "video"


@dataclass
class MusicReply(Reply):
    thumb_media_id: str
    title: str = ""
    description: str = ""
    music_url: str = ""
    hq_music_url: str = ""
    reply_type = "music"


@dataclass
class Article:
    title: str
    description: str = ""
    pic_url: str = ""
    url: str = ""


@dataclass
class NewsReply(Reply):
    articles: list[Article]
    reply_type = "news"


@dataclass
class SuccessReply(Reply):
    """Acknowledge without answering: the gateway sends the plain body ``success``."""

    reply_type = "success"


def reply_text(reply: Reply | None) -> str:
    """The words a reply shows the user (for history, filters and logs)."""
    if isinstance(reply, TextReply):
        return reply.content
    if isinstance(reply, NewsReply):
        return "\n".join(f"{a.title} {a.description}".strip() for a in reply.articles)
    if isinstance(reply, (VideoReply, MusicReply)):
        return f"{reply.title} {reply.description}".strip()
    return ""


_REPLY_TYPES: dict[str, type[Reply]] = {
    cls.reply_type: cls for cls in (TextReply, ImageReply, VoiceReply, VideoReply, MusicReply,
                                    NewsReply, SuccessReply)
}


def reply_to_dict(reply: Reply) -> dict:
    """A JSON-serialisable form of a reply (answer records may live in Redis)."""
    data = {k: v for k, v in vars(reply).items()}
    if isinstance(reply, NewsReply):
        data["articles"] = [vars(a) for a in reply.articles]
    data["type"] = reply.reply_type
    return data


def reply_from_dict(data: dict) -> Reply:
    data = dict(data)
    cls = _REPLY_TYPES[data.pop("type")]
    if cls is NewsReply:
        data["articles"] = [Article(**a) for a in data["articles"]]
    return cls(**data)
