"""The operator's WeChat management commands: ``run.py menu push|show|delete``, ``run.py media
upload`` and ``run.py template send``, against WeChat's API (``core/access/wechat_api.py``).

A menu file is checked against WeChat's limits before anything is sent; every WeChat error is
printed in Chinese with what to do (``core/access/data/wechat_errors.toml``). Exit codes: 0 done,
1 WeChat or the network refused, 2 bad input (settings, menu file, arguments).
"""
from __future__ import annotations

import asyncio
import functools
import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from ..access.wechat_api import WeChatAPI, WeChatAPIError, app_secret_from_env, wechat_api_for
from ..settings import Settings

TEXTS_FILE = Path(__file__).with_name("data") / "wechat_admin.toml"

#: WeChat's button types and the fields each needs besides ``name``.
BUTTON_FIELDS: dict[str, tuple[str, ...]] = {
    "click": ("key",), "scancode_push": ("key",), "scancode_waitmsg": ("key",),
    "pic_sysphoto": ("key",), "pic_photo_or_album": ("key",), "pic_weixin": ("key",),
    "location_select": ("key",), "view": ("url",), "miniprogram": ("url", "appid", "pagepath"),
    "media_id": ("media_id",), "article_id": ("article_id",), "article_view_limited": ("article_id",),
}
KNOWN_KEYS = {"type", "name", "key", "url", "appid", "pagepath", "media_id", "article_id", "sub_button"}
#: WeChat's limits, in UTF-8 bytes.
TOP_BUTTONS, SUB_BUTTONS = 3, 5
TOP_NAME_BYTES, SUB_NAME_BYTES = 16, 60
FIELD_BYTES = {"key": 128, "url": 1024, "pagepath": 1024, "appid": 64, "media_id": 128, "article_id": 128}


@functools.lru_cache(maxsize=1)
def texts() -> dict[str, dict[str, str]]:
    with open(TEXTS_FILE, "rb") as fh:
        return tomllib.load(fh)


def say(section: str, text: str, **values: Any) -> str:
    return texts()[section][text].format(**values)


# ---- the menu file ---------------------------------------------------------------------------

class MenuFileError(Exception):
    """A menu file WeChat would refuse; ``problems`` are Chinese lines naming the button."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _bytes(value: Any) -> int:
    return len(str(value).encode("utf-8"))


def _check_button(button: Any, where: str, name_limit: int, problems: list[str]) -> None:
    def problem(text: str, **values: Any) -> None:
        problems.append(say("menu", "problem", where=where, what=say("menu", text, **values)))

    for key in sorted(set(button) - KNOWN_KEYS):
        problem("unknown_key", key=key, keys=", ".join(sorted(KNOWN_KEYS)))
    name = button.get("name")
    if not isinstance(name, str) or not name.strip():
        problem("name_missing")
    elif _bytes(name) > name_limit:
        problem("name_too_long", size=_bytes(name), limit=name_limit)
    kind = button.get("type")
    if kind is None:
        problem("type_missing")
        return
    if kind not in BUTTON_FIELDS:
        problem("type_unknown", type=kind, types=", ".join(BUTTON_FIELDS))
        return
    for field in BUTTON_FIELDS[kind]:
        value = button.get(field)
        if not isinstance(value, str) or not value.strip():
            problem("field_missing", type=kind, field=field)
        elif _bytes(value) > FIELD_BYTES[field]:
            problem("field_too_long", field=field, size=_bytes(value), limit=FIELD_BYTES[field])
        elif field == "url" and not value.startswith(("http://", "https://")):
            problem("url_invalid", field=field)


def validate_menu(menu: dict[str, Any]) -> dict[str, Any]:
    """The menu as WeChat's ``menu/create`` takes it; ``MenuFileError`` with every problem found."""
    problems: list[str] = []
    buttons = menu.get("button")
    if not isinstance(buttons, list) or not buttons:
        raise MenuFileError([say("menu", "no_buttons")])
    if len(buttons) > TOP_BUTTONS:
        problems.append(say("menu", "too_many_top", count=len(buttons)))
    for n, button in enumerate(buttons, 1):
        where = say("menu", "where_top", n=n, name=button.get("name", ""))
        subs = button.get("sub_button")
        if subs is None:
            _check_button(button, where, TOP_NAME_BYTES, problems)
            continue
        # A button with a sub-menu has only a name (WeChat ignores a type there; we refuse it).
        _check_button({k: v for k, v in button.items() if k != "sub_button"} | {"type": "click", "key": "-"},
                      where, TOP_NAME_BYTES, problems)
        if not subs:
            problems.append(say("menu", "problem", where=where, what=say("menu", "empty_sub")))
        elif len(subs) > SUB_BUTTONS:
            problems.append(say("menu", "problem", where=where, what=say("menu", "too_many_sub", count=len(subs))))
        for m, sub in enumerate(subs, 1):
            sub_where = say("menu", "where_sub", n=n, m=m, name=sub.get("name", ""))
            if "sub_button" in sub:
                problems.append(say("menu", "problem", where=sub_where,
                                    what=say("menu", "unknown_key", key="sub_button",
                                             keys=", ".join(sorted(KNOWN_KEYS - {"sub_button"})))))
            _check_button({k: v for k, v in sub.items() if k != "sub_button"}, sub_where,
                          SUB_NAME_BYTES, problems)
    if problems:
        raise MenuFileError(problems)
    return {"button": buttons}


