"""The import contract (docs/architecture.md, "Layers"): import-linter's contracts in pyproject.toml
hold, and ringgen/ has no import cycle.

Imports inside functions count as much as module-level ones (grimp reads both), so a cycle cannot
hide behind a function-level import.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

grimp = pytest.importorskip("grimp", reason="import-linter (the dev extra) is not installed")

sys.path.insert(0, str(REPO / "tools"))
import import_cycles  # noqa: E402


def test_lint_imports_keeps_every_contract():
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("lint-imports is not installed (pip install -e '.[dev]')")
    proc = subprocess.run(
        [str(exe), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_no_import_cycle():
    edges = import_cycles.import_graph()
    found = import_cycles.cycles(edges)
    assert found == [], "\n".join(" -> ".join(import_cycles.shortest_loop(edges, c)) for c in found)


def test_the_runtime_never_imports_the_generator():
    """Direct imports, module-level or inside functions: the runtime reads manifest.json instead."""
    edges = import_cycles.import_graph()
    forbidden = ("ringgen.codegen", "ringgen.dsl", "ringgen.build", "ringgen.jit", "ringgen.cli")
    bad = sorted(
        f"{m} -> {t}"
        for m, targets in edges.items()
        if m == "ringgen.runtime" or m.startswith("ringgen.runtime.")
        for t in targets
        if any(t == f or t.startswith(f + ".") for f in forbidden)
    )
    assert bad == []
