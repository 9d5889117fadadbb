"""The plain-C dialect: the prelude for gcc/clang, used by the ``c`` target and differential tests.

Math maps onto C99 ``<math.h>``; atomics onto the GCC/Clang ``__atomic`` builtins (relaxed, as on
the devices), with compare-and-swap loops for min/max and float add; ``rg_thread_id()`` reads the
batch driver's current index and ``rg_now()`` ``clock_gettime(CLOCK_MONOTONIC)``.
"""

from __future__ import annotations

from typing import ClassVar

from .dialect import Dialect

__all__ = ["CDialect", "C_DIALECT"]


class CDialect(Dialect):
    """C99 with GNU atomic builtins, as gcc builds it into a shared library."""

    name: ClassVar[str] = "c"
    has_f64: ClassVar[bool] = True
    has_atomics_64: ClassVar[bool] = True
    persistent: ClassVar[bool] = False

    @property
    def prelude_template(self) -> str:
        return "c/prelude.h.j2"

    def qualifiers(self) -> dict[str, str]:
        # `unused`: the prelude and body helpers define functions a given build may not call.
        return {"RG_FN": "static inline __attribute__((unused))", "RG_GLOBAL": "", "RG_PRIVATE": ""}

    def math_function(self, stem: str, precision: str) -> str:
        return stem + "f" if precision == "f32" else stem

    def atomic_context(self, op: str, t: str) -> dict:
        return {
            "ctype": f"rg_{t}",
            "is_float": t == "f32",
            "bits": "rg_u32" if t == "f32" else f"rg_{t}",
        }

    def thread_id_expr(self) -> str:
        return "rg_c_thread_id"

    def now_expr(self) -> str:
        return "rg_c_now()"


C_DIALECT = CDialect()
