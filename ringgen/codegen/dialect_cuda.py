"""The CUDA dialect: the prelude that gives the shared handler body and ``ring.h`` their names in CUDA C++.

The handler body (``ringgen.codegen.body``) is the same text for every target; it spells qualifiers,
math, atomics, ``rg_thread_id()`` and ``rg_now()`` through prelude names (docs/architecture.md). This
module renders ``templates/cuda/prelude.cuh.j2``, which defines them for nvcc and sm_90: PTX acquire and
release at *system* scope for the words the host shares through mapped pinned memory (DESIGN.md §5),
CUDA's math library, and the hardware atomics (a compare-and-swap loop where there is none).
"""

from __future__ import annotations

import attrs

from .dialect_opencl import MATH_FUNCTIONS as _OPENCL_MATH
from .env import render

__all__ = ["CUDA_DIALECT", "CudaDialect", "MATH_FUNCTIONS"]

#: Functions whose CUDA name is not the C99 one with an ``f`` suffix for float.
_SPECIAL = {
    "abs": ("fabsf", "fabs"),
    "isfinite": ("isfinite", "isfinite"),
    "isinf": ("isinf", "isinf"),
    "isnan": ("isnan", "isnan"),
}


def _math_table() -> tuple[tuple[str, str, str, int], ...]:
    """(ringgen name, float function, double function, arity), from the same list OpenCL uses, so
    every backend offers the same functions."""
    rows = []
    for name, builtin, arity in _OPENCL_MATH:
        f32, f64 = _SPECIAL.get(name, (builtin + "f", builtin))
        rows.append((name, f32, f64, arity))
    return tuple(rows)


#: (ringgen name, CUDA float function, CUDA double function, arity).
MATH_FUNCTIONS = _math_table()


@attrs.frozen
class _IntAtomic:
    name: str  # ringgen scalar name
    cuda: str  # the type atomicAdd/atomicCAS take for it (two's complement makes signed add work)
    minmax: str  # the type atomicMin/atomicMax take (signedness matters there)


@attrs.frozen
class _FloatAtomic:
    name: str
    bits: str  # the integer type atomicCAS takes for its bits
    to_bits: str
    from_bits: str
    fmin: str
    fmax: str


_INT_ATOMICS = (
    _IntAtomic("i32", "int", "int"),
    _IntAtomic("u32", "unsigned int", "unsigned int"),
    _IntAtomic("i64", "unsigned long long", "long long"),
    _IntAtomic("u64", "unsigned long long", "unsigned long long"),
)
_FLOAT_ATOMICS = (
    _FloatAtomic("f32", "unsigned int", "__float_as_uint", "__uint_as_float", "fminf", "fmaxf"),
    _FloatAtomic(
        "f64",
        "unsigned long long",
        "(unsigned long long)__double_as_longlong",
        "__longlong_as_double",
        "fmin",
        "fmax",
    ),
)


@attrs.frozen
class CudaDialect:
    """CUDA C++17 as nvcc builds it for one architecture (``-arch=sm_90`` on the H100)."""

    name: str = "cuda"
    arch: str = "sm_90"
    build_options: tuple[str, ...] = ("-std=c++17", "-O3")
    #: Capabilities the emitter and loader consult.
    has_f64: bool = True
    has_atomics_64: bool = True

    def prelude(self) -> str:
        """The prelude text: qualifiers, memory-order helpers, math and atomics, thread id and clock."""
        return render(
            "cuda/prelude.cuh.j2",
            math=MATH_FUNCTIONS,
            int_atomics=_INT_ATOMICS,
            float_atomics=_FLOAT_ATOMICS,
        )


CUDA_DIALECT = CudaDialect()
