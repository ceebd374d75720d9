"""Research (issue 16), a pytest plugin: the knowledge skill with the pair model's line in place of
the shipped line, for measuring a question set through its own test before anything is built in.

The retriever ranks and keeps passages as shipped, with its line at its lowest; the passages are
kept only when the pair model's logit of the question and the best passage (its title, heading and
text, as ``scripts/experiment_cross_encoder.py collect`` reads it) is above ``PAIR_LINE``. The
model is the one ``experiment_cross_encoder.py ship`` wrote to ``PAIR_MODEL`` (default
/tmp/ce/pair-model). Each measured set's figures are printed::

    PAIR_LINE=-3 PYTHONPATH=scripts .venv/bin/python -m pytest -s -p pair_line_plugin tests/test_knowledge_heldout.py

Findings: docs/knowledge.md "Session 10".
"""
from __future__ import annotations

import asyncio
import os


def pytest_configure(config) -> None:
    from experiment_cross_encoder import DEST, load_pair_model

    import tests.test_knowledge as knowledge_tests
    from plugins.knowledge.retrieval import Retriever, passage_text

    line = float(os.environ["PAIR_LINE"])
    logits = load_pair_model(os.environ.get("PAIR_MODEL", DEST))
    shipped_search, shipped_measure = Retriever.search, knowledge_tests.measure_retrieval

    async def search(self, question, *, top_k=None, threshold=None):
        if threshold is not None:  # a caller's own line: as shipped
            return await shipped_search(self, question, top_k=top_k, threshold=threshold)
        kept, scored = await shipped_search(self, question, top_k=top_k, threshold=float("-inf"))
        if scored and (await asyncio.to_thread(logits, question, [passage_text(scored[0].chunk)]))[0] <= line:
            kept = []
        return kept, scored

    async def measure(plugin, covered, uncovered):
        result = await shipped_measure(plugin, covered, uncovered)
        found, _, declined, _ = result
        print(f"\npair line {line:+.1f}: recall@3 {found}/{len(covered)}, declined {declined}/{len(uncovered)}")
        return result

    Retriever.search = search
    knowledge_tests.measure_retrieval = measure
