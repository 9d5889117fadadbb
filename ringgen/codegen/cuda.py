"""The CUDA emitter: ``<name>.cu``, every ring kernel of a build as CUDA C++ for nvcc (sm_90).

The source is, in order: the CUDA prelude (``dialect_cuda``), the ``<name>_types.h`` header included
textually, the shared queue protocol (``templates/common/ring.h.j2``), the CUDA scheduler structs, each
kernel's outbox, the handler bodies (``ringgen.codegen.body``, identical for every target), then per
kernel one resident skeleton around the same handler (``templates/cuda/kernel.cu.j2``). The loader
(``ringgen.runtime.cuda``) compiles it with nvcc, caches the cubin and launches ``rg_<kernel>_ring``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from .. import __version__, protocol
from ..errors import BuildError
from ..kernel import KernelSpec
from ..layout import layout_of
from .dialect_cuda import CUDA_DIALECT, CudaDialect
from .env import render

if TYPE_CHECKING:
    from ..build import BuildUnit

__all__ = [
    "BLOCK",
    "ITEMS",
    "OUTBOX_LIMIT",
    "SCHED_BYTES",
    "SIDE_BYTES",
    "emit",
    "entry_point",
    "kernel_context",
    "render_source",
    "source_name",
    "supports",
]

#: Threads per block and messages per thread per wave; a worker claims BLOCK * ITEMS sequence numbers.
BLOCK = 256
ITEMS = 4
#: Replies an Outbox handler may emit per message (the same bound as the OpenCL target).
OUTBOX_LIMIT = 8
#: sizeof(rg_sched) and sizeof(rg_cuda_side) in the template; static assertions keep them honest.
SCHED_BYTES = 6 * protocol.CACHE_LINE
SIDE_BYTES = protocol.CACHE_LINE


def source_name(unit: "BuildUnit") -> str:
    """The emitted file's name: ``<name>.cu``."""
    return f"{unit.name}.cu"


def entry_point(kernel: str) -> str:
    """The ``extern "C"`` name of a ring kernel's resident grid."""
    return f"rg_{kernel}_ring"


def supports(spec: KernelSpec) -> Optional[str]:
    """None when the CUDA target runs ``spec``; otherwise why not (bridged messages need H4's
    device codec, which this target does not call yet)."""
    for role, cls in (("input", spec.input), ("output", spec.outbox or spec.output)):
        if cls is not None and layout_of(cls).is_bridged:
            return (
                f"its {role} message {cls.__name__} is bridged (Str/List fields); the CUDA target "
                "carries direct messages only"
            )
    return None


def kernel_context(spec: KernelSpec) -> dict:
    """What the skeleton template needs to know about one ring kernel."""
    out_cls = spec.outbox or spec.output
    return {
        "name": spec.name,
        "in_type": layout_of(spec.input).name,
        "out_type": layout_of(out_cls).name if out_cls is not None else "rg_none",
        "has_output": out_cls is not None,
        "state_type": layout_of(spec.state).name if spec.state is not None else "void",
        "uses_outbox": spec.uses_outbox,
        "limit": OUTBOX_LIMIT if spec.uses_outbox else 1,
        "ordered": spec.ordered,
    }


def render_ring_h() -> str:
    """The shared queue protocol in C, rendered from ``ringgen.protocol``."""
    return render("common/ring.h.j2", **protocol.render_context())


def render_source(
    unit: "BuildUnit",
    *,
    header: str,
    body: str,
    dialect: Optional[CudaDialect] = None,
) -> str:
    """The ``.cu`` text for ``unit`` around a given header and handler body (pure; no disk access).

    Kernels the target cannot run (``supports``) are left out of the skeletons; their handlers are
    still in ``body``, which is harmless.

    Args:
        unit: the build (its name, module, fingerprint and kernels are read).
        header: the text of ``<name>_types.h``.
        body: the handler text from ``ringgen.codegen.body.emit_body(unit)``.
        dialect: the CUDA dialect (default: sm_90).
    """
    dialect = dialect or CUDA_DIALECT
    return render(
        "cuda/kernel.cu.j2",
        unit_name=unit.name,
        module=unit.module,
        version=__version__,
        fingerprint=unit.fingerprint,
        prelude=dialect.prelude(),
        header=header,
        ring_h=render_ring_h(),
        body=body,
        block=BLOCK,
        items=ITEMS,
        sched_bytes=SCHED_BYTES,
        side_bytes=SIDE_BYTES,
        kernels=[kernel_context(k) for k in unit.kernels if supports(k) is None],
    )


def emit(unit: "BuildUnit") -> dict[str, str]:
    """The CUDA target: ``{"<name>.cu": text}``.

    Raises:
        BuildError: the handler body emitter is missing (a broken installation).
    """
    try:
        from .body import emit_body
    except ImportError as exc:  # pragma: no cover - only in a partial checkout
        raise BuildError(f"the CUDA target needs ringgen.codegen.body: {exc}") from exc
    from .header import render_header

    return {
        source_name(unit): render_source(unit, header=render_header(unit), body=emit_body(unit))
    }
