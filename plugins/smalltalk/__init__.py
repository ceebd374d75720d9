"""Small talk without a model: greetings, thanks, identity, goodbye, praise.

Phrasings and Chinese answers live in a TOML file the operator edits
(``[plugins.smalltalk] path``, default plugins/smalltalk/data/smalltalk.toml). The intent's
scorer claims a message only when all of it, once punctuation, closing particles and the bot's
names are removed, is one of the phrasings, so "你好，怎么退货" still goes to the FAQ. Answers
come first even when a model is configured: they are instant and free (docs/plugins.md).
"""
from __future__ import annotations

import logging
import random
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import BotServices, Candidate, Intent, MessageContext, TextReply, hookimpl

from .config import Config

log = logging.getLogger("skillbot.smalltalk")
INTENT = "smalltalk"


@dataclass
class Topic:
    name: str
    answers: list[str]


def fold(text: str) -> str:
    """NFKC, lower case, and no punctuation, symbols (emoji) or spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PSZC")


class SmallTalk:
    """The loaded file: folded phrasing -> topic, and the words stripped around a message."""

    def __init__(self, path: Path) -> None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"small-talk file {path}: {exc}") from None
        self.particles = sorted({fold(p) for p in _strings(data, "particles", path)} - {""},
                                key=len, reverse=True)
        self.names = sorted({fold(n) for n in _strings(data, "names", path)} - {""}, key=len, reverse=True)
        self.phrasings: dict[str, Topic] = {}
        topics = data.get("topics", [])
        if not isinstance(topics, list) or not topics:
            raise ValueError(f"small-talk file {path}: no [[topics]]")
        for i, table in enumerate(topics):
            where = f"small-talk file {path}, topic {i + 1}"
            if not isinstance(table, dict):
                raise ValueError(f"{where}: not a table")
            answers = _strings(table, "answers", where)
            if not answers:
                raise ValueError(f"{where}: no answers")
            topic = Topic(str(table.get("name") or f"topic{i + 1}"), answers)
            for phrasing in _strings(table, "phrasings", where):
                key = self.core(phrasing)
                if key:
                    self.phrasings[key] = topic

    def core(self, text: str) -> str:
        """The message without punctuation, closing particles and the bot's names around it."""
        text = fold(text)
        changed = True
        while changed and text:
            changed = False
            for word in self.particles:
                if text.endswith(word) and len(text) > len(word):
                    text, changed = text[:-len(word)], True
            for name in self.names:
                if text.startswith(name) and len(text) > len(name):
                    text, changed = text[len(name):], True
                elif text.endswith(name) and len(text) > len(name):
                    text, changed = text[:-len(name)], True
        return text

    def match(self, text: str) -> Topic | None:
        return self.phrasings.get(self.core(text))


def _strings(table: dict, key: str, where: Any) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: {key} must be a list of strings")
    return value


class Plugin:
    def __init__(self) -> None:
        self.config = Config()
        self.talk: SmallTalk | None = None

    @hookimpl
    def skillbot_config_schema(self) -> type:
        return Config

    @hookimpl
    def skillbot_startup(self, bot: BotServices, config: Config) -> None:
        self.config = config
        path = config.resolved_path(bot.settings)
        self.talk = SmallTalk(path)  # a broken file stops start-up with its name
        log.info("small talk: %d phrasings from %s", len(self.talk.phrasings), path)

    @hookimpl
    def skillbot_intents(self) -> list[Intent]:
        return [Intent(INTENT, scorer=self.score)]

    def score(self, text: str, tokens: list[str]) -> tuple[float, dict[str, Any]]:
        """The router's scorer: ``config.score`` when the whole message is a phrasing, else 0."""
        topic = self.talk.match(text) if self.talk is not None and len(text) <= 40 else None
        if topic is None:
            return 0.0, {}
        return self.config.score, {"topic": topic.name}

    @hookimpl
    def skillbot_handle(self, ctx: MessageContext, candidate: Candidate) -> TextReply | None:
        if candidate.name != INTENT or self.talk is None:
            return None
        topic = self.talk.match(ctx.message.text or "")
        if topic is None:
            return None
        return TextReply(random.choice(topic.answers))
