"""Hybrid FAQ retrieval and semantic routing through a real bot with the local model.

The FAQ is the tuning set's dental clinic (tests/data/tuning/dental_faq.toml): plain, as an
operator pastes it, no synonyms and no keywords.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core import TextReply, hookimpl
from core.processing.embeddings import LOCAL_MODEL_NAME
from core.testing import running_bot
from tests.standins.openai_server import OpenAIStandIn, answer, slow

DENTAL = Path(__file__).parent / "data" / "tuning" / "dental_faq.toml"


class Recorder:
    @hookimpl
    def skillbot_fallback(self, ctx):
        return TextReply("fallback")


def overrides(semantic=True, **faq):
    """Settings for a dental-clinic bot. The vectors come from the shared cache folder (computed
    once, kept by content hash), so only the tests about the cache, which point
    ``$SKILLBOT_CACHE_DIR`` elsewhere, pay for computing them."""
    return {"plugins": {"enabled": ["faq", "weather"],
                        "faq": {"path": str(DENTAL), "reload_interval": 0, **faq}},
            "semantic": {"enabled": semantic}}


@pytest.mark.parametrize("message, entry", [
    ("洗个牙啥价位", "cleaning_price"),      # no word shared with 洗牙多少钱 but 洗牙
    ("能分期付款吗", "payment"),
    ("拔智齿痛吗", "pain"),
    ("給娃塗氟多少錢", "kids"),              # traditional characters
])
async def test_paraphrases_reach_their_entry(message, entry):
    async with running_bot(overrides(), plugins={"rec": Recorder()}) as bot:
        reply = await bot.send(message)
        assert reply.plugin == "faq"
        assert bot.last_context.extra["faq_id"] == entry


async def test_lexical_only_misses_what_the_hybrid_finds():
    # the figure behind the choice: without embeddings this paraphrase falls through
    async with running_bot(overrides(semantic=False), plugins={"rec": Recorder()}) as bot:
        assert (await bot.send("牙黄能弄白吗")).plugin != "faq"
    async with running_bot(overrides(), plugins={"rec": Recorder()}) as bot:
        await bot.send("牙黄能弄白吗")
        assert bot.last_context.extra.get("faq_id") == "whitening"


@pytest.mark.parametrize("message", ["世界上最高的山是哪座", "台风是怎么形成的"])
async def test_general_questions_with_a_business_word_reach_the_model(message):
    async with running_bot(overrides(), plugins={"rec": Recorder()}) as bot:
        reply = await bot.send(message)
        assert reply.content == "fallback", bot.last_context.route.explain()


async def test_explanation_shows_lexical_and_dense_scores():
    async with running_bot(overrides(), plugins={"rec": Recorder()}) as bot:
        await bot.send("洁牙收费多少")
        route = bot.last_context.route.explain()
        assert route["model"] == LOCAL_MODEL_NAME
        assert route["general"] is not None
        faq = next(c for c in route["candidates"] if c["intent"] == "faq")
        assert faq["slots"]["faq_id"] == "cleaning_price"
        assert 0 < faq["slots"]["lexical"] < 1 and 0.5 < faq["slots"]["dense"] < 1
        ranking = faq["slots"]["ranking"]
        assert ranking[0][0] == "cleaning_price" and len(ranking[0]) == 4


async def test_a_strong_lexical_hit_needs_no_embedding():
    async with running_bot(overrides(), plugins={"rec": Recorder()}) as bot:
        before = bot.embeddings.stats["queries"]
        await bot.send("洗牙多少钱")  # the stored question itself
        assert bot.last_context.extra["faq_id"] == "cleaning_price"
        assert bot.embeddings.stats["queries"] == before
        assert bot.last_context.route.model == ""
        await bot.send("洗个牙啥价位")
        assert bot.embeddings.stats["queries"] == before + 1


async def test_faq_vectors_are_computed_at_load_and_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("SKILLBOT_CACHE_DIR", str(tmp_path))
    async with running_bot(overrides(), plugins={"rec": Recorder()}) as bot:
        assert bot.pm.get_plugin("faq").dense is not None
        files = {p.name for p in (tmp_path / "vectors").glob("*.npy")}
    assert len(files) >= 3  # questions, answers, intent examples (+ general anchors)
    async with running_bot(overrides(), plugins={"rec": Recorder()}) as bot:
        assert {p.name for p in (tmp_path / "vectors").glob("*.npy")} == files
        assert bot.pm.get_plugin("faq").dense is not None


#: Questions to the dental clinic, some answered surely, some declined, some near the threshold
#: (能插队吗 and 团购能用吗 were answered just above it by session 5's files; session 7's, sharper,
#: leave none of the first nine within the band, so four tuning lines of other sets that fall in
#: it were added: 可以视频问医生吗 and 保险公司要我的看病记录，咋弄 declined narrowly, 普通号几块钱 and
#: 明早抽血能吃早饭吗 answered with low confidence; which ones are near moves with each refit of
#: the model, so both tests take the whole list).
NEAR_AND_SURE = ["鲨鱼有多少颗牙齿", "牙齿为什么会变黄", "洗个牙啥价位", "洗牙多少钱", "你们在哪儿", "能开发票吗",
                 "能在手机上约医生吗", "能插队吗", "团购能用吗", "可以视频问医生吗", "保险公司要我的看病记录，咋弄",
                 "普通号几块钱", "明早抽血能吃早饭吗"]


async def test_declined_and_low_confidence_questions_are_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("SKILLBOT_DATA_DIR", str(tmp_path))
    async with running_bot(overrides(question_log_size=1000), plugins={"rec": Recorder()}) as bot:
        for message in NEAR_AND_SURE:
            await bot.send(message)
        log = bot.pm.get_plugin("faq").question_log
        rows = log.read()
    assert log.path == tmp_path / "faq" / "questions.tsv"
    kinds = {row[2]: row[1] for row in rows}
    assert "洗牙多少钱" not in kinds  # a sure answer is not recorded
    assert {"declined", "low"} <= set(kinds.values())  # near misses and unsure answers are
    for row in rows:
        assert len(row) == 6 and row[1] in ("declined", "low") and row[3]


async def test_a_question_asked_again_is_recorded_again_from_the_kept_route(tmp_path, monkeypatch):
    # The FAQ's scorers are pure (Intent.memo_key): the router keeps a repeated text's route and
    # does not call them again; the question log still counts every asking.
    monkeypatch.setenv("SKILLBOT_DATA_DIR", str(tmp_path))
    async with running_bot(overrides(question_log_size=1000), plugins={"rec": Recorder()}) as bot:
        plugin = bot.pm.get_plugin("faq")
        messages = NEAR_AND_SURE
        for message in messages:
            await bot.send(message)
        first = [row[2] for row in plugin.question_log.read()]
        for message in messages:
            await bot.send(message)
        again = [row[2] for row in plugin.question_log.read()]
    assert first, "nothing recorded the first time"
    assert sorted(again) == sorted(first * 2)


def test_question_log_stays_bounded(tmp_path):
    from plugins.faq.question_log import QuestionLog

    log = QuestionLog(tmp_path / "q.tsv", limit=5)
    for i in range(23):
        log.append("declined", f"问题{i}", "hours", 0.4, "llm")
    rows = log.read()
    assert len(rows) < 10
    assert rows[-1][2] == "问题22"


# ---- model assist ---------------------------------------------------------------------------

def assist_overrides(standin, **faq):
    data = overrides(assist=True, assist_margin=1.0, **faq)
    data["plugins"]["enabled"] = ["faq", "weather", "llm"]
    data["plugins"]["llm"] = {"providers": [standin.provider()]}
    return data


async def test_model_assist_picks_among_close_entries():
    async with OpenAIStandIn() as standin:
        async with running_bot(assist_overrides(standin)) as bot:
            standin.state.script.append(answer("2"))
            await bot.send("洁牙收费多少")
            ctx = bot.last_context
            shortlist = ctx.extra["faq_assist"]["shortlist"]
            assert ctx.extra["faq_id"] == shortlist[1]
            prompt = standin.state.calls[-1].messages[-1]["content"]
            assert "洁牙收费多少" in prompt and "0. 都不是" in prompt


async def test_model_assist_none_sends_the_message_on():
    async with OpenAIStandIn() as standin:
        async with running_bot(assist_overrides(standin)) as bot:
            standin.state.script.extend([answer("0"), answer("模型的回答")])
            reply = await bot.send("洁牙收费多少")
            assert bot.last_context.extra["faq_assist"]["outcome"] == "none"
            assert reply.plugin == "llm" and "faq_id" not in bot.last_context.extra


async def test_model_assist_too_slow_keeps_the_best_entry():
    async with OpenAIStandIn() as standin:
        async with running_bot(assist_overrides(standin, assist_timeout=0.3)) as bot:
            standin.state.script.append(slow(2.0, "3"))
            reply = await bot.send("洁牙收费多少")
            assert reply.plugin == "faq"
            assert bot.last_context.extra["faq_id"] == "cleaning_price"
            assert bot.last_context.extra["faq_assist"]["outcome"].startswith("kept best")
            assert bot.last_context.extra["faq_assist"]["ms"] < 1500


async def test_model_assist_is_off_by_default():
    async with OpenAIStandIn() as standin:
        data = assist_overrides(standin)
        del data["plugins"]["faq"]["assist"]
        async with running_bot(data) as bot:
            await bot.send("洁牙收费多少")
            assert "faq_assist" not in bot.last_context.extra
            assert standin.state.call_count == 0


async def test_a_faq_written_in_traditional_characters_meets_simplified_messages(tmp_path):
    faq = tmp_path / "hk_faq.toml"
    faq.write_text('[[entry]]\nid = "hours"\nquestions = ["營業時間是幾點"]\nkeywords = ["營業時間"]\n'
                   'answer = "每天 10:00-22:00。"\n\n[[entry]]\nid = "parking"\nquestions = ["有冇停車場"]\n'
                   'answer = "商場地庫有停車場。"\n', encoding="utf-8")
    data = {"plugins": {"enabled": ["faq"], "faq": {"path": str(faq), "reload_interval": 0}},
            "semantic": {"enabled": False}}  # the lexical path alone must already match
    async with running_bot(data, plugins={"rec": Recorder()}) as bot:
        await bot.send("你们营业时间是几点")
        assert bot.last_context.extra.get("faq_id") == "hours"
        route = bot.last_context.route.explain()
        faq_candidate = next(c for c in route["candidates"] if c["intent"] == "faq")
        assert faq_candidate["score"] > 0.9  # the stored question itself, and its keyword


async def test_a_bot_whose_skills_cannot_use_vectors_embeds_nothing():
    # welcome and llm only: no examples, no semantic scorer, so no message waits for the model
    async with running_bot({"plugins": {"enabled": ["welcome"]}}, plugins={"rec": Recorder()}) as bot:
        await bot.send("台风是怎么形成的")
        assert bot.embeddings.stats["queries"] == 0
        assert not bot.router.general_vectors


class CountingSkill:
    """A skill with examples (so messages get a second, semantic pass) and a lexical scorer."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def skillbot_intents(self):
        from core import Intent

        def scorer(text, tokens):
            self.calls.append(text)
            return 0.0, {}

        return [Intent("counting", examples=["帮我查一下快递到哪了"], scorer=scorer)]


