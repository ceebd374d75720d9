"""``run.py kb status|reindex|search "question"``: the operator's view of the knowledge index.

The core starts the bot from the settings (as for ``run.py route``), so each command sees the same
folder, store, segmenter and embedding model as the running bot, brings the index up to date with
the folder, and prints:

* ``status``: folder, store, documents, chunks, unreadable files by name, when it last changed;
* ``reindex``: every file read again from scratch (after changing chunk_chars or the model);
* ``search``: the passages a question retrieves, with their fused, lexical and dense scores and
  whether they pass the threshold (what the bot would answer from).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from core import PluginCommand


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) + f" ({time.time() - seconds:.0f} s ago)"


async def kb_command(bot: Any, action: str, question: str = "", out: Any = None,
                     as_json: bool = False) -> int:
    """Run one ``kb`` action on a started bot (``run.py kb`` starts it from the settings)."""
    out = out or sys.stdout
    plugin = bot.pm.get_plugin("knowledge")
    report = await plugin.sync(full=action == "reindex")
    if report is None:
        print(f"kb: {plugin.last_error}", file=sys.stderr)
        return 2
    status = plugin.status()
    if action in ("status", "reindex"):
        if as_json:
            print(json.dumps({**status, "sync": report.__dict__}, ensure_ascii=False, indent=1), file=out)
            return 0
        folder = plugin.folder
        print(f"folder:      {folder}{'' if folder.is_dir() else '  (does not exist)'}", file=out)
        print(f"store:       {status['store']}", file=out)
        print(f"documents:   {status['documents']}    chunks: {status['chunks']}    "
              f"vectors: {status['vector_model'] or 'none (lexical only)'}", file=out)
        print(f"last change: {_age(status['last_indexed'])}", file=out)
        print(f"answer check: {status['answer_check']}", file=out)
        if action == "reindex" or report.changed:
            print(f"this run:    {len(report.added)} added, {len(report.updated)} updated, "
                  f"{len(report.removed)} removed, {report.chunks} chunks in {report.seconds:.1f} s", file=out)
        for path, reason in sorted(status["unreadable"].items()):
            print(f"unreadable:  {path}: {reason}", file=out)
        return 0
    passages, scored = await plugin.retriever.search(question)
    relevant = {id(p) for p in passages}
    rows = [{**p.explain(), "used": id(p) in relevant, "text": p.chunk.text} for p in scored[:8]]
    if as_json:
        extra = {"answer_check_line": plugin.config.answer_check_line} if plugin.answer_check is not None else {}
        print(json.dumps({"question": question, "threshold": plugin.config.threshold, **extra,
                          "passages": rows}, ensure_ascii=False, indent=1), file=out)
        return 0
    print(f"question:  {question}", file=out)
    decided = (f"answer check: logit {scored[0].answers:.2f}, line {plugin.config.answer_check_line}"
               if scored and scored[0].answers is not None else f"threshold: {plugin.config.threshold}")
    print(f"{decided}  ->  "
          + (f"{len(passages)} passage(s) used" if passages else
             f"no relevant passage ({plugin.config.no_match})"), file=out)
    for row in rows:
        mark = "*" if row["used"] else " "
        asked = f"asked {row['asked']:.3f}  " if "asked" in row else ""
        print(f"{mark} {row['score']:.3f}  lexical {row['lexical']:.3f}  dense {row['dense']:.3f}  {asked}"
              f"{row['document']}  《{row['title']}》{row['heading']}", file=out)
        print("      " + row["text"].replace("\n", " / ")[:150], file=out)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="kb_action", required=True)
    for name, text in (("status", "documents, chunks, unreadable files, last change (indexes what changed)"),
                       ("reindex", "read every document again from scratch"),
                       ("search", "the passages a question retrieves, with their scores")):
        action = actions.add_parser(name, help=text)
        if name == "search":
            action.add_argument("question", help="the question")
        action.add_argument("--json", action="store_true", help="print JSON")


async def run(bot: Any, args: argparse.Namespace) -> int:
    return await kb_command(bot, args.kb_action, getattr(args, "question", ""), as_json=args.json)


COMMAND = PluginCommand("kb", "the knowledge index: 'kb status', 'kb reindex', 'kb search QUESTION'",
                        add_arguments, run)
