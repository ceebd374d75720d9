"""Settings of the knowledge plugin (``[plugins.knowledge]``)."""
from __future__ import annotations

from dataclasses import dataclass

STORES = ("sqlite", "postgres")
NO_MATCH = ("pass", "decline")


@dataclass
class Config:
    #: The watched folder of documents (Markdown, TXT, DOCX, PDF, HTML; sub-folders included).
    #: Relative paths resolve against the folder of settings.toml. A missing folder is an empty one.
    folder: str = "knowledge"
    #: Seconds between checks of the folder for new, changed and removed files; 0 = only at
    #: start-up and on ``run.py kb reindex``.
    reload_interval: float = 5.0
    #: "sqlite" (embedded: <paths.cache_dir>/knowledge/) or "postgres" (pgvector; several workers).
    store: str = "sqlite"
    #: Folder of the embedded index (SQLite file and vector file); "" = <paths.cache_dir>/knowledge.
    index_dir: str = ""
    #: Environment variable holding the PostgreSQL connection string (store = "postgres").
    postgres_dsn_env: str = "SKILLBOT_KNOWLEDGE_DSN"
    #: Prefix of the PostgreSQL tables, so several bots can share a database.
    postgres_table_prefix: str = "skillbot_knowledge"
    #: Characters per chunk, about; sections, list items, table rows and sentences stay whole.
    chunk_chars: int = 400
    #: Larger files are reported as unreadable instead of read.
    max_file_bytes: int = 20_000_000
    #: Passages given to the model (or considered for the answer without one).
    top_k: int = 3
    #: Minimum relevance score of the best passage for the skill to answer (then the best top_k
    #: passages are used, the next ones even under it), when the answer check is off or cannot
    #: run. With embeddings the score is
    #: ``(cosine - mean cosine) / dense_gap + lexical_weight * lexical`` (the cosine of the chunk or
    #: of its best sentence; lexical = the share of the question's term weight it holds, 0..1);
    #: without them ``lexical / lexical_alone``. 1.0 = on the line that separated the tuning
    #: questions the documents answer from those they do not (docs/knowledge.md); dense_gap and
    #: lexical_weight place the line, so 1.0 stays the line whatever the model.
    threshold: float = 1.0
    #: With embeddings: a passage whose cosine stands this far above the mean cosine of every
    #: stored passage and sentence for the question is relevant on that evidence alone ...
    #: Set on the fine-tuned local model: a logistic fit of covered against uncovered tuning
    #: questions of the three organisations on the best passage's (gap, lexical) gave, on session
    #: 7's build, gap / 0.5591 + 0.796 x lexical >= 1, rounded (tests/knowledge_line.py; session
    #: 5's build: 0.465 and 0.886, session 6's: 0.5325 and 0.762; the base model's fit gave 0.05
    #: and 0.45, its cosines standing about ten times closer together).
    dense_gap: float = 0.56
    #: ... and its lexical score (0..1) adds this much (0 = dense evidence only); the same fit.
    lexical_weight: float = 0.8
    #: Without embeddings (none configured, or none made for this question): the lexical score
    #: that alone makes a passage relevant.
    lexical_alone: float = 0.45
    #: With embeddings, when the best passage reaches ``threshold``: does it hold what is asked?
    #: The question's words it does not hold are embedded on their own; when their nearest stored
    #: row is in another passage, the cosine by which this passage's nearest row falls short of
    #: that one, in units of ``dense_gap``, times this weight, is taken off the best passage's
    #: score before it is compared with the line. 0 = off (one query embedding fewer); 0.5
    #: declines more of the questions on a documented topic whose detail is missing, for fewer
    #: covered ones found (docs/knowledge.md: 0.75 on the base model, round 4; 0.5 on the
    #: fine-tuned local model, where class-balanced fits of (score, asked) per organisation weigh
    #: asked at 0.47-0.58 of the score, session 5).
    asked_part_weight: float = 0.0
    #: The answer check (answer_check.py): a pair model reads the question and the best passage
    #: together, and its logit that the passage answers decides in place of ``threshold``. On three
    #: organisations nothing was trained on it finds far more of the covered questions for a few
    #: more uncovered ones answered, and on the held-out set one more uncovered question declined
    #: for the same found (docs/knowledge.md "Session 11"). Costs one pass of the model per
    #: question that reaches the skill (0.1-0.2 s on one core, off the event loop; a repeated question is
    #: cached); when the model cannot run, the fused line (``threshold``) decides. false = the
    #: fused line always.
    answer_check: bool = True
    #: The logit the best passage must exceed with the answer check on (lower: more questions
    #: answered from the documents, fewer passed on), chosen on organisations it was not trained on.
    answer_check_line: float = -2.5
    #: Passages whose character-3-gram Jaccard similarity reaches this are near-duplicates.
    duplicate_similarity: float = 0.8
    #: A question no passage answers: "pass" on to the general model (the llm fallback), or
    #: "decline" with the no_match.j2 reply.
    no_match: str = "pass"
    #: With a model configured (the llm plugin), the model answers from the passages; false =
    #: always answer with the best passage itself.
    use_model: bool = True
    #: Seconds the model may take to write its first sentence before the best passage answers
    #: instead (10: the passage still reaches WeChat's third try); the rest of the answer is
    #: streamed within the llm plugin's own limits (total_timeout).
    model_timeout: float = 10.0
    #: What the model is told to say first when the passages do not answer the question
    #: (answer_prompt.j2); an answer whose first sentence says it is treated as no relevant passage
    #: (no_match: passed on to the general model, or declined).
    not_covered_marker: str = "资料里没有"
    #: Without a model: the best passage is cut to the whole sentences nearest the question within
    #: this many characters (excerpt.py).
    passage_chars: int = 300

    def validate(self) -> None:
        if self.store not in STORES:
            raise ValueError(f"store must be one of {', '.join(STORES)}")
        if self.no_match not in NO_MATCH:
            raise ValueError(f"no_match must be one of {', '.join(NO_MATCH)}")
        if not 0.0 < self.threshold <= 10.0:
            raise ValueError("threshold must be in (0, 10] (1.0 = the tuned line; see docs/knowledge.md)")
        if not 0.0 < self.dense_gap <= 1.0 or not 0.0 < self.lexical_alone <= 1.0:
            raise ValueError("dense_gap and lexical_alone must be in (0, 1]")
        if not 0.0 <= self.lexical_weight <= 10.0:
            raise ValueError("lexical_weight must be in [0, 10]")
        if not 0.0 <= self.asked_part_weight <= 10.0:
            raise ValueError("asked_part_weight must be in [0, 10]")
        if not -20.0 <= self.answer_check_line <= 20.0:
            raise ValueError("answer_check_line must be in [-20, 20] (a logit; see docs/knowledge.md)")
        if not 0.0 < self.duplicate_similarity <= 1.0:
            raise ValueError("duplicate_similarity must be in (0, 1]")
        if self.top_k < 1 or self.chunk_chars < 50 or self.passage_chars < 20:
            raise ValueError("top_k must be >= 1, chunk_chars >= 50, passage_chars >= 20")
        if not self.not_covered_marker.strip():
            raise ValueError("not_covered_marker must not be empty")
        if self.reload_interval < 0 or self.model_timeout <= 0 or self.max_file_bytes < 1:
            raise ValueError("reload_interval must be >= 0, model_timeout and max_file_bytes > 0")