def load_menu(path: str | Path) -> dict[str, Any]:
    """Read and validate a TOML menu file (``[[button]]`` tables, ``[[button.sub_button]]``)."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MenuFileError([say("menu", "file_unreadable", file=path, reason=exc)]) from None
    return validate_menu(data)


# ---- running a command -----------------------------------------------------------------------

def parse_data(items: list[str]) -> dict[str, str]:
    """``k=v`` pairs of ``--data`` in order; ``ValueError`` names the first that is not one."""
    data: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(say("template", "bad_data", item=item))
        data[key.strip()] = value
    return data


async def _with_api(settings: Settings, work: Any, out: TextIO, err: TextIO) -> int:
    """Run ``work(api)``: WeChat's refusals and network failures become Chinese lines and exit 1."""
    if not settings.wechat.app_id or not app_secret_from_env(settings.wechat.app_secret_env):
        print(say("common", "no_credentials", secret_env=settings.wechat.app_secret_env), file=err)
        return 2
    async with aiohttp.ClientSession() as http:
        api: WeChatAPI = wechat_api_for(settings, http)
        try:
            for line in await work(api):
                print(line, file=out)
        except WeChatAPIError as exc:
            print(exc.explanation(), file=err)
            return 1
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:  # ValueError: not JSON
            print(say("common", "network", base=settings.delivery.api_base,
                      reason=type(exc).__name__), file=err)
            return 1
    return 0


async def menu_command(settings: Settings, action: str, file: str | None = None,
                       as_json: bool = False, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    if action == "push":
        try:
            menu = load_menu(file or "")
        except MenuFileError as exc:
            if len(exc.problems) == 1 and not exc.problems[0].startswith("  "):
                print(exc.problems[0], file=err)
            else:
                print(say("menu", "file_invalid", file=file, count=len(exc.problems)), file=err)
                for line in exc.problems:
                    print(line, file=err)
            return 2

        async def push(api: WeChatAPI) -> list[str]:
            await api.create_menu(menu)
            return [say("menu", "pushed", count=len(menu["button"]))]
        return await _with_api(settings, push, out, err)

    if action == "show":
        async def show(api: WeChatAPI) -> list[str]:
            try:
                menu = await api.get_menu()
            except WeChatAPIError as exc:
                if exc.errcode == 46003:
                    return [say("menu", "none")]
                raise
            if as_json:
                return [json.dumps(menu, ensure_ascii=False, indent=2)]
            return list(menu_lines(menu))
        return await _with_api(settings, show, out, err)

    async def delete(api: WeChatAPI) -> list[str]:
        await api.delete_menu()
        return [say("menu", "deleted")]
    return await _with_api(settings, delete, out, err)


def menu_lines(menu: dict[str, Any]) -> list[str]:
    """The menu as an indented outline: name, type and its key or URL."""
    def line(button: dict[str, Any], indent: str) -> str:
        target = next((button[f] for f in ("key", "url", "media_id", "article_id") if button.get(f)), "")
        kind = button.get("type", "")
        return f"{indent}{button.get('name', '')}" + (f"  [{kind}] {target}" if kind else "")

    lines = []
    for button in menu.get("button", []):
        lines.append(line(button, ""))
        lines.extend(line(sub, "  - ") for sub in button.get("sub_button") or [])
    return lines


async def media_command(settings: Settings, file: str, kind: str, permanent: bool = False,
                        title: str = "", introduction: str = "",
                        out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    path = Path(file)
    if not path.is_file():
        print(say("media", "file_missing", file=file), file=err)
        return 2

    async def upload(api: WeChatAPI) -> list[str]:
        answer = await api.upload_media(path, kind, permanent, title, introduction)
        if permanent:
            lines = [say("media", "uploaded_permanent", type=kind, media_id=answer["media_id"])]
            if answer.get("url"):
                lines.append(say("media", "url", url=answer["url"]))
            return lines
        created = int(answer.get("created_at") or time.time())
        expires = time.strftime("%Y-%m-%d %H:%M", time.localtime(created + 3 * 86400))
        return [say("media", "uploaded_temporary", type=answer.get("type", kind),
                    media_id=answer["media_id"], expires=expires)]
    return await _with_api(settings, upload, out, err)


async def template_command(settings: Settings, openid: str, template_id: str, data_items: list[str],
                           url: str = "", out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        data = parse_data(data_items)
    except ValueError as exc:
        print(exc, file=err)
        return 2

    async def send(api: WeChatAPI) -> list[str]:
        msgid = await api.send_template(openid, template_id, data, url)
        return [say("template", "sent", msgid=msgid)]
    return await _with_api(settings, send, out, err)
