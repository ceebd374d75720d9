"""The knowledge index in PostgreSQL with pgvector: same answers as the embedded store, shared by
two bots (workers), kept current when a document changes.

Needs a PostgreSQL server with the ``vector`` extension: ``$SKILLBOT_TEST_POSTGRES_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Without one these tests are skipped with the
reason; with ``SKILLBOT_REQUIRE_PGVECTOR=1`` (set by .ci/run when it could install pgvector) they
fail instead.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from core.testing import running_bot
from tests.data.knowledge.corpus import QUESTIONS, UNCOVERED, write_corpus
from tests.test_knowledge import knowledge, knowledge_settings, wait_for_index

DSN = os.environ.get("SKILLBOT_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


async def _pgvector_reason() -> str | None:
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg missing: {exc}"
    try:
        async with await psycopg.AsyncConnection.connect(DSN, autocommit=True, connect_timeout=3) as conn:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except Exception as exc:
        return f"PostgreSQL with pgvector unavailable at {DSN}: {type(exc).__name__}: {exc}".strip()
    return None


@pytest.fixture
async def prefix(monkeypatch):
    reason = await _pgvector_reason()
    if reason:
        if os.environ.get("SKILLBOT_REQUIRE_PGVECTOR") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    monkeypatch.setenv("SKILLBOT_TEST_KNOWLEDGE_DSN", DSN)
    name = f"kbtest_{uuid.uuid4().hex[:10]}"
    yield name
    import psycopg

    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        for table in ("vectors", "chunks", "documents", "meta"):
            await conn.execute(f"DROP TABLE IF EXISTS {name}_{table}")


def postgres_settings(folder: Path, tmp: Path, prefix: str, **table) -> dict:
    return knowledge_settings(folder, tmp / "unused", store="postgres", postgres_table_prefix=prefix,
                              postgres_dsn_env="SKILLBOT_TEST_KNOWLEDGE_DSN", **table)


async def test_postgres_answers_like_the_embedded_store(prefix, tmp_path):
    folder = tmp_path / "docs"
    write_corpus(folder)
    tops: dict[str, list[tuple[str, list[str]]]] = {}
    for store, settings in (("sqlite", knowledge_settings(folder, tmp_path / "index")),
                            ("postgres", postgres_settings(folder, tmp_path, prefix))):
        async with running_bot(settings) as bot:
            plugin = knowledge(bot)
            await wait_for_index(plugin, 5)
            assert plugin.store.kind == store
            tops[store] = [
                (q, [p.chunk.text for p in (await plugin.retriever.search(q))[0]])
                for q in [q for q, _, _ in QUESTIONS] + UNCOVERED]
            found = sum(any(phrase in text for text in dict(tops[store])[q])
                        for q, _, phrase in QUESTIONS)
            declined = sum(not dict(tops[store])[q] for q in UNCOVERED)
            # the in-sample floors of tests/test_knowledge.py (declined 0.8 since session 7's build)
            assert found / len(QUESTIONS) >= 0.9 and declined / len(UNCOVERED) >= 0.8
    assert tops["postgres"] == tops["sqlite"]


async def test_postgres_checks_the_asked_part_like_the_embedded_store(prefix, tmp_path):
    folder = tmp_path / "docs"
    write_corpus(folder)
    # tuning questions: two details the documents lack on their topics, two they hold
    questions = ["暑期集训营多少钱", "围棋老师几岁了", "少儿编程课多少钱？", "请假要提前多久"]
    seen: dict[str, list] = {}
    # an option of the fused line, so the answer check is off
    table = {"asked_part_weight": 0.5, "answer_check": False}
    for store, settings in (("sqlite", knowledge_settings(folder, tmp_path / "index", **table)),
                            ("postgres", postgres_settings(folder, tmp_path, prefix, **table))):
        async with running_bot(settings) as bot:
            plugin = knowledge(bot)
            await wait_for_index(plugin, 5)
            seen[store] = []
            for q in questions:
                passages, scored = await plugin.retriever.search(q)
                seen[store].append((q, [p.chunk.text for p in passages], round(scored[0].asked or 0.0, 4)))
    assert seen["postgres"] == seen["sqlite"]
    # the summer camp's price is declined and the two documented details answered (围棋老师几岁了,
    # declined at 0.5 with session 5's build, is answered with session 6's: the option's suggested
    # weight was fitted on session 5's; which stores agree is what this test checks)
    answered = [bool(texts) for _, texts, _ in seen["sqlite"]]
    assert answered[0] is False and answered[2:] == [True, True]


async def test_two_workers_share_the_index_and_see_edits(prefix, tmp_path):
    folder = tmp_path / "docs"
    files = write_corpus(folder)
    settings = postgres_settings(folder, tmp_path, prefix)
    async with running_bot(settings) as first:
        await wait_for_index(knowledge(first), 5)
        async with running_bot(settings) as second:
            plugin = knowledge(second)
            await wait_for_index(plugin, 5)
            assert not plugin.last_sync.changed  # nothing re-read: the first worker indexed it
            assert "赵明" in (await second.send("围棋老师是几段")).content
        text = files["teachers.txt"].read_text(encoding="utf-8").replace("赵明老师", "孙悦老师")
        files["teachers.txt"].write_text(text, encoding="utf-8")
        report = await knowledge(first).sync()
        assert report.updated == ["teachers.txt"]
        reply = (await first.send("围棋老师是几段")).content
        assert "孙悦" in reply and "赵明" not in reply
        files["faq.html"].unlink()
        assert (await knowledge(first).sync()).removed == ["faq.html"]
        assert knowledge(first).status()["documents"] == 4


async def test_a_lost_database_connection_passes_questions_on_then_reconnects(prefix, tmp_path):
    import asyncio

    import psycopg

    from core.operations.health import plugin_checks

    folder = tmp_path / "docs"
    write_corpus(folder)
    settings = postgres_settings(folder, tmp_path, prefix, reload_interval=0.2)
    settings["plugins"]["enabled"] = ["knowledge", "llm"]
    async with running_bot(settings) as bot:
        plugin = knowledge(bot)
        await wait_for_index(plugin, 5)
        async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (plugin.store._conn.info.backend_pid,))
        reply = await bot.send("围棋老师是几段")
        assert reply.plugin == "llm"  # passed on (here: the no-provider reply), no error reply
        checks = {c.name: c for c in await plugin_checks(bot.bot, probe=False)}
        assert not checks["knowledge index"].ok and "failed" in checks["knowledge index"].detail
        for _ in range(100):  # the next folder check reconnects (polled, 0.1 s apart at most 100 times)
            reply = await bot.send("围棋老师是几段")
            if reply.plugin == "knowledge":
                break
            await asyncio.sleep(0.1)
        assert reply.plugin == "knowledge" and "五段" in reply.content
        assert {c.name: c for c in await plugin_checks(bot.bot, probe=False)}["knowledge index"].ok
