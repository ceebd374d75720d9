"""Settings of the sensitive-word filter (``[plugins.filter]``)."""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from .normalize import DEFAULT_SEPARATORS

Action = Literal["block", "mask", "log"]


@dataclass
class Config:
    #: Word lists: UTF-8, one entry per line, optional category after a tab, ``#`` comments.
    #: Set in the settings, relative to the settings file's folder; the default, the demo list
    #: in this plugin's folder.
    word_files: list[str] = field(default_factory=lambda: ["data/demo_words.txt"])
    #: Allow lists: one word per line; an allowed word that covers a hit cancels it.
    allow_files: list[str] = field(default_factory=lambda: ["data/demo_allow.txt"])
    #: Action per category: "block" (the message goes no further; the user gets block_reply),
    #: "mask" (the words are replaced by mask_char before skills and the LLM see the text),
    #: "log" (only logged).
    categories: dict[str, Action] = field(default_factory=lambda: {
        "insult": "mask", "gambling": "log", "drugs": "block", "spam": "block"})
    #: Action for entries without a category or with a category not in ``categories``.
    default_action: Action = "block"
    #: What happens to a reply (skill or LLM) that contains a listed word. Categories whose
    #: action is "log" are only logged outbound too.
    outbound_action: Action = "mask"
    #: Reply to a blocked message (not recorded in the conversation history).
    block_reply: str = "抱歉，您的消息包含不适宜的内容，请文明交流。"
    #: Replaces a reply when outbound_action is "block".
    outbound_block_reply: str = "抱歉，这条回复包含不适宜的内容，已被拦截。"
    #: The character that replaces each visible character of a masked word.
    mask_char: str = "*"
    #: Seconds between checks of the list files for changes (0 = never reload).
    reload_interval: float = 2.0
    #: Characters that noise skipping never bridges (full-width clause punctuation, line
    #: breaks): "他不傻，逼急了" is not read as containing 傻逼.
    hard_separators: str = DEFAULT_SEPARATORS

    def validate(self) -> None:
        if len(self.mask_char) != 1:
            raise ValueError("mask_char must be exactly one character")
        if self.reload_interval < 0:
            raise ValueError("reload_interval must be 0 (off) or a positive number of seconds")
        if any(unicodedata.category(ch)[0] in "LN" for ch in self.hard_separators):
            raise ValueError("hard_separators: must not contain letters or digits")
