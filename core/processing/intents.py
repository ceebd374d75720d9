"""What a skill declares it can handle, and what the router decides about a message."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

#: A skill's own scorer: ``scorer(text, tokens) -> (score 0..1, slots)``; sync and fast.
IntentScorer = Callable[[str, list[str]], tuple[float, dict[str, Any]]]
#: The same with the message's embedding (``core.processing.embeddings.Embedded``):
#: ``semantic_scorer(text, tokens, query) -> (score 0..1, slots)``.
SemanticScorer = Callable[[str, list[str], Any], tuple[float, dict[str, Any]]]


@dataclass
class Intent:
    """An intent declared by a skill through ``skillbot_intents``.

    keywords: words that signal the intent; a value may be a list of synonyms
        (``{"天气": ["气温", "下雨"]}``) or a plain list of words.
    patterns: regular expressions over the raw text; named groups become slots.
    examples: example utterances; similarity to them adds to the score.
    priority: breaks ties and nudges scores (higher wins); 0 is neutral.
    msg_types / events: non-text message types (``location``) and event names (``subscribe``,
        ``CLICK``, ``LOCATION``...) the intent takes whatever their text.
    event_keys: for CLICK events, the menu keys this intent answers (all when empty).
    scorer: the skill scores text itself (the FAQ retrieves its best entry): called by the router
        as ``scorer(text, tokens)`` for every text message (``text`` normalised by
        ``core.processing.normalizer.normalize_text``: simplified, half-width, lower case, no
        emoji), it returns ``(score 0..1, slots)``.
        It must be synchronous and fast (it runs for every message). Alone it is the intent's
        text score; with keywords/patterns/examples the router combines them (see core/processing/router.py).
    semantic_scorer: used instead of ``scorer`` when the router has the message's embedding
        (``semantic_scorer(text, tokens, query)``, ``query.model`` / ``query.vector``). A slot
        ``similarity`` (the best cosine against the skill's own stored texts) lets the router
        compare the skill with general questions meant for the model.
    memo_key: declares ``scorer`` and ``semantic_scorer`` pure: their answer depends only on
        their arguments and on the value ``memo_key()`` returns (the date, for a skill that reads
        "明天"; the version of the skill's data). The router then keeps a scorer's answer per text
        and, when every intent that scores text declares one, a text's whole route, skipping the
        routing thread and the message's embedding for a text seen before while every key is
        unchanged (a settings reload builds a new router and forgets them). Called for every
        text message, on the event loop: it must be trivial. None (the default): the scorers
        are called for every message.
    """

    name: str
    keywords: dict[str, list[str]] | list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    priority: int = 0
    msg_types: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    event_keys: list[str] = field(default_factory=list)
    scorer: IntentScorer | None = field(default=None, repr=False, compare=False)
    semantic_scorer: SemanticScorer | None = field(default=None, repr=False, compare=False)
    memo_key: Callable[[], Hashable] | None = field(default=None, repr=False, compare=False)
    #: Filled in by the core: the plugin that declared the intent.
    plugin: str = ""


@dataclass
class Candidate:
    """One scored intent for one message."""

    intent: Intent
    score: float
    slots: dict[str, Any] = field(default_factory=dict)
    #: Why it scored what it did (matched keywords, pattern, best example), for explanations.
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.intent.name


@dataclass
class RouteResult:
    """The router's decision: ranked candidates and which of them are eligible."""

    tokens: list[str]
    candidates: list[Candidate]
    threshold: float
    margin: float
    #: Candidates above the threshold, in the order they will be tried.
    chosen: list[Candidate] = field(default_factory=list)
    ambiguous: bool = False
    #: The normalised text the scores were computed on.
    normalized: str = ""
    #: The embedding model used ("" = lexical only).
    model: str = ""
    #: Best cosine of the message against the general-question anchors (None without embedding).
    general: float | None = None
    #: Each lexical scorer's raw answer, reused by a second (semantic) pass over the same text.
    scored: dict[str, Any] = field(default_factory=dict, repr=False)

    def copy(self) -> "RouteResult":
        """A copy whose lists and candidates' slot and evidence dicts are its own (a memoised
        route is handed to many messages; a skill may change what it is given)."""
        copies = {id(c): Candidate(c.intent, c.score, dict(c.slots), dict(c.evidence))
                  for c in self.candidates}
        return RouteResult(tokens=list(self.tokens), candidates=[copies[id(c)] for c in self.candidates],
                           threshold=self.threshold, margin=self.margin,
                           chosen=[copies.get(id(c), c) for c in self.chosen], ambiguous=self.ambiguous,
                           normalized=self.normalized, model=self.model, general=self.general,
                           scored=self.scored)

    def explain(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "threshold": self.threshold,
            "ambiguous": self.ambiguous,
            "normalized": self.normalized,
            "model": self.model,
            "general": None if self.general is None else round(self.general, 4),
            "candidates": [
                {"intent": c.name, "plugin": c.intent.plugin, "score": round(c.score, 4),
                 "slots": c.slots, "evidence": c.evidence, "chosen": c in self.chosen}
                for c in self.candidates
            ],
        }
