"""Settings of the admin plugin (``[plugins.admin]``)."""
from __future__ import annotations

from dataclasses import dataclass, field

COMMANDS = ("status", "reload", "plugins", "enable", "disable")


@dataclass
class Config:
    #: OpenIDs of the operators who may give commands in chat; everybody else never sees them.
    openids: list[str] = field(default_factory=list)
    #: The words of each command; enable/disable are followed by a plugin's name.
    commands: dict[str, str] = field(default_factory=lambda: {
        "status": "状态", "reload": "重载", "plugins": "插件列表", "enable": "启用", "disable": "停用"})
    #: Seconds a reload (or a plugin switch) is waited for before answering "still running";
    #: keep it below pipeline.plugin_timeout and WeChat's 5 s.
    wait_seconds: float = 2.5

    def validate(self) -> None:
        if sorted(self.commands) != sorted(COMMANDS):
            raise ValueError(f"commands must name exactly: {', '.join(COMMANDS)}")
        if not all(word.strip() for word in self.commands.values()):
            raise ValueError("commands must not contain empty words")
        if not all(isinstance(openid, str) and openid.strip() for openid in self.openids):
            raise ValueError("openids must be non-empty strings")
        if self.wait_seconds < 0:
            raise ValueError("wait_seconds must be >= 0")
