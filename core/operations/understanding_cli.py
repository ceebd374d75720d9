"""Operator tools for understanding: ``run.py faq test QUESTIONS.tsv`` and ``run.py route "text"``.

Both start the configured bot in this process (plugins, FAQ file, embeddings) without the HTTP
server. ``faq test`` sends every labelled question through the whole pipeline (with the model's
fallback replaced by a recorder, so no model is called) and prints accuracy and confusions;
``route`` prints the normalised text, every intent's score with its evidence, and each scorer's
own slots (the FAQ's best entries with their lexical and dense scores).
"""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from ..access.replies import TextReply
from ..processing.hookspecs import hookimpl
from ..processing.normalizer import normalize_text
from ..settings import Settings
from .evaluation import evaluate, load_labelled


class FallbackRecorder:
    """Answers whatever reaches the fallback stage, so testing never calls the model."""

    @hookimpl(tryfirst=True)
    def skillbot_fallback(self, ctx: Any) -> TextReply:
        return TextReply("fallback")


def _quiet_settings(settings: Settings) -> Settings:
    from ..settings import load_settings

    overrides = dict(settings.overrides)
    plugins = dict(overrides.get("plugins", {}))
    plugins["enabled"] = [p for p in settings.plugins.enabled if p != "llm"]
    overrides["plugins"] = plugins
    return load_settings(settings.source, overrides)


async def faq_test(settings: Settings, path: Path, out: Any = sys.stdout, show: int = 40) -> int:
    from ..processing.bot import Bot
    from ..testing import TestBot

    cases = load_labelled(path)
    bot = Bot(_quiet_settings(settings), extra_plugins={"fallback-recorder": FallbackRecorder()})
    await bot.start()
    try:
        result = await evaluate(TestBot(bot), cases, user_prefix="faqtest")
    finally:
        await bot.stop()
    print(result.report(show), file=out)
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


async def route_text(settings: Settings, text: str, out: Any = sys.stdout, as_json: bool = False) -> int:
    from ..access.messages import build_message
    from ..processing.bot import Bot

    bot = Bot(settings)  # routing calls no model: the llm plugin only declares its intents
    await bot.start()
    try:
        message = build_message({"ToUserName": "gh_route", "FromUserName": "o_route", "CreateTime": "1",
                                 "MsgType": "text", "Content": text, "MsgId": "1"})
        tokens, route = await bot.understand(message, text)
        norm = normalize_text(text)
        query = bot.embeddings.cached(norm)
        scorers: dict[str, Any] = {}
        for intent in bot.intents:
            if query is not None and intent.semantic_scorer is not None:
                scorers[intent.name] = intent.semantic_scorer(norm, tokens, query)
            elif intent.scorer is not None:
                scorers[intent.name] = intent.scorer(norm, tokens)
    finally:
        await bot.stop()
    explained = route.explain()
    explained["scorers"] = {name: {"score": s, "slots": slots} for name, (s, slots) in scorers.items()}
    if as_json:
        print(json.dumps(_jsonable(explained), ensure_ascii=False, indent=1), file=out)
        return 0
    print(f"text:       {text}", file=out)
    print(f"normalised: {norm}", file=out)
    print(f"tokens:     {' '.join(tokens)}", file=out)
    print(f"embedding:  {route.model or 'none (lexical route was sure, or semantic off)'}", file=out)
    if route.general is not None:
        print(f"general-question similarity: {route.general:.4f}", file=out)
    print(f"threshold:  {route.threshold}", file=out)
    print("intents (score, chosen, evidence):", file=out)
    listed = {c.name for c in route.candidates}
    for c in route.candidates:
        mark = "*" if c in route.chosen else " "
        print(f" {mark} {c.name:<20} {c.score:.4f}  {json.dumps(_jsonable(c.evidence), ensure_ascii=False)}",
              file=out)
    for intent in bot.intents:
        if intent.name not in listed:
            print(f"   {intent.name:<20} 0", file=out)
    for name, (score, slots) in scorers.items():
        if slots.get("reading"):  # a scorer's own account of what it read (the weather skill's)
            print(f"{name} reading: {slots['reading']}", file=out)
        ranking = slots.get("ranking")
        if ranking:
            print(f"{name} entries (fused, lexical, dense):", file=out)
            for entry_id, fused, lexical, dense in ranking:
                print(f"   {entry_id:<24} {fused:.4f}  {lexical:.4f}  {dense:.4f}", file=out)
            # the scorer's own numbers (whatever the plugin reports: probability, general, ...)
            numbers = {k: v for k, v in slots.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if numbers:
                print(f"{name} scores: " + ", ".join(f"{k} {v:.4g}" for k, v in numbers.items()), file=out)
    print(f"answer goes to: {route.chosen[0].name if route.chosen else 'the fallback (model)'}", file=out)
    return 0


def run(coro: Any) -> int:
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        return 130
