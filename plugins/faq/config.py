"""Settings of the FAQ plugin (``[plugins.faq]``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import resolve_path

#: The plugin's folder: its default FAQ file is relative to it.
HERE = Path(__file__).resolve().parent


@dataclass
class Config:
    #: The FAQ file (TOML). Set in the settings, relative to the settings file's folder; the
    #: default, the demo FAQ in this plugin's folder.
    path: str = "data/faq.toml"
    #: Minimum normalised score (0..1) for the FAQ to claim a message; below it the FAQ scores 0.
    threshold: float = 0.45
    #: With embeddings: how much a general-question anchor's closeness to this FAQ's own questions
    #: (its cosine above the median anchor's) is taken off before comparing it with a message
    #: (``lexical_general_margin``, the explanation's ``general``). A ratio of two cosine
    #: differences, so kept at 1.5 for the fine-tuned model (session 5).
    general_calibration: float = 1.5
    #: With embeddings: minimum probability, by the learned decline model (plugins/faq/decline.py),
    #: that the best entry answers the message; below it the message goes on to other skills or
    #: the model. The threshold scripts/train_faq_decline.py chose on the tuning sets (0.1 with the
    #: fine-tuned model's cross-fitted scores, session 5; it follows data/decline_model.json).
    semantic_threshold: float = 0.1
    #: With embeddings: a lexical score at least this high is fused with the model's probability
    #: as a noisy OR (see ``sure_coverage``); a weaker one is left out (the embedding reads a
    #: paraphrase better).
    lexical_trust: float = 0.6
    #: With embeddings: a lexical score skips the embedding (at semantic.skip_above) only when
    #: the entry's questions and keywords cover at least this share of the message's term
    #: weight; and it is fused with the probability when they do ...
    sure_coverage: float = 0.7
    #: ... or when the entry's best question is at least this much nearer to the message (cosine)
    #: than the nearest general question, calibrated to this FAQ. The base model's 0.02 mapped to
    #: the fine-tuned model's cosines: the same quantile (session 7: 0.901) of the best question's
    #: cosine minus the general one over the tuning messages sent to each FAQ, the businesses'
    #: scores cross-fitted (``experiment_finetune_e5.py cosines``); session 5's model: 0.098,
    #: session 6's: 0.11.
    lexical_general_margin: float = 0.078
    #: Questions declined within this much below ``semantic_threshold``, or answered within this
    #: much above it, are recorded in <paths.data_dir>/faq/questions.tsv (0.08: the band 0.2 was
    #: around the earlier threshold 0.25, the same share of today's 0.1) ...
    question_log_band: float = 0.08
    #: ... which keeps about this many lines (0 = no record).
    question_log_size: int = 1000
    #: Model assist (needs the llm plugin with a provider): when the best entries' fused scores
    #: are closer than ``assist_margin``, the model picks among the best ``assist_candidates``
    #: or none (the message then goes on to the fallback). Off by default.
    assist: bool = False
    assist_margin: float = 0.15
    assist_candidates: int = 3
    #: Seconds the model may take to pick; after that the best-scored entry answers.
    assist_timeout: float = 1.5
    #: Router priority of the FAQ intent: nudges its score (0.01 per point, at most 0.05) and
    #: orders near-ties. 10 = the weather skill's, so a near-tie between them goes by score.
    priority: int = 10
    #: How many looked-up questions (and rendered answers) the caches keep.
    cache_size: int = 2048
    #: Seconds a cached lookup or answer stays valid.
    cache_ttl: float = 600.0
    #: Seconds between checks of the FAQ file for changes; 0 turns automatic reloading off.
    reload_interval: float = 5.0
    #: Answer template variables (shop name, phone, links); they override the file's [variables].
    variables: dict[str, str] = field(default_factory=dict)
    #: Hours from UTC of the {{ now }} / {{ date }} answers show (8 = China Standard Time).
    utc_offset: float = 8.0

    def validate(self) -> None:
        if not self.path:
            raise ValueError("path is empty")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError("threshold must be between 0 and 1")
        if not 0.0 <= self.semantic_threshold <= 1.0:
            raise ValueError("semantic_threshold must be between 0 and 1")
        if not 0.0 <= self.general_calibration <= 10.0:
            raise ValueError("general_calibration must be between 0 and 10")
        if not 0.0 <= self.lexical_trust <= 1.0:
            raise ValueError("lexical_trust must be between 0 and 1")
        if not -1.0 <= self.lexical_general_margin <= 1.0:
            raise ValueError("lexical_general_margin must be between -1 and 1")
        if not 0.0 <= self.sure_coverage <= 1.0:
            raise ValueError("sure_coverage must be between 0 and 1")
        if not 0.0 <= self.question_log_band <= 1.0:
            raise ValueError("question_log_band must be between 0 and 1")
        if not 0.0 <= self.assist_margin <= 1.0:
            raise ValueError("assist_margin must be between 0 and 1")
        if not 2 <= self.assist_candidates <= 5:
            raise ValueError("assist_candidates must be 2 to 5")
        if self.assist_timeout <= 0:
            raise ValueError("assist_timeout must be positive")
        if self.question_log_size < 0:
            raise ValueError("question_log_size must be 0 (off) or more")
        if self.cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        if self.cache_ttl <= 0:
            raise ValueError("cache_ttl must be positive")
        if self.reload_interval < 0:
            raise ValueError("reload_interval must be 0 (off) or positive")
        if not -14 <= self.utc_offset <= 14:
            raise ValueError("utc_offset must be between -14 and 14 hours")

    def resolved_path(self, settings: Any = None) -> Path:
        if settings is None:
            return resolve_path(self.path, HERE)
        return settings.plugin_path("faq", "path", self.path, HERE)
