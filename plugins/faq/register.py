"""The message's register: does it read like a customer's question to a business, or like a
general question or chit-chat? One feature of the decline model (``decline.py``), the same for
every FAQ.

A logistic regression over the message's embedding, fitted by ``scripts/train_faq_decline.py``
on the tuning sets only: the businesses' customer questions (each answered by one of their
entries) against the general, weather and chit-chat messages and the businesses' own messages
for the model. It knows no operator's entries, so it says what a business's FAQ cannot: 退货是什么意思
and 优惠券是谁发明的 hold a shop's words but ask what a word means and who invented something,
which customers do not ask a shop. The weights are the embedding model's own (a vector of its
dimension); with another model the register is unknown and reads 0 (undecided).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

REGISTER_PATH = Path(__file__).parent / "data" / "register_model.json"


class RegisterModel:
    """Log-odds that a message is a customer's question to a business, from its embedding."""

    def __init__(self, model: str, weights: list[float], bias: float) -> None:
        self.model = model
        self.weights = np.asarray(weights, dtype=np.float64)
        self.bias = float(bias)

    @classmethod
    def load(cls, path: Path = REGISTER_PATH) -> "RegisterModel":
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["model"], data["weights"], data["bias"])

    def logit(self, model: str, vector: Any) -> float:
        """The log-odds for a message embedded by ``model`` (0, undecided, for another model or
        a vector of another size)."""
        vector = np.asarray(vector, dtype=np.float64)
        if model != self.model or vector.shape != self.weights.shape:
            return 0.0
        return float(vector @ self.weights + self.bias)
