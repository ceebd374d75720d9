"""The model's answer from the passages, as WeChat plain text.

The model is the one the llm plugin is configured with, asked through ``skillbot_ask_model``
(its providers, failover and circuit breakers); the knowledge skill only turns the answer into
plain text.
"""
from __future__ import annotations

import re

_THINKING = re.compile(r"<think>.*?</think>", re.S)
_MARKUP = ((re.compile(r"^\s{0,3}#{1,6}\s*", re.M), ""), (re.compile(r"\*\*(.+?)\*\*"), r"\1"),
           (re.compile(r"`([^`]*)`"), r"\1"), (re.compile(r"^\s*[-*]\s+", re.M), "- "))


def plain_text(text: str) -> str:
    """A model's Markdown as WeChat plain text: no reasoning block, headings, bold or code marks."""
    text = _THINKING.sub("", text)
    for pattern, repl in _MARKUP:
        text = pattern.sub(repl, text)
    return text.strip()
