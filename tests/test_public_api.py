"""The public API is exactly ringgen.__all__: sorted, every name importable, nothing else exported."""

import importlib

import pytest

import ringgen as rg


def test_all_is_sorted_and_complete():
    names = [n for n in rg.__all__ if n != "__version__"]
    assert names == sorted(names)
    assert set(dir(rg)) == set(rg.__all__)


@pytest.mark.parametrize("name", [n for n in rg.__all__ if n != "__version__"])
def test_every_public_name_resolves_to_its_module(name):
    obj = getattr(rg, name)
    module = importlib.import_module(rg._EXPORTS[name])
    assert getattr(module, name) is obj


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rg.nope  # noqa: B018


def test_importing_ringgen_does_not_load_gpu_drivers():
    import subprocess
    import sys

    code = "import sys, ringgen; print(any(m in sys.modules for m in ('pycuda', 'pyopencl')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


SCALARS = ("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f32", "f64", "bool_")


@pytest.mark.parametrize("name", SCALARS)
def test_scalar_types_are_public_and_the_same_objects_as_ringgen_types(name):
    import ringgen.types

    assert name in rg.__all__
    assert getattr(rg, name) is getattr(ringgen.types, name)


@pytest.mark.parametrize("name", ["BuildError", "ToolchainError"])
def test_build_and_toolchain_errors_are_public_ringgen_errors(name):
    import ringgen.errors

    assert name in rg.__all__
    error = getattr(rg, name)
    assert error is getattr(ringgen.errors, name)
    assert issubclass(error, rg.RinggenError)


SCALARS_MODULE = '''\
"""A kernel written with ``import ringgen as rg`` alone: fields, casts and state through rg."""
import ringgen as rg


@rg.message
class Reading:
    id: rg.i64
    raw: rg.u16
    scale: rg.f32
    valid: rg.bool_


@rg.message
class Scaled:
    id: rg.i64
    value: rg.f64


@rg.ring_kernel
def scale(r: Reading) -> Scaled:
    v = rg.f32(r.raw) * r.scale
    if not r.valid:
        v = rg.f32(0.0)
    return Scaled(id=r.id, value=rg.f64(v))
'''


@pytest.mark.timeout(120)
def test_a_kernel_written_with_rg_scalars_alone_runs(module_file, monkeypatch, tmp_path):
    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(tmp_path / "cache"))
    mod = importlib.import_module(module_file(SCALARS_MODULE).stem)
    assert [f.type for f in rg.spec_of(mod.Reading).fields] == [rg.i64, rg.u16, rg.f32, rg.bool_]
    with rg.launch(mod.scale, backend="cpu") as k:
        k.send(mod.Reading(id=7, raw=3, scale=0.5, valid=True))
        k.send(mod.Reading(id=8, raw=3, scale=0.5, valid=False))
        replies = [k.receive(timeout=10.0) for _ in range(2)]
    assert [(r.id, float(r.value)) for r in replies] == [(7, 1.5), (8, 0.0)]


def test_the_readme_lists_exactly_the_public_names():
    """README's "What you import" names every public name, and nothing that is not one."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## What you import", 1)[1].split("\n## ", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    assert set(re.findall(r"`rg\.(\w+)`", table)) == set(rg.__all__)


def test_what_type_checkers_see_is_what_getattr_returns():
    """The ``if TYPE_CHECKING:`` imports of ringgen/__init__.py name every public name from the module
    ``_EXPORTS`` gives it (editors read the one, users get the other)."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(rg.__file__).read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    )
    seen = {
        alias.name: f"ringgen.{node.module}"
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert seen == rg._EXPORTS
