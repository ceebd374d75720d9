"""Labelled messages through a running bot: accuracy and confusions (``run.py faq test``, the tests).

A labelled file is tab-separated ``message<TAB>expected`` (``#`` lines are comments, a third
column is ignored), where ``expected`` is ``faq:<entry id>``, ``weather`` (any skill's plugin name)
or ``fallback``. What the bot did is read the same way: ``faq:<id>`` when a skill recorded the
entry it answered (``ctx.extra["faq_id"]``), else the answering plugin's name, else ``fallback``
(the model or the no-answer reply).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class LabelledMessage:
    text: str
    expected: str
    line: int


@dataclass
class Outcome:
    case: LabelledMessage
    got: str
    route: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.got == self.case.expected


@dataclass
class Evaluation:
    outcomes: list[Outcome] = field(default_factory=list)

    def accuracy(self, kind: str | None = None) -> tuple[int, int]:
        """(right, total), for every case or those whose expected label starts with ``kind``."""
        chosen = [o for o in self.outcomes if kind is None or o.case.expected.split(":")[0] == kind]
        return sum(o.ok for o in chosen), len(chosen)

    def confusions(self) -> Counter:
        return Counter((o.case.expected, o.got) for o in self.outcomes if not o.ok)

    def report(self, show: int = 40) -> str:
        right, total = self.accuracy()
        lines = [f"accuracy: {right}/{total} = {right / max(total, 1):.1%}"]
        for kind in sorted({o.case.expected.split(":")[0] for o in self.outcomes}):
            r, t = self.accuracy(kind)
            lines.append(f"  {kind}: {r}/{t} = {r / max(t, 1):.1%}")
        confusions = self.confusions()
        if confusions:
            lines.append("confusions (expected -> got: count):")
            for (expected, got), n in confusions.most_common(show):
                lines.append(f"  {expected} -> {got}: {n}")
            lines.append("misses:")
            for o in [o for o in self.outcomes if not o.ok][:show]:
                lines.append(f"  line {o.case.line}: {o.case.text!r} expected {o.case.expected}, got {o.got}")
        return "\n".join(lines)


def load_labelled(path: Path | str) -> list[LabelledMessage]:
    cases = []
    for n, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        parts = raw.split("\t")
        if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
            raise ValueError(f"{Path(path).name} line {n}: expected message<TAB>expected")
        cases.append(LabelledMessage(parts[0].strip(), parts[1].strip(), n))
    return cases


def outcome_of(reply: Any, ctx: Any) -> str:
    faq_id = ctx.extra.get("faq_id") if ctx is not None else None
    if faq_id:
        return f"faq:{faq_id}"
    plugin = getattr(reply, "plugin", None)
    if plugin and plugin not in ("core", "llm") and getattr(reply, "intent", "") != "fallback":
        return plugin
    return "fallback"


async def evaluate(bot: Any, cases: list[LabelledMessage], user_prefix: str = "eval") -> Evaluation:
    """Send every case as its own user through ``bot`` (a ``core.testing.TestBot``)."""
    result = Evaluation()
    for i, case in enumerate(cases):
        reply = await bot.send(case.text, user=f"{user_prefix}_{i}")
        ctx = bot.last_context
        route = ctx.route.explain() if ctx is not None and ctx.route is not None else None
        result.outcomes.append(Outcome(case, outcome_of(reply, ctx), route))
    return result
