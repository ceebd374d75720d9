"""Settings of the small-talk plugin (``[plugins.smalltalk]``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Relative paths resolve against the project root (the folder holding plugins/).
PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class Config:
    #: The phrasings and answers (TOML), see plugins/smalltalk/data/smalltalk.toml.
    path: str = "plugins/smalltalk/data/smalltalk.toml"
    #: Router score of a message that is one of the phrasings (0..1); any real skill whose
    #: evidence is stronger goes first.
    score: float = 0.9

    def validate(self) -> None:
        if not self.path:
            raise ValueError("path is empty")
        if not 0.0 < self.score <= 1.0:
            raise ValueError("score must be in (0, 1]")

    def resolved_path(self) -> Path:
        path = Path(self.path)
        return path if path.is_absolute() else PROJECT_ROOT / path
