"""What the operator console shows about recent traffic: a per-minute ring of message counts
(last 24 h, in memory, per worker) and, only when the operator turned them on, users' recent
transcripts (in memory, per worker, dropped after the retention period)."""
from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from typing import Any

#: Minutes the traffic ring keeps (24 h).
RING_MINUTES = 24 * 60
#: The dimensions a message is counted by.
DIMENSIONS = ("intent", "plugin", "outcome")
#: Users whose transcripts are kept at most, and lines per user.
TRANSCRIPT_USERS = 500
TRANSCRIPT_LINES = 50


class TrafficRing:
    """Message counts per minute for the last ``RING_MINUTES`` minutes, by intent, plugin and
    outcome. Bounded: one small Counter per minute that saw traffic, the oldest dropped."""

    def __init__(self, minutes: int = RING_MINUTES) -> None:
        self.minutes = minutes
        self.buckets: deque[tuple[int, Counter]] = deque()

    def record(self, intent: str, plugin: str, outcome: str, now: float | None = None) -> None:
        minute = int((now if now is not None else time.time()) // 60)
        if not self.buckets or self.buckets[-1][0] != minute:
            self.buckets.append((minute, Counter()))
        counts = self.buckets[-1][1]
        for name, value in zip(DIMENSIONS, (intent, plugin, outcome)):
            counts[(name, value)] += 1
        self._drop_old(minute)

    def _drop_old(self, minute: int) -> None:
        while self.buckets and self.buckets[0][0] <= minute - self.minutes:
            self.buckets.popleft()

    def series(self, dimension: str, now: float | None = None) -> dict[str, Any]:
        """``{"start": first minute (unix seconds), "labels": [...], "rows": {label: [count per
        minute]}}`` over the ring's whole span, zeros where nothing came."""
        last = int((now if now is not None else time.time()) // 60)
        first = last - self.minutes + 1
        rows: dict[str, list[int]] = {}
        for minute, counts in self.buckets:
            if minute < first or minute > last:
                continue
            for (name, value), count in counts.items():
                if name == dimension:
                    rows.setdefault(value, [0] * self.minutes)[minute - first] += count
        labels = sorted(rows, key=lambda v: -sum(rows[v]))
        return {"start": first * 60, "labels": labels, "rows": rows}


class Transcripts:
    """Each user's recent messages and replies, kept only while ``[console] transcripts`` is on;
    lines older than the retention period are dropped when read or written."""

    def __init__(self) -> None:
        self.users: OrderedDict[str, deque[tuple[float, str, str]]] = OrderedDict()

    def record(self, user: str, said: str, answered: str, retention_hours: float,
               now: float | None = None) -> None:
        now = now if now is not None else time.time()
        lines = self.users.pop(user, None) or deque(maxlen=TRANSCRIPT_LINES)
        lines.append((now, said, answered))
        self.users[user] = lines  # most recent last
        while len(self.users) > TRANSCRIPT_USERS:
            self.users.popitem(last=False)
        self.expire(retention_hours, now)

    def expire(self, retention_hours: float, now: float | None = None) -> None:
        cutoff = (now if now is not None else time.time()) - retention_hours * 3600
        for user in list(self.users):
            lines = self.users[user]
            while lines and lines[0][0] < cutoff:
                lines.popleft()
            if not lines:
                del self.users[user]

    def clear(self) -> None:
        self.users.clear()


def observe_message(metrics: Any, ctx: Any, answer: Any, outcome: str) -> None:
    """Count one finished message in ``metrics.traffic`` and, when transcripts are on for the
    message's bot, keep its text and the reply's text in ``metrics.transcripts``."""
    metrics.traffic.record(answer.intent or "-", answer.plugin or "-", outcome)
    console = getattr(getattr(getattr(ctx, "bot", None), "settings", None), "console", None)
    if console is None or not console.transcripts:
        if metrics.transcripts.users:
            metrics.transcripts.clear()  # turned off: nothing kept from now on
        return
    message = ctx.message
    said = message.text if message.text else f"[{message.kind}]"
    reply = answer.reply
    answered = getattr(reply, "text", None) or getattr(reply, "content", None) or f"[{type(reply).__name__}]"
    metrics.transcripts.record(ctx.user, said, str(answered), console.transcript_retention_hours)
