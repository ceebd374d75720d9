"""``run.py faq test QUESTIONS.tsv`` and ``run.py route "text"`` as an operator runs them (subprocesses)."""
from __future__ import annotations

from pathlib import Path

from core.processing.embeddings import LOCAL_MODEL_NAME
from core.testing import write_settings
from tests.test_cli import run_py

DENTAL = Path(__file__).parent / "data" / "tuning" / "dental_faq.toml"


def settings(tmp_path: Path) -> Path:
    return write_settings(tmp_path / "settings.toml", {
        "plugins": {"enabled": ["faq", "weather", "llm"],
                    "faq": {"path": str(DENTAL), "reload_interval": 0}}})


async def test_faq_test_prints_accuracy_and_confusions(tmp_path):
    questions = tmp_path / "questions.tsv"
    questions.write_text("# my customers' questions\n"
                         "洗个牙啥价位\tfaq:cleaning_price\n"
                         "拔智齿痛吗\tfaq:pain\n"
                         "洗个牙啥价位呀\tfaq:hours\n"          # deliberately mislabelled
                         "世界上最高的山是哪座\tfallback\n", encoding="utf-8")
    code, out, err = await run_py("faq", "test", str(questions), "--settings", str(settings(tmp_path)))
    assert code == 0, err
    assert "accuracy: 3/4 = 75.0%" in out
    assert "faq: 2/3" in out and "fallback: 1/1" in out
    assert "faq:hours -> faq:cleaning_price: 1" in out
    assert "line 4: '洗个牙啥价位呀' expected faq:hours, got faq:cleaning_price" in out


async def test_faq_test_names_a_bad_file(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("no tab here\n", encoding="utf-8")
    code, _, err = await run_py("faq", "test", str(bad), "--settings", str(settings(tmp_path)))
    assert code == 2 and "bad.tsv line 1" in err
    code, _, err = await run_py("faq", "test", str(tmp_path / "missing.tsv"), "--settings", str(settings(tmp_path)))
    assert code == 2 and "no such file" in err


async def test_route_shows_every_intent_and_entry_score(tmp_path):
    code, out, err = await run_py("route", "洗個牙啥價位😀", "--settings", str(settings(tmp_path)))
    assert code == 0, err
    assert "normalised: 洗个牙啥价位" in out
    assert f"embedding:  {LOCAL_MODEL_NAME}" in out
    assert "faq entries (fused, lexical, dense):" in out
    entries = out.split("faq entries (fused, lexical, dense):")[1].splitlines()
    assert entries[1].split()[0] == "cleaning_price"
    # the FAQ's own numbers, among them how near the message is to the business as a whole
    scores = out.split("faq scores: ")[1].splitlines()[0]
    assert "probability" in scores and "centroid" in scores and "faq_coverage" in scores
    intents = out.split("intents (score, chosen, evidence):")[1].split("faq entries")[0]
    assert {line.split()[0] for line in intents.splitlines() if line.strip()} >= {"*", "weather", "llm.reset"}
    assert out.rstrip().endswith("answer goes to: faq")


async def test_route_shows_the_weather_skills_reading(tmp_path):
    code, out, err = await run_py("route", "Xiamen tomorrow", "--settings", str(settings(tmp_path)))
    assert code == 0, err
    reading = next(line for line in out.splitlines() if line.startswith("weather reading:"))
    assert "places 厦门" in reading and "place_and_day" in reading
    assert out.rstrip().endswith("answer goes to: weather")
