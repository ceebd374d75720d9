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
    #: Minimum fused lexical+dense score (0..1) of a relevant passage.
    threshold: float = 0.45
    #: A passage's cosine this far above the mean passage's starts to count ...
    dense_floor: float = 0.02
    #: ... and this far counts fully (linear in between; fused with the lexical score as a noisy OR).
    dense_ceil: float = 0.08
    #: Passages whose character-3-gram Jaccard similarity reaches this are near-duplicates.
    duplicate_similarity: float = 0.8
    #: A question no passage answers: "pass" on to the general model (the llm fallback), or
    #: "decline" with the no_match.j2 reply.
    no_match: str = "pass"
    #: With a model configured (the llm plugin), the model answers from the passages; false =
    #: always answer with the best passage itself.
    use_model: bool = True
    #: Seconds the model may take before the best passage answers instead.
    model_timeout: float = 20.0
    #: Without a model: the best passage is trimmed to about this many characters.
    passage_chars: int = 300

    def validate(self) -> None:
        if self.store not in STORES:
            raise ValueError(f"store must be one of {', '.join(STORES)}")
        if self.no_match not in NO_MATCH:
            raise ValueError(f"no_match must be one of {', '.join(NO_MATCH)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError("threshold must be between 0 and 1")
        if not 0.0 <= self.dense_floor < self.dense_ceil <= 1.0:
            raise ValueError("need 0 <= dense_floor < dense_ceil <= 1")
        if not 0.0 < self.duplicate_similarity <= 1.0:
            raise ValueError("duplicate_similarity must be in (0, 1]")
        if self.top_k < 1 or self.chunk_chars < 50 or self.passage_chars < 20:
            raise ValueError("top_k must be >= 1, chunk_chars >= 50, passage_chars >= 20")
        if self.reload_interval < 0 or self.model_timeout <= 0 or self.max_file_bytes < 1:
            raise ValueError("reload_interval must be >= 0, model_timeout and max_file_bytes > 0")