async def test_the_semantic_pass_reuses_lexical_scorers_answers():
    skill = CountingSkill()
    async with running_bot(overrides(), plugins={"rec": Recorder(), "counting": skill}) as bot:
        await bot.send("洗个牙啥价位")
        assert bot.last_context.route.model  # routed twice: lexically, then with the vector
        assert skill.calls == ["洗个牙啥价位"]  # the lexical scorer ran once


async def test_messages_longer_than_a_question_are_not_embedded():
    async with running_bot(overrides(), plugins={"rec": Recorder()}) as bot:
        await bot.send("我想问一下洗牙的事情，" * 20)  # 220 characters
        assert bot.embeddings.stats["queries"] == 0
        assert bot.last_context.route.model == ""


class PinyinParcels:
    """A skill whose own reading understands pinyin, with Chinese examples only."""

    @hookimpl
    def skillbot_intents(self):
        from core import Intent

        def scorer(text, tokens):
            return (0.65, {}) if "kuaidi" in text else (0.0, {})

        return [Intent("parcels", examples=["我的快递到哪了", "快递什么时候到"], scorer=scorer)]

    @hookimpl
    def skillbot_handle(self, ctx, candidate):
        if candidate.intent.name == "parcels":
            return TextReply("快递")


async def test_a_skill_sure_of_its_own_reading_is_not_overruled_by_the_general_anchors(monkeypatch):
    import core.processing.router as router
    # The fine-tuned model puts this pinyin message nearer to the skill's Chinese examples than to
    # any anchor (the base model did not): a margin no cosine can miss makes the rule apply here.
    monkeypatch.setattr(router, "GENERAL_MARGIN", -1.0)
    plugins = {"rec": Recorder(), "parcels": PinyinParcels()}
    async with running_bot(overrides(), plugins=plugins) as bot:
        reply = await bot.send("wo de kuaidi dao nali le")
        route = bot.last_context.route
        assert route.model  # the embedding was used ...
        parcels = next(c for c in route.candidates if c.name == "parcels")
        # ... the anchors' rule would demote the skill ...
        assert route.general - parcels.evidence["example_similarity"] >= router.GENERAL_MARGIN
        assert reply.content == "快递", route.explain()  # ... and did not take the message away


