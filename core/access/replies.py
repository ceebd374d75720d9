"""Reply types a plugin returns (the webhook renders them to WeChat's passive-reply XML), and the
``Answer`` the pipeline gives a message: its reply with the explanation of how it was reached."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, AsyncIterator


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


#: ``file`` on a media reply: a file (relative to the settings file's folder) the pipeline uploads
#: once for its media_id (``bot.media_id``) when ``media_id`` is empty: ``ImageReply(file="a.jpg")``.
@dataclass
class ImageReply(Reply):
    media_id: str = ""
    file: str = field(default="", kw_only=True)
    reply_type = "image"


@dataclass
class VoiceReply(Reply):
    media_id: str = ""
    file: str = field(default="", kw_only=True)
    reply_type = "voice"


@dataclass
class VideoReply(Reply):
    media_id: str = ""
    title: str = ""
    description: str = ""
    file: str = field(default="", kw_only=True)
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
class StreamedReply(Reply):
    """A text reply whose text arrives over time (a model writing its answer).

    ``pieces`` yields the text in order, in whole sentences or paragraphs, each with the
    whitespace that follows it; joined, they are the whole text. Iterate it once. In WeChat's
    passive mode the delivery answers a try with the sentences ready so far and keeps the rest for
    「继续」 and the user's next message; in customer-service mode it pushes paragraphs as they
    end. The console and the simulators ``collect()`` it. A plugin that learns only while writing
    that the text should stay out of the history sets ``record = False`` before its last piece.
    Never stored as it is: the delivery turns it into text.
    """

    pieces: AsyncIterator[str]
    reply_type = "stream"

    async def collect(self) -> TextReply:
        """The whole text as one ``TextReply`` (waits for the last piece)."""
        async with contextlib.aclosing(self.pieces) as pieces:  # type: ignore[type-var]
            text = "".join([piece async for piece in pieces])
        return TextReply(text.strip(), plugin=self.plugin, intent=self.intent, record=self.record)


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


#: The field of an answer record (``Answer.to_record``) that holds the explanation.
EXPLANATION_FIELD = "explain"

#: Which stage gave the answer: the full pipeline, or a stage that answers before it.
PIPELINE, CONTINUATION, RATE_LIMIT = "pipeline", "continuation", "rate_limit"


@dataclass
class Answer:
    """What the bot answers one message with: the reply, how it was reached (the explanation the
    simulators show) and the stage that gave it. Stored in answer records as ``to_record()``."""

    reply: Reply
    explanation: dict[str, Any] = field(default_factory=dict)
    stage: str = PIPELINE

    @property
    def plugin(self) -> str | None:
        return self.reply.plugin

    @property
    def intent(self) -> str | None:
        return self.reply.intent

    def to_record(self, explained: bool = True) -> dict:
        """The storable (JSON) form: the reply's fields, plus its explanation unless ``explained``
        is False."""
        record = reply_to_dict(self.reply)
        if explained and self.explanation:
            record[EXPLANATION_FIELD] = self.explanation
        return record

    @classmethod
    def from_record(cls, record: dict) -> Answer:
        record = dict(record)
        explanation = record.pop(EXPLANATION_FIELD, None) or {}
        return cls(reply_from_dict(record), explanation)

    def explained_try(self, try_number: int | None, timings_ms: dict[str, float]) -> dict[str, Any]:
        """The explanation of this answer as one try carried it: who answered, the pipeline's
        timings and the try's own (verify, parse, render, total); ``try_number`` None when the try
        is not known (an explanation read back from an answer record)."""
        explanation = dict(self.explanation)
        explanation["timings_ms"] = {**explanation.get("timings_ms", {}),
                                     **{k: round(v, 3) for k, v in timings_ms.items()}}
        explanation["plugin"] = explanation.get("plugin") or self.plugin
        explanation["intent"] = explanation.get("intent") or self.intent
        if try_number is not None:
            explanation["try"] = try_number
        return explanation


def record_without_explanation(record: dict) -> dict:
    """An answer record without its explanation (what a retry or a later delivery needs)."""
    return {k: v for k, v in record.items() if k != EXPLANATION_FIELD}
