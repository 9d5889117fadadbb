"""EmitOptions: #line has its own switch, parsed with one truth table, and is part of the cache key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ringgen import jit
from ringgen.codegen.options import EmitOptions
from ringgen.envflags import env_flag

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "value,on",
    [("", False), ("0", False), ("false", False), ("No", False), ("off", False), (" 0 ", False)]
    + [("1", True), ("true", True), ("yes", True), ("ON", True), ("2", True)],
)
def test_one_truth_table(value, on):
    assert env_flag("X", {"X": value}) is on
    assert EmitOptions.from_env({"RINGGEN_LINE_DIRECTIVES": value}).debug_line_directives is on


def test_the_flag_wins_over_the_environment():
    env = {"RINGGEN_LINE_DIRECTIVES": "1"}
    assert EmitOptions.from_env(env, line_directives=False) == EmitOptions()
    assert EmitOptions.from_env({}, line_directives=True).debug_line_directives


def test_options_are_part_of_the_cache_key():
    on = EmitOptions(debug_line_directives=True)
    assert jit.cache_key("f", ("c",), on) != jit.cache_key("f", ("c",), EmitOptions())
    assert jit.cache_key("f", ("c",), EmitOptions()) == jit.cache_key("f", ("c",), EmitOptions())


def test_build_line_directives_flag(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("RINGGEN_")}
    for flag, expected in (([], False), (["--line-directives"], True)):
        out = tmp_path / str(expected)
        subprocess.run(
            [sys.executable, "-m", "ringgen.cli", "build", "examples/vector_add.py", "-o", str(out)]
            + flag,
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        for suffix in (".c", ".cl", ".cu"):
            text = (out / "vector_add" / f"vector_add{suffix}").read_text()
            assert ("#line" in text) is expected, (flag, suffix)
