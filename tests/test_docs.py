"""The documentation: the MkDocs site builds in strict mode, and the README stays a short overview whose two
commands are the ones that work (the test command is what CI runs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI_SCRIPT = ROOT / ".ci" / "run"
MAX_README_LINES = 150
MAX_PROSE_LINE = 200  # characters; the two commands are kept on one line each, whatever their length


def test_mkdocs_site_builds_strict(tmp_path):
    """Every page in the nav, every link between pages and every anchor resolves (mkdocs --strict fails on a
    warning)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    try:
        subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=300)
    except subprocess.CalledProcessError as err:
        message = f"`{' '.join(command)}` failed (exit {err.returncode}):\n{err.stdout}\n{err.stderr}"
        raise pytest.fail.Exception(message, pytrace=False) from None
    assert (tmp_path / "site" / "index.html").is_file()


def _two_commands() -> list[str]:
    """The bash blocks under the README's "## The two commands", each as its text."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## The two commands\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert section, "README.md has no '## The two commands' section"
    return [block.strip() for block in re.findall(r"^```bash\n(.*?)^```$", section.group(1), re.MULTILINE | re.DOTALL)]


def _ci_command() -> str:
    """What .ci/run runs after changing to the repository root: its last line, less a leading `cd ... &&`."""
    lines = [line.strip() for line in CI_SCRIPT.read_text(encoding="utf-8").splitlines() if line.strip()]
    return re.sub(r"^cd\s+\S+\s*&&\s*", "", lines[-1])


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; at most {MAX_README_LINES}"
    commands = set(_two_commands())
    long = [n for n, line in enumerate(lines, 1) if len(line) > MAX_PROSE_LINE and line.strip() not in commands]
    assert not long, f"README.md lines over {MAX_PROSE_LINE} characters: {long}"


def test_readme_two_commands():
    commands = _two_commands()
    assert len(commands) == 2, f"README.md's '## The two commands' holds {len(commands)} bash blocks, not 2"
    main, tests = commands
    assert "\n" not in main and "\n" not in tests, "each of the two commands is one line"
    assert "sr-export build --steps 1" in main and "sr-export upscale" in main, main
    assert tests == _ci_command(), f"README's test command differs from .ci/run's:\n{tests}\n{_ci_command()}"