# ---- the decline rule: general-question anchors calibrated to this FAQ --------------------------

@pytest.mark.parametrize("message, expected", [
    # customer questions whose nearest general anchor is chit-chat: declined by the raw rule
    ("怕疼能拔牙吗", "faq:pain"),
    ("想改个预约时间", "faq:cancel"),
    # a question about teeth, not for the clinic: claimed by the raw fusion
    ("鲨鱼有多少颗牙齿", "fallback"),
])
async def test_the_decline_rule_is_calibrated_to_the_faq(message, expected):
    async with running_bot(overrides(), plugins={"rec": Recorder()}) as bot:
        reply = await bot.send(message)
        got = f"faq:{bot.last_context.extra['faq_id']}" if reply.plugin == "faq" else reply.content
        assert got == expected, bot.last_context.route.explain()


async def test_anchors_near_the_faq_count_less():
    async with running_bot(overrides(), plugins={"rec": Recorder()}) as bot:
        faq = bot.pm.get_plugin("faq")
        dense = faq.dense
        model = next(iter(dense.general_offsets))
        offsets = dense.general_offsets[model]
        anchors = dense.general_vectors[model]
        assert len(offsets) == len(anchors) > 100
        # the anchor nearest to this FAQ's questions gets the largest offset, a median one none
        nearest = int(offsets.argmax())
        assert offsets[nearest] > 0.03 and abs(float(np.median(offsets))) < 1e-6
        vector = anchors[nearest]
        assert dense.general(model, vector, 0.0) == pytest.approx(1.0, abs=1e-4)
        assert dense.general(model, vector, faq.config.general_calibration) < 1.0
        # the route tells how the FAQ compared the message with the anchors
        await bot.send("怕疼能拔牙吗")
        slots = next(c for c in bot.last_context.route.explain()["candidates"] if c["intent"] == "faq")["slots"]
        assert slots.get("general") is not None and "similarity" not in slots
        # and with the business as a whole
        assert 0.5 < slots["centroid"] < 1.0 and 0.0 <= slots["faq_coverage"] <= 1.0
        # and the message's register (a customer's question to a business: positive log-odds)
        assert slots["register"] > 0


