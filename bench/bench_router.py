"""Router + FAQ lookup per message, against jieba segmentation alone, in the same run.

    .venv/bin/python bench/bench_router.py [--entries 1000] [--messages 2000]

A real bot (faq + weather plugins) is started on a generated FAQ of ``--entries`` entries (three
phrasings and two keywords each). ~2,000 distinct messages (FAQ paraphrases, weather questions,
chit-chat) are each timed for (a) jieba segmentation alone (``Segmenter.tokenize``) and (b) what
the pipeline does to route a message: tokenize + ``IntentRouter.route`` with every intent scored,
the FAQ retrieval included (its lookup memo is bypassed: every message is new to it). Start-up is
measured in a fresh interpreter: from process start to the first answered message. Prints
markdown (machine, figures, ratio).
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADJ = ["智能", "无线", "便携", "家用", "迷你", "专业", "静音", "折叠", "复古", "儿童", "商务", "户外",
       "加厚", "超薄", "大容量", "多功能", "陶瓷", "不锈钢", "实木", "竹制"]
NOUN = ["电饭煲", "吹风机", "台灯", "加湿器", "耳机", "保温杯", "背包", "跑鞋", "雨伞", "键盘", "电热水壶",
        "空气炸锅", "行李箱", "榨汁机", "电风扇", "收纳盒", "茶具", "书架", "床垫", "枕头", "手表", "音箱",
        "剃须刀", "牙刷", "咖啡机"]
TOPICS = [  # (phrasings, keywords, how customers ask it in the benchmark messages)
    (["{p}的保修期是多久", "{p}坏了怎么保修", "{p}保修要带发票吗"], ["保修"], ["{p}保修多长时间", "{p}坏了找谁修"]),
    (["{p}什么时候有货", "{p}缺货了吗", "{p}到货能通知我吗"], ["到货"], ["{p}啥时候有货", "{p}还有库存吗"]),
    (["{p}的说明书在哪里", "{p}说明书能下载吗", "{p}怎么使用"], ["说明书"], ["{p}说明书在哪下载", "{p}咋用"]),
    (["{p}需要上门安装吗", "{p}怎么安装", "{p}安装收费吗"], ["安装"], ["{p}能上门装吗", "{p}安装要钱吗"]),
    (["{p}怎么清洗", "{p}可以水洗吗", "{p}怎么保养"], ["清洗"], ["{p}脏了怎么洗", "{p}平时怎么保养"]),
    (["{p}有哪些颜色", "{p}有别的颜色吗", "{p}颜色怎么选"], ["颜色"], ["{p}还有什么颜色", "{p}有黑色的吗"]),
    (["{p}的尺寸是多少", "{p}有多大", "{p}多重"], ["尺寸"], ["{p}多大尺寸", "{p}重不重"]),
    (["{p}能开发票吗", "{p}发票怎么开", "{p}能开专票吗"], ["发票"], ["{p}开票吗", "买{p}要发票"]),
    (["{p}有赠品吗", "{p}送什么赠品", "{p}赠品怎么领"], ["赠品"], ["买{p}送东西吗", "{p}有礼品吗"]),
    (["{p}能七天无理由退货吗", "{p}拆封了还能退货吗", "{p}不合适能换吗"], ["退货"], ["{p}不想要了能退吗", "{p}可以换吗"]),
]
CITIES = ["北京", "上海", "广州", "深圳", "杭州", "南京", "成都", "重庆", "武汉", "西安", "长沙", "郑州",
          "青岛", "厦门", "昆明", "大连", "苏州", "天津", "沈阳", "哈尔滨", "济南", "合肥", "福州", "南昌",
          "太原", "石家庄", "兰州", "银川", "西宁", "拉萨", "乌鲁木齐", "呼和浩特", "南宁", "海口", "贵阳",
          "长春", "宁波", "无锡", "温州", "珠海"]
WEATHER = ["{c}明天天气怎么样", "{c}今天会下雨吗", "{c}周末冷不冷", "{c}现在多少度", "{c}后天刮风吗",
           "明天{c}要带伞吗", "{c}这周会降温吗", "{c}今天空气质量如何", "{c}下周天气预报", "{c}今晚有雪吗"]
CHAT = ["你好", "讲个笑话", "你是谁", "今天心情不好", "推荐一部电影", "人生的意义是什么", "我好无聊啊",
        "帮我写个请假条", "中午吃什么好", "怎么才能睡个好觉", "你会唱歌吗", "给我讲个故事", "早上好",
        "你叫什么名字", "我失恋了", "周末去哪玩", "帮我想个名字", "你真聪明", "晚安", "我想学做菜",
        "今天好累", "你几岁了", "怎么减肥", "给我写首诗", "北京有什么好吃的"]


def product_names(count: int) -> list[str]:
    pairs = itertools.islice(itertools.product(ADJ, NOUN), count)
    return [f"{a}{b}{'ABCDEFGHJK'[i % 10]}{i % 97 + 1}" for i, (a, b) in enumerate(pairs)]


def generated_faq(entries: int) -> str:
    lines: list[str] = []
    names = product_names((entries + len(TOPICS) - 1) // len(TOPICS))
    for k, (name, (qs, kws, _)) in enumerate(itertools.islice(itertools.product(names, TOPICS), entries)):
        questions = ", ".join(f'"{q.format(p=name)}"' for q in qs)
        keywords = ", ".join(f'"{name}{kw}"' for kw in kws) + f', "{name}"'
        lines += ["[[entry]]", f'id = "e{k}"', f"questions = [{questions}]", f"keywords = [{keywords}]",
                  f'answer = "第 {k} 条答案，客服电话 {{{{ service_phone }}}}"', ""]
    return "\n".join(lines)


def messages(entries: int, count: int) -> list[str]:
    names = product_names((entries + len(TOPICS) - 1) // len(TOPICS))
    faq = [ask.format(p=name) for name in names for _, _, asks in TOPICS for ask in asks]
    weather = [w.format(c=c) for c in CITIES for w in WEATHER]
    chat = [f"{c}{tail}" for c in CHAT for tail in ("", "呀", "吧", "，谢谢", "啊", "？", "！", "呢")]
    out: list[str] = []
    pools = [iter(faq), iter(weather), iter(chat)]
    for i in itertools.count():  # 70% FAQ, 20% weather, 10% chit-chat, all distinct
        pool = pools[0] if i % 10 < 7 else pools[1] if i % 10 < 9 else pools[2]
        text = next(pool, None) or next(pools[0], None)
        if text is None or len(out) >= count:
            break
        out.append(text)
    return out[:count]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# ---- start-up, in a fresh interpreter ---------------------------------------------------------

CHILD = """
import asyncio, json, time
t0 = time.perf_counter()
from core.testing import running_bot
t_import = time.perf_counter()
async def main():
    async with running_bot({"plugins": {"enabled": ["faq", "weather"]}}, settings_path=None) as bot:
        t_started = time.perf_counter()
        reply = await bot.send("客服电话多少")
        t_first = time.perf_counter()
        print(json.dumps({"import": t_import - t0, "start": t_started - t_import,
                          "first": t_first - t_started, "segmenter": bot.segmenter.init_seconds,
                          "plugin": reply.plugin}))
