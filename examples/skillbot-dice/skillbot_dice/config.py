"""Settings of the dice skill: the ``[plugins.dice]`` table."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Config:
    #: Faces per die.
    sides: int = 6
    #: The most dice one message may roll.
    max_dice: int = 5

    def validate(self) -> None:
        if not 2 <= self.sides <= 100:
            raise ValueError("sides must be between 2 and 100")
        if not 1 <= self.max_dice <= 20:
            raise ValueError("max_dice must be between 1 and 20")