async def test_the_faq_as_a_whole_is_embedded_once_at_load():
    async with running_bot(overrides(), plugins={"rec": Recorder()}) as bot:
        dense = bot.pm.get_plugin("faq").dense
        model = next(iter(dense.centroid_vectors))
        assert np.linalg.norm(dense.centroid_vectors[model]) == pytest.approx(1.0, abs=1e-5)
        about = (await bot.embeddings.embed_query("补牙要多久")).vector
        unrelated = (await bot.embeddings.embed_query("明天股市会涨吗")).vector
        assert dense.centroid(model, about) > dense.centroid(model, unrelated) + 0.03
        # how the general-question anchors score on this FAQ: four cosines, mean and deviation
        mean, deviation = dense.anchor_z(model)
        assert mean.shape == deviation.shape == (4,) and (deviation > 0).all()
        assert dense.centroid(model, about) > mean[3] + deviation[3]


# ---- the learned decline model and the lexical shortcut -------------------------------------------

def test_the_shipped_decline_model_loads_and_refuses_unknown_features():
    from plugins.faq.decline import ALL_FEATURES, DeclineModel

    model = DeclineModel.load()
    assert model.features and set(model.features) <= set(ALL_FEATURES)
    with pytest.raises(ValueError, match="unknown feature"):
        DeclineModel(["no_such_feature"], [0.0], [1.0], [1.0], 0.0)


