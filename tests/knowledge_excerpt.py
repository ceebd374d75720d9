"""Measuring the reply without a model (plugins/knowledge/excerpt.py): of the covered questions
whose best passage holds the answer phrase, how many replies still hold it once the passage is cut
to ``passage_chars``, cut from its start (as before session 13) or around the sentences nearest the
question (``excerpt`` with the question's term weights, as the plugin does). Asks every
organisation but the held-out set's questions::

    .venv/bin/python -m tests.knowledge_excerpt [LIMIT ...]     # default: 300 200 120
"""
from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from core.testing import running_bot
from plugins.knowledge.excerpt import excerpt
from plugins.knowledge.terms import coverage
from tests.knowledge_measure import read_set
from tests.test_knowledge import knowledge, knowledge_settings, wait_for_index


async def organisation(name: str, write, files: list[Path], limits: list[int]) -> dict[int, list[int]]:
    """Per limit: [questions whose best passage holds the phrase, of them cut, kept from the start,
    kept around the nearest sentences]."""
    covered = [c for path in files for c in read_set(path)[0]]
    counts = {limit: [0, 0, 0, 0] for limit in limits}
    with tempfile.TemporaryDirectory() as tmp:
        written = write(Path(tmp) / "docs")
        settings = knowledge_settings(next(iter(written.values())).parent, Path(tmp) / "cache")
        async with running_bot(settings) as bot:
            plugin = knowledge(bot)
            await wait_for_index(plugin, len(written))
            analyzer = plugin.retriever.analyzer
            for question, _document, phrase in covered:
                passages, _ = await plugin.retriever.search(question)
                if not passages or phrase not in passages[0].chunk.text:
                    continue
                text = passages[0].chunk.text
                features = analyzer.question_features(question)

                def weigh(sentence: str) -> float:
                    return coverage(features, set(analyzer.passage_terms(sentence)))
                for limit in limits:
                    row = counts[limit]
                    row[0] += 1
                    row[1] += len(text) > limit
                    row[2] += phrase in excerpt(text, limit)
                    row[3] += phrase in excerpt(text, limit, weigh)
    return counts


async def main(limits: list[int]) -> None:
    from tests.knowledge_fit import CORPORA, PAIR_TRAINING, VALIDATION

    total = {limit: [0, 0, 0, 0] for limit in limits}
    for name, (write, files, _questions, _uncovered) in {**CORPORA, **VALIDATION, **PAIR_TRAINING}.items():
        counts = await organisation(name, write, files, limits)
        for limit in limits:
            total[limit] = [a + b for a, b in zip(total[limit], counts[limit])]
        print(name, {limit: counts[limit] for limit in limits}, flush=True)
    for limit in limits:
        held, cut, start, nearest = total[limit]
        print(f"passage_chars {limit}: {held} best passages hold the phrase, {cut} cut; the phrase kept "
              f"from the start {start}/{held}, around the nearest sentences {nearest}/{held}")


if __name__ == "__main__":
    asyncio.run(main([int(x) for x in sys.argv[1:]] or [300, 200, 120]))
