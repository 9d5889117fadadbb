"""README.md is runnable: every ```python block runs as written, the shell transcripts of our commands
print what the README shows, and the lists the README gives (math functions, the Outbox limit, the
commands and make targets) equal the tables in the code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from ringgen.cli import _COMMANDS
from ringgen.dsl.resolve import _MATH_CONSTS
from ringgen.intrinsics import MATH_FUNCTIONS
from ringgen.protocol import OUTBOX_LIMIT

README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w*)\n(.*?)```", README, re.S)]
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
TRANSCRIPTS = [code for lang, code in BLOCKS if lang == "" and code.startswith("$ ringgen ")]
RINGGEN = str(Path(sys.executable).with_name("ringgen"))

pytestmark = pytest.mark.timeout(300)


def _file_name(code: str, index: int) -> str:
    """The file a block says it is (a first line ``# name.py``), else ``snippet_<index>.py``."""
    first = code.splitlines()[0]
    m = re.fullmatch(r"# (?:\w+/)*(\w+\.py)", first.strip())
    return m.group(1) if m else f"snippet_{index}.py"


def _env(tmp_path: Path) -> dict:
    # the project root on the path (examples/, generated/), a private build cache, no GPU needed
    return dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        RINGGEN_CACHE_DIR=str(tmp_path / "cache"),
        RINGGEN_DEBUG="",
    )


def test_the_readme_has_the_blocks_this_test_runs():
    assert len(PYTHON) >= 3 and TRANSCRIPTS


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_every_python_block_runs_as_written(tmp_path, index):
    code = PYTHON[index]
    path = tmp_path / _file_name(code, index)
    path.write_text(code, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"block {index} failed:\n{code}\n{proc.stderr}"
    # a `print(...)  # Reply(...)` or `# error: ...` comment is what the block prints
    for shown in re.findall(r"print\(.*\)\s+# (\w+\(.*\)|error: .*)$", code, re.M):
        assert shown in proc.stdout, f"block {index} should print {shown}:\n{proc.stdout}"


@pytest.mark.parametrize("index", range(len(TRANSCRIPTS)))
def test_shell_transcripts_print_what_the_readme_shows(tmp_path, index):
    """``$ ringgen ...`` and the lines after it, run next to the python block files it names."""
    command, *expected = TRANSCRIPTS[index].rstrip("\n").splitlines()
    for i, code in enumerate(PYTHON):
        (tmp_path / _file_name(code, i)).write_text(code, encoding="utf-8")
    argv = command.removeprefix("$ ringgen ").split()
    proc = subprocess.run(
        [RINGGEN, *argv],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    shown = (proc.stdout + proc.stderr).replace(f"{tmp_path}/", "")
    assert shown.splitlines() == expected


def test_commands_and_make_targets_named_exist():
    commands = set(re.findall(r"`ringgen ([a-z]+)", README))
    assert commands <= set(_COMMANDS), commands - set(_COMMANDS)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    named = set(re.findall(r"`make (\w+)", README)) | set(re.findall(r"^make (\w+)", README, re.M))
    assert named and named <= targets, named - targets


def _bullet(title: str) -> str:
    m = re.search(rf"^- \*\*{re.escape(title)}\*\*(.*?)(?=^- |\n\n)", README, re.S | re.M)
    assert m, f"README has no bullet {title!r}"
    return m.group(1)


def test_readme_lists_exactly_the_math_functions_of_the_language():
    text = _bullet("`math` functions")
    functions, constants = text.split("constants")
    listed = re.findall(r"`math\.(\w+)`", functions)
    assert listed == sorted(MATH_FUNCTIONS)
    assert set(re.findall(r"`math\.(\w+)`", constants)) == set(_MATH_CONSTS)


def test_readme_states_the_outbox_limit_and_the_type_rule_for_locals():
    assert f"`rg.Outbox[T]` emits at most {OUTBOX_LIMIT} per input" in _bullet("Outputs")
    locals_ = " ".join(_bullet("Locals").split())
    assert "a local's type unifies over all its assignments, an int literal is i64" in locals_
    assert "`acc: f32 = 0.0` declares it" in locals_