asyncio.run(main())
"""


def startup_runs(runs: int = 3) -> list[dict]:
    results = []
    for _ in range(runs):
        begin = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True,
                             timeout=60, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        wall = time.perf_counter() - begin
        if out.returncode != 0:
            raise SystemExit(f"start-up child failed:\n{out.stderr}")
        data = json.loads(out.stdout.strip().splitlines()[-1])
        data["wall"] = wall
        results.append(data)
    return results


# ---- per-message timings --------------------------------------------------------------------------

async def per_message(entries: int, count: int) -> dict:
    from core.access.messages import TextMessage
    from core.testing import running_bot

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "faq.toml"
        path.write_text(generated_faq(entries), encoding="utf-8")
        overrides = {"plugins": {"enabled": ["faq", "weather"],
                                 "faq": {"path": str(path), "reload_interval": 0}}}
        build_start = time.perf_counter()
        async with running_bot(overrides, settings_path=None) as bot:
            build = time.perf_counter() - build_start
            faq = bot.pm.get_plugin("faq")
            texts = messages(entries, count)
            msgs = [TextMessage(to_user="gh", from_user="bench", create_time=0, msg_type="text",
                                text=t, content=t) for t in texts]
            seg, router = bot.segmenter, bot.router
            for m in msgs[:200]:  # warm-up (also fills CPU caches); memo cleared below
                router.route(m, m.text, seg.tokenize(m.text))
            jieba_us: list[float] = []
            route_us: list[float] = []
            chosen: dict[str, int] = {}
            clock = time.perf_counter_ns
            for m in msgs:
                t0 = clock()
                seg.tokenize(m.text)
                jieba_us.append((clock() - t0) / 1000)
            faq.lookups.clear()
            for m in msgs:
                faq.lookups.clear()  # every message is new to the FAQ's memo
                t0 = clock()
                result = router.route(m, m.text, seg.tokenize(m.text))
                route_us.append((clock() - t0) / 1000)
                name = result.chosen[0].name if result.chosen else "fallback"
                chosen[name] = chosen.get(name, 0) + 1
            memo_us = []
            for m in msgs[:500]:
                router.route(m, m.text, seg.tokenize(m.text))
            for m in msgs[:500]:  # the same messages again: the FAQ lookup is memoised
                t0 = clock()
                router.route(m, m.text, seg.tokenize(m.text))
                memo_us.append((clock() - t0) / 1000)
            return {"jieba": jieba_us, "route": route_us, "memo": memo_us, "build": build,
                    "entries": len(faq.data.entries), "texts": len(faq.index.index), "chosen": chosen,
                    "messages": len(msgs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--startup-runs", type=int, default=3)
    args = parser.parse_args()
    begin = time.perf_counter()
    startup = startup_runs(args.startup_runs)
    run = asyncio.run(per_message(args.entries, args.messages))

    def row(name: str, values: list[float]) -> str:
        return (f"| {name} | {percentile(values, 0.5):.0f} | {percentile(values, 0.99):.0f} | "
                f"{statistics.fmean(values):.0f} |")

    j50, j99 = percentile(run["jieba"], 0.5), percentile(run["jieba"], 0.99)
    r50, r99 = percentile(run["route"], 0.5), percentile(run["route"], 0.99)
    cpu = platform.processor() or platform.machine()
    print(f"### Router + FAQ lookup ({run['entries']} FAQ entries, {run['texts']} stored texts, "
          f"{run['messages']} distinct messages)\n")
    print(f"Machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}.  ")
    print(f"Command: `.venv/bin/python bench/bench_router.py --entries {args.entries} "
          f"--messages {args.messages}`\n")
    print("| per message | p50 µs | p99 µs | mean µs |")
    print("|---|---|---|---|")
    print(row("(a) jieba segmentation alone", run["jieba"]))
    print(row("(b) tokenize + route (all intents, FAQ retrieval)", run["route"]))
    print(row("(b') the same, FAQ lookup memoised (repeat question)", run["memo"]))
    print(f"\nRatio (b)/(a): p50 {r50 / j50:.1f}x, p99 {r99 / j99:.1f}x.  ")
    print(f"Routed to: {', '.join(f'{k} {v}' for k, v in sorted(run['chosen'].items()))}.  ")
    print(f"Bot start with this FAQ (index build included): {run['build']:.2f} s.\n")
    print("### Start-up, fresh interpreter, shipped demo FAQ (faq + weather plugins)\n")
    print("| run | imports s | bot start s (jieba init s) | first reply s | process start -> first reply s |")
    print("|---|---|---|---|---|")
    for i, s in enumerate(startup, 1):
        print(f"| {i} | {s['import']:.2f} | {s['start']:.2f} ({s['segmenter']:.2f}) | {s['first']:.3f} | "
              f"{s['wall']:.2f} |")
    print(f"\nTotal benchmark time: {time.perf_counter() - begin:.1f} s.")


if __name__ == "__main__":
    main()