async def test_the_probability_orders_entries_and_decides():
    async with running_bot(overrides(), plugins={"rec": Recorder()}) as bot:
        await bot.send("洗个牙啥价位")
        slots = next(c for c in bot.last_context.route.explain()["candidates"] if c["intent"] == "faq")["slots"]
        ranking = slots["ranking"]
        assert ranking[0][0] == "cleaning_price"
        assert [r[1] for r in ranking] == sorted((r[1] for r in ranking), reverse=True)
        assert slots["probability"] >= bot.pm.get_plugin("faq").config.semantic_threshold
        await bot.send("鲨鱼有多少颗牙齿")
        route = bot.last_context.route.explain()
        assert all(c["intent"] != "faq" for c in route["candidates"]), route


DEMO_SETTINGS = {"plugins": {"enabled": ["faq", "weather"], "faq": {"reload_interval": 0}}}


async def test_one_shared_keyword_does_not_skip_the_embedding():
    # the demo shop's delivery_area entry has the keyword 台湾: lexically 台湾有多少人口 scores
    # above semantic.skip_above, but 人口 is none of the entry's words, so it is embedded, and
    # nearer to a general question than to the entry's, so its lexical score does not count and
    # the decline model sends it to the model; a message the entry's words cover is not embedded
    async with running_bot(DEMO_SETTINGS, plugins={"rec": Recorder()}) as bot:
        reply = await bot.send("台湾有多少人口")
        assert reply.plugin != "faq" and bot.last_context.route.model != ""
        before = bot.embeddings.stats["queries"]
        await bot.send("台湾澳门能送吗")
        assert bot.last_context.extra["faq_id"] == "delivery_area"
        assert bot.embeddings.stats["queries"] == before and bot.last_context.route.model == ""
    async with running_bot({**DEMO_SETTINGS, "semantic": {"enabled": False}},
                           plugins={"rec": Recorder()}) as bot:
        # lexical only, nothing changes: the cap applies only when an embedding can decide
        await bot.send("台湾有多少人口")
        assert bot.last_context.extra.get("faq_id") == "delivery_area"


def test_the_default_threshold_is_the_one_the_training_chose():
    import json

    from plugins.faq.config import Config
    from plugins.faq.decline import MODEL_PATH

    assert Config().semantic_threshold == json.loads(MODEL_PATH.read_text(encoding="utf-8"))["threshold"]


def test_the_shipped_register_reads_the_shipped_weights_vectors():
    # a rebuilt patch names its vectors anew: the register must be refitted with it (else it
    # would read 0, undecided, for every message without a word said)
    from core.processing.local_weights import shipped_model_name
    from plugins.faq.register import RegisterModel

    assert RegisterModel.load().model == shipped_model_name()


async def test_the_shipped_register_tells_a_customer_question_from_a_general_one():
    # plugins/faq/data/register_model.json, fitted on the tuning sets: the same words in a
    # customer's question to a business and in a question about the world
    from plugins.faq.register import RegisterModel

    register = RegisterModel.load()
    async with running_bot(overrides(), plugins={"rec": Recorder()}) as bot:
        async def logit(text):
            query = await bot.embeddings.embed_query(text)
            return register.logit(query.model, query.vector)

        assert await logit("洗牙多少钱") > 0 > await logit("牙齿为什么会变黄")
        assert await logit("你们几点关门") > 0 > await logit("发票是谁发明的")
