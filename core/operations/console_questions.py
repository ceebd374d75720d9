"""The console's unanswered questions: the FAQ's question log read back, grouped by similarity,
and turned into FAQ phrasings or entries written to the FAQ file (with a timestamped backup;
the FAQ plugin's file watcher reloads it).

Only the FAQ's public file format is used: ``[[entry]]`` tables with ``id``, ``questions``,
``answer``. The file is edited as text so its comments stay, and the result is read back with
``tomllib`` before it replaces the file.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

import numpy as np

#: The question log's place under the data folder (written by the FAQ plugin).
QUESTION_LOG = Path("faq") / "questions.tsv"
#: Question texts the operator already turned into FAQ phrasings (one JSON string a line).
HANDLED = Path("console") / "handled.jsonl"
ENTRY_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
#: Distinct question texts grouped at most (the most frequent): bounds the page's work.
MAX_TEXTS = 500


@dataclass
class QuestionGroup:
    #: The most frequent text of the group (what "add as phrasing" proposes).
    text: str
    #: Every distinct text in the group with its count, most frequent first.
    members: list[tuple[str, int]] = field(default_factory=list)
    #: "declined" / "low" counts.
    kinds: Counter = field(default_factory=Counter)
    #: The FAQ entry the FAQ found nearest (most often in the group).
    nearest: str = ""
    last_seen: str = ""

    @property
    def count(self) -> int:
        return sum(count for _, count in self.members)


def bigrams(text: str) -> set[str]:
    compact = "".join(text.split()).lower()
    if len(compact) < 2:
        return {compact} if compact else set()
    return {compact[i:i + 2] for i in range(len(compact) - 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def read_question_log(data_dir: Path) -> list[list[str]]:
    """The log's rows (time, kind, text, nearest, score, answered_by); missing file: none."""
    path = data_dir / QUESTION_LOG
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[2].strip():
            rows.append(parts)
    return rows


def read_handled(data_dir: Path) -> set[str]:
    path = data_dir / HANDLED
    if not path.is_file():
        return set()
    handled = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            handled.add(str(json.loads(line)))
        except json.JSONDecodeError:
            continue
    return handled


def mark_handled(data_dir: Path, texts: Sequence[str]) -> None:
    path = data_dir / HANDLED
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for text in texts:
            fh.write(json.dumps(text, ensure_ascii=False) + "\n")


Similarity = Callable[[str, str], float]


def frequent_texts(rows: Sequence[Sequence[str]], handled: set[str] = frozenset(),
                   limit: int = MAX_TEXTS) -> list[str]:
    """The distinct texts of ``rows`` not yet handled, most frequent first, at most ``limit``."""
    counts = Counter(row[2].strip() for row in rows if row[2].strip() not in handled)
    return [text for text, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]]


def group_questions(rows: Sequence[Sequence[str]], similarity: Similarity, threshold: float,
                    handled: set[str] = frozenset(), limit: int = MAX_TEXTS) -> list[QuestionGroup]:
    """Greedy clustering: distinct texts, most frequent first (the ``limit`` most frequent), each
    joins the first group whose leading text is at least ``threshold`` similar, else starts a
    group. Handled texts are left out. Groups come largest first."""
    kept = set(frequent_texts(rows, handled, limit))
    counts: Counter = Counter()
    info: dict[str, dict[str, Any]] = {}
    for row in rows:
        text = row[2].strip()
        if text not in kept:
            continue
        counts[text] += 1
        seen = info.setdefault(text, {"kinds": Counter(), "nearest": Counter(), "last": ""})
        seen["kinds"][row[1]] += 1
        if len(row) > 3 and row[3] and row[3] != "-":
            seen["nearest"][row[3]] += 1
        seen["last"] = max(seen["last"], row[0])
    groups: list[QuestionGroup] = []
    for text, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        home = next((g for g in groups if similarity(g.text, text) >= threshold), None)
        if home is None:
            home = QuestionGroup(text)
            groups.append(home)
        home.members.append((text, count))
        home.kinds.update(info[text]["kinds"])
        home.last_seen = max(home.last_seen, info[text]["last"])
    for group in groups:
        nearest: Counter = Counter()
        for text, _ in group.members:
            nearest.update(info[text]["nearest"])
        group.nearest = nearest.most_common(1)[0][0] if nearest else ""
    groups.sort(key=lambda g: (-g.count, g.text))
    return groups


def bigram_similarity() -> Similarity:
    cache: dict[str, set[str]] = {}

    def similarity(a: str, b: str) -> float:
        for text in (a, b):
            if text not in cache:
                cache[text] = bigrams(text)
        return jaccard(cache[a], cache[b])

    return similarity


