"""The weather plugin's own hook, added to the contract through ``skillbot_add_hookspecs``.

Another plugin adds a weather provider by implementing it (see docs/weather.md). Mark that
implementation ``@hookimpl(optionalhook=True)`` so the plugin still loads when the weather plugin
is not enabled.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from core import hookspec

if TYPE_CHECKING:
    from .providers import ProviderFactory


@hookspec
def skillbot_weather_providers() -> dict[str, ProviderFactory]:
    """Return the weather providers this plugin brings: ``{name: factory(config, session)}``.

    ``provider = "<name>"`` under ``[plugins.weather]`` then selects one; ``factory`` receives the
    weather plugin's validated settings and the bot's HTTP session and returns a
    ``WeatherProvider``. Called when the weather plugin starts; every implementation is called,
    and a name already given by an earlier plugin (in ``plugins.enabled`` order; the built-in
    ``open-meteo`` and ``qweather`` come from the weather plugin itself) is refused with a warning.
    """
