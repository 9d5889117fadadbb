"""The Metal dialect: what it refuses (f64, 64-bit atomics it cannot provide) and what it accepts."""

from __future__ import annotations

import textwrap

import pytest

from ringgen.build import collect
from ringgen.codegen.dialect_metal import MetalDialect, check_function
from ringgen.codegen.metal import skipped_kernels
from ringgen.dsl import compile_program
from ringgen.errors import HandlerError

PROBE = """
import ringgen as rg
from ringgen.types import Array, f32, f64, i32, i64, u32, u64


@rg.message
class In:
    id: i64
    x: f32
    w: f64


@rg.message
class Out:
    id: i64
    y: f32


@rg.state
class Tot:
    n: u64 = 0
    lo: i32 = 0
    hist: Array[u32, 4] = 0
    fsum: f32 = 0.0


@rg.ring_kernel
def f64_local(m: In) -> Out:
    wide = f64(m.x) * 2.0
    return Out(id=m.id, y=f32(wide))


@rg.ring_kernel
def f64_field(m: In) -> Out:
    return Out(id=m.id, y=f32(m.w))


@rg.device
def halve(v: f64) -> f64:
    return v / 2.0


@rg.ring_kernel
def f64_helper(m: In) -> Out:
    return Out(id=m.id, y=f32(halve(f64(m.x))))


@rg.ring_kernel
def wide_old_value(m: In, st: Tot) -> Out:
    before = rg.atomic_add(st.n, 1)
    return Out(id=m.id, y=m.x + f32(before))


@rg.ring_kernel
def wide_max(m: In, st: Tot) -> Out:
    rg.atomic_max(st.n, u64(m.id))
    return Out(id=m.id, y=m.x)


@rg.ring_kernel
def metal_ok(m: In, st: Tot) -> Out:
    rg.atomic_add(st.n, 1)
    rg.atomic_add(st.fsum, m.x)
    old = rg.atomic_max(st.lo, i32(m.id))
    seen = rg.atomic_add(st.hist[m.id % 4], 1)
    return Out(id=m.id + i64(old) + i64(seen), y=m.x * 2.0 + 0.5)
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    path = tmp_path_factory.mktemp("metal_probe") / "metal_probe.py"
    path.write_text(textwrap.dedent(PROBE))
    unit = collect(str(path))
    return unit, compile_program(unit.kernels, unit.device_functions, unit.source_file)


def _handler(program, name):
    return next(h for h in program.handlers if h.name == name)


@pytest.mark.parametrize(
    "kernel, line_text, words",
    [
        ("f64_local", "wide = f64(m.x) * 2.0", "'wide' is f64"),
        ("f64_field", "return Out(id=m.id, y=f32(m.w))", "field 'w' is f64"),
        ("wide_old_value", "before = rg.atomic_add(st.n, 1)", "no old value"),
        ("wide_max", "rg.atomic_max(st.n, u64(m.id))", "32-bit int and uint only"),
    ],
)
def test_refused_kernels_name_kernel_file_and_line(probe, kernel, line_text, words):
    unit, program = probe
    with pytest.raises(HandlerError) as info:
        check_function(_handler(program, kernel), kernel)
    err = info.value
    assert f"kernel {kernel}" in err.message and words in err.message
    assert err.file.endswith("metal_probe.py")
    assert line_text in open(err.file).read().splitlines()[err.line - 1]
    assert err.hint


def test_device_function_in_f64_skips_its_caller(probe):
    unit, program = probe
    skipped = skipped_kernels(unit, program)
    assert "f64_helper" in skipped and "Metal has no double" in skipped["f64_helper"]
    assert skipped["f64_helper"].startswith("metal_probe.py:")  # no absolute path in generated text


def test_metal_expressible_kernel_is_kept(probe):
    unit, program = probe
    check_function(_handler(program, "metal_ok"), "metal_ok")  # does not raise
    skipped = skipped_kernels(unit, program)
    assert sorted(skipped) == ["f64_field", "f64_helper", "f64_local", "wide_max", "wide_old_value"]


def test_prelude_defines_every_math_function_and_only_relaxed_atomics():
    from ringgen.intrinsics import MATH_FUNCTIONS

    text = MetalDialect().render_prelude()
    for fn in MATH_FUNCTIONS.values():
        assert f"rg_{fn.stem}_f32(" in text
        assert f"rg_{fn.stem}_f64(" not in text  # Metal has no double: no f64 helper exists
    assert "metal::memory_order_relaxed" in text
    assert "memory_order_acquire" not in text and "memory_order_seq_cst" not in text
    for op in ("add", "min", "max", "cas"):
        assert f"rg_atomic_{op}_i32(" in text and f"rg_atomic_{op}_u32(" in text
    assert "rg_atomic_add_u64(" in text and "rg_atomic_max_u64(" not in text
