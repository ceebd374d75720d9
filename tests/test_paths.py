"""One rule for paths, a data and a cache folder outside the source tree (core/settings.py)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT, load_settings
from plugins.faq.config import Config as FaqConfig


def listing(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size; Python's own bytecode caches left out."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture
def source_copy(tmp_path) -> Path:
    """The project's tracked files copied to a fresh folder: a checkout nobody has run yet."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True,
                             check=True).stdout.decode("utf-8").split("\0")
    copy = tmp_path / "checkout"
    for name in filter(None, tracked):
        if (PROJECT_ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, copy / name)
    return copy


def test_running_the_bot_writes_nothing_into_the_source_tree(source_copy, tmp_path):
    before = listing(source_copy)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKILLBOT_", "XDG_", "PYTHON"))}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg-cache"), XDG_DATA_HOME=str(tmp_path / "xdg-data"),
               PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run([sys.executable, str(source_copy / "run.py"), "chat", "怎么退货", "--json"],
                            cwd=source_copy, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    reply = json.loads(result.stdout.strip().splitlines()[-1])
    assert reply["plugin"] == "faq"  # the whole bot ran: jieba, router, the FAQ's bundled data
    assert listing(source_copy) == before
    assert list((tmp_path / "xdg-cache" / "skillbot" / "jieba").glob("*.cache"))  # jieba's cache went here


def test_relative_paths_in_settings_resolve_against_the_settings_folder(tmp_path):
    path = tmp_path / "conf" / "settings.toml"
    path.parent.mkdir()
    path.write_text('[paths]\ndata_dir = "state"\ncache_dir = "~/c"\n[plugins.faq]\npath = "my-faq.toml"\n',
                    encoding="utf-8")
    settings = load_settings(path)
    assert settings.resolve_path("templates") == tmp_path / "conf" / "templates"
    assert settings.data_dir == tmp_path / "conf" / "state"
    assert settings.cache_dir == Path.home() / "c"
    assert FaqConfig(path="my-faq.toml").resolved_path(settings) == tmp_path / "conf" / "my-faq.toml"


def test_a_plugins_default_files_resolve_against_its_folder(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text("[plugins.faq]\nthreshold = 0.5\n", encoding="utf-8")
    resolved = FaqConfig().resolved_path(load_settings(path))  # settings far from the project
    assert resolved == PROJECT_ROOT / "plugins" / "faq" / "data" / "faq.toml" and resolved.is_file()


def test_data_and_cache_folders_default_outside_the_project_and_follow_the_environment(tmp_path, monkeypatch):
    for name in ("SKILLBOT_DATA_DIR", "SKILLBOT_CACHE_DIR", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(PROJECT_ROOT / "settings.toml")
    assert settings.data_dir == Path.home().resolve() / ".local" / "share" / "skillbot"
    assert settings.cache_dir == Path.home().resolve() / ".cache" / "skillbot"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert settings.cache_dir == tmp_path / "xdg" / "skillbot"
    configured = load_settings(None, {"paths": {"data_dir": str(tmp_path / "d"), "cache_dir": str(tmp_path / "c")}})
    assert (configured.data_dir, configured.cache_dir) == (tmp_path / "d", tmp_path / "c")
    monkeypatch.setenv("SKILLBOT_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("SKILLBOT_CACHE_DIR", str(tmp_path / "env-cache"))
    assert (configured.data_dir, configured.cache_dir) == (tmp_path / "env-data", tmp_path / "env-cache")


def test_the_distribution_installs_no_top_level_core_or_plugins(source_copy, tmp_path):
    """A wheel of the project carries its metadata (dependencies) only: no importable package named
    ``core`` or ``plugins`` to collide with another distribution's in site-packages."""
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--wheel-dir", str(wheels), str(source_copy)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    import zipfile

    (wheel,) = wheels.glob("skillbot-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {next(t for t in tops if t.endswith(".dist-info"))}, tops
