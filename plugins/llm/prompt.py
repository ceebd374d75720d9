"""Build the chat messages sent to the model: system prompt, bounded history, the new message.

History comes from the conversation store (``ctx.history``: oldest first, without the message
being answered). Skill answers are in it too, so a follow-up such as "那明天呢" after a weather
answer reaches the model with that answer as context.

The history is sent as whole exchanges (a user message and the reply to it) so the roles always
alternate user/assistant, which some local model chat templates insist on:

- user messages that got no recorded reply (a refusal, an error, a reset command) are left out;
- several replies recorded for one message are joined into one assistant message;
- a reply with no user message before it is left out, except at the very start of the history,
  where the store may have dropped the question of a long answer: that answer is kept after a
  stand-in question (``…``);
- a gap longer than ``idle_seconds`` between messages ends the conversation: only what came
  after the gap is used;
- then the newest exchanges are kept within ``max_turns`` messages and ``max_chars`` characters
  (when even the newest exchange is too long, it is kept cut to fit).
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Iterable, Sequence

from core import Turn

#: The ellipsis put where a too-long history message was cut.
ELLIPSIS = "…"


def china_timezone() -> tzinfo:
    """Asia/Shanghai from the tz database when present, else the fixed UTC+8 it always is."""
    try:
        from zoneinfo import ZoneInfo
        return ZoneInfo("Asia/Shanghai")
    except Exception:  # zoneinfo data missing on a minimal system
        return timezone(timedelta(hours=8), "CST")


def reset_pattern(command: str) -> str:
    """An exact-match regex for a reset command: surrounding spaces and end punctuation allowed."""
    return rf"^\s*{re.escape(command.strip())}\s*[。.！!~～]*\s*$"


def is_reset_command(text: str, commands: Iterable[str]) -> bool:
    return any(re.match(reset_pattern(c), text) for c in commands)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return text[:limit]
    return text[: limit - len(ELLIPSIS)] + ELLIPSIS


def exchanges_from_history(turns: Sequence[Turn], *, idle_seconds: float = 0.0,
                           now: float | None = None,
                           reset_commands: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Pair the history into (user text, reply text) exchanges, oldest first (rules above)."""
    turns = list(turns)
    if idle_seconds > 0 and turns:
        later = time.time() if now is None else now
        start = len(turns)
        for i in range(len(turns) - 1, -1, -1):
            if later - turns[i].at > idle_seconds:
                break
            later = turns[i].at
            start = i
        turns = turns[start:]
    commands = [c for c in reset_commands if c.strip()]
    exchanges: list[list[str]] = []
    pending_user: str | None = None
    previous_role = ""
    for turn in turns:
        if turn.role == "user":
            if commands and is_reset_command(turn.text, commands):
                # Whatever came before a reset was meant to be forgotten.
                exchanges.clear()
                pending_user = None
            else:
                pending_user = turn.text
            previous_role = "user"
        elif turn.role == "assistant":
            text = turn.text.strip()
            if pending_user is not None:
                exchanges.append([pending_user, text])
                pending_user = None
            elif previous_role == "assistant" and exchanges and text:
                exchanges[-1][1] = f"{exchanges[-1][1]}\n{text}" if exchanges[-1][1] else text
            elif not previous_role and text:
                # The store dropped the question of an answer too long to keep both: keep the
                # answer ("你刚才说什么" needs it) after a stand-in question.
                exchanges.append([ELLIPSIS, text])
            previous_role = "assistant"
    return [(user, reply) for user, reply in exchanges if reply]


def bound_exchanges(exchanges: Sequence[tuple[str, str]], max_turns: int,
                    max_chars: int) -> list[tuple[str, str]]:
    """Keep the newest exchanges: at most ``max_turns`` messages and ``max_chars`` characters."""
    keep = max_turns // 2
    if keep <= 0 or max_chars <= 0:
        return []
    recent = list(exchanges)[-keep:]
    kept: list[tuple[str, str]] = []
    total = 0
    for user, reply in reversed(recent):
        size = len(user) + len(reply)
        if total + size <= max_chars:
            kept.append((user, reply))
            total += size
            continue
        if not kept:
            # The newest exchange alone is too long: keep it, cut to fit (the question at most
            # half the budget, the answer the rest).
            cut_user = _cut(user, max(1, max_chars // 2))
            cut_reply = _cut(reply, max_chars - len(cut_user))
            if cut_reply:
                kept.append((cut_user, cut_reply))
        break
    kept.reverse()
    return kept


def history_messages(turns: Sequence[Turn], *, max_turns: int, max_chars: int,
                     idle_seconds: float = 0.0, now: float | None = None,
                     reset_commands: Iterable[str] = ()) -> list[dict[str, str]]:
    """The bounded history as OpenAI chat messages (user/assistant, alternating)."""
    exchanges = exchanges_from_history(turns, idle_seconds=idle_seconds, now=now,
                                       reset_commands=reset_commands)
    messages: list[dict[str, str]] = []
    for user, reply in bound_exchanges(exchanges, max_turns, max_chars):
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": reply})
    return messages


def build_messages(system_prompt: str, history: Sequence[dict[str, str]],
                   text: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """System prompt (left out when empty), then the history, then the new user message (a
    string, or a list of content parts such as text and ``image_url``)."""
    messages: list[dict[str, Any]] = []
    if system_prompt.strip():
        messages.append({"role": "system", "content": system_prompt.strip()})
    messages.extend(history)
    messages.append({"role": "user", "content": text})
    return messages


def prompt_variables(*, persona: str, account_name: str = "", nickname: Any = None,
                     now: datetime | None = None) -> dict[str, Any]:
    """What the system prompt template receives."""
    return {
        "persona": persona,
        "account_name": account_name,
        "nickname": nickname or "",
        "now": now if now is not None else datetime.now(china_timezone()),
    }
