"""Golden files of the generated plain-C target: tests/golden/c/<example>.c.

Regenerate after an intended change with ``RINGGEN_UPDATE_GOLDEN=1 pytest tests/test_golden_c.py``
and review the diff; a failure prints a unified diff of what changed.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import pytest

from ringgen.build import collect
from ringgen.codegen import c_target

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "c"
EXAMPLES = [
    "vector_add",
    "threshold_filter",
    "counters",
    "bank_account",
    "array_math",
    "device_helper",
]


def _update_requested() -> bool:
    return os.environ.get("RINGGEN_UPDATE_GOLDEN", "") not in ("", "0")


@pytest.mark.parametrize("example", EXAMPLES)
def test_c_target_matches_golden(example):
    unit = collect(str(ROOT / "examples" / f"{example}.py"))
    text = c_target.emit(unit, debug=False)[f"{unit.name}.c"]
    path = GOLDEN / f"{example}.c"
    if _update_requested():
        GOLDEN.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing; run with RINGGEN_UPDATE_GOLDEN=1 to create it"
    want = path.read_text()
    if text != want:
        diff = "".join(
            difflib.unified_diff(
                want.splitlines(True), text.splitlines(True), f"golden/c/{example}.c", "generated"
            )
        )
        pytest.fail(
            f"generated C for {example} differs from the golden file "
            f"(RINGGEN_UPDATE_GOLDEN=1 to accept):\n{diff}"
        )


def test_output_is_deterministic():
    unit = collect(str(ROOT / "examples" / "counters.py"))
    assert c_target.emit(unit, debug=False) == c_target.emit(unit, debug=False)


def test_debug_build_has_line_directives():
    unit = collect(str(ROOT / "examples" / "bank_account.py"))
    text = c_target.emit(unit, debug=True)[f"{unit.name}.c"]
    lines = re.findall(r'#line (\d+) "([^"]+)"', text)
    assert lines, "no #line directives in a debug build"
    src = (ROOT / "examples" / "bank_account.py").read_text().splitlines()
    for number, file in lines:
        assert file.endswith("bank_account.py")
        assert src[int(number) - 1].strip(), f"#line {number} points at an empty line"
    first = int(lines[0][0])
    assert "new_balance = acct.balance + tx.amount" in src[first - 1]


def test_debug_from_environment(monkeypatch):
    unit = collect(str(ROOT / "examples" / "vector_add.py"))
    # #line has its own switch (EmitOptions); RINGGEN_DEBUG only turns on logging and tracebacks
    monkeypatch.setenv("RINGGEN_LINE_DIRECTIVES", "1")
    assert "#line" in c_target.emit(unit)[f"{unit.name}.c"]
    monkeypatch.setenv("RINGGEN_LINE_DIRECTIVES", "0")
    assert "#line" not in c_target.emit(unit)[f"{unit.name}.c"]
    monkeypatch.setenv("RINGGEN_DEBUG", "1")
    assert "#line" not in c_target.emit(unit)[f"{unit.name}.c"]
