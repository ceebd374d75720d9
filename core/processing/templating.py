"""Jinja2 environments for reply text: the operator's override folder first, then the plugin's own."""
from __future__ import annotations

from pathlib import Path

import jinja2


def text_environment(*folders: str | Path) -> jinja2.Environment:
    """An environment for plain-text templates (no HTML escaping), searching folders in order.

    Missing folders are skipped, so an operator override folder may or may not exist.
    """
    paths = [str(f) for f in folders if f and Path(f).is_dir()]
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths),
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.ChainableUndefined,
        enable_async=False,
    )
