"""The CUDA dialect: the prelude that gives the shared handler body and ``ring.h`` their names in CUDA C++.

The handler body (``ringgen.codegen.body``) is the same text for every target; it spells qualifiers,
math, atomics, ``rg_thread_id()`` and ``rg_now()`` through the prelude names of
``ringgen.codegen.dialect``. ``CudaDialect`` fills that contract for nvcc and sm_90 and renders
``templates/cuda/prelude.cuh.j2``, which also defines what ``ring.h`` and the CUDA skeleton need: PTX
acquire and release at *system* scope for the words the host shares through mapped pinned memory
(docs/design.md §5), and the same at GPU scope for the scheduler words the blocks share.
"""

from __future__ import annotations

from typing import ClassVar

from .dialect import Dialect

__all__ = ["CUDA_DIALECT", "CudaDialect"]

#: Math stems whose CUDA function is not the C99 one (with an ``f`` suffix for float).
#: ``fabs`` clears the sign bit by hand: ptxas (CUDA 13.0, sm_90, -O1 and above) folded
#: ``c <= fabsf(x)`` with ``c < 0`` to true inside a generated kernel, NaN or not, as if |x| could
#: not be NaN (tests/test_generated_kernels_gpu.py pins it; docs/testing.md).
_SPECIAL_MATH = {
    "abs": ("rg__fabs_bits_f32", "rg__fabs_bits_f64"),
    "fabs": ("rg__fabs_bits_f32", "rg__fabs_bits_f64"),
}

#: Per ringgen integer type: the type atomicAdd/atomicCAS take (two's complement makes a signed add
#: work on the unsigned type) and the one atomicMin/atomicMax take (there signedness matters).
_INT_ATOMIC_TYPES = {
    "i32": ("int", "int"),
    "u32": ("unsigned int", "unsigned int"),
    "i64": ("unsigned long long", "long long"),
    "u64": ("unsigned long long", "unsigned long long"),
}
#: CUDA's atomic functions by ringgen atomic op.
_ATOMIC_FUNCTIONS = {"add": "atomicAdd", "min": "atomicMin", "max": "atomicMax", "cas": "atomicCAS"}


class CudaDialect(Dialect):
    """CUDA C++17 as nvcc builds it for one architecture (``-arch=sm_90`` on the H100)."""

    name: ClassVar[str] = "cuda"
    has_f64: ClassVar[bool] = True
    has_atomics_64: ClassVar[bool] = True
    #: A ring kernel is one resident grid, launched once.
    persistent: ClassVar[bool] = True
    #: Options every module is built with (the loader adds ``-arch`` and its own, ``cuda_build``).
    build_options: ClassVar[tuple[str, ...]] = ("-std=c++17", "-O3")

    def __init__(self, arch: str = "sm_90") -> None:
        super().__init__()
        self.arch = arch

    @property
    def prelude_template(self) -> str:
        return "cuda/prelude.cuh.j2"

    def qualifiers(self) -> dict[str, str]:
        # `unused`: ring.h, the codec and the prelude define helpers a given kernel may not call.
        # Every pointer is a generic address in CUDA, so the memory qualifiers are empty.
        return {
            "RG_FN": "static __device__ __forceinline__ __attribute__((unused))",
            "RG_GLOBAL": "",
            "RG_PRIVATE": "",
        }

    def narrow_wrap(self, t: str, bits: int) -> str:
        # A sign extension ptxas cannot see through: with a plain (short) cast, ptxas at -O1 and
        # above folded `x >= -x` for an i16 x = -32768 to false, as if the negation could not wrap
        # (the PTX is right; -Xptxas -O0 is too). bfe.s32 keeps the wrapped value an rg_i32.
        return f"rg__sext_bits((rg_u32)(v), {bits})"

    def math_function(self, stem: str, precision: str) -> str:
        f32, f64 = _SPECIAL_MATH.get(stem, (stem + "f", stem))
        return f32 if precision == "f32" else f64

    def atomic_context(self, op: str, t: str) -> dict:
        if t == "f32":
            # Only add exists for floats in the language; CUDA has it in hardware.
            return {"fn": _ATOMIC_FUNCTIONS[op], "ctype": "float", "is_float": True}
        add_type, minmax_type = _INT_ATOMIC_TYPES[t]
        return {
            "fn": _ATOMIC_FUNCTIONS[op],
            "ctype": minmax_type if op in ("min", "max") else add_type,
            "is_float": False,
        }

    def thread_id_expr(self) -> str:
        return "((rg_u32)(blockIdx.x * blockDim.x + threadIdx.x))"

    def now_expr(self) -> str:
        return "rg_cuda_now()"

    def prelude(self) -> str:
        """The prelude text (``render_prelude``)."""
        return self.render_prelude()


CUDA_DIALECT = CudaDialect()
