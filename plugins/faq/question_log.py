"""The FAQ's record of questions it declined narrowly or answered with low confidence.

One tab-separated line per question: UTC time, ``declined`` or ``low``, the message (normalised),
the nearest entry, its fused score, and which plugin answered. The file lives in the bot's data
folder (``paths.data_dir``/faq/questions.tsv) and keeps at most ``limit`` lines: when it reaches
twice that, the oldest half is dropped. docs/faq.md says how to turn the lines into phrasings.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("skillbot.plugins.faq")


class QuestionLog:
    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self._lock = threading.Lock()
        self._lines: int | None = None

    def append(self, kind: str, message: str, nearest: str, score: float, answered_by: str) -> None:
        """Add one line (blocking file I/O: call it from a thread)."""
        if self.limit <= 0:
            return
        clean = " ".join(message.split())
        row = "\t".join((datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), kind, clean,
                         nearest, f"{score:.4f}", answered_by or "-"))
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self._lines is None:
                    self._lines = 0
                    if self.path.is_file():
                        with open(self.path, encoding="utf-8") as fh:
                            self._lines = sum(1 for _ in fh)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(row + "\n")
                self._lines += 1
                if self._lines >= 2 * self.limit:
                    kept = self.path.read_text(encoding="utf-8").splitlines()[-self.limit:]
                    tmp = self.path.with_suffix(".tmp")
                    tmp.write_text("\n".join(kept) + "\n", encoding="utf-8")
                    tmp.replace(self.path)
                    self._lines = len(kept)
            except OSError as exc:
                log.warning("FAQ question log not written to %s: %s", self.path, exc)

    def read(self) -> list[list[str]]:
        if not self.path.is_file():
            return []
        return [line.split("\t") for line in self.path.read_text(encoding="utf-8").splitlines() if line]
