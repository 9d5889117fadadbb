"""generated/ holds exactly what `make generate` produces now (the stale-output check).

Every example is rebuilt into a temporary folder and compared file by file with generated/. When
they differ, the fix is to run `make generate` and commit the result.
"""

from __future__ import annotations

import difflib

import pytest
from conftest import ROOT, example_paths

from ringgen.build import collect
from ringgen.codegen.writer import write_unit

GENERATED = ROOT / "generated"


def _files(folder):
    return {
        p.relative_to(folder).as_posix(): p
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_is_fresh(tmp_path):
    problems: list[str] = []
    names = set()
    for path in example_paths():
        unit = collect(path)
        names.add(unit.name)
        fresh = write_unit(unit, tmp_path)
        committed = GENERATED / unit.name
        if not committed.is_dir():
            problems.append(f"generated/{unit.name}/ is missing")
            continue
        new, old = _files(fresh), _files(committed)
        for name in sorted(set(new) | set(old)):
            if name not in old:
                problems.append(f"generated/{unit.name}/{name} is missing")
            elif name not in new:
                problems.append(f"generated/{unit.name}/{name} is no longer generated")
            elif new[name].read_bytes() != old[name].read_bytes():
                diff = difflib.unified_diff(
                    old[name].read_text().splitlines(),
                    new[name].read_text().splitlines(),
                    f"generated/{unit.name}/{name}",
                    "fresh build",
                    lineterm="",
                    n=1,
                )
                problems.append("\n".join(list(diff)[:30]))
    for folder in sorted(GENERATED.iterdir()) if GENERATED.is_dir() else []:
        if (folder / "manifest.json").is_file() and folder.name not in names:
            problems.append(f"generated/{folder.name}/ has no example module any more")
    if problems:
        pytest.fail(
            "generated/ is stale: run `make generate` and commit.\n\n" + "\n".join(problems),
            pytrace=False,
        )
