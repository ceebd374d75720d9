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
