#!/usr/bin/env python3
"""The baseline of bench_http.py: a bare aiohttp handler that reads the POST and returns a fixed reply.

It does what any aiohttp webhook must do at the least (read the body, answer with a passive-reply
XML document of the same shape and size as the bot's FAQ answer) and nothing else: no signature
check, no parsing, no skills. Run exactly like the bot (one process, access log off).

    .venv/bin/python bench/serve_bare.py --port 8090
"""
from __future__ import annotations

import argparse
import time

from aiohttp import web

# A text reply of the size of a typical FAQ answer (about 300 bytes of Chinese).
REPLY = ("<xml>\n<ToUserName><![CDATA[o_bench_user]]></ToUserName>\n"
         "<FromUserName><![CDATA[gh_bench]]></FromUserName>\n"
         f"<CreateTime>{int(time.time())}</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n"
         "<Content><![CDATA[" + "这是一个固定的回复，用来测量裸 aiohttp 处理器的吞吐量。" * 4 + "]]></Content>\n</xml>")


async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text=REPLY, content_type="application/xml")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--path", default="/wechat")
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post(args.path, handle)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
