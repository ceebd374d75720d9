"""Admin commands in chat for the operator's own OpenIDs (``[plugins.admin] openids``): 状态,
重载, 插件列表, 启用 插件名, 停用 插件名. They answer first (the earliest inbound filter) and only
for those OpenIDs: anybody else typing 状态 gets the normal pipeline. Each command writes one
audit line to the ``skillbot.audit`` logger: a JSON object with the hashed user and the account
(``default`` or the named account whose bot this plugin runs in: its commands act on that account)."""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from core import OperatorOutcome, TextMessage, TextReply, hash_user, hookimpl

from .config import Config

HERE = Path(__file__).parent
#: This plugin's own name: it cannot be switched off from chat (nobody could switch it on again).
OWN_NAME = "admin"
PLUGIN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
audit = logging.getLogger("skillbot.audit")


def audit_line(user: str, command: str, argument: str, outcome: str, reason: str = "",
               account: str = "default") -> None:
    audit.info(json.dumps({"event": "admin_command", "user": hash_user(user), "account": account,
                           "command": command, "argument": argument, "outcome": outcome,
                           "reason": reason}, ensure_ascii=False))


def uptime_text(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return (f"{days} 天 " if days else "") + f"{hours} 小时 {minutes} 分"


class Plugin:
    def __init__(self) -> None:
        self.config = Config()
        self.templates: Any = None
        #: Reloads still running after the reply (kept so they are not garbage-collected).
        self.running: set[asyncio.Task] = set()

    @hookimpl
    def skillbot_config_schema(self) -> type:
        return Config

    @hookimpl
    def skillbot_startup(self, bot, config: Config) -> None:
        self.config = config
        self.templates = bot.templates(HERE)
        enabled = list(bot.settings.plugins.enabled)
        if config.openids and enabled and enabled[0] != OWN_NAME:
            # Another plugin's early inbound filter (the word filter) would see commands first.
            logging.getLogger("skillbot.admin").warning(
                "put \"%s\" first in plugins.enabled so admin commands answer before %s", OWN_NAME, enabled[0])

    def parse(self, text: str) -> tuple[str, str] | None:
        """(command, argument) when ``text`` is one of the commands, else None."""
        text = text.strip()
        for command, word in self.config.commands.items():
            if command in ("enable", "disable"):
                rest = text[len(word):].strip() if text.startswith(word) else None
                if rest and PLUGIN_NAME.fullmatch(rest):
                    return command, rest
            elif text == word:
                return command, ""
        return None

    @hookimpl(tryfirst=True)
    async def skillbot_inbound_filter(self, ctx):
        message = ctx.message
        if not isinstance(message, TextMessage) or message.from_user not in self.config.openids:
            return None
        parsed = self.parse(message.text)
        if parsed is None:
            return None
        command, argument = parsed
        text = await self.run(ctx.bot, ctx.user, command, argument)
        return TextReply(text.strip(), intent=f"admin.{command}", record=False)

    async def run(self, bot, user: str, command: str, argument: str) -> str:
        operator = bot.operator
        account = bot.settings.account or "default"
        if operator is None:
            audit_line(user, command, argument, "refused", "no_operator_services", account)
            return self.templates.get_template("unavailable.j2").render()
        if command == "status":
            status = operator.status()
            audit_line(user, command, argument, "ok", account=account)
            return self.templates.get_template("status.j2").render(
                status=status, uptime=uptime_text(status.uptime_seconds))
        if command == "plugins":
            audit_line(user, command, argument, "ok", account=account)
            return self.templates.get_template("plugins.j2").render(
                plugins=operator.plugins(), commands=self.config.commands)
        if command == "reload":
            work = operator.reload()
        else:
            work = operator.set_plugin_enabled(argument, command == "enable", protected=(OWN_NAME,))
        outcome = await self.finish(work, user, command, argument, account)
        return self.templates.get_template("outcome.j2").render(
            outcome=outcome, command=command, argument=argument, commands=self.config.commands)

    async def finish(self, work: Any, user: str, command: str, argument: str,
                     account: str = "default") -> OperatorOutcome:
        """Wait ``wait_seconds`` for a reload; past that it goes on (the reply says so) and its
        audit line is written when it ends."""
        started = time.monotonic()
        task = asyncio.ensure_future(work)
        self.running.add(task)

        def done(task: asyncio.Task) -> None:
            self.running.discard(task)
            if task.cancelled():
                audit_line(user, command, argument, "cancelled", account=account)
            elif task.exception() is not None:
                audit_line(user, command, argument, "failed", type(task.exception()).__name__, account)
            else:
                result = task.result()
                audit_line(user, command, argument, result.outcome, result.reason, account)
                logging.getLogger("skillbot.admin").info(
                    "admin %s %s: %s in %.1f s", command, argument, result.outcome, time.monotonic() - started)

        task.add_done_callback(done)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.config.wait_seconds)
        except asyncio.TimeoutError:
            return OperatorOutcome("running")
        except Exception as exc:  # logged by the done callback's audit line
            return OperatorOutcome("rejected", type(exc).__name__)
