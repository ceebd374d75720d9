"""Settings of the welcome plugin (``[plugins.welcome]``)."""
from dataclasses import dataclass, field


@dataclass
class Config:
    #: Greeting sent to a new follower.
    message: str = "欢迎关注！可以问我天气（如“明天北京天气”）、店铺常见问题，或者随便聊聊。"
    #: Extra line per scan-to-subscribe scene value (qrscene_ prefix already stripped).
    scene_messages: dict[str, str] = field(default_factory=dict)
    #: Text answers for custom-menu CLICK events, by EventKey.
    click_replies: dict[str, str] = field(default_factory=dict)
