"""The one table of backends (``ringgen.targets``): every row resolves, one added row reaches every
consumer, and no other module writes out a list of backends."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from conftest import ROOT

import fake_backend
import ringgen.targets as registry
from ringgen.build import collect
from ringgen.check import check_file
from ringgen.cli import main
from ringgen.codegen.emitter import Emitter
from ringgen.codegen.targets import backend_emitter, emitters
from ringgen.codegen.writer import emit_unit, write_unit
from ringgen.errors import BackendUnavailableError
from ringgen.runtime import available_backends, backends

ROWS = {t.name: t for t in registry.TARGETS}


def test_the_table_holds_every_backend_once():
    assert sorted(ROWS) == ["c", "cpu", "cuda", "metal", "opencl"]
    assert len(ROWS) == len(registry.TARGETS)
    assert [t.name for t in registry.auto_order()] == ["cuda", "opencl", "c", "cpu"]
    assert all(t.capabilities <= registry.CAPABILITIES for t in registry.TARGETS)


def test_the_writer_runs_the_emitters_in_todays_order():
    assert list(emitters()) == [
        "header",
        "serializers",
        "bridged",
        "manifest",
        "package",
        "runtime",
        "c",
        "metal",
        "opencl",
        "cuda",
    ]


def test_an_unknown_name_is_an_error_naming_it_and_the_known_ones():
    with pytest.raises(BackendUnavailableError, match="unknown backend 'vulkan'") as info:
        registry.by_name("vulkan")
    assert all(name in info.value.message for name in ROWS)


def test_capabilities_are_checked_words():
    with pytest.raises(ValueError, match="target x: unknown capabilities fast"):
        attrs.evolve(ROWS["cpu"], name="x", capabilities={"fast", "now"})


@pytest.mark.parametrize("name", sorted(ROWS))
def test_each_row_resolves(name):
    row = ROWS[name]
    if row.emitter is not None:
        emitter = backend_emitter(name)
        assert isinstance(emitter, Emitter)
        assert emitter.entry_points("k") and all(emitter.entry_points("k").values())
    if row.probe is not None:
        assert callable(registry.resolve(row.probe))
    if row.checker is not None:
        assert callable(registry.resolve(row.checker))
    assert (row.suffix is None) == (row.dialect is None) == (row.emitter is None)
    assert row.install_hint


def test_every_loader_imports_without_a_driver():
    """Importing a loader touches no driver: PyCUDA and PyOpenCL load only when a backend is used."""
    loaders = [t.loader for t in registry.TARGETS if t.loader is not None]
    code = (
        "import importlib, sys\n"
        "from ringgen.runtime.base import KernelHandle\n"
        f"for name in {loaders!r}:\n"
        "    cls = importlib.import_module(name).HANDLE_CLASS\n"
        "    assert issubclass(cls, KernelHandle), name\n"
        "print(sorted(m for m in ('pycuda', 'pyopencl') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_each_emitter_writes_a_file_with_its_rows_suffix():
    from examples import vector_add

    files = emit_unit(collect(vector_add))
    for row in registry.TARGETS:
        if row.emitter is not None:
            (name,) = [f.name for f in files.values() if f.target == row.name]
            assert name.endswith(row.suffix)


@pytest.fixture
def fake(monkeypatch):
    """The tests' fake backend, registered as one more row of the table and nowhere else."""
    monkeypatch.setattr(registry, "TARGETS", registry.TARGETS + (fake_backend.ROW,))
    monkeypatch.setattr(backends, "_LOADED", {})
    return fake_backend.ROW


def test_one_row_makes_a_backend_the_writer_and_the_manifest_know(fake, tmp_path):
    from examples import vector_add

    assert list(emitters())[-1] == "fake"
    pkg = write_unit(collect(vector_add), tmp_path)
    assert (pkg / "vector_add.fake").read_text().splitlines()[1] == (
        "// vector_add: fake_vector_add"
    )
    manifest = json.loads((pkg / "manifest.json").read_text())
    (entry,) = [f for f in manifest["files"] if f["target"] == "fake"]
    assert entry["path"] == "vector_add.fake"
    assert manifest["kernels"][0]["sources"]["fake"] == "vector_add.fake"
    assert [r.toolchain for r in check_file(pkg / "vector_add.fake")] == ["fake checker"]


def test_one_row_makes_a_backend_auto_and_the_cli_know(fake, capsys):
    assert backends.BACKENDS["fake"] == "fake_backend"
    assert backends.AUTO_ORDER[-1] == "fake"
    assert available_backends()[-1] == "fake"
    assert backends.load_backend("fake") is fake_backend.FakeKernelHandle

    assert main(["devices", "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [r["backend"] for r in reports][-2:] == ["cpu", "fake"]
    assert reports[-1]["available"] and reports[-1]["devices"][0]["name"] == "fake device"

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "(cuda, opencl, c, cpu, fake, auto)" in out and "Fake C (.fake)" in out
    with pytest.raises(SystemExit):
        main(["devices", "--help"])
    assert "cuda, opencl, c, cpu, fake" in capsys.readouterr().out


#: Literals that hold backend names for another reason, each with that reason.
_NOT_A_LIST_OF_BACKENDS = {
    ("ringgen/codegen/dialect_metal.py", frozenset({"c", "metal"})): "an atomic's type spelled in "
    "C and in Metal (a template context), not a list of backends",
}


def _literals_naming_backends(path: Path):
    names = set(ROWS)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        found = frozenset(
            i.value for i in items if isinstance(i, ast.Constant) and i.value in names
        )
        if len(found) >= 2:
            yield node.lineno, found


def test_no_other_module_spells_out_the_list_of_backends():
    package = ROOT / "ringgen"
    bad = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "ringgen/targets.py":
            continue
        for line, found in _literals_naming_backends(path):
            if (rel, found) not in _NOT_A_LIST_OF_BACKENDS:
                bad.append(f"{rel}:{line}: {', '.join(sorted(found))}")
    assert bad == [], "backends are listed in ringgen/targets.py only:\n" + "\n".join(bad)


def test_the_list_scan_finds_a_list(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('ORDER = ("cuda", "cpu")\nHINTS = {"c": 1, "opencl": 2}\nONE = ["cuda"]\n')
    assert [line for line, _ in _literals_naming_backends(sample)] == [1, 2]
