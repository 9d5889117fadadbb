"""The Metal emitter: golden files, the shim check of every example, broken templates, skipped kernels.

Golden files live in tests/golden/metal/; after an intended change to the generator, refresh them with
``RINGGEN_UPDATE_GOLDEN=1 pytest tests/test_metal_emit.py`` and review the diff.
"""

from __future__ import annotations

import difflib
import logging
import os
import shutil
import textwrap
from pathlib import Path

import jinja2
import pytest

from ringgen.build import collect
from ringgen.codegen import env as env_module
from ringgen.codegen.metal import emit, metal_name
from ringgen.metal_shim import HONEST_WORDING, available_compilers, check_metal, check_metal_source

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "metal"
#: Every example module that declares a ring kernel.
EXAMPLES = sorted(
    p.stem for p in (ROOT / "examples").glob("*.py") if "@rg.ring_kernel" in p.read_text()
)

needs_cxx = pytest.mark.skipif(not available_compilers(), reason="no g++ or clang++")


def _emit_example(name: str) -> str:
    unit = collect(f"examples/{name}.py")
    files = emit(unit)
    assert list(files) == [metal_name(unit)] == [f"{name}.metal"]
    return files[f"{name}.metal"]


@pytest.fixture(scope="module")
def emitted():
    cwd = os.getcwd()
    os.chdir(ROOT)  # collect() names sources relative to the import root, as `ringgen build` does
    try:
        return {name: _emit_example(name) for name in EXAMPLES}
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("name", EXAMPLES)
def test_golden(emitted, name):
    text = emitted[name]
    golden = GOLDEN / f"{name}.metal"
    if os.environ.get("RINGGEN_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden}: run with RINGGEN_UPDATE_GOLDEN=1"
    expected = golden.read_text()
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True),
                text.splitlines(True),
                str(golden),
                f"emitted {name}.metal",
            )
        )
        pytest.fail(
            f"{name}.metal differs from its golden file "
            f"(RINGGEN_UPDATE_GOLDEN=1 to accept):\n{diff}"
        )


@needs_cxx
@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_compiles_against_the_shim(emitted, name, tmp_path):
    path = tmp_path / f"{name}.metal"
    path.write_text(emitted[name])
    result = check_metal(path)
    assert result.ok, str(result)
    assert result.wording == HONEST_WORDING
    assert set(available_compilers()) <= {c.split()[0] for c in result.compiler.split(", ")}


def test_every_example_kernel_is_emitted_or_skipped_for_f64(emitted):
    """An example kernel is left out of the .metal only for arithmetic in f64 (Metal has no double),
    and then the file says so; examples written in f32 lose no kernel."""
    for name, text in emitted.items():
        unit = collect(str(ROOT / "examples" / f"{name}.py"))
        uses_f64 = "f64" in (ROOT / "examples" / f"{name}.py").read_text()
        for k in unit.kernels:
            if f"kernel void {k.name}_begin(" in text:
                continue
            assert uses_f64, f"{name}: kernel {k.name} skipped though the example has no f64"
            assert f"//   {k.name}: {name}.py:" in text and "Metal has no double" in text


def test_output_is_deterministic(emitted):
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert _emit_example("counters") == emitted["counters"]
    finally:
        os.chdir(cwd)


# ---------------------------------------------------------------- a broken template fails the check


def _broken_environment(tmp_path, template: str, old: str, new: str) -> jinja2.Environment:
    root = tmp_path / "templates"
    shutil.copytree(env_module.templates_dir(), root)
    path = root / template
    text = path.read_text()
    assert old in text, f"{old!r} not in {template}"
    path.write_text(text.replace(old, new, 1))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(env_module.environment().filters)
    return env


@needs_cxx
@pytest.mark.parametrize(
    "template, old, new, expected",
    [
        # a wrong type: an atomic operation on a plain (non-atomic) 64-bit counter
        (
            "metal/kernel.metal.j2",
            "metal::atomic_fetch_add_explicit(&rg_d->out_reserved, 1u",
            "metal::atomic_fetch_add_explicit(&rg_d->in_head, 1u",
            "atomic_fetch_add_explicit",
        ),
        # an unknown function
        (
            "metal/prelude.metal.j2",
            "metal::atomic_load_explicit(word",
            "metal::atomic_read_explicit(word",
            "atomic_read_explicit",
        ),
        # a memory order Metal does not have
        (
            "metal/kernel.metal.j2",
            "metal::atomic_store_explicit(&rg_d->processed, 0u, metal::memory_order_relaxed)",
            "metal::atomic_store_explicit(&rg_d->processed, 0u, metal::memory_order_release)",
            "memory_order_release",
        ),
        # a parameter attribute Metal does not define
        (
            "metal/kernel.metal.j2",
            "[[thread_position_in_grid]]",
            "[[thread_id]]",
            "not a Metal attribute",
        ),
    ],
)
def test_broken_template_fails_the_check(monkeypatch, tmp_path, template, old, new, expected):
    broken = _broken_environment(tmp_path, template, old, new)
    monkeypatch.setattr(env_module, "environment", lambda: broken)
    monkeypatch.chdir(ROOT)
    text = _emit_example("vector_add")
    result = check_metal_source(text, "vector_add.metal")
    assert not result.ok
    assert expected in result.stderr


# ---------------------------------------------------------------- kernels Metal cannot express

MIXED = """
import ringgen as rg
from ringgen.types import f32, f64, i64


@rg.message
class In:
    id: i64
    x: f32


@rg.message
class Out:
    id: i64
    y: f32


@rg.ring_kernel
def needs_double(m: In) -> Out:
    wide = f64(m.x) / 3.0
    return Out(id=m.id, y=f32(wide))


@rg.ring_kernel
def single(m: In) -> Out:
    return Out(id=m.id, y=m.x / 3.0)
"""


def test_f64_kernel_is_skipped_with_comment_and_log(tmp_path, caplog):
    path = tmp_path / "mixed_precision.py"
    path.write_text(textwrap.dedent(MIXED))
    unit = collect(str(path))
    with caplog.at_level(logging.INFO, logger="ringgen"):
        text = emit(unit)["mixed_precision.metal"]
    assert "kernel void single_process(" in text
    assert "needs_double_process" not in text and "rg_handle_needs_double" not in text
    assert (
        "//   needs_double: mixed_precision.py:20: error" not in text
    )  # reason, not a diagnostic dump
    assert (
        "//   needs_double: mixed_precision.py:20: kernel needs_double: local 'wide' is f64" in text
    )
    assert any("needs_double" in r.getMessage() and "f64" in r.getMessage() for r in caplog.records)
    if available_compilers():
        assert check_metal_source(text, "mixed_precision.metal").ok