async def embedding_similarity(texts: Sequence[str],
                               embed: Callable[[str], Awaitable[Any]]) -> Similarity | None:
    """Cosine over the bot's embeddings of ``texts`` (asked for together, so the service batches
    them); None when a text cannot be embedded or the vectors come from different models (the
    caller then falls back to bigrams)."""
    embedded = await asyncio.gather(*(embed(text) for text in texts))
    if any(e is None for e in embedded) or len({e.model for e in embedded}) > 1:
        return None
    if not embedded:
        return lambda a, b: 0.0
    matrix = np.asarray([np.asarray(e.vector, dtype=np.float32) for e in embedded])
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = matrix / np.where(norms == 0, 1, norms)
    row = {text: i for i, text in enumerate(texts)}
    return lambda a, b: float(matrix[row[a]] @ matrix[row[b]])


# ---- the FAQ file ----------------------------------------------------------------------------

class FaqEditError(ValueError):
    """The requested edit cannot be made (unknown entry, duplicate id, bad input); the message is
    a key the console's templates turn into Chinese."""


def faq_entries(path: Path) -> list[dict[str, Any]]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return [e for e in data.get("entry", []) if isinstance(e, dict)]


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid TOML basic string


_ENTRY = re.compile(r"^\s*\[\[\s*entry\s*\]\]\s*(#.*)?$", re.M)
_TABLE = re.compile(r"^\s*\[", re.M)


def with_phrasing(text: str, entry_id: str, phrasing: str) -> str:
    """The FAQ file ``text`` with ``phrasing`` added at the end of entry ``entry_id``'s
    ``questions`` array; the rest of the file, comments included, unchanged."""
    for match in _ENTRY.finditer(text):
        start = match.start()
        following = _TABLE.search(text, match.end())
        end = following.start() if following else len(text)
        block = text[start:end]
        if tomllib.loads(_as_table(block)).get("id") != entry_id:
            continue
        found = re.search(r"^[ \t]*questions[ \t]*=[ \t]*\[", block, re.M)
        if found is None:
            raise FaqEditError("entry_without_questions")
        close = _array_end(block, found.end())
        body = block[found.end():close].rstrip()
        literal = _toml_string(phrasing)
        if "\n" in block[found.end():close]:  # one phrasing a line
            if body.strip() and not body.endswith(","):
                body += ","
            body += f"\n    {literal},\n"
        else:
            body += (" " if body.endswith(",") else ", " if body.strip() else "") + literal
        return text[:start] + block[:found.end()] + body + block[close:] + text[end:]
    raise FaqEditError("unknown_entry")


def _as_table(block: str) -> str:
    return _ENTRY.sub("", block, count=1)


def _array_end(block: str, position: int) -> int:
    quote = None
    i = position
    while i < len(block):
        ch = block[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            i = block.find("\n", i)
            if i < 0:
                break
        elif ch == "]":
            return i
        i += 1
    raise FaqEditError("unreadable_questions")


def with_new_entry(text: str, entry_id: str, question: str, answer: str) -> str:
    return (text.rstrip("\n") + "\n\n[[entry]]\n"
            f"id = {_toml_string(entry_id)}\n"
            f"questions = [{_toml_string(question)}]\n"
            f"answer = {_toml_string(answer)}\n")


def write_faq(path: Path, edit: str, entry_id: str, question: str, answer: str = "",
              now: datetime | None = None) -> Path:
    """Apply one edit (``"phrasing"`` or ``"entry"``) to the FAQ file: checked by reading it
    back, the old file copied to ``<name>.<UTC time>.bak`` beside it, then replaced in one step.
    Returns the backup's path. Blocking file I/O: call it from a thread."""
    question = " ".join(question.split())
    if not question:
        raise FaqEditError("empty_question")
    before = path.read_text(encoding="utf-8")
    entries = faq_entries(path)
    ids = {str(e.get("id")) for e in entries}
    if edit == "phrasing":
        if entry_id not in ids:
            raise FaqEditError("unknown_entry")
        entry = next(e for e in entries if str(e.get("id")) == entry_id)
        if question in entry.get("questions", []):
            raise FaqEditError("already_there")
        after = with_phrasing(before, entry_id, question)
    elif edit == "entry":
        answer = answer.strip()
        if not ENTRY_ID.match(entry_id):
            raise FaqEditError("bad_id")
        if entry_id in ids:
            raise FaqEditError("duplicate_id")
        if not answer:
            raise FaqEditError("empty_answer")
        after = with_new_entry(before, entry_id, question, answer)
    else:
        raise FaqEditError("unknown_edit")
    check = [e for e in tomllib.loads(after).get("entry", []) if str(e.get("id")) == entry_id]
    if len(check) != 1 or question not in check[0].get("questions", []):
        raise FaqEditError("not_written")
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")
    backup = path.with_name(f"{path.name}.{stamp}.bak")
    shutil.copy2(path, backup)
    temporary = path.with_name(f".{path.name}.console-tmp")
    temporary.write_text(after, encoding="utf-8")
    os.replace(temporary, path)
    return backup
