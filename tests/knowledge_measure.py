"""Measuring knowledge retrieval on a question set (issue 16): recall@3 of the covered questions
and the share of uncovered ones given no passage, with every miss, as tests/test_knowledge_heldout.py
measures (same corpus, index and definitions). For tuning; the held-out set is measured only by
its test, at most twice per round of work::

    .venv/bin/python -m tests.knowledge_measure tests/data/knowledge/tuning_questions.tsv
    .venv/bin/python -m tests.knowledge_measure tests/data/knowledge/gym_questions.tsv
    .venv/bin/python -m tests.knowledge_measure tests/data/knowledge/clinic_questions.tsv

A set is asked of its own organisation's documents: gym_questions.tsv of the fitness club's
(corpus_gym.py), clinic_questions.tsv of the health centre's (corpus_clinic.py), property_questions.tsv
(session 8's validation set, nothing fitted on it) of the property office's (corpus_property.py),
library_questions.tsv and aftersales_questions.tsv (session 10's validation sets, likewise) of the district
library's (corpus_library.py) and the appliance shop's (corpus_aftersales.py), every other file
of the academy's (corpus.py). Settings of ``[plugins.knowledge]`` may follow as ``key=value``
(e.g. ``asked_part_weight=0.75``; ``true`` and ``false`` for a switch).
"""
from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from core.testing import running_bot
from tests.test_knowledge import knowledge, knowledge_settings, measure_retrieval, wait_for_index


def read_set(path: Path) -> tuple[list[tuple[str, str, str]], list[str]]:
    covered, uncovered = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#") or line.startswith("kind\t"):
            continue
        kind, question, document, phrase = line.split("\t")
        if kind == "covered":
            covered.append((question, document, phrase))
        else:
            uncovered.append(question)
    return covered, uncovered


async def measure(path: Path, **table: float) -> None:
    # The organisations as tests/knowledge_fit.py registers them (imported here: it imports read_set).
    from tests.knowledge_fit import CORPORA, PAIR_TRAINING, VALIDATION

    covered, uncovered = read_set(path)
    organisations = {**CORPORA, **VALIDATION, **PAIR_TRAINING}
    write = organisations.get(path.name.split("_")[0], organisations["academy"])[0]
    with tempfile.TemporaryDirectory() as tmp:
        files = write(Path(tmp) / "docs")
        async with running_bot(knowledge_settings(next(iter(files.values())).parent, Path(tmp) / "cache", **table)) as bot:
            plugin = knowledge(bot)
            await wait_for_index(plugin, len(files))
            found, missed, declined, answered = await measure_retrieval(plugin, covered, uncovered)
    print(f"recall@3 = {found}/{len(covered)} = {found / len(covered):.3f}")
    for question in missed:
        print(f"  missed: {question}")
    print(f"uncovered declined = {declined}/{len(uncovered)} = {declined / len(uncovered):.3f}")
    for question, start in answered:
        print(f"  answered: {question}  ->  {start!r}")


if __name__ == "__main__":
    settings = dict(arg.split("=", 1) for arg in sys.argv[2:])
    asyncio.run(measure(Path(sys.argv[1]), **{key: value == "true" if value in ("true", "false") else float(value)
                                              for key, value in settings.items()}))
