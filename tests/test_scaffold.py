"""``run.py new-plugin NAME``: the generated skill loads, answers, and passes its own test as generated."""
from __future__ import annotations

import subprocess
import sys

import pytest

from core.operations.scaffold import ScaffoldError, check_name, create_plugin
from core.settings import PROJECT_ROOT


def run_py(*args: str, cwd=PROJECT_ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "run.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_generated_plugin_passes_its_own_test(tmp_path):
    plugins, tests = tmp_path / "myplugins", tmp_path / "mytests"
    result = run_py("new-plugin", "lucky_number", "--dir", str(plugins), "--tests-dir", str(tests))
    assert result.returncode == 0, result.stderr
    folder = plugins / "lucky_number"
    for part in ("__init__.py", "config.py", "templates/reply.j2"):
        assert (folder / part).is_file(), part
    test_file = tests / "test_plugin_lucky_number.py"
    assert test_file.is_file()
    assert "[plugins.lucky_number]" in result.stdout and '"lucky_number"' in result.stdout
    assert f'paths = ["{plugins.resolve()}"]' in result.stdout  # outside plugins/: the snippet says where

    # The generated test, run by pytest exactly as a plugin author would run it.
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--rootdir", str(PROJECT_ROOT), "-c", str(PROJECT_ROOT / "pyproject.toml"),
                          str(test_file)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout


def test_generated_plugin_answers_in_the_terminal_chat(tmp_path):
    plugins, tests = tmp_path / "plugins", tmp_path / "tests"
    create_plugin("coin_toss", plugins, tests)
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[plugins]\nenabled = ["welcome", "coin_toss"]\npaths = ["{plugins}"]\n'
                        'entry_points = false\n[server]\nreload_interval = 0\n', encoding="utf-8")
    result = run_py("chat", "coin_toss", "--settings", str(settings))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("bot> 你好！这里是「coin_toss」技能。你刚才说：coin_toss")
    assert "[coin_toss / coin_toss.answer]" in result.stdout


@pytest.mark.parametrize("name", ["Bad", "1abc", "a", "with-dash", "class", "x" * 41, "中文"])
def test_unusable_names_are_refused(name):
    with pytest.raises(ScaffoldError):
        check_name(name)


def test_existing_plugin_is_never_overwritten(tmp_path):
    create_plugin("twice", tmp_path / "p", tmp_path / "t")
    original = (tmp_path / "p" / "twice" / "__init__.py").read_text()
    with pytest.raises(ScaffoldError, match="already exists"):
        create_plugin("twice", tmp_path / "p", tmp_path / "t2")
    assert (tmp_path / "p" / "twice" / "__init__.py").read_text() == original
    result = run_py("new-plugin", "weather")  # a shipped plugin's name
    assert result.returncode == 2 and "already exists" in result.stderr
