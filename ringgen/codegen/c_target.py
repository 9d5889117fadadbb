"""The plain-C target: ``<name>.c``, the handlers plus a batch driver per kernel, for gcc.

It is what the differential tests build (``gcc -shared``) and run through ctypes against the
reference backend. Each kernel ``K`` gets ``rg_run_K(in, n, outs, counts, status, state, faults)``;
see ``templates/c/source.c.j2`` for the exact contract.

Floating point: built with ``STRICT_FLAGS`` (no FMA contraction, no fast-math), + - * / and sqrt
are correctly rounded exactly as numpy computes them, so results are bit-identical to the reference;
other math functions differ from numpy's by a few ULP (glibc against numpy's own kernels).
``FAST_FLAGS`` lets gcc contract a * b + c into an FMA, which rounds once instead of twice: results
then differ by a few ULP where no cancellation amplifies it, and are not comparable bit for bit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from .._version import __version__
from .. import protocol
from ..kernel import KernelSpec
from ..protocol import OUTBOX_LIMIT  # re-exported: tests read c_target.OUTBOX_LIMIT
from ..toolchain import C_STRICT_FLAGS
from .body import emit_body
from .options import EmitOptions
from .dialect_c import C_DIALECT, CDialect
from .env import render
from .emitter import Emitter
from .kernel_context import kernel_context as shared_kernel_context

if TYPE_CHECKING:
    from ..build import BuildUnit

__all__ = [
    "CEmitter",
    "FAST_FLAGS",
    "OUTBOX_LIMIT",
    "STRICT_FLAGS",
    "emit",
    "kernel_context",
    "render_source",
    "source_name",
]

#: gcc flags for a build whose floats match the reference bit for bit (see the module docstring).
STRICT_FLAGS = C_STRICT_FLAGS
#: gcc flags for a build as fast as the host allows (FMA contraction; floats within a few ULP).
FAST_FLAGS = ("-O3", "-std=c99", "-march=native", "-ffp-contract=fast", "-D_POSIX_C_SOURCE=199309L")


def source_name(unit: "BuildUnit") -> str:
    """The emitted file's name: ``<name>.c``."""
    return f"{unit.name}.c"


def kernel_context(spec: KernelSpec) -> dict:
    """What the driver template needs to know about one kernel (a missing output is ``void``)."""
    ctx = shared_kernel_context(spec)
    if not ctx["has_output"]:
        ctx["out_type"] = "void"
    return ctx


def render_source(
    unit: "BuildUnit",
    *,
    body: str,
    header_name: Optional[str] = None,
    dialect: Optional[CDialect] = None,
) -> str:
    """The ``.c`` text for ``unit`` around a given handler body (pure)."""
    dialect = dialect or C_DIALECT
    return render(
        "c/source.c.j2",
        unit_name=unit.name,
        module=unit.module,
        version=__version__,
        fingerprint=unit.fingerprint,
        header=header_name or f"{unit.name}_types.h",
        prelude=dialect.render_prelude(),
        body=body,
        n_reasons=protocol.N_REASONS,
        kernels=[kernel_context(k) for k in unit.kernels],
    )


def emit(
    unit: "BuildUnit",
    *,
    debug: Optional[bool] = None,
    options: Optional[EmitOptions] = None,
    program: Any = None,
) -> dict[str, str]:
    """The C target: ``{"<name>.c": text}`` (``debug`` adds ``#line`` directives).

    Raises:
        HandlerError: a handler is outside the language.
    """
    if debug is None and options is not None:
        debug = options.debug_line_directives
    return {
        source_name(unit): render_source(unit, body=emit_body(unit, debug=debug, program=program))
    }


class CEmitter(Emitter):
    """The C target's ``Emitter`` (the ``c`` row of ``ringgen.targets``)."""

    def emit(self, unit: "BuildUnit", program: Any, options: EmitOptions) -> dict[str, str]:
        return emit(unit, options=options, program=program)

    def entry_points(self, kernel: str) -> dict[str, str]:
        return {"batch": f"rg_run_{kernel}"}

    def skipped(self, unit: "BuildUnit", program: Any) -> dict[str, str]:
        return {}

    def abi(self, kernel: KernelSpec, source: str) -> None:
        return None
