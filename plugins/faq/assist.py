"""Model assist for close FAQ calls: the model picks which of the best entries, if any, a message
asks about (``assist_prompt.j2``, asked through ``skillbot_ask_model``: the llm plugin's providers).
Only the first number in the answer counts.
"""
from __future__ import annotations

import re


def picked_number(text: str) -> int:
    """The first number in the model's answer (-1 when there is none)."""
    digits = re.findall(r"\d+", text or "")
    return int(digits[0]) if digits else -1
