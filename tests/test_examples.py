"""examples/skillbot-dice: a third-party skill as its own package, really installed with pip (into a
temporary folder, so nothing leaks into the project's environment) and found through its entry point."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT

EXAMPLE = PROJECT_ROOT / "examples" / "skillbot-dice"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip install --target``: a real build and install, offline (no index, no build isolation)."""
    work = tmp_path_factory.mktemp("dice")
    source = work / "src"
    shutil.copytree(EXAMPLE, source)  # build artefacts stay out of the repository
    target = work / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def run_py(*args: str, site: Path | None, settings: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "run.py"), *args, "--settings", str(settings)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def settings(tmp_path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text('[server]\nreload_interval = 0\n\n[plugins]\nenabled = ["welcome", "dice"]\n'
                    'entry_points = true\n\n[plugins.dice]\nmax_dice = 3\n', encoding="utf-8")
    return path


def test_the_package_declares_its_entry_point(installed):
    entry_points = next(installed.glob("skillbot_dice-*.dist-info")) / "entry_points.txt"
    text = entry_points.read_text()
    assert "[skillbot.plugins]" in text and "dice = skillbot_dice:Plugin" in text
    assert (installed / "skillbot_dice" / "templates" / "roll.j2").is_file()


def test_installed_skill_is_listed_and_answers(installed, settings):
    listing = run_py("plugins", "--json", site=installed, settings=settings)
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in json.loads(listing.stdout)["plugins"]}
    assert rows["dice"]["origin"] == "entry point" and rows["dice"]["location"] == "skillbot_dice:Plugin"
    assert rows["dice"]["enabled"] and rows["dice"]["priority"] == 2

    chat = run_py("chat", "掷两个骰子", "--json", site=installed, settings=settings)
    assert chat.returncode == 0, chat.stderr
    result = json.loads(chat.stdout)
    assert (result["plugin"], result["intent"]) == ("dice", "dice.roll")
    match = re.fullmatch(r"🎲 你掷出了 ([1-6])、([1-6]) 点，一共 (\d+) 点。", result["text"])
    assert match and int(match[1]) + int(match[2]) == int(match[3])

    too_many = run_py("chat", "扔5个骰子", "--json", site=installed, settings=settings)
    assert json.loads(too_many.stdout)["text"] == "一次最多只能掷 3 个骰子哦。"  # [plugins.dice] applies


def test_without_the_package_the_name_is_unknown(settings):
    result = run_py("chat", "掷骰子", site=None, settings=settings)
    assert result.returncode == 2 and "plugins.enabled[1]: no plugin of that name" in result.stderr
