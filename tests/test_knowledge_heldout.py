"""A held-out measure of knowledge retrieval (issue 16).

The knowledge skill's relevance line was fitted on tests/data/knowledge/tuning_questions.tsv and the questions
of tests/data/knowledge/corpus.py, so those figures are not an estimate of how it does on questions it has not seen. The
questions in tests/data/knowledge/heldout_questions.tsv were written from the documents' text only, before
any measurement, and are frozen: the floors below are the figures of the first run minus a small margin.
Same corpus, index and definitions as test_knowledge.py's recall test: a covered question is found when its
answer phrase is in one of the top 3 passages; an uncovered question is declined when no passage is returned.
"""
from __future__ import annotations

from pathlib import Path

from tests.data.knowledge.corpus import write_corpus
from tests.test_knowledge import knowledge, knowledge_settings, measure_retrieval, wait_for_index

HELDOUT = Path(__file__).parent / "data" / "knowledge" / "heldout_questions.tsv"

# First measured on 2026-11-26 (nothing tuned): recall@3 = 17/35, uncovered declined = 15/24.
# After retrieval was tuned on tests/data/knowledge/tuning_questions.tsv (sentence rows, the fitted
# relevance line; never on this file): recall@3 = 22/35, declined = 18/24. Round 2 (homophone typos
# read through pinyin, tuned on tuning_questions.tsv only; measured twice, before and after):
# recall@3 = 22/35 -> 23/35, declined = 18/24 -> 18/24. Round 3 (the best passage decides and the
# next ones come with it; learned re-rankers and decisions cross-validated on the tuning sets and
# a second organisation, none kept; measured twice, before and after): recall@3 = 23/35 -> 24/35,
# declined = 18/24 -> 18/24. Round 4 (a third organisation; an opt-in check that the best passage
# holds what is asked, asked_part_weight, off by default; measured twice, at the end: the default,
# and the option at 0.75 through the same corpus and definitions): default 24/35 and 18/24
# (unchanged), the option 21/35 and 19/24. Session 5 (the fine-tuned local model, the line refitted on
# tuning questions; measured once each): 26/35 and 18/24. Session 6 (the second build, the line refitted
# the same way, measured once, by this test's run): 27/35 and 16/24. Session 7 (the third build, the
# line refitted the same way to 0.56 / 0.8, measured once, by this test's run with only its figures
# read): 26/35 and 18/24. Session 9 (a pair model deciding in place of the line, logit > -1,
# not merged; measured once, by this test's run): 19/35 and 21/24; the shipped line is unchanged, and
# so are its figures. Session 10 (the pair model retrained, its line -2 chosen beforehand on the three
# validation organisations by balanced accuracy; through this test with scripts/pair_line_plugin.py,
# measured once, not merged): 21/35 and 20/24. Session 11 (the pair model retrained on
# eight more organisations written as its training data and on the FAQ's answers alone, its line -2.5
# chosen beforehand on the three validation organisations by balanced accuracy, the rule to merge
# written beforehand: a balanced accuracy above the shipped line's 74.6 %; measured once, through
# this test with scripts/pair_line_plugin.py, only its figures read): 26/35 and 19/24, merged as the
# answer check (on by default). The floors are the final values minus
# one question, never above the measurement; they guard against regressions and are not a target.
RECALL_AT_3_FLOOR = 25 / 35
DECLINED_FLOOR = 18 / 24


def read_heldout() -> tuple[list[tuple[str, str, str]], list[str]]:
    covered: list[tuple[str, str, str]] = []
    uncovered: list[str] = []
    lines = [line for line in HELDOUT.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    assert lines[0].split("\t") == ["kind", "question", "document", "phrase"]
    for line in lines[1:]:
        kind, question, document, phrase = line.split("\t")
        if kind == "covered":
            covered.append((question, document, phrase))
        else:
            assert kind == "uncovered" and not document and not phrase, line
            uncovered.append(question)
    return covered, uncovered


def test_the_heldout_set_is_large_enough_and_its_phrases_are_in_the_documents():
    from tests.data.knowledge import corpus

    covered, uncovered = read_heldout()
    assert len(covered) >= 30 and len(uncovered) >= 20
    documents = {"enrolment.docx": corpus.ENROLMENT, "refund_and_leave.pdf": corpus.REFUND,
                 "campuses.md": corpus.CAMPUSES, "faq.html": corpus.FAQ_PAGE, "teachers.txt": corpus.TEACHERS}
    for question, document, phrase in covered:
        assert phrase in repr(documents[document]), (question, document, phrase)


async def test_heldout_recall_at_3_and_uncovered_declined(tmp_path, capsys):
    from core.testing import running_bot

    covered, uncovered = read_heldout()
    folder = write_corpus(tmp_path / "docs")["campuses.md"].parent
    async with running_bot(knowledge_settings(folder, tmp_path / "cache")) as bot:
        plugin = knowledge(bot)
        await wait_for_index(plugin, 5)
        found, _missed, declined, _answered = await measure_retrieval(plugin, covered, uncovered)
    recall, declined_rate = found / len(covered), declined / len(uncovered)
    # counts only, here and on failure: a held-out line read is a held-out line spent
    with capsys.disabled():
        print(f"\nheld-out recall@3 = {found}/{len(covered)} = {recall:.3f}")
        print(f"held-out uncovered declined = {declined}/{len(uncovered)} = {declined_rate:.3f}")
    assert recall >= RECALL_AT_3_FLOOR, f"{found}/{len(covered)} found"
    assert declined_rate >= DECLINED_FLOOR, f"{declined}/{len(uncovered)} declined"
