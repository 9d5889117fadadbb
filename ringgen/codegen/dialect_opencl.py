"""The OpenCL dialect: the prelude that gives the shared handler body and ``ring.h`` their names in OpenCL C.

The handler body (``ringgen.codegen.body``) is the same text for every target; it spells qualifiers,
math, atomics, ``rg_thread_id()`` and ``rg_now()`` through prelude names (``ringgen.codegen.dialect``).
``OpenclDialect`` renders ``templates/opencl/prelude.cl.j2``, which defines them for OpenCL C 3.0, plus
the memory-order helpers ``ring.h`` needs: C11 atomics with ``memory_scope_device``, the only ordering
PoCL 3.1 honours (docs/design.md §5, docs/opencl.md).

OpenCL C has no clock: ``rg_now()`` expands to a call of ``RG_NOW_UNAVAILABLE`` that no prelude defines,
and the loader refuses such a source with a clear error before the compiler sees it.
"""

from __future__ import annotations

from typing import ClassVar

from .dialect import Dialect

__all__ = ["MATH_FUNCTIONS", "NOW_UNAVAILABLE", "OPENCL_DIALECT", "OpenclDialect"]

#: (ringgen name, OpenCL built-in, arity). Kept for other dialects that map the same list
#: (``dialect_cuda`` derives its table from it); the prelude itself follows
#: ``ringgen.intrinsics.MATH_FUNCTIONS`` through ``Dialect.prelude_context``.
MATH_FUNCTIONS: tuple[tuple[str, str, int], ...] = (
    ("acos", "acos", 1),
    ("asin", "asin", 1),
    ("atan", "atan", 1),
    ("atan2", "atan2", 2),
    ("ceil", "ceil", 1),
    ("copysign", "copysign", 2),
    ("cos", "cos", 1),
    ("cosh", "cosh", 1),
    ("exp", "exp", 1),
    ("exp2", "exp2", 1),
    ("expm1", "expm1", 1),
    ("fabs", "fabs", 1),
    ("abs", "fabs", 1),
    ("floor", "floor", 1),
    ("fma", "fma", 3),
    ("fmax", "fmax", 2),
    ("fmin", "fmin", 2),
    ("fmod", "fmod", 2),
    ("hypot", "hypot", 2),
    ("isfinite", "isfinite", 1),
    ("isinf", "isinf", 1),
    ("isnan", "isnan", 1),
    ("log", "log", 1),
    ("log10", "log10", 1),
    ("log1p", "log1p", 1),
    ("log2", "log2", 1),
    ("pow", "pow", 2),
    ("round", "round", 1),
    ("sin", "sin", 1),
    ("sinh", "sinh", 1),
    ("sqrt", "sqrt", 1),
    ("tan", "tan", 1),
    ("tanh", "tanh", 1),
    ("trunc", "trunc", 1),
)

#: The token ``rg_now()`` expands to; the loader looks for it in a source before building.
NOW_UNAVAILABLE = "RG_NOW_UNAVAILABLE_IN_OPENCL"

#: OpenCL atomic type, and for floats the scalar and bit types, per ringgen scalar.
_ATOMIC_TYPES = {
    "i32": ("atomic_int", "", ""),
    "u32": ("atomic_uint", "", ""),
    "i64": ("atomic_long", "", ""),
    "u64": ("atomic_ulong", "", ""),
    "f32": ("atomic_uint", "float", "uint"),
    "f64": ("atomic_ulong", "double", "ulong"),
}


class OpenclDialect(Dialect):
    """OpenCL C 3.0, as PyOpenCL builds it (``-cl-std=CL3.0``)."""

    name: ClassVar[str] = "opencl"
    has_f64: ClassVar[bool] = True
    has_atomics_64: ClassVar[bool] = True
    persistent: ClassVar[bool] = True
    #: Options every program is built with: C11 atomics need CL3.0 (CL2.0 on older drivers).
    build_options: ClassVar[tuple[str, ...]] = ("-cl-std=CL3.0",)

    @property
    def prelude_template(self) -> str:
        return "opencl/prelude.cl.j2"

    def qualifiers(self) -> dict[str, str]:
        return {"RG_FN": "static inline", "RG_GLOBAL": "__global", "RG_PRIVATE": "__private"}

    def math_function(self, stem: str, precision: str) -> str:
        if stem == "trunc":
            # PoCL 3.1 (LLVM 15) folded trunc() of a NaN known at compile time to 0.0 or garbage
            # (its trunc converts through an integer); the prelude's rg__trunc_* pass a NaN through.
            return f"rg__trunc_{precision}"
        return stem  # OpenCL's math built-ins are overloaded for float and double

    def atomic_context(self, op: str, t: str) -> dict:
        atomic, scalar, bits = _ATOMIC_TYPES[t]
        # OpenCL 1.x spells 32-bit atomics atomic_* and 64-bit ones atom_* (cl_khr_int64_*_atomics).
        wide = t in ("i64", "u64", "f64")
        return {
            "atomic": atomic,
            "is_float": bool(scalar),
            "scalar": scalar,
            "bits": bits,
            "ctype": f"rg_{t}",
            "legacy_prefix": "atom" if wide else "atomic",
        }

    def thread_id_expr(self) -> str:
        return "((rg_u32)get_global_id(0))"

    def now_expr(self) -> str:
        return f"{NOW_UNAVAILABLE}()"

    def prelude(self) -> str:
        """The prelude text (``render_prelude``)."""
        return self.render_prelude()


OPENCL_DIALECT = OpenclDialect()
