"""skillbot_ask_model: one model answer for any plugin, through the llm plugin's providers,
failover and circuit breakers (the FAQ's assist and the knowledge skill use it instead of HTTP
clients of their own)."""
from __future__ import annotations

from core import hookimpl
from core.testing import running_bot
from tests.standins.openai_server import OpenAIStandIn, answer, server_error


def llm_settings(*providers: dict, **llm) -> dict:
    return {"plugins": {"enabled": ["llm"], "llm": {"providers": list(providers), **llm}}}


async def test_the_llm_plugin_answers_another_plugins_messages_as_they_are():
    async with OpenAIStandIn() as model:
        model.state.script.append(answer("<think>先想一想</think>**第二个**"))
        async with running_bot(llm_settings(model.provider())) as bot:
            messages = [{"role": "system", "content": "只回答编号"}, {"role": "user", "content": "哪一个？"}]
            text = await bot.bot.hooks.ask_model(messages, 5.0)
        assert text == "**第二个**"  # reasoning removed, Markdown as written
        assert model.state.calls[0].messages == messages  # no history, no persona


async def test_it_fails_over_and_shares_the_llm_plugins_circuit_breakers():
    async with OpenAIStandIn() as down, OpenAIStandIn() as up:
        down.state.default = server_error(500)
        up.state.default = answer("备用的回答")
        async with running_bot(llm_settings(down.provider("down"), up.provider("up"),
                                            circuit_breaker_failures=2)) as bot:
            asked = [await bot.bot.hooks.ask_model([{"role": "user", "content": "你好"}], 5.0) for _ in range(3)]
            llm = bot.bot.pm.get_plugin("llm")
            assert llm.client.breaker("down").state == "open"  # the fallback would skip it too
            samples = "\n".join(line for family in llm.metrics.families() for line in family.samples())
        assert asked == ["备用的回答"] * 3
        assert down.state.call_count == 2 and up.state.call_count == 3
        assert 'skillbot_model_attempts_total{provider="down",outcome="server_error"} 2' in samples


async def test_no_model_or_no_answer_in_time_is_none():
    async with running_bot(llm_settings()) as bot:  # the llm plugin without providers
        assert await bot.bot.hooks.ask_model([{"role": "user", "content": "你好"}], 1.0) is None
    async with OpenAIStandIn() as model:
        model.state.default = server_error(503)
        async with running_bot(llm_settings(model.provider())) as bot:
            assert await bot.bot.hooks.ask_model([{"role": "user", "content": "你好"}], 2.0) is None
    async with running_bot({"plugins": {"enabled": []}}) as bot:  # no implementation at all
        assert await bot.bot.hooks.ask_model([{"role": "user", "content": "你好"}], 1.0) is None


class OtherModel:
    @hookimpl(tryfirst=True)
    async def skillbot_ask_model(self, messages, timeout):
        return "另一个插件的模型"


async def test_another_plugin_may_answer_first():
    async with OpenAIStandIn() as model:
        async with running_bot(llm_settings(model.provider()), plugins={"other": OtherModel()}) as bot:
            assert await bot.bot.hooks.ask_model([{"role": "user", "content": "你好"}], 1.0) == "另一个插件的模型"
        assert model.state.call_count == 0
