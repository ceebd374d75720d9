"""Settings of the small-talk plugin (``[plugins.smalltalk]``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import resolve_path

#: The plugin's folder: its default phrasings file is relative to it.
HERE = Path(__file__).resolve().parent


@dataclass
class Config:
    #: The phrasings and answers (TOML), see plugins/smalltalk/data/smalltalk.toml. Set in the
    #: settings, relative to the settings file's folder; the default, relative to this plugin.
    path: str = "data/smalltalk.toml"
    #: Router score of a message that is one of the phrasings (0..1); any real skill whose
    #: evidence is stronger goes first.
    score: float = 0.9

    def validate(self) -> None:
        if not self.path:
            raise ValueError("path is empty")
        if not 0.0 < self.score <= 1.0:
            raise ValueError("score must be in (0, 1]")

    def resolved_path(self, settings: Any = None) -> Path:
        if settings is None:
            return resolve_path(self.path, HERE)
        return settings.plugin_path("smalltalk", "path", self.path, HERE)
