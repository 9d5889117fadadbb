"""The shared handler body (ringgen.codegen.body) and the dialect layer: the ABI contract."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from ringgen.build import collect
from ringgen.codegen.body import emit_body
from ringgen.codegen.dialect import PRELUDE_NAMES, Dialect, math_names, prelude_names
from ringgen.codegen.dialect_c import C_DIALECT, CDialect
from ringgen.dsl import compile_program
from ringgen.dsl.typesys import Scalar
from ringgen.types import f32, f64, i32, i64

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [
    "vector_add",
    "threshold_filter",
    "counters",
    "bank_account",
    "array_math",
    "device_helper",
]
_IDENT = re.compile(r"\b(rg_[A-Za-z0-9_]+|RG_[A-Z0-9_]+)\b")


def _unit(name: str):
    return collect(str(ROOT / "examples" / f"{name}.py"))


def _defined_by_body(body: str) -> set[str]:
    """Names the body text defines itself: helper functions, macros, locals and parameters."""
    names = set(re.findall(r"RG_FN [^()]*?\b(rg_[a-z0-9_]+)\(", body))
    names |= set(re.findall(r"#define (RG_[A-Z_]+)", body))
    names |= set(re.findall(r"\b(rg_(?:k|stop|step|v|ix|c|m|i)\d+)\b", body))
    names |= {"rg_in", "rg_out", "rg_state", "rg_outbox", "rg_fault", "rg_fault_code"}
    names |= {"rg_stop", "rg_polls"}  # the stop word parameter and the loops' poll counter
    return names


def _abi_names(unit) -> set[str]:
    """Names the skeleton and the header define before the body (docs/architecture.md)."""
    names = {
        f"rg_{t}"
        for t in ("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f32", "f64", "bool")
    }
    names.add("rg_stop_requested")  # how the target loads the stop word (before the body)
    for k in unit.kernels:
        names |= {f"rg_outbox_{k.name}", f"rg_emit_{k.name}"}
    for m in unit.messages:
        names |= {a.c_name for a in m.aux}
    return names


@pytest.mark.parametrize("example", EXAMPLES)
def test_body_uses_only_prelude_names(example):
    unit = _unit(example)
    body = emit_body(unit, debug=False)
    used = set(_IDENT.findall(body))
    unknown = used - _defined_by_body(body) - _abi_names(unit) - set(PRELUDE_NAMES)
    assert not unknown, f"names neither defined by the body nor listed as prelude names: {unknown}"


@pytest.mark.parametrize("example", EXAMPLES)
def test_c_prelude_defines_what_the_body_uses(example):
    body = emit_body(_unit(example), debug=False)
    prelude = C_DIALECT.render_prelude()
    for name in set(_IDENT.findall(body)) & set(PRELUDE_NAMES):
        assert re.search(rf"\b{name}\b", prelude), f"the C prelude does not define {name}"


def test_prelude_names_table():
    assert {"RG_FN", "RG_GLOBAL", "RG_PRIVATE", "rg_thread_id", "rg_now"} <= set(PRELUDE_NAMES)
    assert "rg_sqrt_f32" in math_names() and "rg_sqrt_f64" in math_names()
    assert "rg_sqrt_f64" not in math_names(has_f64=False)
    assert "rg_atomic_add_f32" in PRELUDE_NAMES and "rg_atomic_cas_u64" in PRELUDE_NAMES
    assert "rg_atomic_add_u64" not in prelude_names(has_atomics_64=False)


def test_dialect_hooks_are_abstract():
    class Partial(Dialect):
        name = "partial"
        has_f64 = True
        has_atomics_64 = True
        persistent = False

        def qualifiers(self):
            return {}

    with pytest.raises(TypeError, match="abstract"):
        Partial()

    class Inherited(CDialect):
        pass

    assert isinstance(Inherited(), Dialect)  # capabilities may be inherited

    class Bare(Dialect):
        prelude_template = "c/prelude.h.j2"
        qualifiers = CDialect.qualifiers
        math_function = CDialect.math_function
        atomic_context = CDialect.atomic_context
        thread_id_expr = CDialect.thread_id_expr
        now_expr = CDialect.now_expr

    with pytest.raises(TypeError, match="does not set name, has_f64, has_atomics_64, persistent"):
        Bare()


def test_body_is_target_independent():
    body = emit_body(_unit("counters"), debug=False)
    for word in ("__global", "__device__", "device ", "threadgroup", "atomic_fetch", "__atomic"):
        assert word not in body


def test_local_types_are_inferred_from_later_assignments(tmp_path):
    path = tmp_path / "infer_mod.py"
    path.write_text(textwrap.dedent("""
        import ringgen as rg
        from ringgen.types import Array, f32, i32, i64

        @rg.message
        class M:
            v: Array[i32, 4]
            x: f32

        @rg.ring_kernel
        def infer(m: M) -> M:
            total = 0
            acc = 0.0
            for i in range(4):
                total += m.v[i]
                acc = acc + m.x
            big = i64(total)
            small: f32 = 0.0
            small += m.x
            return M(v=m.v, x=f32(acc) + small)
    """))
    unit = collect(str(path))
    fn = compile_program(unit.kernels).handlers[0]
    types = dict(fn.locals)
    assert types["total"] == Scalar(i64)  # the literal 0 is an i64, and i64 holds every i32
    assert types["acc"] == Scalar(f64)  # the literal 0.0 is an f64, as in Numba
    assert types["small"] == Scalar(f32)  # declared
    assert types["big"] == Scalar(i64)
    assert types["i"].weak  # a range variable is a Python int (i64 in C)
    body = emit_body(unit, debug=False)
    assert "m.v" not in body and "rg_py_index" not in body  # range(4) stays inside Array[i32, 4]


def test_checked_index_and_floor_division_appear_only_when_needed(tmp_path):
    body = emit_body(_unit("counters"), debug=False)
    assert "rg_py_mod_i32(rg_in->value, 16, rg_fault)" in body
    assert "rg_py_index((rg_i64)(b), 16, rg_fault)" in body
    handler = body[body.index("rg_handle_counters") :]
    assert "rg_py_floordiv" not in handler
    assert "rg_py_index" not in emit_body(_unit("vector_add"), debug=False)
